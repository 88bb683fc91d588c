// Subscribe fan-in across a cluster (README "Subscribe"): a subscription through any node or
// through kiq-router streams every partition of the store, fanned in from every owner, and
// follows partitions when they move (a node joins, a node stops with SIGTERM) without gap or
// duplicate; after kill -9 of an owner it either still continues exactly or ends with ABORTED
// naming the partition, never skipping silently. Partitions without an owner are waited for;
// NOT_FOUND and the overflow policies are unchanged through fan-in. Windowed stores stream their
// windows under the user's key.
//
// The core check is a per-key chain: key k<i> is given the values "<i>:1", "<i>:2", ... in
// this order, so from a stream each key's snapshot value followed by its CHANGE values must be
// exactly a contiguous run of that sequence (a missing value is a gap, a repeated one a
// duplicate), each change naming the partition and offset where its record landed.
#include <signal.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <regex>
#include <set>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "kiq/v1/query.grpc.pb.h"
#include "tests/testing/kafka_fixture.h"
#include "tests/testing/kiq_processes.h"
#include "tests/testing/process.h"
#include "tests/testing/queries.h"
#include "tests/testing/status_matchers.h"

namespace kiq::testing {
namespace {

using kiq::v1::SubscribeRequest;
using kiq::v1::SubscribeResponse;
using ::testing::HasSubstr;

constexpr int kPartitions = 6;
constexpr char kStore[] = "customers";
constexpr char kTopic[] = "customers";  // its plain name (see KafkaFixture::Topic)

// One produced value of a key's chain and where its record landed.
struct Link {
  std::string value;
  int32_t partition = -1;
  int64_t offset = -1;
};
using Produced = std::map<std::string, std::vector<Link>>;

// What a subscription delivered, checked against what was produced.
struct ChainReport {
  // Empty when every key's chain holds.
  std::vector<std::string> problems;
  // Key → last delivered value (snapshot or change).
  std::map<std::string, std::string> last;
  std::set<int32_t> change_partitions;
  int snapshots = 0;
  int changes = 0;
  bool snapshot_ended = false;
};

// The chain check. `events` are one subscription's, in arrival order; `produced` holds every
// key's values in production order (values are unique per key). Per key the snapshot value (if
// any) and then each CHANGE must be exactly the next produced value: nothing missing (gap),
// nothing repeated (duplicate); old_value, when present, is the previously delivered value; the
// partition and offset are those of the record. With `every_record` (an `all` subscription to a
// topic where every record makes a change), a partition's change offsets are also consecutive
// after its first change. `matches` says which keys the subscription may deliver; `topic` is
// the name changes must carry.
ChainReport CheckChains(const std::vector<SubscribeResponse>& events, const Produced& produced,
                        bool from_snapshot, bool every_record,
                        const std::function<bool(const std::string&)>& matches,
                        const std::string& topic = kTopic) {
  ChainReport report;
  auto problem = [&](std::string text) {
    if (report.problems.size() < 20) report.problems.push_back(std::move(text));
  };
  std::map<std::string, int> position;  // key → index of its last delivered value
  std::map<int32_t, int64_t> last_offset;
  for (size_t n = 0; n < events.size(); ++n) {
    const SubscribeResponse& e = events[n];
    const std::string& key = e.entry().key();
    const std::string where = absl::StrCat("event ", n, " (", key, "=", e.entry().value(), ")");
    if (e.type() == SubscribeResponse::SNAPSHOT_END) {
      if (!from_snapshot) problem(absl::StrCat(where, ": SNAPSHOT_END without a snapshot"));
      if (report.snapshot_ended) problem(absl::StrCat(where, ": a second SNAPSHOT_END"));
      report.snapshot_ended = true;
      continue;
    }
    if (!matches(key)) {
      problem(absl::StrCat(where, ": key not matched by the subscription"));
      continue;
    }
    auto chain = produced.find(key);
    if (chain == produced.end()) {
      problem(absl::StrCat(where, ": key never produced"));
      continue;
    }
    const std::vector<Link>& links = chain->second;
    int index = -1;
    for (size_t i = 0; i < links.size(); ++i) {
      if (links[i].value == e.entry().value()) index = static_cast<int>(i);
    }
    if (e.type() == SubscribeResponse::SNAPSHOT) {
      ++report.snapshots;
      if (!from_snapshot || report.snapshot_ended) {
        problem(absl::StrCat(where, ": SNAPSHOT outside the initial snapshot"));
      }
      if (position.count(key) != 0) problem(absl::StrCat(where, ": key twice in the snapshot"));
      if (index < 0) problem(absl::StrCat(where, ": snapshot value never produced"));
      position[key] = index;
      report.last[key] = e.entry().value();
      continue;
    }
    if (e.type() != SubscribeResponse::CHANGE) {
      problem(absl::StrCat(where, ": unexpected type ", e.type()));
      continue;
    }
    ++report.changes;
    if (from_snapshot && !report.snapshot_ended) {
      problem(absl::StrCat(where, ": CHANGE before SNAPSHOT_END"));
    }
    if (e.deleted()) problem(absl::StrCat(where, ": deleted, but nothing was deleted"));
    if (e.topic() != topic) problem(absl::StrCat(where, ": topic '", e.topic(), "'"));
    auto [it, first] = position.emplace(key, -1);
    const int previous = it->second;
    const int expected = previous + 1;
    if (index < 0) {
      problem(absl::StrCat(where, ": value never produced"));
    } else if (index != expected) {
      problem(absl::StrCat(
          where, index > expected ? ": GAP" : ": DUPLICATE or going back", ", expected ",
          expected < static_cast<int>(links.size()) ? links[expected].value : "<nothing more>"));
    }
    if (e.has_old_value()) {
      if (previous < 0) {
        problem(absl::StrCat(where, ": old_value '", e.old_value(), "' but no previous value"));
      } else if (e.old_value() != links[previous].value) {
        problem(absl::StrCat(where, ": old_value '", e.old_value(), "', expected '",
                             links[previous].value, "'"));
      }
    }
    if (index >= 0) {
      const Link& link = links[index];
      if (e.entry().partition() != link.partition || e.offset() != link.offset) {
        problem(absl::StrCat(where, ": at ", e.entry().partition(), "@", e.offset(),
                             ", produced at ", link.partition, "@", link.offset));
      }
      it->second = index;
    }
    if (every_record) {
      const int32_t p = e.entry().partition();
      auto [at, new_partition] = last_offset.emplace(p, e.offset());
      if (!new_partition) {
        if (e.offset() != at->second + 1) {
          problem(absl::StrCat(where, ": partition ", p, " offset ", e.offset(), " after ",
                               at->second, " (every record is a change)"));
        }
        at->second = e.offset();
      }
    }
    report.change_partitions.insert(e.entry().partition());
    report.last[key] = e.entry().value();
  }
  // A missing SNAPSHOT_END is not a problem by itself (the stream may still be in its
  // snapshot): the callers assert snapshot_ended where it must hold.
  return report;
}

bool MatchAll(const std::string&) { return true; }

// One Subscribe stream read by its own thread into a list of events, so that a test can
// produce, start and stop nodes, and wait on what arrived, each with a deadline.
class Subscription {
 public:
  Subscription(kiq::v1::QueryService::Stub* stub, SubscribeRequest request) {
    // Far beyond any test: only frees a stream that a failing test left behind.
    context_.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(300));
    thread_ = std::thread([this, stub, request] {
      std::unique_ptr<grpc::ClientReader<SubscribeResponse>> reader =
          stub->Subscribe(&context_, request);
      SubscribeResponse response;
      while (reader->Read(&response)) {
        std::lock_guard<std::mutex> lock(mu_);
        if (response.type() == SubscribeResponse::SNAPSHOT_END) snapshot_ended_ = true;
        if (response.type() != SubscribeResponse::SNAPSHOT_END) {
          last_[response.entry().key()] = response.entry().value();
        }
        events_.push_back(std::move(response));
        response = SubscribeResponse();
      }
      grpc::Status status = reader->Finish();
      std::lock_guard<std::mutex> lock(mu_);
      status_ = std::move(status);
      ended_ = true;
    });
  }
  ~Subscription() { Cancel(); }

