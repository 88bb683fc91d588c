#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <grpcpp/server.h>
#include <prometheus/registry.h>

#include <atomic>

#include "absl/status/statusor.h"
#include "common/kafka/dev_kafka.h"
#include "node/ingest/ingest_metrics.h"
#include "node/ingest/ingestor.h"
#include "node/ingest/standby_replicator.h"
#include "node/local_stores_impl.h"
#include "node/membership/advertiser.h"
#include "node/membership/membership_publisher.h"
#include "node/process/compiled_topology.h"
#include "node/push/subscription_hub.h"
#include "node/store/partition_states.h"
#include "node/store/position_tracker.h"
#include "node/store/store_engine.h"
#include "router/frontend.h"
#include "router/http_server.h"

namespace kiq::node {

// The largest values --max-json-depth and --max-value-bytes accept: rendering a parsed JSON
// value recurses once per level, and a record past 64 MiB is a file, not a record.
inline constexpr int kMaxJsonDepthFlag = 1000;
inline constexpr int64_t kMaxValueBytesFlag = int64_t{64} << 20;
// The largest --ingest-cache-bytes accepted (a typo of a unit should not take all memory).
inline constexpr int64_t kMaxIngestCacheBytesFlag = int64_t{64} << 30;
// More ingestion threads than partitions stay idle; this bounds a typo.
inline constexpr int kMaxIngestThreads = 64;

struct NodeOptions {
  std::string config_path;
  // Empty: start an embedded dev Kafka in this process.
  std::string bootstrap_servers;
  std::string node_id;
  std::string bind_address = "0.0.0.0";
  int grpc_port = 7070;
  // HTTP port for /metrics, /healthz, /readyz; 0 picks a free one, -1 disables it.
  int http_port = 7071;
  // The admin port (/healthz, /readyz, /metrics alone; none by default here, 7072 from the
  // flags) and the HTTP port's limits.
  router::HttpServing serving;
  // Bearer tokens and the cluster secret (--auth-token-file, --cluster-secret-file).
  router::Security security;
  // Empty: kiq-data/<node_id>, or a fresh temporary directory with the embedded Kafka.
  std::string data_dir;
  std::string advertised_host;
  OutOfRangePolicy out_of_range = OutOfRangePolicy::kFail;
  // Partitions of each source topic created in the embedded Kafka.
  int embedded_partitions = 6;
  // If set, "grpc=<port>", "http=<port>" and "admin=<port>" lines are written here once the servers listen
  // (for supervisors and tests that start nodes on port 0).
  std::string port_file;
  absl::Duration source_wait = absl::Seconds(30);
  // librdkafka properties for every Kafka client of the node (--kafka-property), applied after
  // kiq's own settings.
  KafkaProperties kafka_properties;
  // How long after gaining a partition its changes are kept, so that subscriptions following
  // it from its previous owner resume without a gap (0: never; they end with ABORTED).
  absl::Duration subscribe_replay_window = absl::Seconds(30);
  // IngestorOptions::changelog_batches_in_flight (--changelog-batches-in-flight).
  int changelog_batches_in_flight = 2;
  // IngestorOptions::ingest_cache_bytes (--ingest-cache-bytes), per ingestion thread.
  size_t ingest_cache_bytes = kDefaultIngestCacheBytes;
  // Ingestion threads (--ingest-threads), as Kafka Streams' num.stream.threads: each is a
  // member of the consumer group with its own consumer, changelog producer and batches, and
  // materializes the partitions the group assigns it; 1 to kMaxIngestThreads.
  int ingest_threads = 1;
  // Bounds on every JSON record value and key this node decodes (--max-json-depth,
  // --max-value-bytes).
  JsonLimits json_limits;
  // The schema registry's password from outside the topology (--schema-registry-password-file
  // or $KIQ_SCHEMA_REGISTRY_PASSWORD); unset: the topology's schema_registry.password.
  std::optional<std::string> schema_registry_password;
};

// One kiq node: loads the topology, opens the RocksDB stores, joins the consumer group and
// materializes its partitions, and serves the query API. Start() returns once serving;
// Shutdown() stops serving, commits, leaves the group and closes the stores.
class Node {
 public:
  static absl::StatusOr<std::unique_ptr<Node>> Start(NodeOptions options);
  ~Node();

