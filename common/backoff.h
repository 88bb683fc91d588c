#pragma once

#include <algorithm>

#include "absl/time/time.h"

namespace kiq {

// Exponential backoff between retries: `initial` doubled per attempt, never above `max`.
// A value type; thread-safe.
struct ExponentialBackoff {
  absl::Duration initial;
  absl::Duration max;

  // The wait before retry number `attempt` (0 for the first retry).
  absl::Duration Delay(int attempt) const {
    // Past 2^16 × initial every sensible cap has been reached; the bound keeps the shift defined.
    return std::min(initial * (int64_t{1} << std::clamp(attempt, 0, 16)), max);
  }
};

}  // namespace kiq
