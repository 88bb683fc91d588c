#pragma once

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/topology/json_value.h"

struct avro_obj_t;
struct avro_value_iface;

namespace kiq::schema {

// An Avro writer schema parsed by libavro (avro-c), and the decoding of values written with
// it into the JSON model every store reads (see README "Formats"): records are objects, a
// union is its branch's value, enums their symbol, bytes and fixed base64 (as protobuf's JSON
// mapping does), maps objects, arrays arrays; logical types are their underlying value
// (a timestamp-millis is its long, a decimal its bytes). Immutable after Parse; thread-safe
// (each Decode makes its own value; libavro's reference counts are atomic).
class AvroSchema {
 public:
  // INVALID_ARGUMENT with libavro's reason if `text` is not an Avro schema libavro accepts.
  static absl::StatusOr<std::unique_ptr<AvroSchema>> Parse(absl::string_view text);
  ~AvroSchema();
  AvroSchema(const AvroSchema&) = delete;
  AvroSchema& operator=(const AvroSchema&) = delete;

  // Decodes the binary `payload` (the bytes after the wire-format header) and writes its JSON
  // text to `*json`. INVALID_ARGUMENT with the reason a bad record carries: truncated or
  // malformed bytes, bytes left after the value, nesting deeper than limits.max_depth, a
  // string that is not UTF-8.
  absl::Status Decode(absl::string_view payload, const JsonLimits& limits,
                      std::string* json) const;

 private:
  AvroSchema(avro_obj_t* schema, avro_value_iface* iface) : schema_(schema), iface_(iface) {}
  avro_obj_t* const schema_;
  avro_value_iface* const iface_;
};

}  // namespace kiq::schema
