#pragma once

#include "absl/status/status.h"
#include "kiq/v1/query.pb.h"
#include "router/local_stores.h"

namespace kiq::router {

// Turns a stored key/value into the API's Entry: the key as text when it is UTF-8 (else in
// key_bytes), the value as bytes and, for JSON and numeric stores, as structured JSON.
kiq::v1::Entry RenderEntry(const StoreInfo& store, KeyValue kv);

// The key of a request: `key` (UTF-8 text) or the `key_bytes` escape hatch.
bool IsValidUtf8(absl::string_view s);

}  // namespace kiq::router
