#pragma once

#include "absl/strings/string_view.h"

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace kiq::router {

// The one place where absl::Status becomes a grpc::Status on the way out of a handler. The code
// is kept; the message is passed through (it already names the store/key/partition).
grpc::Status ToGrpcStatus(const absl::Status& status);

// The one place where a peer's grpc::Status becomes an absl::Status, naming what we were doing.
absl::Status FromGrpcStatus(const grpc::Status& status, absl::string_view doing);

// Clips a key for error messages and logs: keys can be long or binary.
std::string ClipKey(absl::string_view key);

}  // namespace kiq::router
