#include "router/entry.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>

#include <google/protobuf/util/json_util.h>

#include "absl/strings/str_cat.h"
#include "router/value_codec.h"
#include "router/window_key.h"

namespace kiq::router {

bool IsValidUtf8(absl::string_view s) {
  size_t i = 0;
  const size_t n = s.size();
  while (i < n) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    size_t len;
    uint32_t cp;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      len = 2;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + len > n) return false;
    for (size_t k = 1; k < len; ++k) {
      const unsigned char cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    // Overlong encodings, surrogates and values past U+10FFFF are not UTF-8.
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
        cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
      return false;
    }
    i += len;
  }
  return true;
}

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
