#include "node/local_stores_impl.h"

#include "absl/strings/str_cat.h"

namespace kiq::node {

absl::StatusOr<const CompiledStore*> LocalStoresImpl::Find(absl::string_view store) const {
  const CompiledStore* found = topology_.FindStore(store);
  if (found == nullptr) return absl::NotFoundError(absl::StrCat("unknown store \"", store, "\""));
  return found;
}

absl::StatusOr<router::StoreInfo> LocalStoresImpl::Describe(absl::string_view store) const {
  absl::StatusOr<const CompiledStore*> found = Find(store);
  if (!found.ok()) return found.status();
  return (*found)->info;
}

std::vector<router::StoreInfo> LocalStoresImpl::ListStores() const {
  std::vector<router::StoreInfo> out;
  for (const CompiledStore& store : topology_.stores()) {
    if (!store.internal) out.push_back(store.info);
  }
  return out;
}

absl::Status LocalStoresImpl::CheckReadable(absl::string_view store, PartitionId p) const {
  if (absl::StatusOr<const CompiledStore*> found = Find(store); !found.ok()) return found.status();
  return states_.CheckReadable(p);
}

absl::StatusOr<std::optional<std::string>> LocalStoresImpl::Get(absl::string_view store,
                                                                PartitionId p,
                                                                absl::string_view key) const {
  absl::StatusOr<const CompiledStore*> found = Find(store);
  if (!found.ok()) return found.status();
  return engine_.Get((*found)->handle, p, key);
}

absl::StatusOr<std::vector<router::KeyValue>> LocalStoresImpl::Scan(
    absl::string_view store, PartitionId p, const router::KeyRange& range,
    const std::optional<std::string>& after, size_t limit) const {
  absl::StatusOr<const CompiledStore*> found = Find(store);
  if (!found.ok()) return found.status();
  return engine_.Scan((*found)->handle, p, range, after, limit);
}

absl::StatusOr<int64_t> LocalStoresImpl::ApproximateCount(absl::string_view store,
                                                          PartitionId p) const {
  absl::StatusOr<const CompiledStore*> found = Find(store);
  if (!found.ok()) return found.status();
  return engine_.EntryCount((*found)->handle, p);
}

void LocalStoresImpl::AppendPosition(absl::string_view store, PartitionId p,
                                     kiq::v1::Position* out) const {
  absl::StatusOr<const CompiledStore*> found = Find(store);
  if (!found.ok()) return;
  const CompiledSource& source = topology_.sources()[(*found)->source];
  std::optional<Offset> next = positions_.Get(store, source.spec.topic(), p);
  kiq::v1::PartitionOffset* po = out->add_offsets();
  po->set_topic(source.spec.topic());
  po->set_partition(p.value());
  po->set_offset(next ? next->value() : 0);
}

absl::Status LocalStoresImpl::WaitForPosition(absl::string_view store,
                                              const kiq::v1::Position& min,
                                              absl::Time deadline) const {
  return positions_.WaitFor(store, min, deadline);
}

}  // namespace kiq::node
