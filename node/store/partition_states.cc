#include "node/store/partition_states.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/status.h"

namespace kiq::node {

absl::string_view PartitionStateName(PartitionState s) {
  switch (s) {
    case PartitionState::kRestoring:
      return "RESTORING";
    case PartitionState::kActive:
      return "ACTIVE";
    case PartitionState::kFailed:
      return "FAILED";
  }
  return "UNKNOWN";
}

void PartitionStates::Set(PartitionId p, PartitionState state, std::string reason) {
  absl::MutexLock lock(&mu_);
  owned_[p.value()] = Entry{state, std::move(reason)};
}

void PartitionStates::Remove(PartitionId p) {
  absl::MutexLock lock(&mu_);
  owned_.erase(p.value());
}

void PartitionStates::Clear() {
  absl::MutexLock lock(&mu_);
  owned_.clear();
}

absl::Status PartitionStates::CheckReadable(PartitionId p) const {
  absl::MutexLock lock(&mu_);
  auto it = owned_.find(p.value());
  if (it == owned_.end()) {
    return NotOwnerError(
        absl::StrCat("NOT_OWNER: partition ", p.value(), " is not owned by this node"));
  }
  switch (it->second.state) {
    case PartitionState::kActive:
      return absl::OkStatus();
    case PartitionState::kRestoring:
      return absl::UnavailableError(absl::StrCat("partition ", p.value(), " is RESTORING"));
    case PartitionState::kFailed:
      return ErrorWithReason(
          absl::StatusCode::kUnavailable, kReasonPartitionFailed,
          absl::StrCat("partition ", p.value(), " is FAILED: ", it->second.reason));
  }
  return absl::InternalError("unreachable");
}

std::optional<PartitionState> PartitionStates::StateOf(PartitionId p) const {
  absl::MutexLock lock(&mu_);
  auto it = owned_.find(p.value());
  if (it == owned_.end()) return std::nullopt;
  return it->second.state;
}

std::vector<std::pair<PartitionId, PartitionState>> PartitionStates::Snapshot() const {
  absl::MutexLock lock(&mu_);
  std::vector<std::pair<PartitionId, PartitionState>> out;
  for (const auto& [p, e] : owned_) out.emplace_back(PartitionId(p), e.state);
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  return out;
}

}  // namespace kiq::node
