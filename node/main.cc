// kiq-node: materializes Kafka topics into RocksDB stores and serves them over gRPC.
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <iostream>
#include <thread>

#include "common/logging.h"

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "common/flag_names.h"
#include "common/flags.h"
#include "common/kafka/client_properties.h"
#include "common/protobuf_log.h"
#include "common/schema/registry_client.h"
#include "node/node.h"
#include "router/serving_flags.h"

ABSL_FLAG(std::string, config, "",
          "Topology file (YAML or JSON, schema kiq.v1.Topology). Required.");
ABSL_FLAG(std::string, bootstrap_servers, "",
          "Kafka bootstrap servers (host:port,...). Empty: start an embedded dev Kafka in this "
          "process and log its address (development only: in memory, ~5 MiB per partition).");
ABSL_FLAG(std::string, node_id, "",
          "This node's id (default: the host name). Stable across restarts, e.g. the "
          "StatefulSet pod name.");
ABSL_FLAG(std::string, bind_address, "0.0.0.0", "Address the gRPC server listens on.");
ABSL_FLAG(int, grpc_port, 7070, "gRPC port (0: pick a free one; see --port-file).");
ABSL_FLAG(int, http_port, 7071,
          "HTTP port for /metrics, /healthz and /readyz (0: pick a free one; -1: none).");
ABSL_FLAG(std::string, data_dir, "",
          "Directory for the RocksDB stores. Default: kiq-data/<node-id>, or a fresh temporary "
          "directory with the embedded Kafka.");
ABSL_FLAG(std::string, advertised_host, "",
          "Host name peers and clients use to reach this node (default: the host name).");
ABSL_FLAG(std::string, offset_out_of_range, "fail",
          "When a stored offset is outside its partition's log (topic recreated, retention "
          "passed): 'fail' marks the partition FAILED and does not consume it; 'reset' drops its "
          "state and rebuilds it from the start of the log.");
ABSL_FLAG(int, embedded_partitions, 6,
          "With the embedded Kafka: partitions of each source topic it creates.");
ABSL_FLAG(std::string, port_file, "",
          "Write 'grpc=<port>', 'http=<port>' and 'admin=<port>' lines to this file once "
          "serving (for supervisors and tests).");
ABSL_FLAG(std::string, kafka_config, "",
          "A Java-style client.properties file (Confluent Cloud, MSK, ...): security.protocol, "
          "sasl.mechanism, sasl.jaas.config, ssl.* and other client settings for every Kafka "
          "client, translated to librdkafka's names; --kafka-property wins over it. Its "
          "bootstrap.servers is used when --bootstrap-servers is not given.");
ABSL_FLAG(std::vector<std::string>, kafka_property, {},
          "librdkafka properties for every Kafka client of the node, name=value[,name=value...] "
          "(e.g. security.protocol=SASL_SSL or session.timeout.ms=10000).");
ABSL_FLAG(int, changelog_batches_in_flight, 2,
          "Ingestion batches whose changelog may be unconfirmed at once, counting the one being "
          "staged: 2 stages the next batch while the previous one's changelog is delivered "
          "(each still commits only once its changelog is durable, in order; the default); 1 "
          "waits for each changelog before consuming on.");
ABSL_FLAG(int64_t, ingest_cache_bytes, static_cast<int64_t>(kiq::node::kDefaultIngestCacheBytes),
          "Budget in bytes of the cache of committed aggregate values ingestion reads before "
          "RocksDB (keys, values and ~160 bytes per entry; least recently used evicted first); "
          "0 turns it off (0 to 64 GiB).");
ABSL_FLAG(int, ingest_threads, 1,
          "Ingestion threads, as Kafka Streams' num.stream.threads: each is a member of the "
          "consumer group (group.instance.id <node-id>, <node-id>-1, ...) and materializes the "
          "partitions it is assigned; more than the partitions this node gets stay idle (1 to "
          "64).");
ABSL_FLAG(absl::Duration, subscribe_replay_window, absl::Seconds(30),
          "How long after gaining a partition its changes are kept, so that subscriptions "
          "following it from its previous owner resume without a gap (0s: never).");
ABSL_FLAG(int, max_json_depth, 64,
          "Deepest nesting of JSON arrays and objects accepted in a record value or JSON key "
          "(1-1000); deeper records are bad records (dead-lettered, reason too_deep).");
