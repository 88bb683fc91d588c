#include "router/routing_table.h"

#include <algorithm>
#include <map>
#include <string>
#include <unordered_map>
#include <utility>

#include <google/protobuf/util/message_differencer.h>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace kiq::router {
namespace {

// One node's newest record, and how the metadata API shows it (converted once, not per query).
struct Member {
  kiq::v1::MemberRecord record;
  kiq::v1::NodeInfo info;
};

// A node's claim on a partition.
struct Claim {
  const Member* member;  // owned by the snapshot holding the claim
  kiq::v1::PartitionState state;
};

// Best claim first: higher generation, then newer record, then node id (so that a tie between
// two nodes is still decided the same way everywhere).
bool BetterClaim(const Claim& a, const Claim& b) {
  const kiq::v1::MemberRecord& x = a.member->record;
  const kiq::v1::MemberRecord& y = b.member->record;
  if (x.generation() != y.generation()) return x.generation() > y.generation();
  if (x.written_at_ms() != y.written_at_ms()) return x.written_at_ms() > y.written_at_ms();
  return x.node_id() < y.node_id();
}

}  // namespace

// Immutable once published. Members are shared between successive snapshots, so a new snapshot
// costs a copy of the node map and a rebuild of the (small) claim index.
struct RoutingTable::Snapshot {
  std::map<std::string, std::shared_ptr<const Member>, std::less<>> nodes;
  // partition → claims, best first; lookups take the first live one.
  std::unordered_map<int32_t, std::vector<Claim>> claims;
  // partition → the standby replicas advertised for it (STANDBY entries, never claims).
  std::unordered_map<int32_t, std::vector<std::pair<const Member*, int64_t>>> standbys;

  void IndexClaims() {
    claims.clear();
    standbys.clear();
    for (const auto& entry : nodes) {
      const Member* member = entry.second.get();
      for (const kiq::v1::OwnedPartition& owned : member->record.partitions()) {
        if (owned.state() == kiq::v1::PARTITION_STATE_STANDBY) {
          standbys[owned.partition()].emplace_back(member, owned.lag_records());
          continue;
        }
        std::vector<Claim>& list = claims[owned.partition()];
        // A record listing a partition twice claims it once.
        const bool seen = std::any_of(list.begin(), list.end(),
                                      [member](const Claim& c) { return c.member == member; });
        if (!seen) list.push_back(Claim{member, owned.state()});
      }
    }
    for (auto& [partition, list] : claims) std::sort(list.begin(), list.end(), BetterClaim);
  }
};

RoutingTable::RoutingTable(std::function<absl::Time()> clock)
    : clock_(std::move(clock)), current_(std::make_shared<const Snapshot>()) {}

RoutingTable::~RoutingTable() = default;

int64_t RoutingTable::NowMs() const {
  int64_t now = absl::ToUnixMillis(clock_());
  const int64_t alive = last_alive_ms_.load();
  if (alive >= 0) now = std::min(now, alive + absl::ToInt64Milliseconds(kFeedStale));
  return now - held_back_ms_.load();
}

bool RoutingTable::feed_down() const {
  const int64_t alive = last_alive_ms_.load();
  return alive >= 0 && absl::ToUnixMillis(clock_()) - alive > absl::ToInt64Milliseconds(kFeedStale);
}

void RoutingTable::NoteFeedAlive() {
  absl::MutexLock lock(&lease_mu_);
  const int64_t now = absl::ToUnixMillis(clock_());
  const int64_t stale = absl::ToInt64Milliseconds(kFeedStale);
  const int64_t alive = last_alive_ms_.load();
  if (alive >= 0 && now - alive > stale) {
    // Back after an outage: the lease time that passed unseen is held back.
    held_back_ms_.store(held_back_ms_.load() + (now - alive - stale));
    up_since_ms_ = now;
  } else if (held_back_ms_.load() > 0 &&
             now - up_since_ms_ >= absl::ToInt64Milliseconds(kLeaseCatchUp)) {
    held_back_ms_.store(0);
  }
  last_alive_ms_.store(now);
}

