#include "router/port/subscription.h"

#include "absl/strings/str_cat.h"

namespace kiq::router {

absl::StatusOr<std::unique_ptr<Subscription>> LocalStores::Subscribe(
    const SubscribeSpec& spec) const {
  return absl::UnimplementedError(
      absl::StrCat("Subscribe to store \"", spec.store, "\": this process holds no stores"));
}

}  // namespace kiq::router
