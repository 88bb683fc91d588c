#pragma once

#include <vector>

#include "router/port/local_stores.h"

namespace kiq::router {

// The LocalStores of a process that holds no partitions (kiq-router): it knows the stores
// (names, partition counts, partitioners, value kinds) so that it can route, and answers
// NOT_OWNER for every partition. Immutable; thread-safe.
class StoreCatalog final : public LocalStores {
 public:
  explicit StoreCatalog(std::vector<StoreInfo> stores) : stores_(std::move(stores)) {}

  absl::StatusOr<StoreInfo> Describe(absl::string_view store) const override;
  std::vector<StoreInfo> ListStores() const override { return stores_; }
  absl::Status CheckReadable(absl::string_view store, PartitionId p) const override;
  absl::StatusOr<std::optional<std::string>> Get(absl::string_view store, PartitionId p,
                                                 absl::string_view key) const override;
  absl::StatusOr<std::vector<KeyValue>> Scan(absl::string_view store, PartitionId p,
                                             const KeyRange& range,
                                             const std::optional<std::string>& after,
                                             size_t limit) const override;
  absl::StatusOr<int64_t> EntryCount(absl::string_view store, PartitionId p) const override;
  void AppendPosition(absl::string_view store, PartitionId p,
                      kiq::v1::Position* out) const override {}
  absl::Status WaitForPosition(absl::string_view store, const kiq::v1::Position& min,
                               absl::Time deadline) const override;

 private:
  std::vector<StoreInfo> stores_;
};

}  // namespace kiq::router
