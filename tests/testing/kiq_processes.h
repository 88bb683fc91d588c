#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <librdkafka/rdkafkacpp.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "tests/testing/process.h"

namespace kiq::testing {

// The real binaries, built by CMake next to the tests.
inline constexpr char kNodeBin[] = KIQ_NODE_BIN;
inline constexpr char kDevKafkaBin[] = KIQ_DEV_KAFKA_BIN;
inline constexpr char kCtlBin[] = KIQ_CTL_BIN;
inline constexpr char kRouterBin[] = KIQ_ROUTER_BIN;
inline constexpr char kSourceDir[] = KIQ_SOURCE_DIR;

// The topics of examples/orders/topology.yaml with `partitions` each, including the changelog
// kiq needs (the dev Kafka cannot create topics on request).
std::vector<std::pair<std::string, int>> OrdersDemoTopics(int partitions);

// The Kafka a test runs on: a kiq-dev-kafka process (librdkafka's mock cluster) with its
// topics created and its fault-injection control channel, or an external cluster named by
// KIQ_TEST_BOOTSTRAP_SERVERS (see External()). Not thread-safe.
class DevKafkaProcess {
 public:
  // topics: name → partitions; `extra_args`: more kiq-dev-kafka flags (e.g. --config).
  static absl::StatusOr<std::unique_ptr<DevKafkaProcess>> Start(
      const std::string& dir, const std::vector<std::pair<std::string, int>>& topics,
      const std::vector<std::string>& extra_args = {});
  // A cluster the harness does not run: no process, and no fault injection (the control
  // methods below return UNIMPLEMENTED).
  static std::unique_ptr<DevKafkaProcess> External(std::string bootstrap_servers);

  const std::string& bootstrap_servers() const { return bootstrap_; }
  bool external() const { return process_ == nullptr; }
  // The kiq-dev-kafka process; not for an external cluster.
  Process& process();

  // Fault injection through kiq-dev-kafka's control channel. Brokers have the ids 1..3.
  // Down: every connection is closed and new ones are refused; leadership does not move.
  absl::Status BrokersDown() { return Control("down all"); }
  absl::Status BrokersUp() { return Control("up all"); }
  // What CreateTopics does on a real broker (the mock cluster lacks that request).
  absl::Status CreateTopic(const std::string& topic, int partitions) {
    return Control(absl::StrCat("create ", topic, " ", partitions));
  }
  absl::Status BrokerDown(int broker_id) { return Control(absl::StrCat("down ", broker_id)); }
  absl::Status BrokerUp(int broker_id) { return Control(absl::StrCat("up ", broker_id)); }
  // Delays every broker response by `rtt` (zero: no delay).
  absl::Status SetRtt(absl::Duration rtt) {
    return Control(absl::StrCat("rtt all ", absl::ToInt64Milliseconds(rtt)));
  }

 private:
  // Sends one control line and reads its answer: OK for "ok", FAILED_PRECONDITION with the
  // reason for "error <reason>".
  absl::Status Control(const std::string& command);

  std::unique_ptr<Process> process_;  // null for an external cluster
  std::string bootstrap_;
  int control_port_ = 0;
};

// A kiq-node process on 127.0.0.1 with a port picked by the OS (read back from --port-file).
class NodeProcess {
 public:
  struct Options {
    std::string config;
    std::string bootstrap_servers;
    std::string node_id = "n1";
    std::string data_dir;
    std::vector<std::string> extra_flags;
    // kiq-node's own session and heartbeat timeouts instead of the tests' shorter ones.
    bool default_group_timeouts = false;
  };
  static absl::StatusOr<std::unique_ptr<NodeProcess>> Start(const std::string& dir,
                                                            Options options);
  // A kiq-router process (no stores) for the same topology; `extra_flags` after the others.
  static absl::StatusOr<std::unique_ptr<NodeProcess>> StartRouter(
      const std::string& dir, const std::string& config, const std::string& bootstrap_servers,
      const std::vector<std::string>& extra_flags = {});
  int grpc_port() const { return grpc_port_; }
  int http_port() const { return http_port_; }
  // The admin port (/healthz, /readyz, /metrics); 0 if the process has none.
  int admin_port() const { return admin_port_; }
  std::string target() const { return "127.0.0.1:" + std::to_string(grpc_port_); }
  Process& process() { return *process_; }

