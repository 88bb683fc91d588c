#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "kiq/v1/topology.pb.h"

namespace kiq::schema {

enum class SchemaType { kAvro, kProtobuf, kJson };

// "AVRO", "PROTOBUF", "JSON": the registry's names.
absl::string_view SchemaTypeName(SchemaType type);

// A schema as GET /schemas/ids/{id} answers it.
struct RegisteredSchema {
  SchemaType type = SchemaType::kAvro;  // an answer without schemaType is Avro
  std::string text;
  int references = 0;  // how many references (imports) it names
};

// Where the registry is and how to authenticate (topology `schema_registry`, with the password
// from a flag or the environment; see README "Formats").
struct RegistryConfig {
  std::string url;  // http(s)://host:port[/prefix], no trailing slash needed
  std::string username;
  std::string password;
  std::string ca_file;  // PEM bundle to verify an https registry; empty: the system's
  absl::Duration connect_timeout = absl::Seconds(2);
  absl::Duration request_timeout = absl::Seconds(5);
};

// The registry settings of a topology's `schema_registry`, with the password from outside the
// file when `password` is set (--schema-registry-password-file, $KIQ_SCHEMA_REGISTRY_PASSWORD:
// Kubernetes secrets). INVALID_ARGUMENT naming the field: a username without a password, a CA
// file that cannot be read.
absl::StatusOr<RegistryConfig> ResolveRegistryConfig(const kiq::v1::SchemaRegistry& spec,
                                                     const std::optional<std::string>& password);

// Reads the password file of --schema-registry-password-file (one line; a final newline is not
// part of it, as `kubectl create secret --from-file` writes it). INVALID_ARGUMENT naming the
// flag if it cannot be read.
absl::StatusOr<std::string> ReadPasswordFile(const std::string& path);

// Fetches writer schemas by id. Implementations are thread-safe. Errors:
//   NOT_FOUND: the registry does not know the id (404, error code 40403) — the record is bad;
//   UNAVAILABLE: the registry could not be asked or did not answer (connection refused, a
//     timeout, 5xx, 401/403: credentials are fixed by an operator, so the data waits) — retry;
//   INVALID_ARGUMENT: the registry answered something that is not a schema (the record is bad).
class RegistryClient {
 public:
  virtual ~RegistryClient() = default;
  virtual absl::StatusOr<RegisteredSchema> SchemaById(int32_t id) = 0;
};

// The Schema Registry REST API over libcurl (basic auth, a CA file for https, timeouts; a new
// easy handle per request: schemas are fetched once per id, then cached by the caller).
class HttpRegistryClient : public RegistryClient {
 public:
  static absl::StatusOr<std::unique_ptr<HttpRegistryClient>> Create(RegistryConfig config);
  absl::StatusOr<RegisteredSchema> SchemaById(int32_t id) override;

 private:
  explicit HttpRegistryClient(RegistryConfig config) : config_(std::move(config)) {}
  const RegistryConfig config_;
};

// The answer to GET /schemas/ids/{id} as a schema or an error (see RegistryClient), from its
// HTTP status and body. Pure, for tests.
absl::StatusOr<RegisteredSchema> ParseSchemaAnswer(int32_t id, long http_status,
                                                   absl::string_view body);

}  // namespace kiq::schema
