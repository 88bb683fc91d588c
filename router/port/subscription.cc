#include "router/port/subscription.h"

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/status.h"

namespace kiq::router {

absl::StatusOr<std::unique_ptr<Subscription>> LocalStores::Subscribe(
    const SubscribeSpec& spec) const {
  return absl::UnimplementedError(
      absl::StrCat("Subscribe to store ", ClipKey(spec.store), ": this process holds no stores"));
}

void LocalStores::WaitForPositionChange(uint64_t, absl::Time deadline) const {
  absl::SleepFor(deadline - absl::Now());
}

}  // namespace kiq::router
