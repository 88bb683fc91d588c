#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
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
// Never blocks on the registry: Decode and Poll consult only the cache. A miss starts a fetch
// (at most one in flight per id) on the decoder's own fetcher thread and answers UNAVAILABLE
// ("not yet"); the caller pauses the record and polls. The destructor stops the fetcher and
// joins it: at most the registry client's request timeout if a fetch hangs.
//
// Thread-safe: the ingestion and standby threads share one. No lock is held across the HTTP
// call.
class SchemaDecoder {
 public:
  struct Options {
    size_t max_schemas = 1000;
    absl::Duration negative_ttl = absl::Seconds(30);
  };
  SchemaDecoder(std::unique_ptr<RegistryClient> client, Options options);
  ~SchemaDecoder() ABSL_LOCKS_EXCLUDED(mu_);
  SchemaDecoder(const SchemaDecoder&) = delete;
  SchemaDecoder& operator=(const SchemaDecoder&) = delete;

  // Decodes `bytes` (a key or value, `what` says which) written in `format` (FORMAT_AVRO,
  // FORMAT_PROTOBUF or FORMAT_JSON_SR) into `*json`. Never calls the registry. Errors:
  //   INVALID_ARGUMENT: the record is bad, with the reason (not the wire format, an id the
  //     registry does not know, a schema of another type or one that does not parse, bytes that
  //     do not decode with it);
  //   UNAVAILABLE: the id is not cached yet: a fetch is started (unless one is in flight) and
  //     the caller retries later (see `*schema_id`, set whenever the header parsed, for Poll).
  absl::Status Decode(kiq::v1::Format format, absl::string_view bytes, absl::string_view what,
                      const JsonLimits& limits, std::string* json, int32_t* schema_id = nullptr)
      ABSL_LOCKS_EXCLUDED(mu_);

  // Where the fetch of a schema id stands, for a paused partition's retries. Never blocks.
  enum class FetchState {
    kCached,    // the registry has answered, with a schema or with a definitive no
    kInFlight,  // queued or being fetched
    kFailed,    // the last fetch could not reach the registry (`*error` says why): Fetch again
  };
  FetchState Poll(int32_t id, absl::Status* error = nullptr) ABSL_LOCKS_EXCLUDED(mu_);
  // Starts a fetch of `id` on the fetcher thread unless it is cached or one is in flight.
  void Fetch(int32_t id) ABSL_LOCKS_EXCLUDED(mu_);

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
  // The cached writer of `id` (nullptr if none, or a refusal that expired).
  std::shared_ptr<const Writer> Cached(int32_t id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void StartFetch(int32_t id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Put(int32_t id, std::shared_ptr<const Writer> writer) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Asks the registry for `id` (the HTTP call) and parses the answer; no lock held.
  // UNAVAILABLE if the registry could not answer.
  absl::StatusOr<std::shared_ptr<const Writer>> FetchNow(int32_t id) ABSL_LOCKS_EXCLUDED(mu_);
  bool HasWork() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopping_ || !queue_.empty(); }
  // The fetcher thread: fetches the queued ids one by one until stopping_.
  void RunFetcher() ABSL_LOCKS_EXCLUDED(mu_);

  // Constant after construction.
  const std::unique_ptr<RegistryClient> client_;
  const Options options_;
  Stats stats_;

  mutable absl::Mutex mu_;
  absl::flat_hash_map<int32_t, std::shared_ptr<const Writer>> cache_ ABSL_GUARDED_BY(mu_);
  std::deque<int32_t> order_ ABSL_GUARDED_BY(mu_);  // ids by insertion, for eviction
  std::deque<int32_t> queue_ ABSL_GUARDED_BY(mu_);  // ids to fetch, in order
  absl::flat_hash_set<int32_t> in_flight_ ABSL_GUARDED_BY(mu_);  // queued or being fetched
  // The last failure of ids whose last fetch could not reach the registry.
  absl::flat_hash_map<int32_t, absl::Status> failed_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread fetcher_;  // last: started once the members above exist
};

// "avro", "protobuf", "json_sr" (the topology's names), for messages.
absl::string_view WireFormatName(kiq::v1::Format format);

}  // namespace kiq::schema
