#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <thread>

#include <librdkafka/rdkafkacpp.h>
#include <prometheus/counter.h>
#include <prometheus/registry.h>

#include "absl/status/statusor.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "common/kafka/client_config.h"
#include "common/log_limiter.h"
#include "common/security/cluster_secret.h"
#include "kiq/v1/membership.pb.h"
#include "router/routing_table.h"

namespace kiq::router {

// What one record of the members topic does to the routing table: a MemberRecord to apply, a
// node to remove (a tombstone), or nothing, with why (a record kiq did not write). Pure; the
// tailer's one decoder of untrusted bytes.
struct MemberUpdate {
  enum class Kind { kApply, kRemove, kSkip };
  // Why a record was refused by its MAC (kSkip): a forgery, or a writer without the secret.
  enum class Rejected { kNo, kUnsigned, kBadMac };
  Kind kind = Kind::kSkip;
  kiq::v1::MemberRecord record;  // kApply
  std::string node_id;           // kRemove
  // kRemove: when the tombstone was signed (max if unsigned: removes whatever is known).
  int64_t written_at_ms = std::numeric_limits<int64_t>::max();
  std::string why;               // kSkip
  Rejected rejected = Rejected::kNo;
};
// The authentication headers of one record (nullopt: absent), checked against `secret`.
struct MemberAuth {
  const security::ClusterSecret* secret = nullptr;
  std::optional<std::string> mac;
  std::optional<std::string> written_at;
};
// `key` is nullptr for a null key, `value` nullptr for a null value (a tombstone). With
// `auth` (a cluster secret is configured), a record or tombstone whose MAC is missing or wrong
// is skipped as rejected, before its value is even parsed.
MemberUpdate DecodeMemberRecord(const std::string* key, const void* value, size_t value_len,
                                const MemberAuth* auth = nullptr);

// Tails the membership topic `<app>-members` into a RoutingTable, on its own thread.
//
// Every node and router reads the whole topic from the beginning and keeps reading: it is a
// log of advertisements, not a work queue, so the consumer joins no group (it assign()s every
// partition itself, from its low watermark; group.id is set only because librdkafka's KafkaConsumer
// requires one, to a random "<topic>-tailer-<hex>", and nothing is committed). A record's value is
// a kiq.v1.MemberRecord keyed by node id; a null value is the node's tombstone. A record that does
// not parse, or whose key is not its node id, is skipped with a rate-limited warning.
//
// The topic may not exist yet (the first node creates it by publishing): metadata is retried
// every ~500 ms until it does. Partitions added to the topic later are not picked up.
//
// With a cluster secret, only records and tombstones signed with it (security::kMemberMacHeader)
// are applied; the others are counted in kiq_member_records_rejected_total{reason="unsigned|
// bad_mac"} (registered in `registry`, optional) and logged rate-limited with their partition
// and offset.
//
// Thread-safety: Start/destruction from one thread; CaughtUp() from any. `table` must outlive
// the tailer. The destructor stops and joins the thread.
class MembershipTailer {
 public:
  static absl::StatusOr<std::unique_ptr<MembershipTailer>> Start(
      const KafkaClientConfig& kafka, const std::string& topic, RoutingTable& table,
      std::optional<security::ClusterSecret> secret = std::nullopt,
      prometheus::Registry* registry = nullptr);
  ~MembershipTailer();
  MembershipTailer(const MembershipTailer&) = delete;
  MembershipTailer& operator=(const MembershipTailer&) = delete;

  // True once the table holds every record that was in the topic when it was first found (the
  // high watermarks read just before assigning): until then, the table may still be missing
  // nodes, or hold records that later ones replace. False while the topic does not exist.
  bool CaughtUp() const { return caught_up_.load(std::memory_order_acquire); }
  // Whether a broker answered the tailer within RoutingTable::kFeedStale (it asks every second).
  bool connected() const;

  const std::string& topic() const { return topic_; }

 private:
  MembershipTailer(std::unique_ptr<RdKafka::KafkaConsumer> consumer, std::string topic,
                   RoutingTable& table);

  void Run();
  // Finds the topic, reads its high watermarks and assigns every partition from the beginning.
  // False (to retry later) if the topic does not exist yet or the brokers cannot say.
  bool TryAssign();
  void Handle(RdKafka::Message& message);
  void Skip(const RdKafka::Message& message, absl::string_view why);
  // A record refused by its MAC: counted, and logged rate-limited.
  void Reject(const RdKafka::Message& message, const MemberUpdate& update);
  void NoteConsumed(int32_t partition, int64_t offset);
  // Asks a broker for the topic's end: tells the routing table whether its feed is up.
  void CheckFeed();

  // Constant after construction.
  const std::string topic_;
  RoutingTable& table_;
  std::optional<security::ClusterSecret> secret_;
  prometheus::Counter* rejected_unsigned_ = nullptr;  // null without a registry
  prometheus::Counter* rejected_bad_mac_ = nullptr;
  LogLimiter rejected_log_{6};
  std::unique_ptr<RdKafka::KafkaConsumer> consumer_;

  // Owned by the tailing thread.
  bool assigned_ = false;
  // partition → high watermark still to reach before CaughtUp(); emptied as they are reached.
  std::map<int32_t, int64_t> catch_up_;
  int64_t skipped_since_warning_ = 0;
  absl::Time last_warning_ = absl::InfinitePast();

  std::atomic<bool> caught_up_{false};
  absl::Time next_feed_check_ = absl::InfinitePast();  // tailer thread only
  LogLimiter feed_log_{2};
  LogLimiter consume_log_{6};
  absl::Notification stop_;
  std::thread thread_;  // last: started once everything above is set
};

}  // namespace kiq::router
