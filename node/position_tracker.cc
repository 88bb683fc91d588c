#include "node/position_tracker.h"

#include "absl/strings/str_cat.h"

namespace kiq::node {

void PositionTracker::Advance(absl::string_view topic, PartitionId p, Offset next) {
  absl::MutexLock lock(&mu_);
  next_[{std::string(topic), p.value()}] = next.value();
}

void PositionTracker::Forget(absl::string_view topic, PartitionId p) {
  absl::MutexLock lock(&mu_);
  next_.erase({std::string(topic), p.value()});
}

std::optional<Offset> PositionTracker::Get(absl::string_view topic, PartitionId p) const {
  absl::MutexLock lock(&mu_);
  auto it = next_.find({std::string(topic), p.value()});
  if (it == next_.end()) return std::nullopt;
  return Offset(it->second);
}

bool PositionTracker::Reached(const kiq::v1::Position& min) const {
  for (const kiq::v1::PartitionOffset& po : min.offsets()) {
    auto it = next_.find({po.topic(), po.partition()});
    if (it == next_.end() || it->second < po.offset()) return false;
  }
  return true;
}

absl::Status PositionTracker::WaitFor(const kiq::v1::Position& min, absl::Time deadline) const {
  absl::MutexLock lock(&mu_);
  auto reached = [this, &min]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return Reached(min); };
  if (mu_.AwaitWithDeadline(absl::Condition(&reached), deadline)) return absl::OkStatus();
  for (const kiq::v1::PartitionOffset& po : min.offsets()) {
    auto it = next_.find({po.topic(), po.partition()});
    if (it == next_.end() || it->second < po.offset()) {
      return absl::DeadlineExceededError(absl::StrCat(
          "min_position not reached before the deadline: topic=", po.topic(),
          " partition=", po.partition(), " wanted offset ", po.offset(), ", at ",
          it == next_.end() ? std::string("nothing (not owned here)") : absl::StrCat(it->second)));
    }
  }
  return absl::DeadlineExceededError("min_position not reached before the deadline");
}

}  // namespace kiq::node
