#include "common/status.h"

#include "absl/strings/cord.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "google/rpc/error_details.pb.h"

namespace kiq {

absl::Status ErrorWithReason(absl::StatusCode code, absl::string_view reason,
                             absl::string_view message) {
  absl::Status status(code, message);
  google::rpc::ErrorInfo info;
  info.set_reason(std::string(reason));
  info.set_domain(kErrorDomain);
  status.SetPayload(kErrorInfoTypeUrl, absl::Cord(info.SerializeAsString()));
  return status;
}

absl::Status NotOwnerError(absl::string_view message) {
  return ErrorWithReason(absl::StatusCode::kFailedPrecondition, kReasonNotOwner, message);
}

std::optional<std::string> ErrorReason(const absl::Status& status) {
  absl::optional<absl::Cord> payload = status.GetPayload(kErrorInfoTypeUrl);
  if (!payload) return std::nullopt;
  google::rpc::ErrorInfo info;
  if (!info.ParseFromString(std::string(*payload)) || info.domain() != kErrorDomain) {
    return std::nullopt;
  }
  return info.reason();
}

bool IsNotOwner(const absl::Status& status) {
  return status.code() == absl::StatusCode::kFailedPrecondition &&
         ErrorReason(status) == kReasonNotOwner;
}

bool IsPartitionFailed(const absl::Status& status) {
  return status.code() == absl::StatusCode::kUnavailable &&
         ErrorReason(status) == kReasonPartitionFailed;
}

absl::Status WithContext(const absl::Status& status, absl::string_view doing) {
  if (status.ok()) return status;
  absl::Status out(status.code(), absl::StrCat(doing, ": ", status.message()));
  status.ForEachPayload(
      [&out](absl::string_view url, const absl::Cord& payload) { out.SetPayload(url, payload); });
  return out;
}

std::string ClipKey(absl::string_view key) {
  constexpr size_t kMaxShown = 64;
  std::string shown = absl::CHexEscape(key.substr(0, kMaxShown));
  if (key.size() > kMaxShown) absl::StrAppend(&shown, "...(", key.size(), " bytes)");
  return absl::StrCat("\"", shown, "\"");
}

}  // namespace kiq
