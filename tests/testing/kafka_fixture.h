#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "tests/testing/kiq_processes.h"
#include "tests/testing/status_matchers.h"

namespace kiq::testing {

// The topology file of examples/<example>.
inline std::string ExampleTopology(const std::string& example) {
  return std::string(kSourceDir) + "/examples/" + example + "/topology.yaml";
}

// The hermetic environment of a multi-process test: a fresh temp dir, a
// kiq-dev-kafka process with the test's topics, a producer, and kiq-nodes
// started on it with their data in the dir.
class KafkaFixture : public ::testing::Test {
protected:
  // Call from SetUp; a failure is fatal for the test.
  void StartKafka(const std::string &name,
                  const std::vector<std::pair<std::string, int>> &topics) {
    dir_ = MakeTempDir(name);
    auto kafka = DevKafkaProcess::Start(dir_, topics);
    ASSERT_OK(kafka);
    kafka_ = std::move(*kafka);
    auto producer = TestProducer::Create(kafka_->bootstrap_servers());
    ASSERT_OK(producer);
    producer_ = std::move(*producer);
  }

  // A kiq-node for `config` on this Kafka; node `node_id` keeps its data in
  // data-<node_id>, so starting it again restarts it on the same stores.
  absl::StatusOr<std::unique_ptr<NodeProcess>>
  LaunchNode(const std::string &config, const std::string &node_id = "n1",
             std::vector<std::string> extra_flags = {}) {
    NodeProcess::Options options;
    options.config = config;
    options.bootstrap_servers = kafka_->bootstrap_servers();
    options.node_id = node_id;
    options.data_dir = dir_ + "/data-" + node_id;
    options.extra_flags = std::move(extra_flags);
    return NodeProcess::Start(dir_, std::move(options));
  }

  static std::string ExampleTopology(const std::string &example) {
    return std::string(kSourceDir) + "/examples/" + example + "/topology.yaml";
  }

  std::string dir_;
  std::unique_ptr<DevKafkaProcess> kafka_;
  std::unique_ptr<TestProducer> producer_;
};

} // namespace kiq::testing
