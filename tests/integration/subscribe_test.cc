// Subscribe (push queries) against a real kiq-node on kiq-dev-kafka: exact per-key changes,
// snapshot + changes with no gap and no duplicate under concurrent production, a stalled
// subscriber that ends with RESOURCE_EXHAUSTED while ingestion keeps going, and a rebalance
// that the subscription follows without ending or skipping a change.
#include <algorithm>
#include <atomic>
#include <map>
#include <set>
#include <thread>

#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "kiq/v1/query.grpc.pb.h"
#include "tests/testing/kafka_fixture.h"
#include "tests/testing/kiq_processes.h"
#include "tests/testing/metrics.h"
#include "tests/testing/queries.h"
#include "tests/testing/status_matchers.h"

namespace kiq::testing {
namespace {

using kiq::v1::SubscribeRequest;
using kiq::v1::SubscribeResponse;
using ::testing::HasSubstr;

constexpr int kPartitions = 6;

struct ProducedRecord {
  std::string key;
  std::string value;
  int32_t partition;
  int64_t offset;
};

// An open Subscribe stream with its own context.
struct Stream {
  grpc::ClientContext context;
  std::unique_ptr<grpc::ClientReader<SubscribeResponse>> reader;
};

class SubscribeTest : public KafkaFixture {
 protected:
  void SetUp() override {
    StartKafka("subscribe", {{"customers", kPartitions},
                             {"orders", kPartitions},
                             {"orders-demo-order_count-changelog", kPartitions}});
  }

  void StartNode(const std::string& id = "n1") {
    auto node = LaunchNode(ExampleTopology("orders"), id);
    ASSERT_OK(node);
    nodes_.push_back(std::move(*node));
    if (stub_ == nullptr) {
      stub_ = kiq::v1::QueryService::NewStub(
          grpc::CreateChannel(nodes_[0]->target(), grpc::InsecureChannelCredentials()));
      client_ = std::make_unique<NodeClient>(nodes_[0]->target());
    }
  }

  ProducedRecord Produce(const std::string& key, const std::string& value) {
    const TestProducer::Delivered delivered = ProduceAndTrack("customers", key, value);
    return ProducedRecord{key, value, delivered.partition, delivered.offset};
  }

  // Opens a stream; with a snapshot, reads up to SNAPSHOT_END into `snapshot` so that the
  // subscription is known to be registered. Retries while the node is not ready to serve it.
  std::unique_ptr<Stream> Open(SubscribeRequest request,
                               std::vector<SubscribeResponse>* snapshot = nullptr) {
    request.set_from(SubscribeRequest::FROM_SNAPSHOT);
    const absl::Time deadline = absl::Now() + absl::Seconds(60);
    while (absl::Now() < deadline) {
      auto stream = std::make_unique<Stream>();
      stream->context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
      stream->reader = stub_->Subscribe(&stream->context, request);
      SubscribeResponse response;
      std::vector<SubscribeResponse> entries;
      while (stream->reader->Read(&response)) {
        if (response.type() == SubscribeResponse::SNAPSHOT_END) {
          if (snapshot != nullptr) *snapshot = std::move(entries);
          return stream;
        }
        EXPECT_EQ(response.type(), SubscribeResponse::SNAPSHOT);
        entries.push_back(response);
      }
      grpc::Status status = stream->reader->Finish();
      // UNAVAILABLE: partitions still being assigned or restored.
      if (status.error_code() != grpc::StatusCode::UNAVAILABLE) {
        ADD_FAILURE() << "Subscribe ended: " << status.error_code() << " "
                      << status.error_message();
        return nullptr;
      }
      absl::SleepFor(absl::Milliseconds(100));  // a retry interval
    }
    ADD_FAILURE() << "Subscribe never became available";
    return nullptr;
  }

  void WaitCaughtUp() {
    ASSERT_TRUE(
        WaitFor([&] { return client_->CaughtUp("customers", Topic("customers"), produced_); },
                absl::Seconds(60)))
        << nodes_[0]->process().ReadLog();
  }