  void Cancel() {
    context_.TryCancel();
    if (thread_.joinable()) thread_.join();
  }
  std::vector<SubscribeResponse> Events() const {
    std::lock_guard<std::mutex> lock(mu_);
    return events_;
  }
  size_t EventCount() const {
    std::lock_guard<std::mutex> lock(mu_);
    return events_.size();
  }
  std::map<std::string, std::string> Last() const {
    std::lock_guard<std::mutex> lock(mu_);
    return last_;
  }
  bool SnapshotEnded() const {
    std::lock_guard<std::mutex> lock(mu_);
    return snapshot_ended_;
  }
  bool Ended() const {
    std::lock_guard<std::mutex> lock(mu_);
    return ended_;
  }
  grpc::Status Status() const {
    std::lock_guard<std::mutex> lock(mu_);
    return status_;
  }
  std::string Describe() const {
    std::lock_guard<std::mutex> lock(mu_);
    return absl::StrCat(events_.size(), " events, ",
                        ended_ ? absl::StrCat("ended with ", status_.error_code(), " '",
                                              status_.error_message(), "'")
                               : "still open");
  }

 private:
  grpc::ClientContext context_;
  mutable std::mutex mu_;
  std::vector<SubscribeResponse> events_;
  std::map<std::string, std::string> last_;
  bool snapshot_ended_ = false;
  bool ended_ = false;
  grpc::Status status_;
  std::thread thread_;
};

SubscribeRequest AllRequest(const std::string& store = kStore) {
  SubscribeRequest request;
  request.set_store(store);
  request.set_all(true);
  request.set_from(SubscribeRequest::FROM_SNAPSHOT);
  return request;
}

SubscribeRequest KeyRequest(const std::string& key, const std::string& store = kStore) {
  SubscribeRequest request;
  request.set_store(store);
  request.set_key(key);
  request.set_from(SubscribeRequest::FROM_SNAPSHOT);
  return request;
}

std::string Problems(const ChainReport& report) { return absl::StrJoin(report.problems, "\n"); }

class SubscribeClusterTest : public KafkaFixture {
 protected:
  ~SubscribeClusterTest() override { StopProducer(); }

  void StartOrdersKafka() { StartKafka("subscribe-cluster", OrdersDemoTopics(kPartitions)); }

  // The orders example on nodes `ids` (n1 first), settled, with one round of `keys` keys
  // produced and caught up. Returns who owns what.
  std::map<std::string, std::set<int32_t>> StartCluster(const std::vector<std::string>& ids,
                                                        int keys) {
    StartOrdersKafka();
    for (const std::string& id : ids) {
      StartNode(id);
      if (HasFatalFailure()) return {};
    }
    auto owners = WaitSettled("n1", std::set<std::string>(ids.begin(), ids.end()));
    ProduceRound(keys);
    WaitCaughtUp("n1");
    return owners;
  }

  void StartNode(const std::string& id, const std::string& example = "orders") {
    auto node = LaunchNode(ExampleTopology(example), id);
    ASSERT_OK(node);
    AddTarget(id, (*node)->target());
    nodes_[id] = std::move(*node);
  }

  void StartRouter(const std::string& example = "orders") {
    auto router = LaunchRouter(ExampleTopology(example));
    ASSERT_OK(router);
    AddTarget("router", (*router)->target());
    nodes_["router"] = std::move(*router);
  }

  void AddTarget(const std::string& id, const std::string& target) {
    clients_[id] = std::make_unique<NodeClient>(target);
    stubs_[id] = kiq::v1::QueryService::NewStub(
        grpc::CreateChannel(target, grpc::InsecureChannelCredentials()));
  }

  // Waits for the subscription's SNAPSHOT_END; it must not have ended.
  void WaitSnapshotEnd(Subscription& sub) {
    ASSERT_TRUE(WaitFor([&] { return sub.SnapshotEnded() || sub.Ended(); }, absl::Seconds(60)))
        << sub.Describe() << AllLogs();
    ASSERT_FALSE(sub.Ended()) << sub.Describe() << AllLogs();
  }

  // Node id → its partitions, as the metadata through `via` tells, once exactly the nodes
  // `ids` own the store's partitions, each of them some, every partition once and ACTIVE.
  std::map<std::string, std::set<int32_t>> WaitSettled(const std::string& via,
                                                       const std::set<std::string>& ids,
                                                       int partitions = kPartitions) {
    std::map<std::string, std::set<int32_t>> owners;
    kiq::v1::NodesResponse nodes;
    const bool settled = WaitFor(
        [&] {
          auto settled_owners = clients_[via]->SettledOwners(ids, partitions, &nodes);
          if (settled_owners) owners = std::move(*settled_owners);
          return settled_owners.has_value();
        },
        absl::Seconds(90));
    EXPECT_TRUE(settled) << "not settled on " << absl::StrJoin(ids, ",") << " via " << via << ": "
                         << nodes.DebugString() << AllLogs();
    return owners;
  }

  // Produces the next value of key k<i> ("<i>:<seq>") to topic_ and records where it landed
  // and what the store then holds for the key (that value, or with counts_ the key's count:
  // seq). Called by one thread at a time (the TestProducer is not thread-safe).
  void ProduceNext(int i) {
    const std::string key = absl::StrCat("k", i);
    const int seq = ++next_seq_[key];
    const std::string value = absl::StrCat(i, ":", seq);
    auto delivered = producer_->Produce(Topic(topic_), key, value);
    if (!delivered.ok()) {
      ADD_FAILURE() << "produce " << key << ": " << delivered.status();
      --next_seq_[key];
      return;
    }
    std::lock_guard<std::mutex> lock(produced_mu_);
    chains_[key].push_back(
        Link{counts_ ? absl::StrCat(seq) : value, delivered->partition, delivered->offset});
    int64_t& next = positions_[{Topic(topic_), delivered->partition}];
    next = std::max(next, delivered->offset + 1);
    ++produced_count_;
  }

  // One value for each of keys k0..k<keys-1>.
  void ProduceRound(int keys) {
    for (int i = 0; i < keys; ++i) ProduceNext(i);
  }

