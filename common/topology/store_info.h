#pragma once

#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"
#include "common/topology/partitioner.h"
#include "kiq/v1/topology.pb.h"

namespace kiq {

// How a store's values are rendered as JSON in answers.
enum class ValueKind {
  kBytes,   // opaque: bytes only
  kString,  // UTF-8 text: bytes only (a string is not structured)
  kJson,    // a JSON document: also parsed into Entry.json
  kInt64,   // a number stored as 8 bytes: decimal text in Entry.value, a number in Entry.json
  kDouble,  // a double stored as 8 bytes (IEEE bits): shortest round-trip decimal text, a number
  // An aggregate store's row: a JSON object, optionally followed by a NUL byte and the state
  // that is not shown (the sums and counts of avg columns). Rendered as kJson of the object.
  kRow,
};

// The part of a kRow value that is shown: the JSON object before the state.
inline absl::string_view RowJson(absl::string_view stored) {
  return stored.substr(0, stored.find('\0'));
}

// What the router needs to know about a store to route and render its answers.
struct StoreInfo {
  std::string name;
  std::string kind;  // "table", "count", ...: shown in metadata
  int32_t num_partitions = 0;
  PartitionerKind partitioner = PartitionerKind::kMurmur2;
  ValueKind value_kind = ValueKind::kBytes;
  // Windowed stores (> 0): the window size; stored keys are window keys
  // (common/topology/window_key.h) and every entry is rendered with its window.
  int64_t window_size_ms = 0;
  bool windowed() const { return window_size_ms > 0; }
};

// The value kind a store's answers are rendered with.
ValueKind ValueKindOf(const kiq::v1::Store& store, const kiq::v1::Source& source);
// "table", "count", ...
std::string StoreKindName(const kiq::v1::Store& store);
// The number type of a sum/min/max store (UNSPECIFIED for the other kinds).
kiq::v1::NumberType NumberTypeOf(const kiq::v1::Store& store);

}  // namespace kiq
