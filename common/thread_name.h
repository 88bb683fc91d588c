#pragma once

#include <string>

#include "absl/strings/string_view.h"

namespace kiq {

// Names the calling thread (what `top -H`, `ps -L`, perf's --sort=comm and gdb show), so an
// operator can tell the ingestion thread from librdkafka's and gRPC's. Linux keeps 15
// bytes; a longer name is cut. Threads the named thread starts inherit its name.
void NameThisThread(absl::string_view name);

// The calling thread's name ("" if it cannot be read).
std::string ThisThreadName();

}  // namespace kiq
