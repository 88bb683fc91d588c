#include "router/query_router.h"

#include <queue>
#include <utility>

#include "absl/strings/str_cat.h"
#include "router/entry.h"
#include "router/grpc_status.h"
#include "router/page_token.h"

namespace kiq::router {
namespace {

absl::Status WithContext(const absl::Status& s, absl::string_view doing) {
  return absl::Status(s.code(), absl::StrCat(doing, ": ", s.message()));
}

absl::StatusOr<std::string> KeyOf(const kiq::v1::GetRequest& request) {
  switch (request.key_kind_case()) {
    case kiq::v1::GetRequest::kKey:
      return request.key();
    case kiq::v1::GetRequest::kKeyBytes:
      return request.key_bytes();
    case kiq::v1::GetRequest::KEY_KIND_NOT_SET:
      break;
  }
  return absl::InvalidArgumentError("key is required (set key or key_bytes)");
}

std::optional<std::string> Bound(const std::string& text, const std::string& bytes) {
  if (!bytes.empty()) return bytes;
  if (!text.empty()) return text;
  return std::nullopt;
}

absl::StatusOr<int32_t> CheckPageSize(int32_t page_size) {
  if (page_size < 0 || page_size > kMaxPageSize) {
    return absl::InvalidArgumentError(
        absl::StrCat("page_size must be between 0 and ", kMaxPageSize, ", got ", page_size));
  }
  return page_size == 0 ? kDefaultPageSize : page_size;
}

}  // namespace

absl::StatusOr<StoreInfo> QueryRouter::DescribeForRequest(absl::string_view store) const {
  if (store.empty()) return absl::InvalidArgumentError("store is required");
  return local_.Describe(store);
}

absl::StatusOr<kiq::v1::GetResponse> QueryRouter::Get(const kiq::v1::GetRequest& request,
                                                      absl::Time deadline) const {
  absl::StatusOr<StoreInfo> info = DescribeForRequest(request.store());
  if (!info.ok()) return info.status();
  absl::StatusOr<std::string> key = KeyOf(request);
  if (!key.ok()) return key.status();
  const PartitionId p(PartitionForKey(info->partitioner, *key, info->num_partitions));
  const std::string doing =
      absl::StrCat("get store=", request.store(), " key=", ClipKey(*key), " partition=", p.value());

  if (request.has_min_position()) {
    if (absl::Status s = local_.WaitForPosition(request.min_position(), deadline); !s.ok()) {
      return WithContext(s, doing);
    }
  }
  if (absl::Status s = local_.CheckReadable(request.store(), p); !s.ok()) {
    return WithContext(s, doing);
  }
  kiq::v1::GetResponse response;
  // The position is read before the value: the value reflects at least this position.
  local_.AppendPosition(request.store(), p, response.mutable_position());
  absl::StatusOr<std::optional<std::string>> value = local_.Get(request.store(), p, *key);
  if (!value.ok()) return WithContext(value.status(), doing);
  if (value->has_value()) {
    response.set_found(true);
    *response.mutable_entry() = RenderEntry(*info, KeyValue{*key, std::move(**value), p});
  }
  return response;
}

absl::StatusOr<kiq::v1::ScanResponse> QueryRouter::Range(const kiq::v1::RangeRequest& request,
                                                         absl::Time deadline) const {
  KeyRange range{Bound(request.from(), request.from_bytes()),
                 Bound(request.to(), request.to_bytes())};
  if (range.from && range.to && *range.from > *range.to) {
    return absl::InvalidArgumentError(absl::StrCat("range store=", request.store(),
                                                   ": from ", ClipKey(*range.from),
                                                   " is after to ", ClipKey(*range.to)));
  }
  return Scan(request.store(), range, request.page_size(), request.page_token(),
              request.min_position(), request.allow_partial(), deadline);
}

absl::StatusOr<kiq::v1::ScanResponse> QueryRouter::All(const kiq::v1::AllRequest& request,
                                                       absl::Time deadline) const {
  return Scan(request.store(), KeyRange{}, request.page_size(), request.page_token(),
              request.min_position(), request.allow_partial(), deadline);
}

absl::StatusOr<kiq::v1::ScanResponse> QueryRouter::Scan(
    const std::string& store, const KeyRange& range, int32_t requested_page_size,
    const std::string& page_token, const kiq::v1::Position& min_position, bool allow_partial,
    absl::Time deadline) const {
  absl::StatusOr<StoreInfo> info = DescribeForRequest(store);
  if (!info.ok()) return info.status();
  absl::StatusOr<int32_t> page_size = CheckPageSize(requested_page_size);
  if (!page_size.ok()) return page_size.status();
  absl::StatusOr<std::optional<std::string>> after = DecodePageToken(page_token, store, range);
  if (!after.ok()) return after.status();
  const std::string doing = absl::StrCat("scan store=", store);
  if (!min_position.offsets().empty()) {
    if (absl::Status s = local_.WaitForPosition(min_position, deadline); !s.ok()) {
      return WithContext(s, doing);
    }
  }

  // Each partition contributes its first page_size + 1 entries after the resume key: the
  // first page_size of their merge are exactly the first page_size of the whole store, and
  // the extra one tells whether anything follows.
  kiq::v1::ScanResponse response;
  std::vector<std::vector<KeyValue>> runs;
  for (int32_t i = 0; i < info->num_partitions; ++i) {
    const PartitionId p(i);
    absl::Status readable = local_.CheckReadable(store, p);
    if (!readable.ok()) {
      if (allow_partial) {
        response.add_missing_partitions(i);
        continue;
      }
      return WithContext(readable, absl::StrCat(doing, " partition=", i));
    }
    local_.AppendPosition(store, p, response.mutable_position());
    absl::StatusOr<std::vector<KeyValue>> run =
        local_.Scan(store, p, range, *after, static_cast<size_t>(*page_size) + 1);
    if (!run.ok()) return WithContext(run.status(), absl::StrCat(doing, " partition=", i));
    if (!run->empty()) runs.push_back(std::move(*run));
  }

  // k-way merge by key byte order: heap of (run, index) ordered by the run's current key.
  using Cursor = std::pair<size_t, size_t>;
  auto greater = [&runs](const Cursor& a, const Cursor& b) {
    return runs[a.first][a.second].key > runs[b.first][b.second].key;
  };
  std::priority_queue<Cursor, std::vector<Cursor>, decltype(greater)> heap(greater);
  for (size_t r = 0; r < runs.size(); ++r) heap.push({r, 0});
  std::string last_key;
  while (!heap.empty()) {
    if (response.entries_size() == *page_size) {
      response.set_next_page_token(EncodePageToken(store, range, last_key));
      break;
    }
    auto [r, i] = heap.top();
    heap.pop();
    last_key = runs[r][i].key;
    *response.add_entries() = RenderEntry(*info, std::move(runs[r][i]));
    if (i + 1 < runs[r].size()) heap.push({r, i + 1});
  }
  return response;
}

absl::StatusOr<kiq::v1::CountResponse> QueryRouter::Count(const kiq::v1::CountRequest& request,
                                                          absl::Time deadline) const {
  absl::StatusOr<StoreInfo> info = DescribeForRequest(request.store());
  if (!info.ok()) return info.status();
  const std::string doing = absl::StrCat("count store=", request.store());
  if (!request.min_position().offsets().empty()) {
    if (absl::Status s = local_.WaitForPosition(request.min_position(), deadline); !s.ok()) {
      return WithContext(s, doing);
    }
  }
  kiq::v1::CountResponse response;
  int64_t total = 0;
  for (int32_t i = 0; i < info->num_partitions; ++i) {
    const PartitionId p(i);
    absl::Status readable = local_.CheckReadable(request.store(), p);
    if (!readable.ok()) {
      if (request.allow_partial()) {
        response.add_missing_partitions(i);
        continue;
      }
      return WithContext(readable, absl::StrCat(doing, " partition=", i));
    }
    local_.AppendPosition(request.store(), p, response.mutable_position());
    absl::StatusOr<int64_t> n = local_.ApproximateCount(request.store(), p);
    if (!n.ok()) return WithContext(n.status(), absl::StrCat(doing, " partition=", i));
    total += *n;
  }
  response.set_count(total);
  return response;
}

}  // namespace kiq::router
