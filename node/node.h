#pragma once

#include <memory>
#include <string>
#include <vector>

#include <grpcpp/server.h>
#include <prometheus/registry.h>

#include <atomic>

#include "absl/status/statusor.h"
#include "node/advertiser.h"
#include "node/compiled_topology.h"
#include "node/membership_publisher.h"
#include "node/dev_kafka.h"
#include "node/ingest_metrics.h"
#include "node/ingestor.h"
#include "node/local_stores_impl.h"
#include "node/subscription_hub.h"
#include "node/partition_states.h"
#include "node/position_tracker.h"
#include "node/store_engine.h"
#include "router/http_gateway.h"
#include "router/http_server.h"
#include "router/membership_tailer.h"
#include "router/metadata_service.h"
#include "router/peer_pool.h"
#include "router/peer_service.h"
#include "router/query_metrics.h"
#include "router/query_router.h"
#include "router/routing_table.h"
#include "router/query_service.h"
#include "router/thread_pool.h"

namespace kiq::node {

struct NodeOptions {
  std::string config_path;
  // Empty: start an embedded dev Kafka in this process.
  std::string bootstrap_servers;
  std::string node_id;
  std::string bind_address = "0.0.0.0";
  int grpc_port = 7070;
  // HTTP port for /metrics, /healthz, /readyz; 0 picks a free one, -1 disables it.
  int http_port = 7071;
  // Empty: kiq-data/<node_id>, or a fresh temporary directory with the embedded Kafka.
  std::string data_dir;
  std::string advertised_host;
  OutOfRangePolicy out_of_range = OutOfRangePolicy::kFail;
  // Partitions of each source topic created in the embedded Kafka.
  int embedded_partitions = 6;
  // If set, "grpc=<port>" and "http=<port>" lines are written here once the servers listen
  // (for supervisors and tests that start nodes on port 0).
  std::string port_file;
  absl::Duration source_wait = absl::Seconds(30);
  std::vector<std::pair<std::string, std::string>> consumer_properties;
  // How long after gaining a partition its changes are kept, so that subscriptions following
  // it from its previous owner resume without a gap (0: never; they end with ABORTED).
  absl::Duration subscribe_replay_window = absl::Seconds(30);
};

// One kiq node: loads the topology, opens the RocksDB stores, joins the consumer group and
// materializes its partitions, and serves the query API. Start() returns once serving;
// Shutdown() stops serving, commits, leaves the group and closes the stores.
class Node {
 public:
  static absl::StatusOr<std::unique_ptr<Node>> Start(NodeOptions options);
  ~Node();

  int grpc_port() const { return grpc_port_; }
  int http_port() const { return http_port_; }
  const std::string& bootstrap_servers() const { return bootstrap_servers_; }
  // Blocks until ingestion fails (its status) or Shutdown() is called (OK).
  absl::Status Wait();
  // Thread-safe and idempotent; a second caller waits for the first to finish.
  void Shutdown() ABSL_LOCKS_EXCLUDED(shutdown_mu_);

 private:
  Node() = default;
  // Refreshes the gauges computed on demand (partitions by state, lag, store sizes, members).
  void UpdateGauges();
  // /readyz: group joined and every owned partition ACTIVE, and not shutting down.
  router::HttpServer::Reply Readiness() const;

  NodeOptions options_;
  std::string bootstrap_servers_;
  std::string data_dir_;
  int grpc_port_ = 0;
  int http_port_ = 0;
  std::atomic<bool> shutting_down_{false};
  // Declaration order is destruction order in reverse: the server goes first, then the
  // ingestion, then the stores it writes to.
  std::unique_ptr<DevKafka> embedded_kafka_;
  prometheus::Registry registry_;
  std::unique_ptr<IngestMetrics> ingest_metrics_;
  std::unique_ptr<router::QueryMetrics> query_metrics_;
  std::unique_ptr<SubscriptionHub> hub_;  // before (outlives) the ingestor, stores and server
  std::unique_ptr<StoreEngine> engine_;
  std::unique_ptr<CompiledTopology> topology_;
  PartitionStates states_;
  PositionTracker positions_;
  router::RoutingTable table_;
  router::PeerPool peers_;
  std::unique_ptr<router::MembershipTailer> tailer_;
  std::unique_ptr<MembershipPublisher> publisher_;
  std::unique_ptr<Advertiser> advertiser_;
  std::unique_ptr<Ingestor> ingestor_;
  std::unique_ptr<LocalStoresImpl> local_;
  std::unique_ptr<router::QueryRouter> router_;
  std::unique_ptr<router::ThreadPool> pool_;
  std::unique_ptr<router::QueryServiceImpl> query_service_;
  std::unique_ptr<router::PeerServiceImpl> peer_service_;
  std::unique_ptr<router::MetadataServiceImpl> metadata_service_;
  std::unique_ptr<grpc::Server> server_;
  // Declared before http_: httplib's threads use it until http_ is stopped.
  std::unique_ptr<router::HttpGateway> gateway_;
  std::unique_ptr<router::HttpServer> http_;
  absl::Mutex shutdown_mu_;
  bool ingestor_stopped_ ABSL_GUARDED_BY(shutdown_mu_) = false;
};

}  // namespace kiq::node
