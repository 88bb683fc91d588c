#pragma once

// kiq logs through spdlog (leveled, one pattern with the node id set by each binary's main).
// Include this header rather than spdlog directly: Debian's abseil has its own
// absl::string_view (not std::string_view), which fmt must be taught to print.
#include <spdlog/spdlog.h>

#include "absl/strings/string_view.h"

template <>
struct fmt::formatter<absl::string_view> : fmt::formatter<fmt::string_view> {
  template <typename FormatContext>
  auto format(absl::string_view s, FormatContext& ctx) const {
    return fmt::formatter<fmt::string_view>::format(fmt::string_view(s.data(), s.size()), ctx);
  }
};
