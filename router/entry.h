#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kiq/v1/query.pb.h"
#include "router/port/local_stores.h"

namespace kiq::router {

// The deepest JSON value (nesting of arrays and objects) that Entry.json carries. Each JSON level
// is up to three nested protobuf messages (Value, Struct, its map entry) and protobuf's parsers
// refuse messages nested deeper than 100 (a response, an Entry and 3 × 32 + 1 is 99): a deeper
// value would make the whole response unreadable to every client, the HTTP gateway included.
inline constexpr int kMaxEntryJsonDepth = 32;

// Turns a stored key/value into the API's Entry: the key as text when it is UTF-8 (else in
// key_bytes), the value as bytes and, for JSON and numeric stores, as structured JSON (unset
// for a JSON value nesting deeper than kMaxEntryJsonDepth). Never recursive beyond that depth.
kiq::v1::Entry RenderEntry(const StoreInfo& store, KeyValue kv);
// The same, into `entry` (empty; e.g. on the arena of the response it belongs to).
void RenderEntry(const StoreInfo& store, KeyValue kv, kiq::v1::Entry* entry);

// The shortest decimal text that reads back as `v` ("0.1", "1e+300", "17"), as in Entry.value.
std::string FormatDouble(double v);

// The key of a request (GetRequest, NodeForKeyRequest): `key` (UTF-8 text) or the `key_bytes`
// escape hatch; INVALID_ARGUMENT if neither is set.
template <typename Request>
absl::StatusOr<std::string> RequestKey(const Request& request) {
  if (request.key_kind_case() == Request::kKey) return request.key();
  if (request.key_kind_case() == Request::kKeyBytes) return request.key_bytes();
  return absl::InvalidArgumentError("key is required (set key or key_bytes)");
}

}  // namespace kiq::router
