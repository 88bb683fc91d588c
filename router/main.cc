// kiq-router: the query router with no stores. Tails the members topic, and answers the
// public API by forwarding point reads to the owners and scattering scans to them.
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>

#include <prometheus/registry.h>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/flag_names.h"
#include "common/flags.h"
#include "common/kafka/client_config.h"
#include "common/kafka/client_properties.h"
#include "common/kafka/metadata.h"
#include "common/logging.h"
#include "common/protobuf_log.h"
#include "common/topology/plan.h"
#include "common/topology/topology_config.h"
#include "router/frontend.h"
#include "router/router_probe.h"
#include "router/serving_flags.h"
#include "router/store_catalog.h"

ABSL_FLAG(std::string, config, "", "Topology file (the same as the nodes'). Required.");
ABSL_FLAG(std::string, bootstrap_servers, "", "Kafka bootstrap servers. Required.");
ABSL_FLAG(std::string, router_id, "", "Id of this router in logs (default: router-<host>).");
ABSL_FLAG(std::string, bind_address, "0.0.0.0", "Address the gRPC server listens on.");
ABSL_FLAG(int, grpc_port, 7070, "gRPC port (0: pick a free one; see --port-file).");
ABSL_FLAG(std::string, port_file, "",
          "Write 'grpc=<port>' (and 'http=<port>', 'admin=<port>') to this file once serving.");
ABSL_FLAG(int, http_port, -1,
          "HTTP/JSON gateway port (0: pick a free one, written to --port-file as 'http=<port>'; "
          "-1: no HTTP server).");
ABSL_FLAG(std::string, log_level, "info", "trace, debug, info, warn, error.");
ABSL_FLAG(std::string, kafka_config, "",
          "A Java-style client.properties file (Confluent Cloud, MSK, ...): security.protocol, "
          "sasl.mechanism, sasl.jaas.config, ssl.* and other client settings for every Kafka "
          "client, translated to librdkafka's names; --kafka-property wins over it. Its "
          "bootstrap.servers is used when --bootstrap-servers is not given.");
ABSL_FLAG(std::vector<std::string>, kafka_property, {},
          "Extra librdkafka property name=value for every Kafka client of the router "
          "(e.g. security.protocol=SASL_SSL); repeatable or comma-separated.");

