#include "router/port/change_queue.h"

#include <iterator>

#include "absl/strings/str_cat.h"

namespace kiq::router {

bool ChangeQueue::Push(ChangeEvent change) {
  absl::MutexLock lock(&mu_);
  if (ended_.load()) return false;
  KeyId id{change.partition.value(), change.key};
  if (coalesce_ && queue_.size() >= capacity_) {
    auto it = latest_.find(id);
    if (it != latest_.end()) {
      // Replace the pending change in place: the subscriber sees old → newest.
      ChangeEvent& pending = *it->second;
      pending.new_value = std::move(change.new_value);
      pending.topic = std::move(change.topic);
      pending.offset = change.offset;
      return true;
    }
  } else if (!coalesce_ && queue_.size() >= capacity_) {
    queue_.clear();
    end_ = absl::ResourceExhaustedError(absl::StrCat(
        "subscriber too slow: more than ", capacity_,
        " changes pending (buffer_size); the stream ends rather than slowing ingestion. "
        "Read faster, raise buffer_size, or subscribe with on_overflow=COALESCE"));
    ended_.store(true);
    return false;
  }
  queue_.push_back(std::move(change));
  if (coalesce_) latest_[std::move(id)] = std::prev(queue_.end());
  return true;
}

bool ChangeQueue::Advance(int32_t partition, int64_t next_offset) {
  absl::MutexLock lock(&mu_);
  auto [it, inserted] = progress_.try_emplace(partition, next_offset);
  if (inserted) return true;
  if (next_offset <= it->second) return false;
  it->second = next_offset;
  return true;
}

void ChangeQueue::End(absl::Status status) {
  {
    absl::MutexLock lock(&mu_);
    if (ended_.load()) return;
    end_ = std::move(status);
    ended_.store(true);
  }
  Notify();
}

absl::Status ChangeQueue::Take(size_t max, std::vector<ChangeEvent>* out, Progress* progress) {
  absl::MutexLock lock(&mu_);
  for (size_t n = 0; n < max && !queue_.empty(); ++n) {
    if (coalesce_) {
      auto it = latest_.find(KeyId{queue_.front().partition.value(), queue_.front().key});
      if (it != latest_.end() && it->second == queue_.begin()) latest_.erase(it);
    }
    out->push_back(std::move(queue_.front()));
    queue_.pop_front();
  }
  // Only once drained: with coalescing, a later change may sit ahead of an earlier one.
  if (queue_.empty() && progress != nullptr) *progress = progress_;
  if (queue_.empty() && ended_.load()) return end_;
  return absl::OkStatus();
}

size_t ChangeQueue::pending() const {
  absl::MutexLock lock(&mu_);
  return queue_.size();
}

void ChangeQueue::SetNotify(std::function<void()> notify) {
  absl::MutexLock lock(&notify_mu_);
  notify_ = std::move(notify);
}

void ChangeQueue::Notify() {
  absl::MutexLock lock(&notify_mu_);
  if (notify_) notify_();
}

}  // namespace kiq::router
