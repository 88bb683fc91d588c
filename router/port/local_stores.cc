#include "router/port/local_stores.h"

namespace kiq::router {

absl::Status LocalStores::ReadAt(absl::string_view store, PartitionId p, kiq::v1::Position* out,
                                 absl::FunctionRef<absl::Status()> read) const {
  AppendPosition(store, p, out);
  return read();
}

}  // namespace kiq::router