 private:
  // Starts `argv` (which must include --port-file=<port_file>) and waits for the port.
  static absl::StatusOr<std::unique_ptr<NodeProcess>> Launch(std::vector<std::string> argv,
                                                             const std::string& port_file,
                                                             const std::string& log_path);
  std::unique_ptr<Process> process_;
  int grpc_port_ = 0;
  int http_port_ = 0;
  int admin_port_ = 0;
};

// Produces test records the way Java clients do (murmur2 partitioner) and reports where
// each landed. Not thread-safe.
class TestProducer {
 public:
  struct Delivered {
    int32_t partition = -1;
    int64_t offset = -1;
  };
  // `properties`: extra librdkafka settings (e.g. message.timeout.ms).
  static absl::StatusOr<std::unique_ptr<TestProducer>> Create(
      const std::string& bootstrap_servers, const std::string& partitioner = "murmur2_random",
      const std::vector<std::pair<std::string, std::string>>& properties = {});
  // A nullopt value produces a tombstone (Kafka null). `timestamp_ms` is the record's
  // CreateTime; 0 means now. Waits up to 10 s for the delivery report (an undelivered record
  // is purged then: UNAVAILABLE).
  absl::StatusOr<Delivered> Produce(const std::string& topic, const std::string& key,
                                    const std::optional<std::string>& value,
                                    int64_t timestamp_ms = 0);
  // A record with a null key (a random partition, as Java's producer picks for null keys).
  absl::StatusOr<Delivered> ProduceNullKey(const std::string& topic, const std::string& value);
  // Produce with record headers (e.g. to imitate kiq's own internal records).
  absl::StatusOr<Delivered> ProduceWithHeaders(
      const std::string& topic, const std::string& key, const std::string& value,
      const std::vector<std::pair<std::string, std::string>>& headers);
  // Produces without waiting; Flush() waits for all.
  absl::Status ProduceAsync(const std::string& topic, const std::string& key,
                            const std::optional<std::string>& value);
  absl::Status Flush();

 private:
  // Waits for the delivery report that fills `result` (the produce call's opaque).
  absl::StatusOr<Delivered> AwaitDelivery(std::pair<Delivered, RdKafka::ErrorCode>& result);

  std::unique_ptr<RdKafka::Producer> producer_;
};

// Reads every record of `topic` from the start until `count` were read or `timeout` passes,
// with partitions assigned (no consumer group); a topic that does not exist yet is waited for.
struct ConsumedRecord {
  std::string key;
  std::optional<std::string> value;
  int32_t partition;
  int64_t offset;
  std::vector<std::pair<std::string, std::string>> headers;
};
std::vector<ConsumedRecord> ConsumeAll(const std::string& bootstrap_servers,
                                       const std::string& topic, size_t count,
                                       absl::Duration timeout);
// The same until `done` says the records read so far are enough.
std::vector<ConsumedRecord> ConsumeUntil(
    const std::string& bootstrap_servers, const std::string& topic,
    const std::function<bool(const std::vector<ConsumedRecord>&)>& done, absl::Duration timeout);

// Dead letters are produced at least once (a partition's new owner dead-letters again what its
// previous owner did after the last changelog record of that store): "<store> <topic>/<partition>
// @<offset>" from a letter's headers names the bad record it is for.
std::string DeadLetterIdentity(const ConsumedRecord& letter);
// The letters of a dead-letter topic grouped by identity, read until `distinct` identities were
// seen (every copy of each read so far is kept) or `timeout` passes.
std::map<std::string, std::vector<ConsumedRecord>> ConsumeDeadLetters(
    const std::string& bootstrap_servers, const std::string& topic, size_t distinct,
    absl::Duration timeout);

}  // namespace kiq::testing
