#include "router/port/local_stores.h"

#include "absl/strings/str_cat.h"

namespace kiq::router {

absl::Status LocalStores::ReadAt(absl::string_view store, PartitionId p, kiq::v1::Position* out,
                                 absl::FunctionRef<absl::Status()> read) const {
  AppendPosition(store, p, out);
  return read();
}

absl::Status LocalStores::CheckStandby(absl::string_view store, PartitionId p,
                                       int64_t /*max_lag_records*/) const {
  return absl::UnavailableError(
      absl::StrCat("no standby replica of partition ", p.value(), " here"));
}

absl::Status LocalStores::ReadStandbyAt(absl::string_view store, PartitionId p,
                                        int64_t /*max_lag_records*/, kiq::v1::Position* /*out*/,
                                        int64_t* /*lag*/,
                                        absl::FunctionRef<absl::Status()> /*read*/) const {
  return absl::UnavailableError(
      absl::StrCat("no standby replica of partition ", p.value(), " here"));
}

}  // namespace kiq::router
