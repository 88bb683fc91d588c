// Members records under a cluster secret: the tailer's decoder applies only records and
// tombstones whose MAC matches, and says why it skips the others (unsigned, bad MAC); a signed
// tombstone carries its time, so that a replayed old one cannot remove a node that renewed
// since, and a replayed old record, however high its generation, cannot displace a live owner
// (its lease has run out).
#include <atomic>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/time/time.h"
#include "common/security/cluster_secret.h"
#include "common/security/crypto.h"
#include "router/membership_tailer.h"
#include "router/routing_table.h"

namespace kiq::router {
namespace {

constexpr int64_t kStartMs = 1'700'000'000'000;
constexpr int64_t kLeaseMs = 10'000;

security::ClusterSecret Secret(absl::string_view text) {
  absl::StatusOr<security::ClusterSecret> secret = security::ClusterSecret::FromText(text, "test");
  EXPECT_TRUE(secret.ok()) << secret.status();
  return *secret;
}

kiq::v1::MemberRecord Record(const std::string& node_id, int32_t generation, int32_t partition,
                             int64_t written_at_ms, const std::string& host = "") {
  kiq::v1::MemberRecord r;
  r.set_node_id(node_id);
  r.set_grpc_endpoint(host.empty() ? node_id + ".local:7070" : host);
  kiq::v1::OwnedPartition* owned = r.add_partitions();
  owned->set_partition(partition);
  owned->set_state(kiq::v1::PARTITION_STATE_ACTIVE);
  r.set_generation(generation);
  r.set_written_at_ms(written_at_ms);
  r.set_lease_expiry_ms(written_at_ms + kLeaseMs);
  return r;
}

// The headers MembershipPublisher writes for `value` (nullopt: a tombstone) at `at_ms`.
MemberAuth Signed(const security::ClusterSecret& signer, const security::ClusterSecret& checker,
                  const std::string& key, const std::optional<std::string>& value, int64_t at_ms) {
  MemberAuth auth;
  auth.secret = &checker;
  std::optional<absl::string_view> v;
  if (value) v = absl::string_view(*value);
  auth.mac = security::ToHex(signer.MemberMac(key, at_ms, v));
  auth.written_at = std::to_string(at_ms);
  return auth;
}

MemberUpdate Decode(const std::string& key, const std::optional<std::string>& value,
                    const MemberAuth* auth) {
  return DecodeMemberRecord(&key, value ? value->data() : nullptr, value ? value->size() : 0,
                            auth);
}

TEST(MemberAuthTest, SignedRecordsAndTombstonesAreApplied) {
  const security::ClusterSecret secret = Secret("the-cluster-secret-1");
  const std::string value = Record("n1", 3, 0, kStartMs).SerializeAsString();
  MemberAuth auth = Signed(secret, secret, "n1", value, kStartMs);
  MemberUpdate update = Decode("n1", value, &auth);
  EXPECT_EQ(update.kind, MemberUpdate::Kind::kApply) << update.why;
  EXPECT_EQ(update.record.generation(), 3);

  auth = Signed(secret, secret, "n1", std::nullopt, kStartMs + 5);
  update = Decode("n1", std::nullopt, &auth);
  EXPECT_EQ(update.kind, MemberUpdate::Kind::kRemove) << update.why;
  EXPECT_EQ(update.node_id, "n1");
  EXPECT_EQ(update.written_at_ms, kStartMs + 5);
}

TEST(MemberAuthTest, UnsignedAndForgedRecordsAndTombstonesAreRejected) {
  const security::ClusterSecret secret = Secret("the-cluster-secret-1");
  const security::ClusterSecret wrong = Secret("not-the-cluster-secret");
  // The forgery of the issue: well-formed, a higher generation, pointing at 127.0.0.1:1.
  const std::string forged = Record("n2", 99, 0, kStartMs, "127.0.0.1:1").SerializeAsString();

  MemberAuth unsigned_auth;
  unsigned_auth.secret = &secret;
  MemberUpdate update = Decode("n2", forged, &unsigned_auth);
  EXPECT_EQ(update.kind, MemberUpdate::Kind::kSkip);
  EXPECT_EQ(update.rejected, MemberUpdate::Rejected::kUnsigned);
  update = Decode("n2", std::nullopt, &unsigned_auth);
  EXPECT_EQ(update.kind, MemberUpdate::Kind::kSkip);
  EXPECT_EQ(update.rejected, MemberUpdate::Rejected::kUnsigned);

  MemberAuth other = Signed(wrong, secret, "n2", forged, kStartMs);
  update = Decode("n2", forged, &other);
  EXPECT_EQ(update.kind, MemberUpdate::Kind::kSkip);
  EXPECT_EQ(update.rejected, MemberUpdate::Rejected::kBadMac);
  other = Signed(wrong, secret, "n2", std::nullopt, kStartMs);
  update = Decode("n2", std::nullopt, &other);
  EXPECT_EQ(update.kind, MemberUpdate::Kind::kSkip);
  EXPECT_EQ(update.rejected, MemberUpdate::Rejected::kBadMac);

  // A genuine MAC moved onto another value, key or time.
  const std::string genuine = Record("n2", 4, 0, kStartMs).SerializeAsString();
  MemberAuth moved = Signed(secret, secret, "n2", genuine, kStartMs);
  EXPECT_EQ(Decode("n2", forged, &moved).rejected, MemberUpdate::Rejected::kBadMac);
  EXPECT_EQ(Decode("n3", genuine, &moved).rejected, MemberUpdate::Rejected::kBadMac);
  moved.written_at = std::to_string(kStartMs + 1);
  EXPECT_EQ(Decode("n2", genuine, &moved).rejected, MemberUpdate::Rejected::kBadMac);
  // A tombstone's MAC does not pass for a record, nor the reverse.
  MemberAuth tomb = Signed(secret, secret, "n2", std::nullopt, kStartMs);
  EXPECT_EQ(Decode("n2", genuine, &tomb).rejected, MemberUpdate::Rejected::kBadMac);
  MemberAuth rec = Signed(secret, secret, "n2", genuine, kStartMs);
  EXPECT_EQ(Decode("n2", std::nullopt, &rec).rejected, MemberUpdate::Rejected::kBadMac);
}

TEST(MemberAuthTest, WithoutASecretNothingIsChecked) {
  const std::string value = Record("n1", 3, 0, kStartMs).SerializeAsString();
  EXPECT_EQ(Decode("n1", value, nullptr).kind, MemberUpdate::Kind::kApply);
  MemberUpdate update = Decode("n1", std::nullopt, nullptr);
  EXPECT_EQ(update.kind, MemberUpdate::Kind::kRemove);
  EXPECT_EQ(update.written_at_ms, std::numeric_limits<int64_t>::max());
}

class ReplayTest : public ::testing::Test {
 protected:
  std::string OwnerId(int32_t partition) {
    std::optional<PartitionOwner> owner = table_.OwnerOf(partition);
    return owner ? owner->node.node_id() : "<none>";
  }
  std::atomic<int64_t> now_ms_{kStartMs};
  RoutingTable table_{[this] { return absl::FromUnixMillis(now_ms_.load()); }};
};

TEST_F(ReplayTest, AReplayedOldTombstoneDoesNotRemoveANodeThatRenewedSince) {
  table_.Apply(Record("n1", 1, 0, kStartMs));
  table_.Remove("n1", kStartMs + 100);  // it left
  EXPECT_EQ(OwnerId(0), "<none>");
  now_ms_ += 1000;
  table_.Apply(Record("n1", 2, 0, now_ms_));  // it came back
  table_.Remove("n1", kStartMs + 100);        // the old tombstone, replayed
  EXPECT_EQ(OwnerId(0), "n1");
  table_.Remove("n1", now_ms_ + 1);  // a new one does remove it
  EXPECT_EQ(OwnerId(0), "<none>");
}

TEST_F(ReplayTest, AReplayedOldRecordWithAHigherGenerationCannotDisplaceALiveOwner) {
  // n2 owned partition 0 at generation 9 long ago; n1 owns it now at generation 3 (a group
  // recreated, say). The old genuine record of n2 is replayed.
  const kiq::v1::MemberRecord old = Record("n2", 9, 0, kStartMs);
  now_ms_ += 5 * kLeaseMs;
  table_.Apply(Record("n1", 3, 0, now_ms_));
  table_.Apply(old);
  EXPECT_EQ(OwnerId(0), "n1");
  // Replayed while n2 is alive with a newer record: older than what is known, dropped.
  table_.Apply(Record("n2", 10, 1, now_ms_));
  table_.Apply(old);
  EXPECT_EQ(OwnerId(1), "n2");
  EXPECT_EQ(OwnerId(0), "n1");
}

}  // namespace
}  // namespace kiq::router
