// kiq-router: the query router with no stores. Tails the members topic, and answers the
// public API by forwarding point reads to the owners and scattering scans to them.
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <cstdio>

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server_builder.h>

#include "absl/synchronization/mutex.h"
#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "node/compiled_topology.h"
#include "node/flag_names.h"
#include "node/ingestor.h"
#include "node/topology_config.h"
#include "router/http_gateway.h"
#include "router/http_server.h"
#include "router/logging.h"
#include "router/membership_tailer.h"
#include "router/metadata_service.h"
#include "router/peer_pool.h"
#include "router/query_router.h"
#include "router/query_service.h"
#include "router/routing_table.h"
#include "router/store_catalog.h"

ABSL_FLAG(std::string, config, "", "Topology file (the same as the nodes'). Required.");
ABSL_FLAG(std::string, bootstrap_servers, "", "Kafka bootstrap servers. Required.");
ABSL_FLAG(std::string, router_id, "", "Id of this router in logs (default: router-<host>).");
ABSL_FLAG(std::string, bind_address, "0.0.0.0", "Address the gRPC server listens on.");
ABSL_FLAG(int, grpc_port, 7070, "gRPC port (0: pick a free one; see --port-file).");
ABSL_FLAG(std::string, port_file, "", "Write 'grpc=<port>' to this file once serving.");
ABSL_FLAG(int, http_port, -1,
          "HTTP/JSON gateway port (0: pick a free one, written to --port-file as 'http=<port>'; "
          "-1: no HTTP server).");
ABSL_FLAG(std::string, log_level, "info", "trace, debug, info, warn, error.");

int main(int argc, char** argv) {
  // Debian builds abseil with deadlock detection on: a graph update on every Mutex lock, a few
  // percent of a Get. The code's lock order is fixed; tests run with it on (gtest binaries).
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  absl::SetProgramUsageMessage(
      "Routes kiq queries to the nodes that own the data; holds no stores.\n"
      "Usage: kiq-router --config=topology.yaml --bootstrap-servers=host:9092 [--grpc-port=7070]");
  std::vector<std::string> args = kiq::node::NormalizeFlagNames(argc, argv);
  std::vector<char*> arg_ptrs;
  for (std::string& a : args) arg_ptrs.push_back(a.data());
  absl::ParseCommandLine(static_cast<int>(arg_ptrs.size()), arg_ptrs.data());

  std::string id = absl::GetFlag(FLAGS_router_id);
  if (id.empty()) {
    char host[256] = {};
    gethostname(host, sizeof(host) - 1);
    id = absl::StrCat("router-", host);
  }
  spdlog::set_pattern(absl::StrCat("%Y-%m-%dT%H:%M:%S.%e %^%l%$ router=", id, " %v"));
  spdlog::set_level(spdlog::level::from_str(absl::GetFlag(FLAGS_log_level)));
  auto refuse = [](const std::string& message) {
    spdlog::error("refusing to start: {}", message);
    return 2;
  };
  const std::string bootstrap = absl::GetFlag(FLAGS_bootstrap_servers);
  if (absl::GetFlag(FLAGS_config).empty()) return refuse("--config: a topology file is required");
  if (bootstrap.empty()) return refuse("--bootstrap-servers: required");

  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  absl::StatusOr<kiq::v1::Topology> topology =
      kiq::node::LoadTopologyFile(absl::GetFlag(FLAGS_config));
  if (!topology.ok()) return refuse(topology.status().ToString());
  std::vector<std::string> topics;
  for (const kiq::v1::Source& source : topology->sources()) topics.push_back(source.topic());
  auto counts = kiq::node::FetchPartitionCounts(bootstrap, topics, absl::Seconds(30));
  if (!counts.ok()) return refuse(counts.status().ToString());
  auto compiled = kiq::node::CompiledTopology::Compile(*topology, nullptr, *counts);
  if (!compiled.ok()) return refuse(compiled.status().ToString());
  std::vector<kiq::router::StoreInfo> infos;
  for (const kiq::node::CompiledStore& store : (*compiled)->stores()) {
    if (!store.internal) infos.push_back(store.info);
  }

  kiq::router::StoreCatalog catalog(std::move(infos));
  kiq::router::RoutingTable table;
  kiq::router::PeerPool peers;
  auto tailer = kiq::router::MembershipTailer::Start(
      bootstrap, absl::StrCat(topology->application_id(), "-members"), table);
  if (!tailer.ok()) return refuse(tailer.status().ToString());
  kiq::router::QueryRouter router(catalog, kiq::router::ClusterView{&table, &peers, id});
  kiq::router::ThreadPool pool(16);
  kiq::router::QueryServiceImpl query_service(router, pool);
  kiq::router::MetadataServiceImpl metadata_service(table, catalog);

  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(
      absl::StrCat(absl::GetFlag(FLAGS_bind_address), ":", absl::GetFlag(FLAGS_grpc_port)),
      grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&query_service);
  builder.RegisterService(&metadata_service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || port == 0) return refuse("--grpc-port: cannot listen");
  spdlog::info("kiq-router serving kiq.v1.QueryService and MetadataService on {}:{} for {}",
               absl::GetFlag(FLAGS_bind_address), port, topology->application_id());
  // The HTTP/JSON gateway, answered by the same services through the in-process channel.
  std::unique_ptr<kiq::router::HttpGateway> gateway;
  kiq::router::HttpServer http;
  int http_port = -1;
  if (absl::GetFlag(FLAGS_http_port) >= 0) {
    auto created = kiq::router::HttpGateway::Create(
        server->InProcessChannel(grpc::ChannelArguments()),
        {"kiq.v1.QueryService", "kiq.v1.MetadataService"});
    if (!created.ok()) return refuse(created.status().ToString());
    gateway = *std::move(created);
    gateway->Register(http.native());
    http.Get("/healthz", [] { return kiq::router::HttpServer::Reply{200, "ok\n"}; });
    absl::StatusOr<int> bound =
        http.Start(absl::GetFlag(FLAGS_bind_address), absl::GetFlag(FLAGS_http_port));
    if (!bound.ok()) return refuse(absl::StrCat("--http-port: ", bound.status().message()));
    http_port = *bound;
    spdlog::info("kiq-router serving HTTP/JSON on {}:{}", absl::GetFlag(FLAGS_bind_address),
                 http_port);
  }
  if (const std::string path = absl::GetFlag(FLAGS_port_file); !path.empty()) {
    const std::string tmp = path + ".tmp";
    FILE* f = std::fopen(tmp.c_str(), "w");
    const std::string http_line = http_port >= 0 ? absl::StrCat("http=", http_port, "\n") : "";
    if (f == nullptr || std::fprintf(f, "grpc=%d\n%s", port, http_line.c_str()) < 0 ||
        std::fclose(f) != 0 ||
        std::rename(tmp.c_str(), path.c_str()) != 0) {
      return refuse("--port-file: cannot write " + path);
    }
  }
  int signal = 0;
  sigwait(&stop_signals, &signal);
  spdlog::info("received {}, shutting down", signal == SIGTERM ? "SIGTERM" : "SIGINT");
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
  http.Stop();
  return 0;
}
