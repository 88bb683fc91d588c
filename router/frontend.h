#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include <grpcpp/server.h>
#include <prometheus/registry.h>

#include "absl/status/statusor.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "common/kafka/client_config.h"
#include "common/security/tls.h"
#include "router/auth.h"
#include "router/http_gateway.h"
#include "router/http_server.h"
#include "router/membership_tailer.h"
#include "router/metadata_service.h"
#include "router/peer_pool.h"
#include "router/peer_service.h"
#include "router/port/local_stores.h"
#include "router/position_waiter.h"
#include "router/query_metrics.h"
#include "router/query_router.h"
#include "router/query_service.h"
#include "router/reflection_v1.h"
#include "router/routing_table.h"
#include "router/thread_pool.h"

namespace kiq::router {

// The HTTP side's ports and limits, as kiq-node's and kiq-router's flags set them
// (router/serving_flags.h).
struct HttpServing {
  // The public HTTP port's limits (see HttpServer, HttpGateway::Options::max_streams).
  int http_max_connections = 512;
  int http_max_streams = 256;
  std::chrono::seconds http_idle_timeout{2};
  // The admin port: the process's own routes (/healthz, /readyz, /metrics) on a listener of
  // their own, so that probes never wait behind the public port's clients. 0: any free port;
  // -1: none.
  int admin_port = -1;
  int admin_max_connections = 16;
  // TLS of the gRPC and HTTP ports and of channels to peers (all empty: plaintext). The admin
  // port stays plaintext (kubelet probes, Prometheus scrapes).
  security::TlsFiles tls;
  // Forwarded Gets to one owner share a GetMany past this many calls in flight to it
  // (ForwardCoalescer::Options::window; 0: off).
  int forward_coalescing_window = 2;
};

// The query side that kiq-node and kiq-router share, built over a process's LocalStores (the
// node's stores, or kiq-router's empty StoreCatalog): the routing table fed by the members
// topic, the router, the gRPC services (QueryService, MetadataService and, on nodes,
// PeerService) with server reflection (v1alpha and v1) and grpc.health.v1.Health, the HTTP port with the HTTP/JSON gateway (answered by
// the same services through the server's in-process channel) and the process's own routes,
// and the port file for supervisors and tests that start a process on port 0.
// Thread-safe after Start; Shutdown is idempotent.
class Frontend {
 public:
  struct Options {
    // This process in logs and in the routing table (its own partitions are never forwarded).
    std::string self_id;
    KafkaClientConfig kafka{""};
    std::string members_topic;
    std::string bind_address = "0.0.0.0";
    int grpc_port = 7070;  // 0: any free port
    int http_port = -1;    // 0: any free port; -1: no HTTP server
    HttpServing serving;
    // If set, "grpc=<port>" (and "http=<port>", "admin=<port>") lines are written here once
    // every port listens.
    std::string port_file;
    // Nodes serve PeerService (scans, counts and push streams of their own partitions).
    bool serve_peers = false;
    // Optional: query metrics (kiq_query_*) are registered here.
    prometheus::Registry* registry = nullptr;
    // Requests waiting for a min_position at once; past it RESOURCE_EXHAUSTED.
    int max_waiting_requests = PositionWaiter::kDefaultMaxWaiting;
    // Bearer tokens and the cluster secret (router/auth.h); empty: all open.
    Security security;
  };

  // `local` must outlive the Frontend. `add_routes` registers the process's own HTTP routes
  // (/healthz, ...) before a port opens; it is called for the HTTP port and the admin port.
  static absl::StatusOr<std::unique_ptr<Frontend>> Start(
      Options options, const LocalStores& local,
      const std::function<void(HttpServer&)>& add_routes);
  ~Frontend();

  int grpc_port() const { return grpc_port_; }
  // -1 without an HTTP server.
  int http_port() const { return http_port_; }
  // -1 without an admin port.
  int admin_port() const { return admin_port_; }
  // Null without an HTTP port.
  const HttpServer* http_server() const { return http_.get(); }
  const HttpGateway* gateway() const { return gateway_.get(); }
  const RoutingTable& routing_table() const { return table_; }
  // Whether a broker answered the members-topic tailer's last look (every second).
  bool kafka_connected() const { return tailer_->connected(); }
  // grpc.health.v1.Health (gRPC's default service, for every service name and ""): NOT_SERVING
  // until this is called, then `ready()`'s answer, polled every kHealthPoll, until Shutdown.
  // Called by the owner once everything `ready` reads exists.
  void StartHealthUpdates(std::function<bool()> ready);
  static constexpr absl::Duration kHealthPoll = absl::Milliseconds(500);

  // Stops taking calls and gives in-flight ones up to `grace`, then stops the HTTP port.
  // Streams that never end on their own must be ended by the caller first.
  void Shutdown(absl::Duration grace);

 private:
  Frontend() = default;

  // Declaration order is destruction order in reverse: servers first, then the services and
  // the router they call, then the tailer, then the table it feeds.
  RoutingTable table_;
  PeerPool peers_;
  std::unique_ptr<Authorizer> auth_;
  std::unique_ptr<QueryMetrics> metrics_;
  std::unique_ptr<MembershipTailer> tailer_;
  // Read-your-writes waits, without a thread each (used by the router and the services).
  std::unique_ptr<PositionWaiter> waiter_;
  std::unique_ptr<QueryRouter> router_;
  // Scatter-gather blocks a worker for a peer round trip.
  ThreadPool pool_{16, "kiq-pool"};
  // Scans and counts with a min_position, once their local positions are reached: gathering
  // from peers that still wait for theirs blocks a worker, never one of pool_'s.
  ThreadPool wait_pool_{16, "kiq-wait-pool"};
  std::unique_ptr<QueryServiceImpl> query_service_;
  std::unique_ptr<PeerServiceImpl> peer_service_;
  std::unique_ptr<MetadataServiceImpl> metadata_service_;
  std::unique_ptr<ReflectionV1Service> reflection_v1_;
  int grpc_port_ = 0;
  int http_port_ = -1;
  int admin_port_ = -1;
  std::unique_ptr<grpc::Server> server_;
  absl::Notification health_stop_;
  std::thread health_thread_;
  // Declared after server_ and before http_: httplib's threads use the gateway until http_ is
  // stopped, and the gateway calls the server through its in-process channel.
  std::unique_ptr<HttpGateway> gateway_;
  std::unique_ptr<HttpServer> http_;
  std::unique_ptr<HttpServer> admin_;
};

// Writes `text` to `path` through a temporary file and a rename: a reader sees all or nothing.
absl::Status WriteFileAtomically(const std::string& path, const std::string& text);

}  // namespace kiq::router