ABSL_FLAG(int64_t, max_value_bytes, int64_t{1} << 20,
          "Largest record value (any format; also a JSON key) accepted, in bytes (1 to 64 MiB); "
          "larger records are bad records (dead-lettered truncated, reason too_large).");
ABSL_FLAG(std::string, schema_registry_password_file, "",
          "File holding the schema registry's basic-auth password (e.g. a mounted Kubernetes "
          "secret); wins over $KIQ_SCHEMA_REGISTRY_PASSWORD and the topology's "
          "schema_registry.password.");
ABSL_FLAG(std::string, log_level, "info", "trace, debug, info, warn, error.");
ABSL_FLAG(absl::Duration, failure_grace, absl::Seconds(30),
          "When ingestion fails (a disk error such as a full or read-only data dir, a fatal Kafka "
          "error): how long the node keeps serving reads of what it committed, with /readyz "
          "503 and the reason, before it exits with code 1 (0s to 10m). SIGTERM ends it sooner, "
          "also with code 1.");
ABSL_FLAG(absl::Duration, shutdown_timeout, absl::Seconds(20),
          "Longest a shutdown (SIGTERM, or ingestion stopping) may take. Past it, the stores are "
          "flushed and the process exits with code 3: a Kafka client that does not close must "
          "not outlive Kubernetes' grace period (30s by default).");

namespace {

std::string HostName() {
  char buf[256] = {};
  if (gethostname(buf, sizeof(buf) - 1) != 0) return "kiq-node";
  return buf;
}

}  // namespace

