#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "tests/testing/process.h"

namespace kiq::testing {

// No Schema Registry server is installable here: tests/js/registry.js serves the REST subset
// the serializers and kiq use (subjects, versions, schemas/ids), in memory, on 127.0.0.1, its
// state in a file so that a registry stopped (an outage) and started again on the same port
// answers for the same ids. Stopped by PID. Not thread-safe.
class SchemaRegistryProcess {
 public:
  // `dir`: where its state file, port file and log go.
  static absl::StatusOr<std::unique_ptr<SchemaRegistryProcess>> Start(const std::string& dir);
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  bool running() const { return process_ != nullptr; }
  // SIGTERM, waited for: from now on connections to its port are refused.
  absl::Status Stop();
  // Starts it again on the same port with the same schemas.
  absl::Status Restart();
  // Holds every GET /schemas/ids/{id} open from now on (a registry that does not answer:
  // clients wait for their timeout), or answers those held and stops holding. Returns how
  // many held requests it answered.
  absl::StatusOr<int> SetHang(bool hang);

 private:
  SchemaRegistryProcess(std::string dir) : dir_(std::move(dir)) {}
  absl::Status Launch(int port);
  std::string dir_;
  int port_ = 0;
  int launches_ = 0;
  std::unique_ptr<Process> process_;
};

// A schema to register under `subject` ("AVRO", "PROTOBUF" or "JSON", as the registry names
// them) and the records to encode with it.
struct SerializerSchema {
  std::string subject;
  std::string type;
  std::string schema;
};
struct SerializerRecord {
  int schema = 0;          // index into the schemas
  std::string value_json;  // the value as JSON ({"$base64": ".."} for Avro bytes)
  std::string message;     // protobuf: the message's name in the schema
};
struct Encoded {
  std::vector<int32_t> schema_ids;  // registered id of each schema
  std::vector<std::string> values;  // wire-format bytes of each record
};

// Encodes `records` the way a producer application does, with a real serializer library
// (@kafkajs/confluent-schema-registry through tests/js/encode.js, run by Node.js): the schemas
// are registered at `registry_url` first.
absl::StatusOr<Encoded> EncodeWithSerializer(const std::string& dir, const std::string& registry_url,
                                             const std::vector<SerializerSchema>& schemas,
                                             const std::vector<SerializerRecord>& records);

}  // namespace kiq::testing
