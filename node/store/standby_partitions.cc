#include "node/store/standby_partitions.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace kiq::node {

void StandbyPartitions::Add(PartitionId p) {
  absl::MutexLock lock(&mu_);
  replicas_.try_emplace(p.value());
}

void StandbyPartitions::MarkServing(PartitionId p) {
  absl::MutexLock lock(&mu_);
  if (auto it = replicas_.find(p.value()); it != replicas_.end()) it->second.serving = true;
}

void StandbyPartitions::SetLag(PartitionId p, absl::string_view store, int64_t lag) {
  absl::MutexLock lock(&mu_);
  if (auto it = replicas_.find(p.value()); it != replicas_.end()) {
    it->second.lag[std::string(store)] = std::max<int64_t>(lag, 0);
  }
}

void StandbyPartitions::Remove(PartitionId p) {
  absl::MutexLock lock(&mu_);
  replicas_.erase(p.value());
}

absl::StatusOr<int64_t> StandbyPartitions::CheckReadable(absl::string_view store, PartitionId p,
                                                         int64_t max_lag_records) const {
  absl::MutexLock lock(&mu_);
  auto it = replicas_.find(p.value());
  if (it == replicas_.end()) {
    return absl::UnavailableError(
        absl::StrCat("no standby replica of partition ", p.value(), " on this node"));
  }
  if (!it->second.serving) {
    return absl::UnavailableError(
        absl::StrCat("the standby replica of partition ", p.value(), " is still being built"));
  }
  auto lag = it->second.lag.find(store);
  const int64_t behind = lag == it->second.lag.end() ? 0 : lag->second;
  if (max_lag_records > 0 && behind > max_lag_records) {
    return absl::UnavailableError(absl::StrCat("the standby replica of partition ", p.value(),
                                               " is ", behind, " records behind (max_lag_records ",
                                               max_lag_records, ")"));
  }
  return behind;
}

std::vector<StandbyPartitions::Replica> StandbyPartitions::Snapshot() const {
  absl::MutexLock lock(&mu_);
  std::vector<Replica> out;
  for (const auto& [p, entry] : replicas_) {
    Replica r{PartitionId(p), entry.serving, 0};
    for (const auto& [store, lag] : entry.lag) r.lag = std::max(r.lag, lag);
    out.push_back(r);
  }
  return out;
}

std::vector<std::tuple<std::string, int32_t, int64_t>> StandbyPartitions::Lags() const {
  absl::MutexLock lock(&mu_);
  std::vector<std::tuple<std::string, int32_t, int64_t>> out;
  for (const auto& [p, entry] : replicas_) {
    for (const auto& [store, lag] : entry.lag) out.emplace_back(store, p, lag);
  }
  return out;
}

}  // namespace kiq::node
