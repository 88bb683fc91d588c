#pragma once

#include <cstdint>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace kiq {

// Lets through at most `per_minute` log lines a minute, and tells how many were held back, so
// that a flood of bad records cannot flood the log. Thread-safe.
class LogLimiter {
 public:
  explicit LogLimiter(int per_minute) : per_minute_(per_minute) {}

  // True if this line may be logged; `*suppressed` is set to the number of lines held back
  // since the last one let through.
  bool Allow(int64_t* suppressed) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    const absl::Time now = absl::Now();
    if (now - window_start_ >= absl::Minutes(1)) {
      window_start_ = now;
      used_ = 0;
    }
    if (used_ >= per_minute_) {
      ++suppressed_;
      return false;
    }
    ++used_;
    *suppressed = suppressed_;
    suppressed_ = 0;
    return true;
  }

 private:
  const int per_minute_;
  absl::Mutex mu_;
  absl::Time window_start_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  int used_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t suppressed_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace kiq
