#pragma once

#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace kiq {

// kiq's machine-readable error reasons, carried as a google.rpc.ErrorInfo (domain "kiq.dev")
// in the absl::Status payload and, across gRPC, in the status details (common/grpc_status.h):
// one typed signal end to end, never matched in message text.
inline constexpr char kErrorDomain[] = "kiq.dev";
inline constexpr char kErrorInfoTypeUrl[] = "type.googleapis.com/google.rpc.ErrorInfo";

// The partition is not (or no longer) owned by the process asked: FAILED_PRECONDITION with
// reason NOT_OWNER. The router looks the owner up again and retries.
inline constexpr char kReasonNotOwner[] = "NOT_OWNER";
// The owner cannot serve the partition until an operator acts (its stored offset is outside
// the log, its state could not be read): UNAVAILABLE with reason PARTITION_FAILED. A point read
// answers it at once instead of retrying until its deadline.
inline constexpr char kReasonPartitionFailed[] = "PARTITION_FAILED";

// `code` with `message` and the ErrorInfo `reason`.
absl::Status ErrorWithReason(absl::StatusCode code, absl::string_view reason,
                             absl::string_view message);
absl::Status NotOwnerError(absl::string_view message);

// The ErrorInfo reason of `status`, if it carries one.
std::optional<std::string> ErrorReason(const absl::Status& status);
bool IsNotOwner(const absl::Status& status);
bool IsPartitionFailed(const absl::Status& status);

// Whether a router should retry a partition read that failed with `status`: the partition is
// moving (NOT_OWNER), restoring, or its owner is unreachable (UNAVAILABLE).
inline bool IsRetriableRouting(const absl::Status& status) {
  return status.code() == absl::StatusCode::kUnavailable || IsNotOwner(status);
}

// `status` with "doing: " before its message; code and payloads (the reason) are kept.
absl::Status WithContext(const absl::Status& status, absl::string_view doing);

// Clips a key (or any user input) for error messages and logs: keys can be long or binary.
std::string ClipKey(absl::string_view key);

}  // namespace kiq