  int grpc_port() const { return frontend_->grpc_port(); }
  // -1 without an HTTP port.
  int http_port() const { return frontend_->http_port(); }
  const std::string& bootstrap_servers() const { return kafka_.bootstrap_servers(); }
  // The data dir in use (--data-dir or its default); the stores are in its `stores`.
  const std::string& data_dir() const { return data_dir_; }
  // Blocks until ingestion fails (its status) or Shutdown() is called (OK). After a failure the
  // node keeps serving reads of what was committed, and /readyz answers 503 with the reason.
  absl::Status Wait() ABSL_LOCKS_EXCLUDED(failure_mu_, ended_mu_);
  // Thread-safe and idempotent; a second caller waits for the first to finish.
  void Shutdown() ABSL_LOCKS_EXCLUDED(shutdown_mu_);
  // The stores, shared: a process about to exit without a finished Shutdown (a Kafka client
  // that does not close) flushes them, so they are left as a clean close leaves them.
  std::shared_ptr<StoreEngine> store_engine() const { return engine_; }

 private:
  Node() = default;
  // Refreshes the gauges computed on demand (partitions by state, lag, store sizes, members).
  void UpdateGauges();
  // The partitions this node should keep standby replicas of, as the routing table has the
  // members and owners now (StandbyNodes).
  std::vector<int32_t> StandbyPlacement() const;
  int32_t num_standby_replicas_ = 0;
  std::string self_id_;
  // /readyz: group joined and every owned partition ACTIVE, ingestion running, and not
  // shutting down. A JSON body {"ready":..,"reason":".."}.
  router::HttpServer::Reply Readiness() const ABSL_LOCKS_EXCLUDED(failure_mu_);

  NodeOptions options_;
  KafkaClientConfig kafka_{""};
  std::string data_dir_;
  std::atomic<bool> shutting_down_{false};
  // Declaration order is destruction order in reverse: the server goes first, then the
  // ingestion, then the stores it writes to.
  std::unique_ptr<DevKafka> embedded_kafka_;
  prometheus::Registry registry_;
  std::unique_ptr<IngestMetrics> ingest_metrics_;
  std::unique_ptr<SubscriptionHub> hub_;  // before (outlives) the ingestor, stores and server
  std::shared_ptr<StoreEngine> engine_;
  // Avro/Protobuf/JSON Schema decoding (a registry in the topology): used by the topologies.
  std::unique_ptr<schema::SchemaDecoder> schemas_;
  std::unique_ptr<CompiledTopology> topology_;
  PartitionStates states_;
  PositionTracker positions_;
  std::unique_ptr<MembershipPublisher> publisher_;
  std::unique_ptr<Advertiser> advertiser_;
  // Standby replicas (num_standby_replicas > 0): before the ingestor, which hands partitions
  // over to and from the replicator.
  StandbyPartitions standby_partitions_;
  std::unique_ptr<StandbyReplicator> standby_;
  // One per ingestion thread; lane i > 0 runs its own copy of the topology (processors are
  // single-threaded), lane 0 the node's.
  std::vector<std::unique_ptr<CompiledTopology>> lane_topologies_;
  std::vector<std::unique_ptr<Ingestor>> ingestors_;
  // Ingestion threads that ended, and the first failure among them (Wait).
  absl::Mutex ended_mu_;
  int ingestors_ended_ ABSL_GUARDED_BY(ended_mu_) = 0;
  absl::Status first_failure_ ABSL_GUARDED_BY(ended_mu_);
  std::unique_ptr<LocalStoresImpl> local_;
  std::unique_ptr<router::Frontend> frontend_;
  mutable absl::Mutex failure_mu_;
  absl::Status ingestion_failure_ ABSL_GUARDED_BY(failure_mu_);
  absl::Mutex shutdown_mu_;
  bool ingestor_stopped_ ABSL_GUARDED_BY(shutdown_mu_) = false;
};

}  // namespace kiq::node