  // A producer thread: keys k0..k<keys-1> round robin, at most about `per_second` records/s.
  void StartProducer(int keys, int per_second) {
    stop_producer_ = false;
    producer_thread_ = std::thread([this, keys, per_second] {
      absl::Time next = absl::Now();
      for (int n = 0; !stop_producer_.load(); ++n) {
        ProduceNext(n % keys);
        next += absl::Seconds(1) / per_second;
        absl::SleepFor(next - absl::Now());  // pacing, not waiting for anything
      }
    });
  }
  void StopProducer() {
    stop_producer_ = true;
    if (producer_thread_.joinable()) producer_thread_.join();
  }
  int64_t ProducedCount() {
    std::lock_guard<std::mutex> lock(produced_mu_);
    return produced_count_;
  }
  // Waits until `n` more records than now were produced by the producer thread.
  void WaitProducedMore(int64_t n) {
    const int64_t target = ProducedCount() + n;
    ASSERT_TRUE(WaitFor([&] { return ProducedCount() >= target; }, absl::Seconds(60)))
        << "the producer is stuck at " << ProducedCount();
  }

  Produced Chains() {
    std::lock_guard<std::mutex> lock(produced_mu_);
    return chains_;
  }
  std::map<std::string, std::string> LastProduced() {
    std::lock_guard<std::mutex> lock(produced_mu_);
    std::map<std::string, std::string> out;
    for (const auto& [key, links] : chains_) out[key] = links.back().value;
    return out;
  }
  std::set<int32_t> ProducedPartitions() {
    std::lock_guard<std::mutex> lock(produced_mu_);
    std::set<int32_t> out;
    for (const auto& [tp, next] : positions_) out.insert(tp.second);
    return out;
  }

  void WaitCaughtUp(const std::string& via) {
    Positions positions;
    {
      std::lock_guard<std::mutex> lock(produced_mu_);
      positions = positions_;
    }
    ASSERT_TRUE(WaitFor([&] { return clients_[via]->CaughtUp(store_, Topic(topic_), positions); },
                        absl::Seconds(60)))
        << "not caught up via " << via << AllLogs();
  }

  // Waits (60 s) until `sub` delivered the last produced value of every key matched by
  // `matches`, or ended.
  void WaitDeliveredEverything(const Subscription& sub,
                               const std::function<bool(const std::string&)>& matches) {
    std::map<std::string, std::string> want;
    for (const auto& [key, value] : LastProduced()) {
      if (matches(key)) want[key] = value;
    }
    std::map<std::string, std::string> got;
    const bool done = WaitFor(
        [&] {
          if (sub.Ended()) return true;
          got = sub.Last();
          for (const auto& [key, value] : want) {
            auto it = got.find(key);
            if (it == got.end() || it->second != value) return false;
          }
          return true;
        },
        absl::Seconds(60));
    ASSERT_FALSE(sub.Ended()) << "the stream ended: " << sub.Describe() << AllLogs();
    ASSERT_TRUE(done) << "not every key's last value was delivered: got "
                      << ::testing::PrintToString(got) << "\nwant "
                      << ::testing::PrintToString(want) << "\n"
                      << sub.Describe() << AllLogs();
  }

  // The chain check of `sub` against everything produced, expecting the end state: every
  // matched key's last produced value delivered.
  ChainReport CheckComplete(const Subscription& sub, bool every_record,
                            const std::function<bool(const std::string&)>& matches = MatchAll) {
    const ChainReport report = CheckChains(sub.Events(), Chains(), /*from_snapshot=*/true,
                                           every_record, matches, Topic(topic_));
    EXPECT_TRUE(report.problems.empty()) << Problems(report);
    EXPECT_TRUE(report.snapshot_ended);
    for (const auto& [key, value] : LastProduced()) {
      if (!matches(key)) continue;
      EXPECT_EQ(report.last.count(key) ? report.last.at(key) : "<nothing>", value) << key;
    }
    return report;
  }

  std::string AllLogs() {
    std::string out;
    for (auto& [id, node] : nodes_) {
      std::string log = node->process().ReadLog();
      if (log.size() > 6000) log = "..." + log.substr(log.size() - 6000);
      absl::StrAppend(&out, "\n---- ", id, " (tail)\n", log);
    }
    return out;
  }

  std::map<std::string, std::unique_ptr<NodeProcess>> nodes_;
  std::map<std::string, std::unique_ptr<NodeClient>> clients_;
  std::map<std::string, std::unique_ptr<kiq::v1::QueryService::Stub>> stubs_;

