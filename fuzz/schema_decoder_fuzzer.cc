// Schema Registry formats: bytes go through the wire-format parser and are decoded with fixed
// writer schemas (an Avro record with every type and a recursive list; a Protobuf file with
// nested messages), as common/schema decodes record values. Properties: no crash; a failure is
// INVALID_ARGUMENT (a bad record); an accepted value is JSON that parses again within the
// limits.
#include <cstdint>
#include <memory>
#include <string>

#include <rapidjson/document.h>

#include "absl/status/status.h"
#include "common/schema/avro_json.h"
#include "common/schema/protobuf_json.h"
#include "common/schema/wire_format.h"
#include "common/topology/json_value.h"
#include "fuzz/fuzz_util.h"

namespace kiq::fuzz {
namespace {

constexpr char kAvro[] =
    R"({"type":"record","name":"Rich","fields":[{"name":"id","type":"string"},)"
    R"({"name":"n","type":"int"},{"name":"big","type":"long"},{"name":"ok","type":"boolean"},)"
    R"({"name":"price","type":"double"},{"name":"f","type":"float"},)"
    R"({"name":"note","type":["null","string"]},)"
    R"({"name":"kind","type":{"type":"enum","name":"Kind","symbols":["A","B"]}},)"
    R"({"name":"raw","type":"bytes"},{"name":"fx","type":{"type":"fixed","name":"F","size":2}},)"
    R"({"name":"tags","type":{"type":"array","items":"string"}},)"
    R"({"name":"attrs","type":{"type":"map","values":"long"}},)"
    R"({"name":"next","type":["null",{"type":"record","name":"Node","fields":[)"
    R"({"name":"v","type":"int"},{"name":"next","type":["null","Node"]}]}]}]})";

constexpr char kProto[] =
    "syntax = \"proto3\";\n"
    "message Outer { message Inner { int32 v = 1; repeated Inner kids = 2; }\n"
    "  string s = 1; int64 n = 2; bytes b = 3; Inner inner = 4; map<string, double> m = 5;\n"
    "  repeated Outer more = 6; }\n";

void CheckJson(const std::string& json, const JsonLimits& limits) {
  rapidjson::Document doc;
  KIQ_FUZZ_CHECK(ParseJson(json, limits, "value", &doc).ok());
}

}  // namespace
}  // namespace kiq::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace kiq;
  using namespace kiq::schema;
  static const bool quiet = [] {
    fuzz::QuietLogs();
    return true;
  }();
  (void)quiet;
  static const std::unique_ptr<AvroSchema> avro = *AvroSchema::Parse(fuzz::kAvro);
  static const std::unique_ptr<ProtobufSchema> proto = *ProtobufSchema::Parse(fuzz::kProto);
  const absl::string_view bytes(reinterpret_cast<const char*>(data), size);
  JsonLimits limits;
  limits.max_depth = 16;
  std::string json;
  for (bool protobuf : {false, true}) {
    absl::StatusOr<WireValue> wire = ParseWireFormat(bytes, protobuf);
    if (!wire.ok()) {
      KIQ_FUZZ_CHECK(absl::IsInvalidArgument(wire.status()));
      continue;
    }
    KIQ_FUZZ_CHECK(wire->payload.size() <= bytes.size());
    absl::Status s = protobuf ? proto->Decode(wire->payload, wire->message_indexes, limits, &json)
                              : avro->Decode(wire->payload, limits, &json);
    KIQ_FUZZ_CHECK(s.ok() || absl::IsInvalidArgument(s));
    if (s.ok()) fuzz::CheckJson(json, limits);
  }
  return 0;
}
