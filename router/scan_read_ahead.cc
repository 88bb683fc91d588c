#include "router/scan_read_ahead.h"

#include <utility>

namespace kiq::router {

void ScanReadAhead::Put(std::vector<std::pair<std::string, kiq::v1::ScanResponse>> pages) {
  const absl::Time now = clock_();
  // The old pages replaced are freed after the lock is released.
  std::vector<kiq::v1::ScanResponse> dropped;
  absl::MutexLock lock(&mu_);
  for (auto& [key, page] : pages) {
    Kept& kept = kept_[key];
    entries_ -= static_cast<size_t>(kept.page.entries_size());
    dropped.push_back(std::move(kept.page));
    kept.page = std::move(page);
    kept.read_at = now;
    kept.serial = next_serial_++;
    entries_ += static_cast<size_t>(kept.page.entries_size());
    order_.emplace_back(key, kept.serial);
  }
  EvictLocked(now);
}

std::optional<kiq::v1::ScanResponse> ScanReadAhead::Take(const std::string& key) {
  const absl::Time now = clock_();
  absl::MutexLock lock(&mu_);
  auto it = kept_.find(key);
  if (it == kept_.end()) return std::nullopt;
  entries_ -= static_cast<size_t>(it->second.page.entries_size());
  std::optional<kiq::v1::ScanResponse> page;
  if (now - it->second.read_at <= ttl_) page = std::move(it->second.page);
  kept_.erase(it);
  return page;
}

size_t ScanReadAhead::entries() const {
  absl::MutexLock lock(&mu_);
  return entries_;
}

void ScanReadAhead::EvictLocked(absl::Time now) {
  while (!order_.empty()) {
    const auto& [key, serial] = order_.front();
    auto it = kept_.find(key);
    if (it == kept_.end() || it->second.serial != serial) {
      order_.pop_front();  // taken or replaced since
      continue;
    }
    if (entries_ <= max_entries_ && now - it->second.read_at <= ttl_) break;
    entries_ -= static_cast<size_t>(it->second.page.entries_size());
    kept_.erase(it);
    order_.pop_front();
  }
}

}  // namespace kiq::router
