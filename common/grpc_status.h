#pragma once

#include <grpcpp/support/status.h>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace kiq {

// The one place where absl::Status becomes a grpc::Status on the way out of a handler. The code
// is kept; the message is passed through (it already names the store/key/partition); an error
// reason (common/status.h) travels as a google.rpc.Status in the status details.
grpc::Status ToGrpcStatus(const absl::Status& status);

// The one place where a peer's grpc::Status becomes an absl::Status, naming what we were doing;
// the error reason in its details, if any, is kept.
absl::Status FromGrpcStatus(const grpc::Status& status, absl::string_view doing);

}  // namespace kiq
