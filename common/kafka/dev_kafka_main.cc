// kiq-dev-kafka: a standalone Kafka-protocol cluster (librdkafka's mock) for development and
// tests. Prints the bootstrap servers on one line on stdout, then runs until SIGTERM/SIGINT.
// With --control-port, also serves the fault-injection control channel (dev_kafka_control.h).
#include <pthread.h>
#include <signal.h>

#include <algorithm>
#include <cstdio>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include <spdlog/sinks/stdout_color_sinks.h>

#include "absl/container/flat_hash_map.h"
#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "common/flag_names.h"
#include "common/kafka/dev_kafka.h"
#include "common/kafka/dev_kafka_control.h"
#include "common/logging.h"
#include "common/topology/plan.h"
#include "common/topology/topology_config.h"

ABSL_FLAG(int, brokers, 3, "Number of brokers in the mock cluster.");
ABSL_FLAG(std::vector<std::string>, topics, {},
          "Topics to create, as name:partitions[,name:partitions...], e.g. orders:6,customers:6.");
ABSL_FLAG(std::string, config, "",
          "A kiq topology file: also create every topic it needs, its sources with --partitions "
          "partitions and every internal topic (members, dead letters, changelogs, repartition "
          "topics), as kiq-node would ask for them.");
ABSL_FLAG(int, partitions, 6, "Partitions of each source topic of --config (1-1000).");
ABSL_FLAG(std::string, bootstrap_file, "",
          "Also write the bootstrap servers to this file (written whole, after topics exist).");
ABSL_FLAG(int, control_port, -1,
          "Serve the fault-injection control channel on 127.0.0.1 at this port (0: any free "
          "port, see --control-port-file; -1: none). Lines: down <broker_id>|all, "
          "up <broker_id>|all, rtt <broker_id>|all <ms>; each answered by ok or error <reason>.");
ABSL_FLAG(std::string, control_port_file, "",
          "Write the control port to this file (written whole, before --bootstrap-file).");

namespace {

// Writes `contents` to `path` whole: readers never see a partial file.
bool WriteFileAtomically(const std::string& path, const std::string& contents) {
  const std::string tmp = path + ".tmp";
  FILE* f = std::fopen(tmp.c_str(), "w");
  if (f == nullptr) return false;
  const bool written = std::fprintf(f, "%s\n", contents.c_str()) >= 0;
  return std::fclose(f) == 0 && written && std::rename(tmp.c_str(), path.c_str()) == 0;
}

// Every topic the topology in `path` needs, its sources with `partitions` partitions: the same
// list kiq-node creates or checks at start-up (TopologyPlan::InternalTopics).
absl::StatusOr<std::vector<std::pair<std::string, int>>> TopicsOf(const std::string& path,
                                                                  int partitions) {
  absl::StatusOr<kiq::v1::Topology> topology = kiq::LoadTopologyFile(path);
  if (!topology.ok()) return topology.status();
  absl::flat_hash_map<std::string, int32_t> counts;
  std::vector<std::pair<std::string, int>> topics;
  for (const kiq::v1::Source& source : topology->sources()) {
    if (counts.emplace(source.topic(), partitions).second) {
      topics.emplace_back(source.topic(), partitions);
    }
  }
  absl::StatusOr<kiq::TopologyPlan> plan = kiq::TopologyPlan::Build(*topology, counts);
  if (!plan.ok()) return plan.status();
  for (const kiq::InternalTopic& t : plan->InternalTopics()) {
    topics.emplace_back(t.name, t.partitions);
  }
  return topics;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Starts a Kafka-protocol cluster for development (librdkafka mock cluster).\n"
      "Usage: kiq-dev-kafka [--brokers=3] [--topics=orders:6,customers:6] "
      "[--config=topology.yaml [--partitions=6]] [--control-port=0]");
  std::vector<std::string> args = kiq::NormalizeFlagNames(argc, argv);
  std::vector<char*> arg_ptrs;
  for (std::string& a : args) arg_ptrs.push_back(a.data());
  absl::ParseCommandLine(static_cast<int>(arg_ptrs.size()), arg_ptrs.data());
  // stdout carries the bootstrap line only.
  spdlog::set_default_logger(spdlog::stderr_color_mt("kiq-dev-kafka"));
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ dev-kafka %v");

  std::vector<std::pair<std::string, int>> topics;
  for (const std::string& spec : absl::GetFlag(FLAGS_topics)) {
    std::vector<std::string> parts = absl::StrSplit(spec, ':');
    int partitions = 0;
    if (parts.size() != 2 || parts[0].empty() || !absl::SimpleAtoi(parts[1], &partitions) ||
        partitions < 1) {
      std::cerr << "kiq-dev-kafka: --topics: expected name:partitions, got \"" << spec << "\"\n";
      return 2;
    }
    topics.emplace_back(parts[0], partitions);
  }
  if (const std::string config = absl::GetFlag(FLAGS_config); !config.empty()) {
    const int partitions = absl::GetFlag(FLAGS_partitions);
    if (partitions < 1 || partitions > 1000) {
      std::cerr << "kiq-dev-kafka: --partitions: must be 1-1000, got " << partitions << "\n";
      return 2;
    }
    absl::StatusOr<std::vector<std::pair<std::string, int>>> needed = TopicsOf(config, partitions);
    if (!needed.ok()) {
      std::cerr << "kiq-dev-kafka: --config: " << needed.status().message() << "\n";
      return 2;
    }
    for (const auto& topic : *needed) {
      const bool listed = std::any_of(topics.begin(), topics.end(),
                                      [&](const auto& t) { return t.first == topic.first; });
      if (!listed) topics.push_back(topic);  // --topics says otherwise: it wins
    }
  }

  // Block the stop signals before any thread starts, so that every thread inherits the mask and
  // main alone receives them through sigwait.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  auto kafka = kiq::DevKafka::Start(absl::GetFlag(FLAGS_brokers));
  if (!kafka.ok()) {
    std::cerr << "kiq-dev-kafka: " << kafka.status() << "\n";
    return 1;
  }
  for (const auto& [name, partitions] : topics) {
    if (absl::Status s = (*kafka)->CreateTopic(name, partitions); !s.ok()) {
      std::cerr << "kiq-dev-kafka: " << s << "\n";
      return 1;
    }
  }
  std::unique_ptr<kiq::DevKafkaControlServer> control;
  if (const int port = absl::GetFlag(FLAGS_control_port); port >= 0) {
    auto server = kiq::DevKafkaControlServer::Start(**kafka, port);
    if (!server.ok()) {
      std::cerr << "kiq-dev-kafka: " << server.status() << "\n";
      return 1;
    }
    control = std::move(*server);
    spdlog::info("control channel on 127.0.0.1:{}", control->port());
    if (const std::string path = absl::GetFlag(FLAGS_control_port_file);
        !path.empty() && !WriteFileAtomically(path, std::to_string(control->port()))) {
      std::cerr << "kiq-dev-kafka: cannot write " << path << "\n";
      return 1;
    }
  }
  const std::string bootstrap = (*kafka)->bootstrap_servers();
  if (const std::string path = absl::GetFlag(FLAGS_bootstrap_file);
      !path.empty() && !WriteFileAtomically(path, bootstrap)) {
    std::cerr << "kiq-dev-kafka: cannot write " << path << "\n";
    return 1;
  }
  std::cout << bootstrap << std::endl;
  int signal = 0;
  sigwait(&stop_signals, &signal);
  std::cerr << "kiq-dev-kafka: stopping\n";
  return 0;
}
