#include "common/schema/wire_format.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace kiq::schema {
namespace {

// Reads a zigzag varint (as protobuf's sint32, the encoding Confluent uses for the indexes).
bool ReadZigZag(absl::string_view& in, int32_t* out) {
  uint64_t v = 0;
  for (int shift = 0; shift < 35; shift += 7) {
    if (in.empty()) return false;
    const uint8_t b = static_cast<uint8_t>(in.front());
    in.remove_prefix(1);
    v |= static_cast<uint64_t>(b & 0x7f) << shift;
    if ((b & 0x80) == 0) {
      if (v > 0xffffffffu) return false;
      const uint32_t u = static_cast<uint32_t>(v);
      *out = static_cast<int32_t>((u >> 1) ^ (~(u & 1) + 1));
      return true;
    }
  }
  return false;
}

}  // namespace

absl::StatusOr<WireValue> ParseWireFormat(absl::string_view bytes, bool protobuf,
                                          absl::string_view what) {
  if (bytes.size() < 5) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, " is not in the Schema Registry wire format (", bytes.size(),
        " bytes; a magic byte and a 4-byte schema id come first)"));
  }
  if (bytes[0] != 0) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s is not in the Schema Registry wire format (magic byte 0x%02x, "
                        "expected 0)",
                        what, static_cast<uint8_t>(bytes[0])));
  }
  WireValue out;
  uint32_t id = 0;
  for (int i = 1; i <= 4; ++i) id = (id << 8) | static_cast<uint8_t>(bytes[i]);
  out.schema_id = static_cast<int32_t>(id);
  absl::string_view rest = bytes.substr(5);
  if (protobuf) {
    int32_t count = 0;
    if (!ReadZigZag(rest, &count) || count < 0 || count > kMaxMessageIndexes) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, " has bad protobuf message indexes after schema id ", id));
    }
    if (count == 0) out.message_indexes.push_back(0);
    for (int32_t i = 0; i < count; ++i) {
      int32_t index = 0;
      if (!ReadZigZag(rest, &index) || index < 0) {
        return absl::InvalidArgumentError(
            absl::StrCat(what, " has bad protobuf message indexes after schema id ", id));
      }
      out.message_indexes.push_back(index);
    }
  }
  out.payload = rest;
  return out;
}

}  // namespace kiq::schema
