#include "node/subscription_hub.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "node/ingest_metrics.h"

namespace kiq::node {

bool SubscriberQueue::Push(const Change& change) {
  {
    absl::MutexLock lock(&mu_);
    if (ended_.load()) return false;
    KeyId id{change.partition.value(), change.key};
    if (coalesce_ && queue_.size() >= capacity_) {
      auto it = latest_.find(id);
      if (it != latest_.end()) {
        // Replace the pending change in place: the subscriber sees old → newest.
        router::ChangeEvent& pending = *it->second;
        pending.new_value = change.new_value;
        pending.topic = change.topic;
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
    queue_.push_back(router::ChangeEvent{change.partition, change.key, change.old_value,
                                         change.new_value, change.topic, change.offset});
    if (coalesce_) latest_[std::move(id)] = std::prev(queue_.end());
  }
  return true;
}

void SubscriberQueue::End(absl::Status status) {
  {
    absl::MutexLock lock(&mu_);
    if (ended_.load()) return;
    end_ = std::move(status);
    ended_.store(true);
  }
  Notify();
}

absl::Status SubscriberQueue::Take(size_t max, std::vector<router::ChangeEvent>* out) {
  absl::MutexLock lock(&mu_);
  for (size_t n = 0; n < max && !queue_.empty(); ++n) {
    if (coalesce_) {
      auto it = latest_.find(KeyId{queue_.front().partition.value(), queue_.front().key});
      if (it != latest_.end() && it->second == queue_.begin()) latest_.erase(it);
    }
    out->push_back(std::move(queue_.front()));
    queue_.pop_front();
  }
  if (queue_.empty() && ended_.load()) return end_;
  return absl::OkStatus();
}

size_t SubscriberQueue::pending() const {
  absl::MutexLock lock(&mu_);
  return queue_.size();
}

void SubscriberQueue::SetNotify(std::function<void()> notify) {
  absl::MutexLock lock(&notify_mu_);
  notify_ = std::move(notify);
}

void SubscriberQueue::Notify() {
  absl::MutexLock lock(&notify_mu_);
  if (notify_) notify_();
}

std::shared_ptr<SubscriberQueue> SubscriptionHub::Register(StoreHandle store,
                                                           router::KeyMatch match,
                                                           size_t capacity, bool coalesce) {
  auto queue = std::make_shared<SubscriberQueue>(
      store, std::move(match), capacity == 0 ? kDefaultSubscriberBuffer : capacity, coalesce);
  absl::MutexLock lock(&mu_);
  subscribers_.push_back(queue);
  UpdateGauge();
  return queue;
}

void SubscriptionHub::Unregister(const SubscriberQueue* queue) {
  absl::MutexLock lock(&mu_);
  subscribers_.erase(std::remove_if(subscribers_.begin(), subscribers_.end(),
                                    [&](const auto& s) { return s.get() == queue; }),
                     subscribers_.end());
  UpdateGauge();
}

void SubscriptionHub::UpdateGauge() {
  count_.store(static_cast<int64_t>(subscribers_.size()));
  if (metrics_ != nullptr) metrics_->SetSubscriptions(static_cast<int64_t>(subscribers_.size()));
}

void SubscriptionHub::Publish(const std::vector<Change>& changes) {
  if (changes.empty()) return;
  std::vector<std::shared_ptr<SubscriberQueue>> subscribers;
  {
    absl::MutexLock lock(&mu_);
    subscribers = subscribers_;
  }
  for (const auto& s : subscribers) {
    if (s->ended()) continue;
    bool queued = false;
    for (const Change& c : changes) {
      if (c.store.index != s->store().index || !s->match().Matches(c.key)) continue;
      if (!s->Push(c)) break;
      queued = true;
    }
    // Overflow ended it (Push returned false) or changes arrived: wake the stream either way.
    if (queued || s->ended()) s->Notify();
  }
}

void SubscriptionHub::EndAll(const absl::Status& status) {
  std::vector<std::shared_ptr<SubscriberQueue>> subscribers;
  {
    absl::MutexLock lock(&mu_);
    subscribers = subscribers_;
  }
  for (const auto& s : subscribers) s->End(status);
}

}  // namespace kiq::node
