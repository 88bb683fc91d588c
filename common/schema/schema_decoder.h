#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/schema/avro_json.h"
#include "common/schema/protobuf_json.h"
#include "common/schema/registry_client.h"
#include "common/topology/json_value.h"
#include "kiq/v1/topology.pb.h"

namespace kiq::schema {

// Decodes keys and values in the Schema Registry wire format (topology formats `avro`,
// `protobuf`, `json_sr`) into JSON text, the model every store reads. Writer schemas are
// fetched by id from the registry once and kept, parsed, in a bounded cache (oldest evicted
// first): an id seen before decodes while the registry is down. An id the registry does not
// know, or a schema libavro/libprotoc refuses, is remembered for `negative_ttl` so that a
// stream of such records does not ask the registry for each.
//
// Thread-safe: the ingestion and standby threads share one. No lock is held across the HTTP
// call (two threads missing the same id may both fetch it; the second result is dropped).
class SchemaDecoder {
 public:
  struct Options {
    size_t max_schemas = 1000;
    absl::Duration negative_ttl = absl::Seconds(30);
  };
  SchemaDecoder(std::unique_ptr<RegistryClient> client, Options options);

  // Decodes `bytes` (a key or value, `what` says which) written in `format` (FORMAT_AVRO,
  // FORMAT_PROTOBUF or FORMAT_JSON_SR) into `*json`. Errors:
  //   INVALID_ARGUMENT: the record is bad, with the reason (not the wire format, an id the
  //     registry does not know, a schema of another type or one that does not parse, bytes that
  //     do not decode with it);
  //   UNAVAILABLE: the registry did not answer for an id not cached: retry later (see
  //     `*schema_id`, set whenever the header parsed, for Lookup).
  absl::Status Decode(kiq::v1::Format format, absl::string_view bytes, absl::string_view what,
                      const JsonLimits& limits, std::string* json, int32_t* schema_id = nullptr);

  // Asks the registry for `id` unless it is cached: OK once the registry has answered (with a
  // schema or with a definitive no); UNAVAILABLE while it does not. For a paused partition's
  // retries.
  absl::Status Lookup(int32_t id);

  struct Stats {
    std::atomic<int64_t> fetches{0};        // answered registry requests
    std::atomic<int64_t> fetch_failures{0}; // registry unreachable
    std::atomic<int64_t> evictions{0};
  };
  const Stats& stats() const { return stats_; }
  size_t cached() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  // A writer schema, parsed; or why it cannot be used (until `refused_until`).
  struct Writer {
    SchemaType type = SchemaType::kAvro;
    std::unique_ptr<AvroSchema> avro;
    std::unique_ptr<ProtobufSchema> protobuf;
    absl::Status refused;
    absl::Time refused_until = absl::InfinitePast();
  };
  absl::StatusOr<std::shared_ptr<const Writer>> Get(int32_t id) ABSL_LOCKS_EXCLUDED(mu_);
  void Put(int32_t id, std::shared_ptr<const Writer> writer) ABSL_LOCKS_EXCLUDED(mu_);

  const std::unique_ptr<RegistryClient> client_;
  const Options options_;
  Stats stats_;
  mutable absl::Mutex mu_;
  absl::flat_hash_map<int32_t, std::shared_ptr<const Writer>> cache_ ABSL_GUARDED_BY(mu_);
  std::deque<int32_t> order_ ABSL_GUARDED_BY(mu_);  // ids by insertion, for eviction
};

// "avro", "protobuf", "json_sr" (the topology's names), for messages.
absl::string_view WireFormatName(kiq::v1::Format format);

}  // namespace kiq::schema
