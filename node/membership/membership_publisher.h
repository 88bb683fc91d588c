#pragma once

#include <memory>
#include <string>

#include <librdkafka/rdkafkacpp.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/kafka/client_config.h"
#include "common/log_limiter.h"
#include "common/security/cluster_secret.h"
#include "kiq/v1/membership.pb.h"

namespace kiq::node {

// Writes this node's advertisement to the membership topic `<app>-members`: MemberRecords keyed
// by node id (so that all of one node's records land in one partition, in order, and a
// compacted topic keeps the newest), and on clean shutdown a tombstone (null value) so that
// routers drop the node at once instead of waiting for its lease to run out.
//
// Records go with acks=all and one request in flight per broker, so a retried record cannot
// overtake a newer one (or the tombstone). Publish() is asynchronous and never blocks: a
// failed delivery is logged (rate-limited) and not retried beyond librdkafka's own retries,
// since the next periodic record replaces it anyway.
//
// With a cluster secret, every record and the tombstone carry an HMAC (security::
// kMemberMacHeader, over key, written-at time and value) that tailers check, so that only
// holders of the secret decide where queries go.
//
// Thread-safe (librdkafka producer). The destructor waits up to 2 s for outstanding records.
class MembershipPublisher {
 public:
  static absl::StatusOr<std::unique_ptr<MembershipPublisher>> Create(
      const KafkaClientConfig& kafka, const std::string& topic, const std::string& node_id,
      std::optional<security::ClusterSecret> secret = std::nullopt);
  ~MembershipPublisher();
  MembershipPublisher(const MembershipPublisher&) = delete;
  MembershipPublisher& operator=(const MembershipPublisher&) = delete;

  // Queues `record`, keyed by this publisher's node id. An empty record.node_id() is filled in;
  // another node's id is a caller bug and aborts.
  void Publish(const kiq::v1::MemberRecord& record);
  // Writes the tombstone and waits (up to `timeout`) until it is acknowledged. Records queued
  // before it are delivered first. DEADLINE_EXCEEDED if not acknowledged in time, else the
  // delivery error.
  absl::Status PublishTombstone(absl::Duration timeout);
  // Serves delivery reports; call regularly (e.g. from the advertisement loop).
  void Poll();

  const std::string& topic() const { return topic_; }
  const std::string& node_id() const { return node_id_; }

 private:
  class DeliveryReport;
  MembershipPublisher(std::unique_ptr<DeliveryReport> report,
                      std::unique_ptr<RdKafka::Producer> producer, std::string topic,
                      std::string node_id, std::optional<security::ClusterSecret> secret);
  // The MAC headers of a record (`value` null: the tombstone); null without a secret.
  // Ownership passes to librdkafka when produce() succeeds.
  std::unique_ptr<RdKafka::Headers> SignedHeaders(const std::optional<absl::string_view>& value) const;
  RdKafka::ErrorCode Produce(const void* value, size_t len, void* opaque);

  // Constant after construction.
  std::unique_ptr<DeliveryReport> report_;  // must outlive producer_
  std::unique_ptr<RdKafka::Producer> producer_;
  const std::string topic_;
  const std::string node_id_;
  const std::optional<security::ClusterSecret> secret_;

  LogLimiter produce_errors_{10};
};

}  // namespace kiq::node
