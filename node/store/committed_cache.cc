#include "node/store/committed_cache.h"

#include <tuple>
#include <utility>

#include "absl/hash/hash.h"

namespace kiq::node {

size_t CommittedCache::Hash::operator()(const KeyView& k) const {
  return absl::Hash<std::tuple<int, int32_t, absl::string_view>>{}(
      std::make_tuple(k.store, k.partition, k.key));
}

void CommittedCache::Unlink(Node* n) {
  Entry& e = n->second;
  if (e.prev != nullptr) {
    e.prev->second.next = e.next;
  } else {
    head_ = e.next;
  }
  if (e.next != nullptr) {
    e.next->second.prev = e.prev;
  } else {
    tail_ = e.prev;
  }
  e.prev = e.next = nullptr;
}

void CommittedCache::PushFront(Node* n) {
  Entry& e = n->second;
  e.prev = nullptr;
  e.next = head_;
  if (head_ != nullptr) head_->second.prev = n;
  head_ = n;
  if (tail_ == nullptr) tail_ = n;
}

void CommittedCache::Erase(Map::iterator it) {
  Unlink(&*it);
  bytes_ -= it->second.charge;
  map_.erase(it);
}

const std::optional<std::string>* CommittedCache::Find(int store, int32_t partition,
                                                       absl::string_view key) {
  auto it = map_.find(KeyView{store, partition, key});
  if (it == map_.end()) {
    ++misses_;
    return nullptr;
  }
  ++hits_;
  Node* n = &*it;
  if (n != head_) {
    Unlink(n);
    PushFront(n);
  }
  return &n->second.value;
}

void CommittedCache::Put(int store, int32_t partition, absl::string_view key,
                         const std::optional<std::string>& value) {
  const size_t charge = Charge(key, value);
  auto it = map_.find(KeyView{store, partition, key});
  if (charge > capacity_) {
    if (it != map_.end()) Erase(it);
    return;
  }
  if (it != map_.end()) {
    // Taken off the list while evicting, so that it is not evicted itself.
    Unlink(&*it);
    bytes_ -= it->second.charge;
  }
  while (bytes_ + charge > capacity_ && tail_ != nullptr) {
    Erase(map_.find(tail_->first));
  }
  if (it == map_.end()) {
    it = map_.emplace(Key{store, partition, std::string(key)}, Entry{}).first;
  }
  it->second.value = value;
  it->second.charge = charge;
  bytes_ += charge;
  PushFront(&*it);
}

void CommittedCache::Invalidate(const std::function<bool(int32_t partition)>& which) {
  for (auto it = map_.begin(); it != map_.end();) {
    if (which(it->first.partition)) {
      Erase(it++);
    } else {
      ++it;
    }
  }
}

void CommittedCache::Clear() {
  map_.clear();
  head_ = tail_ = nullptr;
  bytes_ = 0;
}

}  // namespace kiq::node
