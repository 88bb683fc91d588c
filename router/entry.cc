#include "router/entry.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <string>

#include <google/protobuf/struct.pb.h>
#include <rapidjson/document.h>

#include "absl/strings/str_cat.h"
#include "common/topology/json_value.h"
#include "common/topology/value_codec.h"
#include "common/topology/window_key.h"
#include "common/utf8.h"

namespace kiq::router {
namespace {

// Copies a parsed JSON value into a google.protobuf.Value. Recursive in the depth of `in`, which
// ParseJson bounded to kMaxEntryJsonDepth.
void ToProtoValue(const rapidjson::Value& in, google::protobuf::Value* out) {
  switch (in.GetType()) {
    case rapidjson::kNullType:
      out->set_null_value(google::protobuf::NULL_VALUE);
      return;
    case rapidjson::kFalseType:
    case rapidjson::kTrueType:
      out->set_bool_value(in.GetBool());
      return;
    case rapidjson::kNumberType:
      out->set_number_value(in.GetDouble());
      return;
    case rapidjson::kStringType:
      out->set_string_value(std::string(in.GetString(), in.GetStringLength()));
      return;
    case rapidjson::kArrayType: {
      google::protobuf::ListValue* list = out->mutable_list_value();
      for (const rapidjson::Value& v : in.GetArray()) ToProtoValue(v, list->add_values());
      return;
    }
    case rapidjson::kObjectType: {
      // Of repeated names the last one counts (RFC 8259 leaves it open).
      auto& fields = *out->mutable_struct_value()->mutable_fields();
      for (const auto& m : in.GetObject()) {
        ToProtoValue(m.value, &fields[std::string(m.name.GetString(), m.name.GetStringLength())]);
      }
      return;
    }
  }
}

}  // namespace

std::string FormatDouble(double v) {
  if (!std::isfinite(v)) return std::isnan(v) ? "NaN" : (v > 0 ? "Infinity" : "-Infinity");
  char buffer[32];
  // The fewest significant digits that read back as the same double.
  for (int precision = 1; precision <= 17; ++precision) {
    std::snprintf(buffer, sizeof(buffer), "%.*g", precision, v);
    if (std::strtod(buffer, nullptr) == v) break;
  }
  return buffer;
}

void RenderEntry(const StoreInfo& store, KeyValue kv, kiq::v1::Entry* out) {
  kiq::v1::Entry& entry = *out;
  if (store.windowed()) {
    std::optional<DecodedWindowKey> w = DecodeWindowKey(kv.key);
    // kiq writes no window whose end overflows (WindowStartsFor): such a key (from a changelog
    // kiq did not write) is shown whole, without a window.
    if (w && w->start_ms > std::numeric_limits<int64_t>::max() - store.window_size_ms) {
      w.reset();
    }
    if (w) {
      entry.mutable_window()->set_start_ms(w->start_ms);
      entry.mutable_window()->set_end_ms(w->start_ms + store.window_size_ms);
      kv.key.resize(w->user_key.size());
    }
  }
  if (IsValidUtf8(kv.key)) {
    entry.set_key(std::move(kv.key));
  } else {
    entry.set_key_bytes(std::move(kv.key));
  }
  entry.set_partition(kv.partition.value());
  switch (store.value_kind) {
    case ValueKind::kInt64: {
      if (auto n = DecodeInt64(kv.value)) {
        entry.set_value(absl::StrCat(*n));
        entry.mutable_json()->set_number_value(static_cast<double>(*n));
        return;
      }
      break;  // not a number we wrote: fall back to bytes
    }
    case ValueKind::kDouble: {
      if (auto d = DecodeDouble(kv.value)) {
        entry.set_value(FormatDouble(*d));
        entry.mutable_json()->set_number_value(*d);
        return;
      }
      break;  // not a number we wrote: fall back to bytes
    }
    case ValueKind::kRow:
      // The state after the row (avg's sums and counts, count_distinct's hashes or registers)
      // is not part of the answer.
      kv.value.resize(RowJson(kv.value).size());
      [[fallthrough]];
    case ValueKind::kJson: {
      // Values were validated as JSON on ingestion; a value that does not parse, or nests
      // deeper than an Entry can carry, leaves json unset (value still holds its text).
      JsonLimits limits;
      limits.max_depth = kMaxEntryJsonDepth;
      // The size was bounded on ingestion (by that node's --max-value-bytes, which this process
      // does not know); the parse is linear.
      limits.max_value_bytes = std::numeric_limits<size_t>::max();
      rapidjson::Document doc;
      if (ParseJson(kv.value, limits, "value", &doc).ok()) ToProtoValue(doc, entry.mutable_json());
      break;
    }
    case ValueKind::kString:
    case ValueKind::kBytes:
      break;
  }
  entry.set_value(std::move(kv.value));
}

kiq::v1::Entry RenderEntry(const StoreInfo& store, KeyValue kv) {
  kiq::v1::Entry entry;
  RenderEntry(store, std::move(kv), &entry);
  return entry;
}

}  // namespace kiq::router