  // The store the tests subscribe to and the topic it is built from; counts_: it counts the
  // records of each key (else it holds each key's latest value).
  std::string store_ = kStore;
  std::string topic_ = kTopic;
  bool counts_ = false;
  std::map<std::string, int> next_seq_;  // producing thread only
  std::mutex produced_mu_;
  Produced chains_;
  Positions positions_;
  int64_t produced_count_ = 0;
  std::atomic<bool> stop_producer_{false};
  std::thread producer_thread_;
};

// The checker itself, on hand-made streams: it accepts an exact chain and reports each kind
// of violation (so that a passing cluster test means something).
TEST(SubscribeChainCheckTest, AcceptsAnExactChainAndReportsGapsDuplicatesAndBadOldValues) {
  const Produced produced = {{"k1", {{"1:1", 2, 10}, {"1:2", 2, 11}, {"1:3", 2, 13}}},
                             {"k2", {{"2:1", 2, 12}, {"2:2", 4, 5}}}};
  auto snapshot = [](const std::string& key, const std::string& value) {
    SubscribeResponse e;
    e.set_type(SubscribeResponse::SNAPSHOT);
    e.mutable_entry()->set_key(key);
    e.mutable_entry()->set_value(value);
    return e;
  };
  auto change = [](const std::string& key, const std::string& value, int32_t p, int64_t offset,
                   const std::string* old = nullptr) {
    SubscribeResponse e;
    e.set_type(SubscribeResponse::CHANGE);
    e.mutable_entry()->set_key(key);
    e.mutable_entry()->set_value(value);
    e.mutable_entry()->set_partition(p);
    e.set_topic(kTopic);
    e.set_offset(offset);
    if (old != nullptr) {
      e.set_has_old_value(true);
      e.set_old_value(*old);
    }
    return e;
  };
  SubscribeResponse end;
  end.set_type(SubscribeResponse::SNAPSHOT_END);
  const std::string v11 = "1:1", v12 = "1:2", v21 = "2:1";

  const std::vector<SubscribeResponse> exact = {snapshot("k1", "1:1"),
                                                end,
                                                change("k1", "1:2", 2, 11, &v11),
                                                change("k2", "2:1", 2, 12),
                                                change("k1", "1:3", 2, 13, &v12),
                                                change("k2", "2:2", 4, 5, &v21)};
  ChainReport ok = CheckChains(exact, produced, true, true, MatchAll);
  EXPECT_TRUE(ok.problems.empty()) << Problems(ok);
  EXPECT_EQ(ok.last, (std::map<std::string, std::string>{{"k1", "1:3"}, {"k2", "2:2"}}));
  EXPECT_EQ(ok.change_partitions, (std::set<int32_t>{2, 4}));

  auto first_problem = [&](std::vector<SubscribeResponse> events, bool every_record = true) {
    ChainReport r = CheckChains(events, produced, true, every_record, MatchAll);
    return r.problems.empty() ? std::string("<none>") : r.problems.front();
  };
  // A missing value.
  EXPECT_THAT(first_problem({snapshot("k1", "1:1"), end, change("k1", "1:3", 2, 13)}),
              HasSubstr("GAP"));
  // A repeated value (after a move, say).
  EXPECT_THAT(first_problem({snapshot("k1", "1:1"), end, change("k1", "1:2", 2, 11),
                             change("k1", "1:2", 2, 11)},
                            false),
              HasSubstr("DUPLICATE"));
  // The snapshot already had the value.
  EXPECT_THAT(first_problem({snapshot("k1", "1:2"), end, change("k1", "1:2", 2, 11)}),
              HasSubstr("DUPLICATE"));
  // A key missing from the snapshot although its first value was made before.
  EXPECT_THAT(first_problem({end, change("k1", "1:2", 2, 11)}), HasSubstr("GAP"));
  EXPECT_THAT(first_problem({snapshot("k1", "1:1"), end, change("k1", "1:2", 2, 11, &v12)}),
              HasSubstr("old_value"));
  EXPECT_THAT(first_problem({snapshot("k1", "1:1"), end, change("k1", "1:2", 3, 11)}),
              HasSubstr("produced at 2@11"));
  EXPECT_THAT(first_problem({change("k1", "1:1", 2, 10), end}), HasSubstr("before SNAPSHOT_END"));
  EXPECT_THAT(first_problem({end, snapshot("k1", "1:1")}), HasSubstr("outside the initial"));
  EXPECT_THAT(first_problem({end, end}), HasSubstr("second SNAPSHOT_END"));
  EXPECT_THAT(first_problem({end, change("zz", "x", 0, 0)}), HasSubstr("never produced"));
  // A change of another key in the partition was skipped (k1 then k2 at 12 missing, k1 at 13).
  EXPECT_THAT(first_problem({snapshot("k1", "1:1"), snapshot("k2", "2:1"), end,
                             change("k1", "1:2", 2, 11, &v11), change("k1", "1:3", 2, 13, &v12)}),
              HasSubstr("every record is a change"));
  ChainReport filtered = CheckChains({end, change("k2", "2:1", 2, 12)}, produced, true, false,
                                     [](const std::string& key) { return key == "k1"; });
  ASSERT_FALSE(filtered.problems.empty());
  EXPECT_THAT(filtered.problems.front(), HasSubstr("not matched"));
}

// The harness on what works without fan-in: one node owns every partition; a subscription
// opened while the producer runs sees an exact chain for every key (the baseline the cluster
// tests below extend).
TEST_F(SubscribeClusterTest, SingleOwnerChainUnderConcurrentProduction) {
  constexpr int kKeys = 20;
  ASSERT_NO_FATAL_FAILURE(StartCluster({"n1"}, kKeys));
  StartProducer(kKeys, 300);
  ASSERT_NO_FATAL_FAILURE(WaitProducedMore(100));
  Subscription sub(stubs_["n1"].get(), AllRequest());
  ASSERT_NO_FATAL_FAILURE(WaitSnapshotEnd(sub));
  ASSERT_NO_FATAL_FAILURE(WaitProducedMore(300));
  StopProducer();
  ASSERT_NO_FATAL_FAILURE(WaitDeliveredEverything(sub, MatchAll));
  const ChainReport report = CheckComplete(sub, /*every_record=*/true);
  EXPECT_EQ(report.snapshots, kKeys);
  EXPECT_GE(report.changes, 300);
  EXPECT_EQ(report.change_partitions.size(), static_cast<size_t>(kPartitions));
}

// 3 nodes, each owning 2 of the 6 partitions. A subscription to `all` through n1 gets the
// snapshot of every partition and then the changes of every partition, fanned in from the
// owners; a subscription to one key through a node that does not own it gets exactly that
// key's changes in order.
TEST_F(SubscribeClusterTest, NonOwnerNodeFansInEveryPartition) {
  ASSERT_NO_FATAL_FAILURE(StartOrdersKafka());
  for (const char* id : {"n1", "n2", "n3"}) ASSERT_NO_FATAL_FAILURE(StartNode(id));
  const auto owners = WaitSettled("n1", {"n1", "n2", "n3"});
  ASSERT_EQ(owners.size(), 3u);
  ASSERT_LT(owners.at("n1").size(), static_cast<size_t>(kPartitions));

  constexpr int kKeys = 30;
  ProduceRound(kKeys);  // the snapshot: "<i>:1" for every key
  ASSERT_EQ(ProducedPartitions().size(), static_cast<size_t>(kPartitions))
      << "the keys do not cover every partition";
  for (const char* id : {"n1", "n2", "n3"}) ASSERT_NO_FATAL_FAILURE(WaitCaughtUp(id));

  // A key that n1 does not own, subscribed through a node that does not own it either.
  std::string key;
  std::string via;
  for (int i = 0; i < kKeys && key.empty(); ++i) {
    kiq::v1::NodeForKeyResponse owner;
    ASSERT_TRUE(clients_["n1"]->NodeForKey(kStore, absl::StrCat("k", i), &owner).ok());
    if (owner.owner().node_id() == "n1") continue;
    key = absl::StrCat("k", i);
    via = owner.owner().node_id() == "n2" ? "n3" : "n2";
  }
  ASSERT_FALSE(key.empty());
  auto only_key = [&](const std::string& k) { return k == key; };

  Subscription all(stubs_["n1"].get(), AllRequest());
  Subscription one(stubs_[via].get(), KeyRequest(key));
  ASSERT_NO_FATAL_FAILURE(WaitSnapshotEnd(all));
  ASSERT_NO_FATAL_FAILURE(WaitSnapshotEnd(one));
  // The snapshot is the whole store: every key with its first value, from every partition.
  {
    std::map<std::string, std::string> snapshot;
    std::set<int32_t> partitions;
    for (const SubscribeResponse& e : all.Events()) {
      if (e.type() != SubscribeResponse::SNAPSHOT) continue;
      snapshot[e.entry().key()] = e.entry().value();
      partitions.insert(e.entry().partition());
    }
    EXPECT_EQ(snapshot, LastProduced());
    EXPECT_EQ(partitions.size(), static_cast<size_t>(kPartitions));
  }

  for (int round = 0; round < 15; ++round) ProduceRound(kKeys);
  ASSERT_NO_FATAL_FAILURE(WaitDeliveredEverything(all, MatchAll));
  ASSERT_NO_FATAL_FAILURE(WaitDeliveredEverything(one, only_key));

  const ChainReport report = CheckComplete(all, /*every_record=*/true);
  EXPECT_EQ(report.snapshots, kKeys);
  EXPECT_EQ(report.changes, 15 * kKeys);
  EXPECT_EQ(report.change_partitions.size(), static_cast<size_t>(kPartitions))
      << "changes did not come from every owner";
  const ChainReport key_report = CheckComplete(one, /*every_record=*/false, only_key);
  EXPECT_EQ(key_report.snapshots, 1);
  EXPECT_EQ(key_report.changes, 15);
  EXPECT_FALSE(all.Ended()) << all.Describe();
  EXPECT_FALSE(one.Ended()) << one.Describe();
}

// 2 nodes; a subscription through n1 while records are produced continuously; n3 joins
// (partitions move to it), then n2 stops gracefully (its partitions move to n1 and n3). The
// subscription follows every partition to its new owner: the stream never ends, and every key's
// chain is exact to the last produced value.
TEST_F(SubscribeClusterTest, SubscriptionFollowsPartitionsAcrossMoves) {
  constexpr int kKeys = 20;
  ASSERT_NO_FATAL_FAILURE(StartCluster({"n1", "n2"}, kKeys));

  // Subscribed while the producer runs: the snapshot boundary is crossed by live changes.
  StartProducer(kKeys, 300);
  ASSERT_NO_FATAL_FAILURE(WaitProducedMore(100));
  Subscription sub(stubs_["n1"].get(), AllRequest());
  ASSERT_NO_FATAL_FAILURE(WaitSnapshotEnd(sub));
  ASSERT_NO_FATAL_FAILURE(WaitProducedMore(200));

  ASSERT_NO_FATAL_FAILURE(StartNode("n3"));
  const auto with_n3 = WaitSettled("n1", {"n1", "n2", "n3"});
  ASSERT_EQ(with_n3.size(), 3u);
  ASSERT_NO_FATAL_FAILURE(WaitProducedMore(200));
  EXPECT_FALSE(sub.Ended()) << "after n3 joined: " << sub.Describe() << AllLogs();

  auto code = nodes_["n2"]->process().Terminate(absl::Seconds(30));
  ASSERT_OK(code);
  EXPECT_EQ(*code, 0) << "n2 did not stop cleanly";
  WaitSettled("n1", {"n1", "n3"});
  ASSERT_NO_FATAL_FAILURE(WaitProducedMore(200));
  StopProducer();

  ASSERT_NO_FATAL_FAILURE(WaitDeliveredEverything(sub, MatchAll));
  const ChainReport report = CheckComplete(sub, /*every_record=*/true);
  EXPECT_EQ(report.change_partitions.size(), static_cast<size_t>(kPartitions));
  EXPECT_FALSE(sub.Ended()) << sub.Describe();
}

// kiq-router holds no partition: a subscription through it is all fan-in. It is opened right
// after the router starts (it may not know the owners yet: it waits, no error), to one key and
// to all; then a third node joins and the streams follow the moved partitions.
TEST_F(SubscribeClusterTest, ThroughKiqRouter) {
  constexpr int kKeys = 24;
  ASSERT_NO_FATAL_FAILURE(StartCluster({"n1", "n2"}, kKeys));

  ASSERT_NO_FATAL_FAILURE(StartRouter());
  const std::string key = "k7";
  auto only_key = [&](const std::string& k) { return k == key; };
  Subscription all(stubs_["router"].get(), AllRequest());
  Subscription one(stubs_["router"].get(), KeyRequest(key));
  for (Subscription* sub : {&all, &one}) {
    ASSERT_NO_FATAL_FAILURE(WaitSnapshotEnd(*sub));
  }
  for (int round = 0; round < 10; ++round) ProduceRound(kKeys);
  ASSERT_NO_FATAL_FAILURE(WaitDeliveredEverything(all, MatchAll));
  ASSERT_NO_FATAL_FAILURE(WaitDeliveredEverything(one, only_key));
  {
    const ChainReport report = CheckComplete(all, /*every_record=*/true);
    EXPECT_EQ(report.snapshots, kKeys);
    EXPECT_EQ(report.changes, 10 * kKeys);
    const ChainReport key_report = CheckComplete(one, /*every_record=*/false, only_key);
    EXPECT_EQ(key_report.snapshots, 1);
    EXPECT_EQ(key_report.changes, 10);
  }

  // A third node joins while producing: partitions move under the router's streams.
  StartProducer(kKeys, 300);
  ASSERT_NO_FATAL_FAILURE(WaitProducedMore(100));
  ASSERT_NO_FATAL_FAILURE(StartNode("n3"));
  WaitSettled("router", {"n1", "n2", "n3"});
  ASSERT_NO_FATAL_FAILURE(WaitProducedMore(200));
  StopProducer();
  ASSERT_NO_FATAL_FAILURE(WaitDeliveredEverything(all, MatchAll));
  ASSERT_NO_FATAL_FAILURE(WaitDeliveredEverything(one, only_key));
  CheckComplete(all, /*every_record=*/true);
  CheckComplete(one, /*every_record=*/false, only_key);
  EXPECT_FALSE(all.Ended()) << all.Describe();
  EXPECT_FALSE(one.Ended()) << one.Describe();
}

// A partition with no ACTIVE owner is waited for, not an error: a subscription through
// kiq-router opened before any node runs gets its SNAPSHOT_END only once the partitions have
// an ACTIVE owner, so its snapshot holds everything produced before, from every partition.
TEST_F(SubscribeClusterTest, PartitionsWithoutAnOwnerAreWaitedFor) {
  ASSERT_NO_FATAL_FAILURE(StartOrdersKafka());
  constexpr int kKeys = 24;
  ProduceRound(kKeys);
  ProduceRound(kKeys);
  ASSERT_NO_FATAL_FAILURE(StartRouter());
  Subscription all(stubs_["router"].get(), AllRequest());
  // Nothing is owned yet: whatever arrived so far cannot be the end of the snapshot.
  EXPECT_FALSE(all.SnapshotEnded()) << all.Describe();
  // One node, so that no partition moves while the snapshot is sent (a move in the middle of
  // a snapshot may legitimately end the stream ABORTED; moves are the other tests' subject).
  ASSERT_NO_FATAL_FAILURE(StartNode("n1"));
  ASSERT_NO_FATAL_FAILURE(WaitSnapshotEnd(all));
  std::map<std::string, std::string> snapshot;
  for (const SubscribeResponse& e : all.Events()) {
    if (e.type() == SubscribeResponse::SNAPSHOT) snapshot[e.entry().key()] = e.entry().value();
  }
  EXPECT_EQ(snapshot, LastProduced()) << "the snapshot did not wait for every partition";
  for (int round = 0; round < 5; ++round) ProduceRound(kKeys);
  ASSERT_NO_FATAL_FAILURE(WaitDeliveredEverything(all, MatchAll));
  const ChainReport report = CheckComplete(all, /*every_record=*/true);
  EXPECT_EQ(report.snapshots, kKeys);
  EXPECT_EQ(report.changes, 5 * kKeys);
}

// kill -9 of an owner while records are produced: the changes it made but had not delivered
// cannot be replayed, so the subscription either still delivers every change exactly (if
// nothing was lost) or ends with ABORTED naming a partition of the dead node and saying to
// subscribe again. Never another error, never a silent gap; what was delivered before the end
// is exact, and subscribing again resyncs.
TEST_F(SubscribeClusterTest, KillNineEitherContinuesExactlyOrEndsAborted) {
  constexpr int kKeys = 20;
  std::map<std::string, std::set<int32_t>> owners;
  ASSERT_NO_FATAL_FAILURE(owners = StartCluster({"n1", "n2", "n3"}, kKeys));
  ASSERT_EQ(owners.count("n2"), 1u);
  const std::set<int32_t> victim_partitions = owners.at("n2");

  StartProducer(kKeys, 300);
  ASSERT_NO_FATAL_FAILURE(WaitProducedMore(100));
  Subscription sub(stubs_["n1"].get(), AllRequest());
  ASSERT_NO_FATAL_FAILURE(WaitSnapshotEnd(sub));
  ASSERT_NO_FATAL_FAILURE(WaitProducedMore(200));
  ASSERT_TRUE(WaitFor([&] { return sub.EventCount() > 100; }, absl::Seconds(30))) << sub.Describe();

  nodes_["n2"]->process().Kill();
  WaitSettled("n1", {"n1", "n3"});  // ~6 s session timeout, then restoration
  ASSERT_NO_FATAL_FAILURE(WaitProducedMore(200));
  StopProducer();

  // Either every key's last value arrives on the open stream, or the stream ends.
  const std::map<std::string, std::string> want = LastProduced();
  ASSERT_TRUE(WaitFor(
      [&] {
        if (sub.Ended()) return true;
        const auto got = sub.Last();
        for (const auto& [key, value] : want) {
          auto it = got.find(key);
          if (it == got.end() || it->second != value) return false;
        }
        return true;
      },
      absl::Seconds(60)))
      << "neither continued nor ended: " << sub.Describe() << AllLogs();

  if (!sub.Ended()) {
    std::printf("[ outcome  ] the stream continued exactly past the kill -9\n");
    CheckComplete(sub, /*every_record=*/true);
    return;
  }
  std::printf("[ outcome  ] the stream ended: %s\n", sub.Status().error_message().c_str());
  // Ended: ABORTED, naming a partition of the dead node, saying to subscribe again.
  const grpc::Status status = sub.Status();
  ASSERT_EQ(status.error_code(), grpc::StatusCode::ABORTED)
      << status.error_code() << " " << status.error_message();
  EXPECT_THAT(absl::AsciiStrToLower(status.error_message()), HasSubstr("subscribe again"));
  std::smatch named;
  const std::string message = status.error_message();
  ASSERT_TRUE(std::regex_search(message, named, std::regex("partition ([0-9]+)"))) << message;
  EXPECT_EQ(victim_partitions.count(std::stoi(named[1].str())), 1u)
      << message << " names a partition that n2 did not own ("
      << absl::StrJoin(victim_partitions, ",") << ")";
  // What was delivered before the end is an exact prefix of every chain.
  const ChainReport prefix =
      CheckChains(sub.Events(), Chains(), true, /*every_record=*/true, MatchAll, Topic(kTopic));
  EXPECT_TRUE(prefix.problems.empty()) << Problems(prefix);
  EXPECT_TRUE(prefix.snapshot_ended);

  // Subscribing again resyncs: the snapshot is the current state, then exact changes.
  Subscription again(stubs_["n1"].get(), AllRequest());
  ASSERT_NO_FATAL_FAILURE(WaitSnapshotEnd(again));
  ProduceRound(kKeys);
  ASSERT_NO_FATAL_FAILURE(WaitDeliveredEverything(again, MatchAll));
  CheckComplete(again, /*every_record=*/true);
}

// A subscription through a non-owner to an aggregate (order_count: changelogged) survives the
// kill -9 of a partition's owner: while someone subscribes, a batch's changelog holds every
// write with its source record, so the node that takes the partition over (warm from its
// standby replica, or restoring the tail) has the very changes the dead owner pushed and the
// stream continues with no gap and no duplicate: each key's counts arrive 1, 2, 3, ... with
// the offsets of the records that made them.
TEST_F(SubscribeClusterTest, AggregateSubscriptionSurvivesTheKillNineOfAnOwner) {
  constexpr int kKeys = 20;
  store_ = "order_count";
  topic_ = "orders";
  counts_ = true;
  std::map<std::string, std::set<int32_t>> owners;
  ASSERT_NO_FATAL_FAILURE(owners = StartCluster({"n1", "n2", "n3"}, kKeys));
  ASSERT_EQ(owners.count("n2"), 1u);

  StartProducer(kKeys, 300);
  ASSERT_NO_FATAL_FAILURE(WaitProducedMore(100));
  Subscription sub(stubs_["n1"].get(), AllRequest(store_));
  ASSERT_NO_FATAL_FAILURE(WaitSnapshotEnd(sub));
  ASSERT_NO_FATAL_FAILURE(WaitProducedMore(300));
  ASSERT_TRUE(WaitFor([&] { return sub.EventCount() > 200; }, absl::Seconds(30))) << sub.Describe();

  nodes_["n2"]->process().Kill();
  WaitSettled("n1", {"n1", "n3"});
  ASSERT_NO_FATAL_FAILURE(WaitProducedMore(200));
  StopProducer();

  ASSERT_NO_FATAL_FAILURE(WaitDeliveredEverything(sub, MatchAll));
  const ChainReport report = CheckComplete(sub, /*every_record=*/true);
  // n2's partitions streamed changes before and after the kill.
  for (int32_t p : owners.at("n2")) EXPECT_EQ(report.change_partitions.count(p), 1u) << p;
}

// Unchanged through fan-in: an unknown store is NOT_FOUND naming it; a subscriber that stops
// reading ends with RESOURCE_EXHAUSTED (its own buffer overflows, the owners' ingestion goes
// on); a coalescing one that reads late still gets every key's latest value. Both are served
// by n1 from the partitions of both nodes.
TEST_F(SubscribeClusterTest, NotFoundAndOverflowAreUnchangedThroughFanIn) {
  ASSERT_NO_FATAL_FAILURE(StartCluster({"n1", "n2"}, 10));
  {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
    SubscribeRequest request = AllRequest("no_such_store");
    auto reader = stubs_["n1"]->Subscribe(&context, request);
    SubscribeResponse response;
    EXPECT_FALSE(reader->Read(&response));
    const grpc::Status status = reader->Finish();
    EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND) << status.error_message();
    EXPECT_THAT(status.error_message(), HasSubstr("no_such_store"));
  }

