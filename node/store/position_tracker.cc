#include "node/store/position_tracker.h"

#include "absl/strings/str_cat.h"

namespace kiq::node {

void PositionTracker::BeginCommit() {
  absl::MutexLock lock(&mu_);
  commits_.fetch_add(kEvent + 1, std::memory_order_acq_rel);
}

void PositionTracker::EndCommit() {
  absl::MutexLock lock(&mu_);
  commits_.fetch_add(kEvent - 1, std::memory_order_acq_rel);
}

uint64_t PositionTracker::AwaitNoCommit(absl::Duration timeout) const {
  // Every read of the node passes here: no lock unless a batch is committing.
  if (const uint64_t now = commits_.load(std::memory_order_acquire); !Committing(now)) return now;
  absl::MutexLock lock(&mu_);
  auto idle = [this] { return !Committing(commits_.load(std::memory_order_acquire)); };
  mu_.AwaitWithTimeout(absl::Condition(&idle), timeout);
  return commits_.load(std::memory_order_acquire);
}

void PositionTracker::Advance(absl::string_view store, absl::string_view topic, PartitionId p,
                              Offset next) {
  absl::MutexLock lock(&mu_);
  next_[Key(std::string(store), std::string(topic), p.value())] = next.value();
  ++version_;
}

void PositionTracker::Forget(absl::string_view store, absl::string_view topic, PartitionId p) {
  absl::MutexLock lock(&mu_);
  next_.erase(Key(std::string(store), std::string(topic), p.value()));
  ++version_;
}

std::optional<Offset> PositionTracker::Get(absl::string_view store, absl::string_view topic,
                                           PartitionId p) const {
  absl::MutexLock lock(&mu_);
  auto it = next_.find(Key(std::string(store), std::string(topic), p.value()));
  if (it == next_.end()) return std::nullopt;
  return Offset(it->second);
}

uint64_t PositionTracker::version() const {
  absl::MutexLock lock(&mu_);
  return version_;
}

void PositionTracker::WaitForChange(uint64_t seen, absl::Time deadline) const {
  absl::MutexLock lock(&mu_);
  auto changed = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return version_ != seen; };
  mu_.AwaitWithDeadline(absl::Condition(&changed), deadline);
}

const kiq::v1::PartitionOffset* PositionTracker::Behind(absl::string_view store,
                                                        const kiq::v1::Position& min,
                                                        int64_t* at) const {
  for (const kiq::v1::PartitionOffset& po : min.offsets()) {
    auto it = next_.find(Key(std::string(store), po.topic(), po.partition()));
    *at = it == next_.end() ? -1 : it->second;
    if (it == next_.end() || it->second < po.offset()) return &po;
  }
  return nullptr;
}

absl::Status PositionTracker::WaitFor(absl::string_view store, const kiq::v1::Position& min,
                                      absl::Time deadline) const {
  absl::MutexLock lock(&mu_);
  int64_t at = 0;
  auto reached = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return Behind(store, min, &at) == nullptr;
  };
  if (mu_.AwaitWithDeadline(absl::Condition(&reached), deadline)) return absl::OkStatus();
  const kiq::v1::PartitionOffset* behind = Behind(store, min, &at);
  if (behind == nullptr) return absl::OkStatus();
  return absl::DeadlineExceededError(absl::StrCat(
      "min_position not reached before the deadline: store=", store, " topic=", behind->topic(),
      " partition=", behind->partition(), " wanted offset ", behind->offset(), ", at ",
      at < 0 ? std::string("nothing (not owned here)") : absl::StrCat(at)));
}

}  // namespace kiq::node
