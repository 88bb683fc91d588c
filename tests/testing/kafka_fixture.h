#pragma once

#include <algorithm>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "tests/testing/kafka_admin.h"
#include "tests/testing/kiq_processes.h"
#include "tests/testing/queries.h"
#include "tests/testing/status_matchers.h"

namespace kiq::testing {

// The topology file of examples/<example>.
inline std::string ExampleTopology(const std::string& example) {
  return std::string(kSourceDir) + "/examples/" + example + "/topology.yaml";
}

// The external Kafka cluster the integration tests run on, from the environment variable
// KIQ_TEST_BOOTSTRAP_SERVERS; empty (the usual case, and CI's) means a kiq-dev-kafka per test.
std::string ExternalBootstrapServers();

// The hermetic environment of a multi-process test: a fresh temp dir, a Kafka with the test's
// topics, a producer, and kiq-nodes started on it with their data in the dir.
//
// The Kafka is a kiq-dev-kafka process, or with KIQ_TEST_BOOTSTRAP_SERVERS the external
// cluster it names. There, topics exist only once created and their deletion is asynchronous,
// so each test gets its own: tests name topics by their plain names ("orders",
// "orders-demo-members") and Topic() says what they are called on the cluster. The fixture
// creates the test's topics, rewrites every topology it launches a node or router with
// (application id and source topics renamed), creates each application's members and dead-letter
// topics (which kiq leaves to auto-creation), and after a passing test deletes every topic of
// the test (a failing test's are kept, like its temp dir).
class KafkaFixture : public ::testing::Test {
 protected:
  KafkaFixture();
  // The derived fixture's members (node processes) are gone by now, stopped by PID. A passing
  // test's directory (RocksDB data dirs of ~150 MB each, with their preallocated WAL) is
  // removed; a failing test's is kept for its logs.
  ~KafkaFixture() override;

  // Call from SetUp (or first in the test); a failure is fatal for the test. `topics`: plain
  // name → partitions, sources and the internal topics kiq needs (changelogs, repartition
  // topics); on an external cluster those ending in -changelog are compacted, like kiq's own.
  void StartKafka(const std::string& name, const std::vector<std::pair<std::string, int>>& topics);

  // The name of the test's topic `plain` on the cluster in use: `plain` itself on a
  // kiq-dev-kafka; on an external cluster, unique to this run of this test: a source
  // ("orders") gets a suffix ("orders-<unique>"), and a topic of an application
  // ("orders-demo-members", "shop-spend-changelog") the application id's suffix
  // ("orders-demo-<unique>-members"), as kiq derives it from the renamed id. Applications are
  // those of examples/*/topology.yaml and of every topology launched so far. Positions,
  // change events and dead letters name topics this way. May be called from a test's producer
  // threads while nodes start: launching a topology again (or an example's) changes nothing
  // it reads.
  std::string Topic(const std::string& plain) const;
  // The application id a topology's `plain` id is renamed to (itself on a kiq-dev-kafka).
  std::string ApplicationId(const std::string& plain) const;

  bool external_kafka() const { return !unique_.empty(); }
  const std::string& bootstrap_servers() const { return kafka_->bootstrap_servers(); }

  // A kiq-node for `config` on this Kafka; node `node_id` keeps its data in
  // data-<node_id>, so starting it again restarts it on the same stores.
  absl::StatusOr<std::unique_ptr<NodeProcess>> LaunchNode(const std::string& config,
                                                          const std::string& node_id = "n1",
                                                          std::vector<std::string> extra_flags = {},
                                                          bool default_group_timeouts = false);
  // A kiq-router for `config` on this Kafka.
  absl::StatusOr<std::unique_ptr<NodeProcess>> LaunchRouter(
      const std::string& config, const std::vector<std::string>& extra_flags = {});

  // Replaces the Kafka by one whose topics are all empty, as after a topic was recreated or
  // retention passed: a new kiq-dev-kafka with the same topics, or on an external cluster the
  // test's topics deleted (waited for) and created again. Nodes must be stopped. Also replaces
  // producer_. A failure is fatal for the test.
  void RestartKafkaEmpty();

  // Produces one record to the test's topic `topic` (a plain name, see Topic()), timestamp 0:
  // now, and remembers in produced_ the next offset of its (Topic(topic), partition): the
  // position the stores must reach. A failure fails the test.
  TestProducer::Delivered ProduceAndTrack(const std::string& topic, const std::string& key,
                                          const std::optional<std::string>& value,
                                          int64_t timestamp_ms = 0);

  // Writes `text` to `name` in the test's directory; its path. A failure fails the test.
  std::string WriteFile(const std::string& name, const std::string& text) const;

  static std::string ExampleTopology(const std::string& example) {
    return std::string(kSourceDir) + "/examples/" + example + "/topology.yaml";
  }

  std::string dir_;
  std::unique_ptr<DevKafkaProcess> kafka_;
  std::unique_ptr<TestProducer> producer_;
  // (Topic(topic), partition) → next offset, of everything ProduceAndTrack produced.
  Positions produced_;

 private:
  // `config` with the application id and the source topics renamed (see Topic()), written
  // into dir_ once per file; the application's members and dead-letter topics are created
  // then. `config` itself on a kiq-dev-kafka.
  absl::StatusOr<std::string> TopologyFor(const std::string& config);
  // Creates `topics` (external cluster) and remembers them for deletion.
  absl::Status CreateTestTopics(const std::vector<TopicSpec>& topics);
  // Every topic of this test the cluster lists (those created here and any kiq created).
  std::vector<std::string> ListTestTopics() const;

  // "-<test name>-<pid><random>" on an external cluster; empty on a kiq-dev-kafka.
  std::string unique_;
  // Plain application ids known to Topic(), longest first.
  std::vector<std::string> application_ids_;
  // What StartKafka was given, for RestartKafkaEmpty.
  std::vector<std::pair<std::string, int>> plain_topics_;
  // Topics created on the external cluster, in creation order.
  std::vector<TopicSpec> created_;
  // Original topology path → rewritten path.
  std::map<std::string, std::string> topologies_;
};

}  // namespace kiq::testing
