#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace kiq::schema {

// The Confluent wire format the Schema Registry serializers write: a magic byte 0, the writer
// schema's id (4 bytes, big-endian), then the encoded value. Protobuf values carry, after the
// id, which message of the schema's file they are: a zigzag varint count, then that many
// zigzag varint indexes (a path through nested messages); a count of 0 alone means the first
// message ([0]).
struct WireValue {
  int32_t schema_id = 0;
  std::vector<int32_t> message_indexes;  // protobuf only; [0] for the first message
  absl::string_view payload;             // borrowed from the input
};

// Parses the header of `bytes`. INVALID_ARGUMENT with the reason a bad record carries: "value
// is not in the Schema Registry wire format (magic byte 0x7b, expected 0)", "... too short
// (3 bytes)", "... bad message indexes". `what` is "value" or "key".
absl::StatusOr<WireValue> ParseWireFormat(absl::string_view bytes, bool protobuf,
                                          absl::string_view what = "value");

// The most message indexes accepted (a path through nested messages deeper than this is not
// a real schema; the bound keeps a hostile count from allocating).
inline constexpr int kMaxMessageIndexes = 64;

}  // namespace kiq::schema
