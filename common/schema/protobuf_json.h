#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/topology/json_value.h"

namespace google::protobuf {
class DescriptorPool;
class DynamicMessageFactory;
}  // namespace google::protobuf

namespace kiq::schema {

// A Protobuf writer schema as the registry stores it (the text of one .proto file), compiled
// at run time with Protobuf's own parser (libprotoc) into a descriptor pool, and the decoding
// of values written with it into the JSON model: protobuf's JSON mapping with the .proto field
// names (`customer_id`, not `customerId`) and default values printed (a proto3 0 is a field
// that is there, not a missing one). Imports of Protobuf's well-known types
// (google/protobuf/timestamp.proto, ...) resolve; other imports (registry references) are
// refused. Immutable after Parse; thread-safe (DynamicMessageFactory's prototypes are built
// under its own lock).
class ProtobufSchema {
 public:
  // INVALID_ARGUMENT naming the line and column libprotoc refused, or the import it lacks.
  static absl::StatusOr<std::unique_ptr<ProtobufSchema>> Parse(absl::string_view text);
  ~ProtobufSchema();

  // Decodes `payload` as the message at `message_indexes` (the wire format's path: [0] is the
  // file's first message, [1, 0] the first nested message of the second) and writes its JSON
  // text to `*json`. INVALID_ARGUMENT: no such message, bytes that do not parse, nesting deeper
  // than limits.max_depth.
  absl::Status Decode(absl::string_view payload, const std::vector<int32_t>& message_indexes,
                      const JsonLimits& limits, std::string* json) const;

 private:
  ProtobufSchema();
  std::unique_ptr<google::protobuf::DescriptorPool> pool_;
  std::unique_ptr<google::protobuf::DynamicMessageFactory> factory_;
  std::string file_name_;
};

}  // namespace kiq::schema