  // Both opened before the flood; each read up to its SNAPSHOT_END, then left unread.
  grpc::ClientContext stalled_context;
  grpc::ClientContext coalescing_context;
  for (grpc::ClientContext* context : {&stalled_context, &coalescing_context}) {
    context->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(120));
  }
  SubscribeRequest stalled_request = AllRequest();
  stalled_request.set_buffer_size(100);
  SubscribeRequest coalescing_request = AllRequest();
  coalescing_request.set_key_prefix("hot");
  coalescing_request.set_buffer_size(10);
  coalescing_request.set_on_overflow(SubscribeRequest::OVERFLOW_COALESCE);
  auto stalled = stubs_["n1"]->Subscribe(&stalled_context, stalled_request);
  auto coalescing = stubs_["n1"]->Subscribe(&coalescing_context, coalescing_request);
  // An early return must not leave the calls open.
  struct CancelOnExit {
    std::vector<grpc::ClientContext*> contexts;
    ~CancelOnExit() {
      for (grpc::ClientContext* context : contexts) context->TryCancel();
    }
  } cancel_on_exit{{&stalled_context, &coalescing_context}};
  for (auto* reader : {stalled.get(), coalescing.get()}) {
    SubscribeResponse response;
    bool ended_snapshot = false;
    while (!ended_snapshot && reader->Read(&response)) {
      ended_snapshot = response.type() == SubscribeResponse::SNAPSHOT_END;
    }
    ASSERT_TRUE(ended_snapshot) << reader->Finish().error_message() << AllLogs();
  }

  // Far more than gRPC's flow-control windows (two hops) plus the buffers hold.
  constexpr int kFlood = 10000;
  const std::string big(1000, 'x');
  const std::string medium(300, 'y');
  std::map<std::string, std::string> latest;
  for (int i = 0; i < kFlood; ++i) {
    const std::string hot = absl::StrCat("hot", i % 10);
    latest[hot] = absl::StrCat(i, medium);
    ASSERT_OK(producer_->ProduceAsync(Topic(kTopic), hot, latest[hot]));
    ASSERT_OK(producer_->ProduceAsync(Topic(kTopic), absl::StrCat("cold", i % 1000),
                                      absl::StrCat(i, big)));
  }
  ASSERT_OK(producer_->Flush());
  Positions finals;
  std::set<std::string> final_owners;
  for (auto& [key, value] : latest) {
    value += "-final";
    auto delivered = producer_->Produce(Topic(kTopic), key, value);
    ASSERT_OK(delivered);
    finals[{Topic(kTopic), delivered->partition}] = delivered->offset + 1;
    kiq::v1::NodeForKeyResponse owner;
    ASSERT_TRUE(clients_["n1"]->NodeForKey(kStore, key, &owner).ok());
    final_owners.insert(owner.owner().node_id());
  }
  EXPECT_EQ(final_owners, (std::set<std::string>{"n1", "n2"})) << "the hot keys are not spread";
  // The owners' ingestion was not held back by the stalled subscriber.
  ASSERT_TRUE(WaitFor([&] { return clients_["n1"]->CaughtUp(kStore, Topic(kTopic), finals); },
                      absl::Seconds(60)))
      << AllLogs();

  int changes = 0;
  SubscribeResponse response;
  while (stalled->Read(&response)) ++changes;
  const grpc::Status status = stalled->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << status.error_message();
  EXPECT_THAT(status.error_message(), HasSubstr("buffer_size"));
  EXPECT_LT(changes, 2 * kFlood);

  std::map<std::string, std::string> seen;
  int coalesced_changes = 0;
  auto all_final = [&] {
    if (seen.size() < latest.size()) return false;
    for (const auto& [key, value] : seen) {
      if (!absl::EndsWith(value, "-final")) return false;
    }
    return true;
  };
  while (!all_final()) {
    ASSERT_TRUE(coalescing->Read(&response))
        << coalescing->Finish().error_message() << " after " << coalesced_changes;
    EXPECT_TRUE(absl::StartsWith(response.entry().key(), "hot")) << response.entry().key();
    seen[response.entry().key()] = response.entry().value();
    ++coalesced_changes;
  }
  EXPECT_EQ(seen, latest);
  EXPECT_LT(coalesced_changes, kFlood) << "nothing was coalesced";
  coalescing_context.TryCancel();
}