int main(int argc, char** argv) {
  // Debian builds abseil with deadlock detection on: a graph update on every Mutex lock, a few
  // percent of a Get. The code's lock order is fixed; tests run with it on (gtest binaries).
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  absl::SetProgramUsageMessage(
      "Materializes Kafka topics into queryable RocksDB stores and serves them over gRPC.\n"
      "Usage: kiq-node --config=topology.yaml [--bootstrap-servers=host:9092] [--node-id=n1] "
      "[--grpc-port=7070] [--data-dir=DIR]");
  std::vector<std::string> args = kiq::NormalizeFlagNames(argc, argv);
  std::vector<char*> arg_ptrs;
  for (std::string& a : args) arg_ptrs.push_back(a.data());
  // Before abseil's parser, which exits 1 on a bad command line: ours is exit 2.
  if (absl::Status s = kiq::CheckFlags(args); !s.ok()) {
    std::cerr << "kiq-node: " << s.message() << "\n";
    return 2;
  }
  absl::ParseCommandLine(static_cast<int>(arg_ptrs.size()), arg_ptrs.data());

  kiq::node::NodeOptions options;
  options.config_path = absl::GetFlag(FLAGS_config);
  options.bootstrap_servers = absl::GetFlag(FLAGS_bootstrap_servers);
  options.node_id = absl::GetFlag(FLAGS_node_id);
  if (options.node_id.empty()) options.node_id = HostName();
  options.bind_address = absl::GetFlag(FLAGS_bind_address);
  options.grpc_port = absl::GetFlag(FLAGS_grpc_port);
  options.http_port = absl::GetFlag(FLAGS_http_port);
  options.data_dir = absl::GetFlag(FLAGS_data_dir);
  options.advertised_host = absl::GetFlag(FLAGS_advertised_host);
  if (options.advertised_host.empty()) options.advertised_host = HostName();
  options.embedded_partitions = absl::GetFlag(FLAGS_embedded_partitions);
  options.port_file = absl::GetFlag(FLAGS_port_file);

  spdlog::set_pattern(absl::StrCat("%Y-%m-%dT%H:%M:%S.%e %^%l%$ node=", options.node_id, " %v"));
  kiq::RouteProtobufLogs();
  absl::StatusOr<spdlog::level::level_enum> level =
      kiq::ParseLogLevel("--log-level", absl::GetFlag(FLAGS_log_level));

  auto refuse = [](absl::string_view message) {
    spdlog::error("refusing to start: {}", message);
    return 2;
  };
  if (!level.ok()) return refuse(level.status().message());
  spdlog::set_level(*level);
  if (absl::Status s = kiq::CheckKafkaId(
          absl::GetFlag(FLAGS_node_id).empty() ? "--node-id (the host name)" : "--node-id",
          options.node_id);
      !s.ok()) {
    return refuse(s.message());
  }
  if (options.config_path.empty()) return refuse("--config: a topology file is required");
  if (options.grpc_port < 0 || options.grpc_port > 65535) {
    return refuse("--grpc-port: must be between 0 and 65535");
  }
  if (options.http_port < -1 || options.http_port > 65535) {
    return refuse("--http-port: must be between 0 and 65535, or -1 for none");
  }
  absl::StatusOr<kiq::router::HttpServing> serving =
      kiq::router::ServingFromFlags(kiq::security::TlsRole::kNode);
  if (!serving.ok()) return refuse(serving.status().message());
  options.serving = *serving;
  absl::StatusOr<kiq::router::Security> security = kiq::router::SecurityFromFlags();
  if (!security.ok()) return refuse(security.status().message());
  options.security = *std::move(security);
  const std::string policy = absl::GetFlag(FLAGS_offset_out_of_range);
  if (policy == "fail") {
    options.out_of_range = kiq::node::OutOfRangePolicy::kFail;
  } else if (policy == "reset") {
    options.out_of_range = kiq::node::OutOfRangePolicy::kReset;
  } else {
    return refuse("--offset-out-of-range: must be 'fail' or 'reset'");
  }
  if (options.embedded_partitions < 1) return refuse("--embedded-partitions: must be >= 1");
  options.changelog_batches_in_flight = absl::GetFlag(FLAGS_changelog_batches_in_flight);
  if (options.changelog_batches_in_flight != 1 && options.changelog_batches_in_flight != 2) {
    return refuse("--changelog-batches-in-flight: must be 1 or 2");
  }
  if (absl::Status s =
          kiq::CheckFlagRange("--ingest-cache-bytes", absl::GetFlag(FLAGS_ingest_cache_bytes), 0,
                              kiq::node::kMaxIngestCacheBytesFlag);
      !s.ok()) {
    return refuse(s.message());
  }
  options.ingest_cache_bytes = static_cast<size_t>(absl::GetFlag(FLAGS_ingest_cache_bytes));
  if (absl::Status s = kiq::CheckFlagRange("--ingest-threads", absl::GetFlag(FLAGS_ingest_threads),
                                           1, kiq::node::kMaxIngestThreads);
      !s.ok()) {
    return refuse(s.message());
  }
  options.ingest_threads = absl::GetFlag(FLAGS_ingest_threads);
  options.subscribe_replay_window = absl::GetFlag(FLAGS_subscribe_replay_window);
  if (options.subscribe_replay_window < absl::ZeroDuration()) {
    return refuse("--subscribe-replay-window: must be >= 0s");
  }
  if (absl::Status s = kiq::CheckFlagRange("--max-json-depth", absl::GetFlag(FLAGS_max_json_depth),
                                           1, kiq::node::kMaxJsonDepthFlag);
      !s.ok()) {
    return refuse(s.message());
  }
  if (absl::Status s =
          kiq::CheckFlagRange("--max-value-bytes", absl::GetFlag(FLAGS_max_value_bytes), 1,
                              kiq::node::kMaxValueBytesFlag);
      !s.ok()) {
    return refuse(s.message());
  }
  options.json_limits.max_depth = absl::GetFlag(FLAGS_max_json_depth);
  options.json_limits.max_value_bytes = static_cast<size_t>(absl::GetFlag(FLAGS_max_value_bytes));
  if (const std::string file = absl::GetFlag(FLAGS_schema_registry_password_file);
      !file.empty()) {
    absl::StatusOr<std::string> password = kiq::schema::ReadPasswordFile(file);
    if (!password.ok()) return refuse(password.status().message());
    options.schema_registry_password = *std::move(password);
  } else if (const char* env = std::getenv("KIQ_SCHEMA_REGISTRY_PASSWORD");
             env != nullptr && *env != '\0') {
    options.schema_registry_password = std::string(env);
  }
  const absl::Duration failure_grace = absl::GetFlag(FLAGS_failure_grace);
  if (failure_grace < absl::ZeroDuration() || failure_grace > absl::Minutes(10)) {
    return refuse("--failure-grace: must be between 0s and 10m");
  }
  absl::StatusOr<kiq::UserKafkaSettings> kafka = kiq::UserKafkaSettingsFromFlags(
      absl::GetFlag(FLAGS_kafka_config), absl::GetFlag(FLAGS_kafka_property));
  if (!kafka.ok()) return refuse(std::string(kafka.status().message()));
  for (const std::string& note : kafka->notes) spdlog::info("--kafka-config: {}", note);
  options.kafka_properties = std::move(kafka->properties);
  if (options.bootstrap_servers.empty()) options.bootstrap_servers = kafka->bootstrap_servers;

  // Block the stop signals before any thread starts so that every thread inherits the mask;
  // one thread receives them with sigwait and starts the shutdown.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  absl::StatusOr<std::unique_ptr<kiq::node::Node>> node = kiq::node::Node::Start(options);
  if (!node.ok()) {
    // A bad topology or a mismatch with Kafka's topics is refused (2); a disk, Kafka or other
    // failure of the environment (a full or read-only data dir, a broker that does not answer)
    // is a failure to start (1), which a supervisor retries.
    const absl::StatusCode code = node.status().code();
    if (code == absl::StatusCode::kInvalidArgument || code == absl::StatusCode::kNotFound ||
        code == absl::StatusCode::kFailedPrecondition || code == absl::StatusCode::kOutOfRange ||
        code == absl::StatusCode::kAlreadyExists) {
      return refuse(node.status().ToString());
    }
    spdlog::error("cannot start: {}; exiting with code 1", node.status().ToString());
    return 1;
  }

  // Shutdown is bounded: librdkafka 2.0.2 can hang in a consumer's close (e.g. after a broker
  // restart); the watchdog then leaves the stores flushed and exits.
  const absl::Duration shutdown_timeout = absl::GetFlag(FLAGS_shutdown_timeout);
  absl::Notification shutdown_started;
  std::atomic<bool> started{false};
  const auto start_shutdown = [&] {
    if (!started.exchange(true)) shutdown_started.Notify();
  };
  absl::Notification shutdown_done;
  // The watchdog's reference keeps the stores open even while the node is being destroyed.
  std::thread watchdog([&, stores = (*node)->store_engine()]() mutable {
    shutdown_started.WaitForNotification();
    if (shutdown_done.WaitForNotificationWithTimeout(shutdown_timeout)) {
      stores.reset();  // closed here, after every user of it
      return;
    }
    absl::Status flushed = stores->FlushAll();
    spdlog::error(
        "shutdown did not finish within {} (a Kafka client did not close); stores {}; exiting "
        "with code 3",
        absl::FormatDuration(shutdown_timeout),
        flushed.ok() ? std::string("flushed") : "not flushed: " + flushed.ToString());
    spdlog::default_logger()->flush();
    _exit(3);
  });
  std::atomic<bool> exiting{false};
  absl::Notification stop_requested;
  std::thread signal_thread(
      [&stop_signals, &exiting, &start_shutdown, &stop_requested, n = node->get()] {
        int signal = 0;
        sigwait(&stop_signals, &signal);
        if (exiting.load()) return;  // woken by main at exit
        spdlog::info("received {}, shutting down", signal == SIGTERM ? "SIGTERM" : "SIGINT");
        stop_requested.Notify();
        start_shutdown();
        n->Shutdown();
      });
  absl::Status status = (*node)->Wait();
  if (!status.ok() && !stop_requested.HasBeenNotified()) {
    // Reads of what was committed keep serving for the grace: the group keeps this node's
    // partitions for its session timeout anyway (static membership, no LeaveGroup), and
    // exiting at once would leave them unreadable until another node has restored them.
    spdlog::error(
        "ingestion failed (data dir {}): {}; serving reads at the committed positions, /readyz "
        "503, exiting with code 1 in {} (or on SIGTERM)",
        (*node)->data_dir(), status.ToString(), absl::FormatDuration(failure_grace));
    stop_requested.WaitForNotificationWithTimeout(failure_grace);
  }
  start_shutdown();
  (*node)->Shutdown();  // waits for a shutdown the signal thread may have begun
  exiting.store(true);
  pthread_kill(signal_thread.native_handle(), SIGTERM);
  signal_thread.join();
  node->reset();
  shutdown_done.Notify();
  watchdog.join();
  if (!status.ok()) {
    spdlog::error("exiting: {}", status.ToString());
    return 1;
  }
  spdlog::info("stopped cleanly");
  return 0;
}
