#include "router/store_catalog.h"

#include "absl/strings/str_cat.h"
#include "common/status.h"

namespace kiq::router {
namespace {

absl::Status NotOwner(PartitionId p) {
  return NotOwnerError(
      absl::StrCat("NOT_OWNER: partition ", p.value(), " is not owned by this router"));
}

}  // namespace

absl::StatusOr<StoreInfo> StoreCatalog::Describe(absl::string_view store) const {
  for (const StoreInfo& info : stores_) {
    if (info.name == store) return info;
  }
  return absl::NotFoundError(absl::StrCat("unknown store ", ClipKey(store)));
}

absl::Status StoreCatalog::CheckReadable(absl::string_view store, PartitionId p) const {
  if (absl::StatusOr<StoreInfo> info = Describe(store); !info.ok()) return info.status();
  return NotOwner(p);
}

absl::StatusOr<std::optional<std::string>> StoreCatalog::Get(absl::string_view, PartitionId p,
                                                             absl::string_view) const {
  return NotOwner(p);
}

absl::StatusOr<std::vector<KeyValue>> StoreCatalog::Scan(absl::string_view, PartitionId p,
                                                         const KeyRange&,
                                                         const std::optional<std::string>&,
                                                         size_t) const {
  return NotOwner(p);
}

absl::StatusOr<int64_t> StoreCatalog::EntryCount(absl::string_view, PartitionId p) const {
  return NotOwner(p);
}

absl::Status StoreCatalog::WaitForPosition(absl::string_view, const kiq::v1::Position&,
                                           absl::Time) const {
  return NotOwnerError("NOT_OWNER: this router holds no partitions");
}

}  // namespace kiq::router
