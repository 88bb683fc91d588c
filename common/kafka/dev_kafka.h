#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

struct rd_kafka_s;
struct rd_kafka_mock_cluster_s;

namespace kiq {

// A Kafka-protocol cluster for development and tests: librdkafka's mock cluster (several
// brokers on 127.0.0.1, real wire protocol, consumer groups, offset commits, topic
// auto-creation). It keeps only about the newest 5 MiB of each partition, has no log compaction
// and does not answer CreateTopics: topics are created here, by name and partition count.
// Nothing in kiq's Kafka code knows it is talking to it. Brokers can be taken down, brought
// back and slowed down, to test outages on it.
//
// Thread-safe (the mock cluster runs on its own threads). Stops when destroyed.
class DevKafka {
 public:
  // The broker id that means every broker, in the fault-injection calls below.
  static constexpr int32_t kAllBrokers = -1;

  static absl::StatusOr<std::unique_ptr<DevKafka>> Start(int num_brokers);
  ~DevKafka();
  DevKafka(const DevKafka&) = delete;
  DevKafka& operator=(const DevKafka&) = delete;

  // "127.0.0.1:port,127.0.0.1:port,..."
  std::string bootstrap_servers() const;
  // Brokers have the ids 1..num_brokers().
  int num_brokers() const { return num_brokers_; }

  absl::Status CreateTopic(const std::string& name, int partitions, int replication_factor = 1);

  // Broker `broker_id` (or kAllBrokers) closes its connections and refuses new ones, until
  // SetBrokerUp. Partition leadership does not move (as when a real broker is unreachable).
  absl::Status SetBrokerDown(int32_t broker_id);
  absl::Status SetBrokerUp(int32_t broker_id);
  // Delays every response of broker `broker_id` (or kAllBrokers) by `rtt`; zero removes it.
  absl::Status SetBrokerRtt(int32_t broker_id, absl::Duration rtt);
  // The next `count` Produce requests (to any broker, from any client) are answered with
  // Kafka error `error` for every partition they carry, as a broker that refuses a write
  // would (e.g. 29, TOPIC_AUTHORIZATION_FAILED: not retriable, so the delivery fails).
  absl::Status FailNextProduces(int count, int16_t error);

 private:
  DevKafka(rd_kafka_s* handle, rd_kafka_mock_cluster_s* cluster, int num_brokers)
      : handle_(handle), cluster_(cluster), num_brokers_(num_brokers) {}

  // OK for kAllBrokers and 1..num_brokers_; INVALID_ARGUMENT naming `broker_id` otherwise.
  absl::Status CheckBrokerId(int32_t broker_id) const;

  rd_kafka_s* handle_;                // owned: the client the mock cluster hangs off
  rd_kafka_mock_cluster_s* cluster_;  // owned
  const int num_brokers_;
};

}  // namespace kiq