// A tumbling windowed count of the shop example (views_per_category: 30 s windows, counted per
// category = the record key), on 2 nodes, subscribed through a node that does not own the key.
// `key` matches the user's key, not the stored window key: "a" gets a's windows and never
// "ab"'s; `key_prefix` gets both; `all` never sees the internal stream-time entry (empty key).
// Every entry carries its window, and the counts go 1, 2, 3 within one window.
TEST_F(SubscribeClusterTest, WindowedStoreStreamsWindowsOfTheUserKey) {
  constexpr int kShopPartitions = 4;
  StartKafka("subscribe-windows", {{"page_views", kShopPartitions},
                                   {"purchases", kShopPartitions},
                                   {"customers", kShopPartitions},
                                   {"shop-views_per_category-changelog", kShopPartitions},
                                   {"shop-views_per_category_hopping-changelog", kShopPartitions},
                                   {"shop-spend_per_user-changelog", kShopPartitions},
                                   {"shop-purchases_per_city-changelog", kShopPartitions},
                                   {"shop-purchases_per_city-repartition", kShopPartitions}});
  ASSERT_FALSE(HasFatalFailure());
  for (const char* id : {"n1", "n2"}) ASSERT_NO_FATAL_FAILURE(StartNode(id, "shop"));
  constexpr char kWindowed[] = "views_per_category";
  constexpr char kHopping[] = "views_per_category_hopping";  // 60 s windows every 30 s
  constexpr int64_t kSize = 30'000;
  constexpr int64_t kT0 = 1'700'000'040'000;  // a window start (a multiple of 30 s)
  static_assert(kT0 % kSize == 0);

  // (key, window start) of each produced view, in order, with where it landed.
  struct View {
    std::string key;
    int64_t ts;
    int32_t partition;
    int64_t offset;
  };
  std::vector<View> views;
  auto view = [&](const std::string& key, int64_t ts) {
    const TestProducer::Delivered d = ProduceAndTrack(
        "page_views", key, absl::StrCat(R"({"user":"u1","category":")", key, R"("})"), ts);
    views.push_back(View{key, ts, d.partition, d.offset});
  };
  auto caught_up = [&](const std::string& id) {
    ASSERT_TRUE(
        WaitFor([&] { return clients_[id]->CaughtUp(kWindowed, Topic("page_views"), produced_); },
                absl::Seconds(60)))
        << "not caught up via " << id << AllLogs();
  };
  WaitSettled("n1", {"n1", "n2"}, kShopPartitions);
  // Before subscribing: one view each of a, ab and b in the window before kT0 (the snapshot).
  view("a", kT0 - kSize + 100);
  view("ab", kT0 - kSize + 200);
  view("b", kT0 - kSize + 300);
  ASSERT_NO_FATAL_FAILURE(caught_up("n1"));

  // Through the node that does not own a's partition (either node if one owns everything).
  kiq::v1::NodeForKeyResponse owner;
  ASSERT_TRUE(WaitFor(
      [&] {
        return clients_["n1"]->NodeForKey(kWindowed, "a", &owner).ok() &&
               !owner.owner().node_id().empty();
      },
      absl::Seconds(60)));
  const std::string via = owner.owner().node_id() == "n1" ? "n2" : "n1";

  SubscribeRequest prefix_request = AllRequest(kWindowed);
  prefix_request.set_key_prefix("a");
  Subscription key_sub(stubs_[via].get(), KeyRequest("a", kWindowed));
  Subscription prefix_sub(stubs_[via].get(), prefix_request);
  Subscription all_sub(stubs_[via].get(), AllRequest(kWindowed));
  Subscription hopping_sub(stubs_[via].get(), KeyRequest("a", kHopping));
  for (Subscription* sub : {&key_sub, &prefix_sub, &all_sub, &hopping_sub}) {
    ASSERT_NO_FATAL_FAILURE(WaitSnapshotEnd(*sub));
  }

  // Three views of a in window kT0 (its first and last millisecond included), one in the next;
  // ab and b interleaved in the same windows.
  view("a", kT0);
  view("ab", kT0 + 1);
  view("a", kT0 + 5'000);
  view("b", kT0 + 6'000);
  view("ab", kT0 + 7'000);
  view("a", kT0 + kSize - 1);
  view("a", kT0 + kSize);
  view("ab", kT0 + kSize + 1);
  view("b", kT0 + kSize + 2);

  // The truth: each view's change is the running count of its (key, window).
  struct Expected {
    std::string key;
    int64_t start;
    std::string count;
    int32_t partition;
    int64_t offset;
  };
  std::map<std::pair<std::string, int64_t>, int> counts;
  std::vector<Expected> snapshot_truth;
  std::vector<Expected> change_truth;
  for (size_t i = 0; i < views.size(); ++i) {
    const View& v = views[i];
    const int64_t start = v.ts / kSize * kSize;
    const int n = ++counts[{v.key, start}];
    Expected e{v.key, start, absl::StrCat(n), v.partition, v.offset};
    (i < 3 ? snapshot_truth : change_truth).push_back(e);
  }

  // Waits until `sub` has delivered the final count of every window of the keys it matches.
  auto wait_final = [&](Subscription& sub, const std::function<bool(const std::string&)>& match) {
    size_t want = 0;
    for (const Expected& e : change_truth) want += match(e.key) ? 1 : 0;
    ASSERT_TRUE(WaitFor(
        [&] {
          if (sub.Ended()) return true;
          size_t changes = 0;
          for (const SubscribeResponse& r : sub.Events()) {
            changes += r.type() == SubscribeResponse::CHANGE ? 1 : 0;
          }
          return changes >= want;
        },
        absl::Seconds(60)))
        << sub.Describe() << AllLogs();
    ASSERT_FALSE(sub.Ended()) << sub.Describe();
  };
  // Checks `sub`'s events: the snapshot entries and then exactly the matched changes, in
  // order per key (keys in different partitions may interleave).
  auto check = [&](Subscription& sub, const std::function<bool(const std::string&)>& match,
                   const std::string& name) {
    std::map<std::string, std::vector<std::string>> got_snapshot, want_snapshot;
    std::map<std::string, std::vector<std::string>> got_changes, want_changes;
    auto describe = [](const std::string& key, int64_t start, int64_t end, const std::string& n,
                       int32_t p, int64_t offset) {
      return absl::StrCat(key, "@[", start, ",", end, ")=", n, " at ", p, "@", offset);
    };
    bool ended_snapshot = false;
    for (const SubscribeResponse& r : sub.Events()) {
      if (r.type() == SubscribeResponse::SNAPSHOT_END) {
        ended_snapshot = true;
        continue;
      }
      const kiq::v1::Entry& e = r.entry();
      EXPECT_FALSE(e.key().empty()) << name << ": the internal stream-time entry was delivered";
      EXPECT_TRUE(e.has_window()) << name << ": " << r.DebugString();
      EXPECT_EQ(e.window().end_ms() - e.window().start_ms(), kSize) << name;
      if (r.type() == SubscribeResponse::SNAPSHOT) {
        EXPECT_FALSE(ended_snapshot) << name;
        got_snapshot[e.key()].push_back(
            describe(e.key(), e.window().start_ms(), e.window().end_ms(), e.value(), 0, 0));
      } else {
        EXPECT_EQ(r.type(), SubscribeResponse::CHANGE) << name;
        EXPECT_TRUE(ended_snapshot) << name;
        EXPECT_FALSE(r.deleted()) << name;
        EXPECT_EQ(r.topic(), Topic("page_views")) << name;
        got_changes[e.key()].push_back(describe(e.key(), e.window().start_ms(), e.window().end_ms(),
                                                e.value(), e.partition(), r.offset()));
        // The old value, when given, is the window's previous count; a window's first count
        // has none.
        int64_t n = 0;
        if (absl::SimpleAtoi(e.value(), &n) && (r.has_old_value() || n == 1)) {
          EXPECT_EQ(r.has_old_value() ? r.old_value() : "<none>",
                    n == 1 ? "<none>" : absl::StrCat(n - 1))
              << name << ": " << r.DebugString();
        }
      }
    }
    EXPECT_TRUE(ended_snapshot) << name;
    for (const Expected& e : snapshot_truth) {
      if (match(e.key)) {
        want_snapshot[e.key].push_back(describe(e.key, e.start, e.start + kSize, e.count, 0, 0));
      }
    }
    for (const Expected& e : change_truth) {
      if (match(e.key)) {
        want_changes[e.key].push_back(
            describe(e.key, e.start, e.start + kSize, e.count, e.partition, e.offset));
      }
    }
    EXPECT_EQ(got_snapshot, want_snapshot) << name;
    EXPECT_EQ(got_changes, want_changes) << name;
  };

  auto is_a = [](const std::string& k) { return k == "a"; };
  auto starts_with_a = [](const std::string& k) { return absl::StartsWith(k, "a"); };
  ASSERT_NO_FATAL_FAILURE(wait_final(key_sub, is_a));
  ASSERT_NO_FATAL_FAILURE(wait_final(prefix_sub, starts_with_a));
  ASSERT_NO_FATAL_FAILURE(wait_final(all_sub, MatchAll));
  // The last view of every key was delivered on all_sub, so anything else of that partition's
  // batches (the stream-time entry, a stray key) would have arrived by now as well.
  ASSERT_NO_FATAL_FAILURE(caught_up(via));
  // The truth agrees with the store (WindowFetch): a failure below is Subscribe's, not the
  // truth's.
  for (const std::string key : {"a", "ab"}) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
    kiq::v1::WindowFetchRequest request;
    request.set_store(kWindowed);
    request.set_key(key);
    kiq::v1::WindowFetchResponse response;
    ASSERT_TRUE(stubs_[via]->WindowFetch(&context, request, &response).ok());
    std::map<int64_t, std::string> stored, want;
    for (const kiq::v1::Entry& e : response.entries()) stored[e.window().start_ms()] = e.value();
    for (const auto& [window, n] : counts) {
      if (window.first == key) want[window.second] = absl::StrCat(n);
    }
    EXPECT_EQ(stored, want) << key;
  }
  check(key_sub, is_a, "key a");
  // The hopping store: each view of a is in two windows, each with its own running count. The
  // order of one record's two changes is not specified: compared as multisets.
  {
    using Change = std::tuple<int64_t, int64_t, std::string, int64_t>;  // window, count, offset
    std::multiset<Change> want_snapshot, want_changes, got_snapshot, got_changes;
    std::map<int64_t, int> hopping_counts;
    for (size_t i = 0; i < views.size(); ++i) {
      if (views[i].key != "a") continue;
      const int64_t last_start = views[i].ts / kSize * kSize;
      for (const int64_t start : {last_start - kSize, last_start}) {
        const std::string n = absl::StrCat(++hopping_counts[start]);
        if (i < 3) {
          want_snapshot.insert(Change{start, start + 2 * kSize, n, 0});
        } else {
          want_changes.insert(Change{start, start + 2 * kSize, n, views[i].offset});
        }
      }
    }
    {  // the truth agrees with the store
      grpc::ClientContext context;
      context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
      kiq::v1::WindowFetchRequest request;
      request.set_store(kHopping);
      request.set_key("a");
      kiq::v1::WindowFetchResponse response;
      ASSERT_TRUE(stubs_[via]->WindowFetch(&context, request, &response).ok());
      std::map<int64_t, std::string> stored, want;
      for (const kiq::v1::Entry& e : response.entries()) stored[e.window().start_ms()] = e.value();
      for (const auto& [start, n] : hopping_counts) want[start] = absl::StrCat(n);
      EXPECT_EQ(stored, want) << "hopping";
    }
    ASSERT_TRUE(WaitFor(
        [&] {
          size_t changes = 0;
          for (const SubscribeResponse& r : hopping_sub.Events()) {
            changes += r.type() == SubscribeResponse::CHANGE ? 1 : 0;
          }
          return hopping_sub.Ended() || changes >= want_changes.size();
        },
        absl::Seconds(60)))
        << hopping_sub.Describe();
    EXPECT_FALSE(hopping_sub.Ended()) << hopping_sub.Describe();
    for (const SubscribeResponse& r : hopping_sub.Events()) {
      if (r.type() == SubscribeResponse::SNAPSHOT_END) continue;
      EXPECT_EQ(r.entry().key(), "a") << r.DebugString();
      const Change c{r.entry().window().start_ms(), r.entry().window().end_ms(), r.entry().value(),
                     r.type() == SubscribeResponse::CHANGE ? r.offset() : 0};
      (r.type() == SubscribeResponse::CHANGE ? got_changes : got_snapshot).insert(c);
    }
    EXPECT_EQ(got_snapshot, want_snapshot) << "hopping";
    EXPECT_EQ(got_changes, want_changes) << "hopping";
  }
  check(prefix_sub, starts_with_a, "key_prefix a");
  check(all_sub, MatchAll, "all");
}

}  // namespace
}  // namespace kiq::testing
