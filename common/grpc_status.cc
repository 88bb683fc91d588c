#include "common/grpc_status.h"

#include <string>

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "google/rpc/status.pb.h"

namespace kiq {

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  const auto code = static_cast<grpc::StatusCode>(status.code());
  absl::optional<absl::Cord> info = status.GetPayload(kErrorInfoTypeUrl);
  if (!info) return grpc::Status(code, std::string(status.message()));
  google::rpc::Status details;
  details.set_code(static_cast<int32_t>(status.code()));
  details.set_message(std::string(status.message()));
  google::protobuf::Any* any = details.add_details();
  any->set_type_url(kErrorInfoTypeUrl);
  any->set_value(std::string(*info));
  return grpc::Status(code, std::string(status.message()), details.SerializeAsString());
}

absl::Status FromGrpcStatus(const grpc::Status& status, absl::string_view doing) {
  if (status.ok()) return absl::OkStatus();
  absl::Status out(static_cast<absl::StatusCode>(status.error_code()),
                   absl::StrCat(doing, ": ", status.error_message()));
  if (!status.error_details().empty()) {
    google::rpc::Status details;
    if (details.ParseFromString(status.error_details())) {
      for (const google::protobuf::Any& any : details.details()) {
        if (any.type_url() == kErrorInfoTypeUrl)
          out.SetPayload(kErrorInfoTypeUrl, absl::Cord(any.value()));
      }
    }
  }
  return out;
}

}  // namespace kiq
