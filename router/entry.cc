#include "router/entry.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>

#include <google/protobuf/util/json_util.h>

#include "absl/strings/str_cat.h"
#include "common/topology/value_codec.h"
#include "common/topology/window_key.h"
#include "common/utf8.h"

namespace kiq::router {

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

kiq::v1::Entry RenderEntry(const StoreInfo& store, KeyValue kv) {
  kiq::v1::Entry entry;
  if (store.windowed()) {
    if (std::optional<DecodedWindowKey> w = DecodeWindowKey(kv.key)) {
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
        return entry;
      }
      break;  // not a number we wrote: fall back to bytes
    }
    case ValueKind::kDouble: {
      if (auto d = DecodeDouble(kv.value)) {
        entry.set_value(FormatDouble(*d));
        entry.mutable_json()->set_number_value(*d);
        return entry;
      }
      break;  // not a number we wrote: fall back to bytes
    }
    case ValueKind::kJson: {
      // Values were validated as JSON on ingestion; a parse failure here leaves json unset.
      google::protobuf::Value json;
      if (google::protobuf::util::JsonStringToMessage(kv.value, &json).ok()) {
        *entry.mutable_json() = std::move(json);
      }
      break;
    }
    case ValueKind::kString:
    case ValueKind::kBytes:
      break;
  }
  entry.set_value(std::move(kv.value));
  return entry;
}

}  // namespace kiq::router
