#pragma once

#include <algorithm>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "tests/testing/kiq_processes.h"
#include "tests/testing/queries.h"
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
  // The derived fixture's members (node processes) are gone by now, stopped by PID. A passing
  // test's directory (RocksDB data dirs of ~150 MB each, with their preallocated WAL) is
  // removed; a failing test's is kept for its logs.
  ~KafkaFixture() override {
    if (!dir_.empty() && !HasFailure()) {
      std::error_code ignored;
      std::filesystem::remove_all(dir_, ignored);
    }
  }

  // Call from SetUp; a failure is fatal for the test.
  void StartKafka(const std::string& name, const std::vector<std::pair<std::string, int>>& topics) {
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
  absl::StatusOr<std::unique_ptr<NodeProcess>> LaunchNode(
      const std::string& config, const std::string& node_id = "n1",
      std::vector<std::string> extra_flags = {}) {
    NodeProcess::Options options;
    options.config = config;
    options.bootstrap_servers = kafka_->bootstrap_servers();
    options.node_id = node_id;
    options.data_dir = dir_ + "/data-" + node_id;
    options.extra_flags = std::move(extra_flags);
    return NodeProcess::Start(dir_, std::move(options));
  }

  // Produces one record (timestamp 0: now) and remembers in produced_ the next offset of its
  // (topic, partition): the position the stores must reach. A failure fails the test.
  TestProducer::Delivered ProduceAndTrack(const std::string& topic, const std::string& key,
                                          const std::optional<std::string>& value,
                                          int64_t timestamp_ms = 0) {
    auto delivered = producer_->Produce(topic, key, value, timestamp_ms);
    if (!delivered.ok()) {
      ADD_FAILURE() << "produce to " << topic << ": " << delivered.status();
      return {};
    }
    int64_t& next = produced_[{topic, delivered->partition}];
    next = std::max(next, delivered->offset + 1);
    return *delivered;
  }

  static std::string ExampleTopology(const std::string& example) {
    return std::string(kSourceDir) + "/examples/" + example + "/topology.yaml";
  }

  std::string dir_;
  std::unique_ptr<DevKafkaProcess> kafka_;
  std::unique_ptr<TestProducer> producer_;
  // (topic, partition) → next offset, of everything ProduceAndTrack produced.
  Positions produced_;
};

}  // namespace kiq::testing