std::shared_ptr<const RoutingTable::Snapshot> RoutingTable::Current() const {
  absl::ReaderMutexLock lock(&mu_);
  return current_;
}

void RoutingTable::Install(std::shared_ptr<const Snapshot> next) {
  const absl::Time now = clock_();
  absl::MutexLock lock(&mu_);
  current_ = std::move(next);
  ++version_;
  changed_at_ = now;
}

absl::Time RoutingTable::changed_at() const {
  absl::MutexLock lock(&mu_);
  return changed_at_;
}

void RoutingTable::Apply(const kiq::v1::MemberRecord& record) {
  if (record.node_id().empty()) return;
  absl::MutexLock write_lock(&write_mu_);
  std::shared_ptr<const Snapshot> current = Current();
  auto it = current->nodes.find(record.node_id());
  if (it != current->nodes.end()) {
    const kiq::v1::MemberRecord& known = it->second->record;
    // Older than what we have: a late or replayed record must not undo a newer one.
    if (record.written_at_ms() < known.written_at_ms()) return;
    if (google::protobuf::util::MessageDifferencer::Equals(record, known)) return;
  }
  auto next = std::make_shared<Snapshot>();
  next->nodes = current->nodes;
  next->nodes[record.node_id()] =
      std::make_shared<const Member>(Member{record, ToNodeInfo(record)});
  next->IndexClaims();
  Install(std::move(next));
}

void RoutingTable::Remove(absl::string_view node_id, int64_t written_at_ms) {
  absl::MutexLock write_lock(&write_mu_);
  std::shared_ptr<const Snapshot> current = Current();
  auto it = current->nodes.find(node_id);
  if (it == current->nodes.end()) return;
  if (it->second->record.written_at_ms() > written_at_ms) return;
  auto next = std::make_shared<Snapshot>();
  next->nodes = current->nodes;
  next->nodes.erase(next->nodes.find(node_id));
  next->IndexClaims();
  Install(std::move(next));
}

std::optional<PartitionOwner> RoutingTable::OwnerOf(int32_t partition) const {
  std::shared_ptr<const Snapshot> snapshot = Current();
  auto it = snapshot->claims.find(partition);
  if (it == snapshot->claims.end()) return std::nullopt;
  const int64_t now_ms = NowMs();
  for (const Claim& claim : it->second) {
    if (claim.member->record.lease_expiry_ms() > now_ms) {
      return PartitionOwner{claim.member->info, claim.state};
    }
  }
  return std::nullopt;
}

absl::StatusOr<PartitionOwner> RoutingTable::ActiveOwner(int32_t partition,
                                                         absl::string_view self_node_id) const {
  std::optional<PartitionOwner> owner = OwnerOf(partition);
  if (!owner) {
    return absl::UnavailableError(absl::StrCat("no live node owns partition ", partition));
  }
  if (owner->node.node_id() == self_node_id) {
    return absl::UnavailableError(absl::StrCat(
        "the routing table still names this node as the owner of partition ", partition));
  }
  if (owner->state != kiq::v1::PARTITION_STATE_ACTIVE) {
    return absl::UnavailableError(absl::StrCat("partition ", partition, " is ",
                                               kiq::v1::PartitionState_Name(owner->state),
                                               " on node ", owner->node.node_id()));
  }
  return *owner;
}

