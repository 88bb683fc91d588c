#pragma once

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

struct rd_kafka_s;
struct rd_kafka_mock_cluster_s;

namespace kiq {

// A Kafka-protocol cluster for development and tests: librdkafka's mock cluster (several
// brokers on 127.0.0.1, real wire protocol, consumer groups, offset commits, topic
// auto-creation). It keeps only about the newest 5 MiB of each partition, has no log compaction
// and does not answer CreateTopics: topics are created here, by name and partition count.
// Nothing in kiq's Kafka code knows it is talking to it.
//
// Thread-safe (the mock cluster runs on its own threads). Stops when destroyed.
class DevKafka {
 public:
  static absl::StatusOr<std::unique_ptr<DevKafka>> Start(int num_brokers);
  ~DevKafka();
  DevKafka(const DevKafka&) = delete;
  DevKafka& operator=(const DevKafka&) = delete;

  // "127.0.0.1:port,127.0.0.1:port,..."
  std::string bootstrap_servers() const;

  absl::Status CreateTopic(const std::string& name, int partitions, int replication_factor = 1);

 private:
  DevKafka(rd_kafka_s* handle, rd_kafka_mock_cluster_s* cluster)
      : handle_(handle), cluster_(cluster) {}

  rd_kafka_s* handle_;                // owned: the client the mock cluster hangs off
  rd_kafka_mock_cluster_s* cluster_;  // owned
};

}  // namespace kiq