  std::vector<std::unique_ptr<NodeProcess>> nodes_;
  std::unique_ptr<kiq::v1::QueryService::Stub> stub_;
  std::unique_ptr<NodeClient> client_;
};

TEST_F(SubscribeTest, UnknownStoreIsNotFoundNamingIt) {
  StartNode();
  grpc::ClientContext context;
  SubscribeRequest request;
  request.set_store("no_such_store");
  auto reader = stub_->Subscribe(&context, request);
  SubscribeResponse response;
  EXPECT_FALSE(reader->Read(&response));
  grpc::Status status = reader->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(status.error_message(), HasSubstr("no_such_store"));
}

TEST_F(SubscribeTest, KeyReceivesExactlyItsChangesInOrder) {
  StartNode();
  Produce("k", "v-before");  // in the snapshot, not a change
  WaitCaughtUp();
  SubscribeRequest request;
  request.set_store("customers");
  request.set_key("k");
  std::vector<SubscribeResponse> snapshot;
  auto stream = Open(request, &snapshot);
  ASSERT_NE(stream, nullptr);
  ASSERT_EQ(snapshot.size(), 1u);
  EXPECT_EQ(snapshot[0].entry().key(), "k");
  EXPECT_EQ(snapshot[0].entry().value(), "v-before");

  // Updates to k interleaved with other keys (some in k's partition), many per batch.
  std::vector<ProducedRecord> expected;
  for (int i = 0; i < 200; ++i) {
    ProducedRecord r = Produce("k", absl::StrCat("v", i));
    expected.push_back(r);
    Produce(absl::StrCat("other", i), "x");
    Produce("k-prefixed-but-not-k", absl::StrCat("y", i));
  }
  std::string previous = "v-before";
  for (const ProducedRecord& want : expected) {
    SubscribeResponse got;
    ASSERT_TRUE(stream->reader->Read(&got)) << stream->reader->Finish().error_message();
    ASSERT_EQ(got.type(), SubscribeResponse::CHANGE);
    EXPECT_EQ(got.entry().key(), "k");
    EXPECT_EQ(got.entry().value(), want.value);
    EXPECT_EQ(got.entry().partition(), want.partition);
    EXPECT_EQ(got.topic(), Topic("customers"));
    EXPECT_EQ(got.offset(), want.offset);
    EXPECT_TRUE(got.has_old_value());
    EXPECT_EQ(got.old_value(), previous);
    EXPECT_FALSE(got.deleted());
    previous = want.value;
  }
  // A delete is a change too.
  auto tombstone = producer_->Produce(Topic("customers"), "k", std::nullopt);
  ASSERT_OK(tombstone);
  SubscribeResponse got;
  ASSERT_TRUE(stream->reader->Read(&got));
  EXPECT_TRUE(got.deleted());
  EXPECT_EQ(got.entry().key(), "k");
  EXPECT_EQ(got.old_value(), previous);
  EXPECT_EQ(got.offset(), tombstone->offset);
  stream->context.TryCancel();
}

TEST_F(SubscribeTest, SnapshotThenChangesHaveNoGapAndNoDuplicateUnderConcurrentProduction) {
  StartNode();
  Produce("seed", "0");
  WaitCaughtUp();
  std::vector<ProducedRecord> records;
  std::atomic<bool> stop{false};
  absl::Mutex mu;
  std::thread producer([&] {
    for (int i = 0; !stop.load() && i < 20000; ++i) {
      ProducedRecord r = Produce(absl::StrCat("key", i % 53), absl::StrCat("v", i));
      absl::MutexLock lock(&mu);
      records.push_back(r);
    }
  });
  // Subscribe while the producer runs.
  ASSERT_TRUE(WaitFor(
      [&] {
        absl::MutexLock lock(&mu);
        return records.size() >= 300;
      },
      absl::Seconds(60)));
  SubscribeRequest request;
  request.set_store("customers");
  request.set_all(true);
  std::vector<SubscribeResponse> snapshot;
  auto stream = Open(request, &snapshot);
  ASSERT_NE(stream, nullptr);
  ASSERT_TRUE(WaitFor(
      [&] {
        absl::MutexLock lock(&mu);
        return records.size() >= 1500;
      },
      absl::Seconds(60)));
  stop.store(true);
  producer.join();
  // One last record on every partition, so that each has changes after the snapshot.
  std::set<int32_t> marked;
  for (int i = 0; marked.size() < kPartitions && i < 10000; ++i) {
    ProducedRecord r = Produce(absl::StrCat("marker", i), "end");
    records.push_back(r);
    marked.insert(r.partition);
  }
  ASSERT_EQ(marked.size(), static_cast<size_t>(kPartitions));
  std::map<int32_t, int64_t> last_produced;
  for (const ProducedRecord& r : records) {
    last_produced[r.partition] = std::max(last_produced[r.partition], r.offset);
  }

  // Read changes until every partition's last produced offset has been delivered.
  std::map<int32_t, std::vector<int64_t>> change_offsets;
  std::map<std::string, std::string> state;
  for (const SubscribeResponse& s : snapshot) state[s.entry().key()] = s.entry().value();
  std::map<int32_t, int64_t> delivered_to;
  auto all_delivered = [&] {
    for (const auto& [p, last] : last_produced) {
      if (delivered_to.count(p) == 0 || delivered_to[p] < last) return false;
    }
    return true;
  };
  while (!all_delivered()) {
    SubscribeResponse got;
    ASSERT_TRUE(stream->reader->Read(&got)) << stream->reader->Finish().error_message();
    ASSERT_EQ(got.type(), SubscribeResponse::CHANGE);
    change_offsets[got.entry().partition()].push_back(got.offset());
    delivered_to[got.entry().partition()] = got.offset();
    if (got.deleted()) {
      state.erase(got.entry().key());
    } else {
      state[got.entry().key()] = got.entry().value();
    }
  }
  stream->context.TryCancel();

  // Every record (each sets a new value) after the snapshot is exactly one change: per
  // partition the change offsets are consecutive up to the last produced one, and the
  // snapshot is exactly the state before the first of them.
  for (const auto& [p, offsets] : change_offsets) {
    for (size_t i = 1; i < offsets.size(); ++i) {
      ASSERT_EQ(offsets[i], offsets[i - 1] + 1) << "partition " << p << ": gap or duplicate";
    }
  }
  std::map<std::string, std::string> replay = {{"seed", "0"}};
  for (const ProducedRecord& r : records) {
    if (r.offset < change_offsets[r.partition].front()) replay[r.key] = r.value;
  }
  std::map<std::string, std::string> snapshot_state;
  for (const SubscribeResponse& s : snapshot) snapshot_state[s.entry().key()] = s.entry().value();
  EXPECT_EQ(snapshot_state, replay) << "the snapshot is not the state before the first change";

  // The reconstructed state equals the store.
  WaitCaughtUp();
  grpc::Status status;
  Entries stored = client_->Scan("customers", 500, "", "", nullptr, &status);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(Entries(state.begin(), state.end()), stored);
}

TEST_F(SubscribeTest, StalledSubscriberEndsWithResourceExhaustedWhileIngestionContinues) {
  StartNode();
  Produce("seed", "0");
  WaitCaughtUp();
  SubscribeRequest request;
  request.set_store("customers");
  request.set_all(true);
  request.set_buffer_size(100);
  auto stream = Open(request);
  ASSERT_NE(stream, nullptr);
  // The subscriber stops reading. Far more than fits in gRPC's flow-control windows plus
  // the 100-change buffer.
  const std::string big(1000, 'x');
  for (int i = 0; i < 20000; ++i) {
    ASSERT_OK(producer_->ProduceAsync(Topic("customers"), absl::StrCat("key", i % 1000),
                                      absl::StrCat(i, big)));
  }
  ASSERT_OK(producer_->Flush());
  ProducedRecord last = Produce("last", "done");
  // Ingestion is not slowed down by the stalled stream: the store reaches the end.
  WaitCaughtUp();
  kiq::v1::GetResponse get;
  ASSERT_TRUE(client_->Get("customers", "last", &get).ok());
  EXPECT_EQ(get.entry().value(), "done");
  (void)last;

  // Now the subscriber reads again: what was in flight, then RESOURCE_EXHAUSTED.
  int changes = 0;
  SubscribeResponse got;
  while (stream->reader->Read(&got)) ++changes;
  grpc::Status status = stream->reader->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << status.error_message();
  EXPECT_THAT(status.error_message(), HasSubstr("buffer_size"));
  EXPECT_LT(changes, 20000);
}

TEST_F(SubscribeTest, CoalescingSubscriberKeepsTheLatestValuePerKey) {
  StartNode();
  Produce("seed", "0");
  WaitCaughtUp();
  SubscribeRequest request;
  request.set_store("customers");
  request.set_key_prefix("hot");
  request.set_buffer_size(10);
  request.set_on_overflow(SubscribeRequest::OVERFLOW_COALESCE);
  auto stream = Open(request);
  ASSERT_NE(stream, nullptr);
  const std::string big(300, 'x');
  std::map<std::string, std::string> latest;
  for (int i = 0; i < 10000; ++i) {
    const std::string key = absl::StrCat("hot", i % 5);
    latest[key] = absl::StrCat(i, big);
    ASSERT_OK(producer_->ProduceAsync(Topic("customers"), key, latest[key]));
    ASSERT_OK(producer_->ProduceAsync(Topic("customers"), absl::StrCat("cold", i % 5), "c"));
  }
  ASSERT_OK(producer_->Flush());
  for (const auto& [k, v] : latest) Produce(k, v + "-final");
  // Reading late, the subscriber still ends up with every key's latest value.
  std::map<std::string, std::string> seen;
  int changes = 0;
  while (seen.size() < latest.size() || std::any_of(seen.begin(), seen.end(), [](const auto& kv) {
           return !absl::EndsWith(kv.second, "-final");
         })) {
    SubscribeResponse got;
    bool read = stream->reader->Read(&got);
    ASSERT_TRUE(read) << stream->reader->Finish().error_message() << " after " << changes
                      << " changes; seen " << [&] {
                           std::string out;
                           for (const auto& [k, v] : seen)
                             out += k + "=" + v.substr(0, 8) + v.substr(v.size() - 6) + " ";
                           return out;
                         }();
    EXPECT_THAT(got.entry().key(), ::testing::StartsWith("hot"));
    seen[got.entry().key()] = got.entry().value();
    ++changes;
  }
  for (const auto& [k, v] : latest) EXPECT_EQ(seen[k], v + "-final");
  EXPECT_LT(changes, 10005) << "nothing was coalesced";
  stream->context.TryCancel();
}

TEST_F(SubscribeTest, RebalanceDoesNotEndTheSubscriptionNorSkipAChange) {
  StartNode("n1");
  Produce("seed", "0");
  WaitCaughtUp();
  SubscribeRequest request;
  request.set_store("customers");
  request.set_all(true);
  auto stream = Open(request);
  ASSERT_NE(stream, nullptr);
  // A second node joins: the group rebalances, n1's partitions are revoked and half of them
  // move to n2. The subscription on n1 follows them there and resumes where it stood.
  StartNode("n2");
  std::vector<ProducedRecord> expected;
  for (int round = 0; round < 40; ++round) {
    for (int k = 0; k < 24; ++k) {
      expected.push_back(Produce(absl::StrCat("key", k), absl::StrCat("v", round)));
    }
    if (round == 0) {
      // Wait until partitions have moved to n2 (both nodes ACTIVE) before the rest.
      ASSERT_TRUE(WaitFor(
          [&] {
            return client_->SettledOwners({"n1", "n2"}, kPartitions).has_value();
          },
          absl::Seconds(60)))
          << nodes_[1]->process().ReadLog();
    }
  }
  // Every change, in order per key, exactly once.
  std::map<std::string, std::vector<std::string>> want;
  for (const ProducedRecord& r : expected) want[r.key].push_back(r.value);
  std::map<std::string, std::vector<std::string>> got;
  std::set<int32_t> partitions;
  size_t received = 0;
  SubscribeResponse change;
  while (received < expected.size() && stream->reader->Read(&change)) {
    ASSERT_EQ(change.type(), SubscribeResponse::CHANGE);
    got[change.entry().key()].push_back(change.entry().value());
    partitions.insert(change.entry().partition());
    ++received;
  }
  ASSERT_EQ(received, expected.size()) << stream->reader->Finish().error_message();
  EXPECT_EQ(got, want);
  EXPECT_EQ(partitions.size(), static_cast<size_t>(kPartitions));
  // It did follow partitions (rather than never losing any): n1 counted the move.
  EXPECT_GE(MetricSum(ScrapeMetrics(nodes_[0]->http_port()), "kiq_subscription_moves_total",
                      {"store=\"customers\""}),
            1);
  stream->context.TryCancel();
}

}  // namespace
}  // namespace kiq::testing