std::vector<StandbyReplica> RoutingTable::Standbys(int32_t partition) const {
  std::shared_ptr<const Snapshot> snapshot = Current();
  std::vector<StandbyReplica> out;
  auto it = snapshot->standbys.find(partition);
  if (it == snapshot->standbys.end()) return out;
  const int64_t now_ms = NowMs();
  for (const auto& [member, lag] : it->second) {
    if (member->record.lease_expiry_ms() > now_ms) out.push_back(StandbyReplica{member->info, lag});
  }
  std::sort(out.begin(), out.end(), [](const StandbyReplica& a, const StandbyReplica& b) {
    if (a.lag_records != b.lag_records) return a.lag_records < b.lag_records;
    return a.node.node_id() < b.node.node_id();
  });
  return out;
}

std::vector<kiq::v1::NodeInfo> RoutingTable::AllNodes() const {
  std::shared_ptr<const Snapshot> snapshot = Current();
  const int64_t now_ms = NowMs();
  std::vector<kiq::v1::NodeInfo> nodes;
  for (const auto& [id, member] : snapshot->nodes) {
    if (member->record.lease_expiry_ms() > now_ms) nodes.push_back(member->info);
  }
  return nodes;
}

std::vector<kiq::v1::NodeInfo> RoutingTable::NodesForStore(absl::string_view store) const {
  std::shared_ptr<const Snapshot> snapshot = Current();
  const int64_t now_ms = NowMs();
  std::vector<kiq::v1::NodeInfo> nodes;
  for (const auto& [id, member] : snapshot->nodes) {
    if (member->record.lease_expiry_ms() <= now_ms) continue;
    const auto& stores = member->record.stores();
    if (std::find(stores.begin(), stores.end(), store) != stores.end()) {
      nodes.push_back(member->info);
    }
  }
  return nodes;
}

std::optional<kiq::v1::NodeInfo> RoutingTable::Node(absl::string_view node_id) const {
  std::shared_ptr<const Snapshot> snapshot = Current();
  auto it = snapshot->nodes.find(node_id);
  if (it == snapshot->nodes.end()) return std::nullopt;
  if (it->second->record.lease_expiry_ms() <= NowMs()) return std::nullopt;
  return it->second->info;
}

uint64_t RoutingTable::version() const {
  absl::ReaderMutexLock lock(&mu_);
  return version_;
}

bool RoutingTable::WaitForChange(uint64_t seen, absl::Time deadline) const {
  struct Args {
    const RoutingTable* table;
    uint64_t seen;
  } args{this, seen};
  auto changed = [](Args* a)
                     ABSL_NO_THREAD_SAFETY_ANALYSIS { return a->table->version_ > a->seen; };
  absl::MutexLock lock(&mu_);
  return mu_.AwaitWithDeadline(absl::Condition(+changed, &args), deadline);
}

kiq::v1::NodeInfo ToNodeInfo(const kiq::v1::MemberRecord& record) {
  kiq::v1::NodeInfo info;
  info.set_node_id(record.node_id());
  const absl::string_view endpoint = record.grpc_endpoint();
  absl::string_view host = endpoint;
  absl::string_view port_text;
  if (absl::StartsWith(endpoint, "[")) {  // [v6 address]:port
    const size_t close = endpoint.find(']');
    if (close != absl::string_view::npos) {
      host = endpoint.substr(1, close - 1);
      absl::string_view rest = endpoint.substr(close + 1);
      if (absl::ConsumePrefix(&rest, ":")) port_text = rest;
    }
  } else if (const size_t colon = endpoint.rfind(':');
             colon != absl::string_view::npos && endpoint.find(':') == colon) {
    host = endpoint.substr(0, colon);
    port_text = endpoint.substr(colon + 1);
  }
  int32_t port = 0;
  if (!absl::SimpleAtoi(port_text, &port) || port < 0 || port > 65535) port = 0;
  info.set_host(std::string(host));
  info.set_port(port);
  info.set_http_endpoint(record.http_endpoint());
  *info.mutable_stores() = record.stores();
  *info.mutable_partitions() = record.partitions();
  info.set_generation(record.generation());
  info.set_lease_expiry_ms(record.lease_expiry_ms());
  return info;
}

}  // namespace kiq::router