int main(int argc, char** argv) {
  // Debian builds abseil with deadlock detection on: a graph update on every Mutex lock, a few
  // percent of a Get. The code's lock order is fixed; tests run with it on (gtest binaries).
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  absl::SetProgramUsageMessage(
      "Routes kiq queries to the nodes that own the data; holds no stores.\n"
      "Usage: kiq-router --config=topology.yaml --bootstrap-servers=host:9092 [--grpc-port=7070]");
  std::vector<std::string> args = kiq::NormalizeFlagNames(argc, argv);
  std::vector<char*> arg_ptrs;
  for (std::string& a : args) arg_ptrs.push_back(a.data());
  // Before abseil's parser, which exits 1 on a bad command line: ours is exit 2.
  if (absl::Status s = kiq::CheckFlags(args); !s.ok()) {
    std::fprintf(stderr, "kiq-router: %s\n", std::string(s.message()).c_str());
    return 2;
  }
  absl::ParseCommandLine(static_cast<int>(arg_ptrs.size()), arg_ptrs.data());

  std::string id = absl::GetFlag(FLAGS_router_id);
  if (id.empty()) {
    char host[256] = {};
    gethostname(host, sizeof(host) - 1);
    id = absl::StrCat("router-", host);
  }
  spdlog::set_pattern(absl::StrCat("%Y-%m-%dT%H:%M:%S.%e %^%l%$ router=", id, " %v"));
  kiq::RouteProtobufLogs();
  auto refuse = [](absl::string_view message) {
    spdlog::error("refusing to start: {}", message);
    return 2;
  };
  absl::StatusOr<spdlog::level::level_enum> level =
      kiq::ParseLogLevel("--log-level", absl::GetFlag(FLAGS_log_level));
  if (!level.ok()) return refuse(level.status().message());
  spdlog::set_level(*level);
  if (const int port = absl::GetFlag(FLAGS_grpc_port); port < 0 || port > 65535) {
    return refuse("--grpc-port: must be between 0 and 65535");
  }
  if (const int port = absl::GetFlag(FLAGS_http_port); port < -1 || port > 65535) {
    return refuse("--http-port: must be between 0 and 65535, or -1 for none");
  }
  absl::StatusOr<kiq::router::HttpServing> serving =
      kiq::router::ServingFromFlags(kiq::security::TlsRole::kRouter);
  if (!serving.ok()) return refuse(serving.status().message());
  absl::StatusOr<kiq::router::Security> security = kiq::router::SecurityFromFlags();
  if (!security.ok()) return refuse(security.status().message());
  if (absl::GetFlag(FLAGS_config).empty()) return refuse("--config: a topology file is required");
  absl::StatusOr<kiq::UserKafkaSettings> settings = kiq::UserKafkaSettingsFromFlags(
      absl::GetFlag(FLAGS_kafka_config), absl::GetFlag(FLAGS_kafka_property));
  if (!settings.ok()) return refuse(std::string(settings.status().message()));
  for (const std::string& note : settings->notes) spdlog::info("--kafka-config: {}", note);
  std::string bootstrap = absl::GetFlag(FLAGS_bootstrap_servers);
  if (bootstrap.empty()) bootstrap = settings->bootstrap_servers;
  if (bootstrap.empty()) return refuse("--bootstrap-servers: required");
  const kiq::KafkaClientConfig kafka(bootstrap, std::move(settings->properties));

  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  absl::StatusOr<kiq::v1::Topology> topology = kiq::LoadTopologyFile(absl::GetFlag(FLAGS_config));
  if (!topology.ok()) return refuse(topology.status().ToString());
  std::vector<std::string> topics;
  for (const kiq::v1::Source& source : topology->sources()) topics.push_back(source.topic());
  auto counts = kiq::FetchPartitionCounts(kafka, topics, absl::Seconds(30));
  if (!counts.ok()) return refuse(counts.status().ToString());
  absl::StatusOr<kiq::TopologyPlan> plan = kiq::TopologyPlan::Build(*topology, *counts);
  if (!plan.ok()) return refuse(plan.status().ToString());

  kiq::router::StoreCatalog catalog(plan->QueryableStores());
  kiq::router::Frontend::Options serve;
  serve.self_id = id;
  serve.kafka = kafka;
  serve.members_topic = plan->members_topic();
  serve.bind_address = absl::GetFlag(FLAGS_bind_address);
  serve.grpc_port = absl::GetFlag(FLAGS_grpc_port);
  serve.http_port = absl::GetFlag(FLAGS_http_port);
  serve.port_file = absl::GetFlag(FLAGS_port_file);
  serve.serving = *serving;
  serve.security = *std::move(security);
  prometheus::Registry registry;
  serve.registry = &registry;
  // The routes read the probe, built once the frontend (its routing table) exists; the ports
  // open inside Start, so until then they answer 503 "starting".
  std::atomic<const kiq::router::RouterProbe*> probe{nullptr};
  auto frontend = kiq::router::Frontend::Start(serve, catalog, [&probe](kiq::router::HttpServer& http) {
    http.Get("/healthz", [] { return kiq::router::HttpServer::Reply{200, "ok\n"}; });
    http.Get("/readyz", [&probe] {
      const kiq::router::RouterProbe* p = probe.load();
      return p == nullptr ? kiq::router::ReadinessReply(false, "starting") : p->Readiness();
    });
    http.Get("/metrics", [&probe] {
      const kiq::router::RouterProbe* p = probe.load();
      return p == nullptr ? kiq::router::HttpServer::Reply{503, "starting\n"} : p->Metrics();
    });
  });
  if (!frontend.ok()) return refuse(frontend.status().ToString());
  kiq::router::Frontend* f = frontend->get();
  kiq::router::RouterProbe router_probe(
      f->routing_table(), plan->num_partitions(), [f] { return f->kafka_connected(); }, registry);
  probe.store(&router_probe);
  f->StartHealthUpdates([&router_probe] { return router_probe.Readiness().status == 200; });
  spdlog::info("kiq-router serving kiq.v1.QueryService and MetadataService on {}:{} for {}",
               serve.bind_address, (*frontend)->grpc_port(), topology->application_id());
  if ((*frontend)->http_port() >= 0) {
    spdlog::info("kiq-router serving HTTP/JSON on {}:{}", serve.bind_address,
                 (*frontend)->http_port());
  }
  if ((*frontend)->admin_port() >= 0) {
    spdlog::info("kiq-router serving /healthz, /readyz, /metrics on {}:{}", serve.bind_address,
                 (*frontend)->admin_port());
  }
  int signal = 0;
  sigwait(&stop_signals, &signal);
  spdlog::info("received {}, shutting down", signal == SIGTERM ? "SIGTERM" : "SIGINT");
  (*frontend)->Shutdown(absl::Seconds(5));
  // The ports are closed: nothing reads the probe any more.
  probe.store(nullptr);
  return 0;
}
