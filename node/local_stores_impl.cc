#include "node/local_stores_impl.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "router/value_codec.h"
#include "router/window_key.h"

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
  if ((*found)->window) {
    return absl::FailedPreconditionError(absl::StrCat(
        "store \"", store, "\" is windowed: use WindowFetch to read the windows of a key"));
  }
  return engine_.Get((*found)->handle, p, key);
}

absl::StatusOr<std::optional<int64_t>> LocalStoresImpl::StreamTime(const CompiledStore& store,
                                                                   PartitionId p) const {
  absl::StatusOr<std::optional<std::string>> stored =
      engine_.Get(store.handle, p, router::kStreamTimeKey);
  if (!stored.ok()) return stored.status();
  if (!*stored) return std::optional<int64_t>();
  std::optional<int64_t> t = DecodeInt64(**stored);
  if (!t) {
    return absl::DataLossError(absl::StrCat("store \"", store.info.name, "\" partition ",
                                            p.value(), ": stream time entry is not 8 bytes"));
  }
  return t;
}

absl::StatusOr<std::vector<router::KeyValue>> LocalStoresImpl::ScanWindows(
    const CompiledStore& store, PartitionId p, const router::KeyRange& range,
    const std::optional<std::string>& after, size_t limit) const {
  // Read the stream time first: windows it expires are not answered even if the sweep has
  // not deleted them yet.
  absl::StatusOr<std::optional<int64_t>> stream_time = StreamTime(store, p);
  if (!stream_time.ok()) return stream_time.status();
  // Stored keys of user keys in [from, to] lie in [from, to + 0xff * 8] but so may keys of
  // other user keys (longer ones sharing a prefix): every entry's user key is checked.
  router::KeyRange stored_range;
  stored_range.from = range.from;
  if (range.to) stored_range.to = *range.to + std::string(router::kWindowSuffixSize, '\xff');
  std::vector<router::KeyValue> out;
  std::optional<std::string> cursor = after;
  const size_t step = std::clamp<size_t>(limit, 64, 4096);
  while (out.size() < limit) {
    absl::StatusOr<std::vector<router::KeyValue>> run =
        engine_.Scan(store.handle, p, stored_range, cursor, step);
    if (!run.ok()) return run.status();
    for (router::KeyValue& kv : *run) {
      std::optional<router::DecodedWindowKey> w = router::DecodeWindowKey(kv.key);
      if (!w) continue;  // the stream time
      if ((range.from && w->user_key < *range.from) || (range.to && w->user_key > *range.to)) {
        continue;
      }
      if (*stream_time && WindowExpired(*store.window, w->start_ms, **stream_time)) continue;
      out.push_back(std::move(kv));
      if (out.size() == limit) break;
    }
    if (run->size() < step) break;
    cursor = run->back().key;
  }
  return out;
}

absl::StatusOr<std::vector<router::KeyValue>> LocalStoresImpl::Scan(
    absl::string_view store, PartitionId p, const router::KeyRange& range,
    const std::optional<std::string>& after, size_t limit) const {
  absl::StatusOr<const CompiledStore*> found = Find(store);
  if (!found.ok()) return found.status();
  if ((*found)->window) return ScanWindows(**found, p, range, after, limit);
  return engine_.Scan((*found)->handle, p, range, after, limit);
}

absl::StatusOr<int64_t> LocalStoresImpl::ApproximateCount(absl::string_view store,
                                                          PartitionId p) const {
  absl::StatusOr<const CompiledStore*> found = Find(store);
  if (!found.ok()) return found.status();
  if ((*found)->window) {
    // Exact for windowed stores: live windows only (no stream time, no expired window).
    constexpr size_t kPage = 4096;
    int64_t n = 0;
    std::optional<std::string> after;
    for (;;) {
      absl::StatusOr<std::vector<router::KeyValue>> live =
          ScanWindows(**found, p, router::KeyRange{}, after, kPage);
      if (!live.ok()) return live.status();
      n += static_cast<int64_t>(live->size());
      if (live->size() < kPage) return n;
      after = live->back().key;
    }
  }
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
