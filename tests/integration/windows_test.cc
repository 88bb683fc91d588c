// Windowed aggregations (examples/shop/topology.yaml) on kiq-nodes over a kiq-dev-kafka:
// every window of every key is compared with an independent in-memory recomputation from the
// produced records (their partition, order and timestamps), through WindowFetch, All and
// Count, on one node across kill -9 and on a 3-node cluster across a partition move. The data
// set has records exactly on window boundaries, out-of-order records within the grace period,
// late records beyond it, and enough stream time for old windows to expire.
#include <map>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <httplib.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "kiq/v1/query.grpc.pb.h"
#include "tests/testing/kafka_fixture.h"
#include "tests/testing/kiq_processes.h"
#include "tests/testing/process.h"
#include "tests/testing/queries.h"
#include "tests/testing/status_matchers.h"

namespace kiq::testing {
namespace {

constexpr int kPartitions = 4;
// A round minute, so that window starts are easy to read in failure messages.
constexpr int64_t kT0 = 1'700'000'040'000;

struct WindowDef {
  std::string store;
  std::string topic;
  int64_t size;
  int64_t advance;
  int64_t grace;
  int64_t retention;
  bool sum;  // else count
};

// The windowed stores of examples/shop/topology.yaml, restated here as the truth's spec.
const std::vector<WindowDef>& Defs() {
  static const std::vector<WindowDef> defs = {
      {"views_per_category", "page_views", 30'000, 30'000, 10'000, 300'000, false},
      {"views_per_category_hopping", "page_views", 60'000, 30'000, 10'000, 300'000, false},
      {"spend_per_user", "purchases", 60'000, 60'000, 10'000, 600'000, true},
  };
  return defs;
}

struct Produced {
  std::string topic;
  std::string key;
  int64_t ts;
  int64_t amount;
  int32_t partition;
};

// (key, window start) → value, for the live windows of one store.
using Windows = std::map<std::pair<std::string, int64_t>, int64_t>;

// The recomputation: Kafka Streams' windowed aggregation rules applied record by record in
// each partition's order, written independently of the node's code (windows found by testing
// every multiple of `advance` near the timestamp).
struct Truth {
  Windows live;
  int64_t late = 0;  // record–window pairs dropped
};

Truth Recompute(const WindowDef& def, const std::vector<Produced>& records) {
  Truth truth;
  Windows all;
  std::map<int32_t, int64_t> stream_time;
  std::map<std::pair<std::string, int64_t>, int32_t> partition_of;
  for (const Produced& r : records) {
    if (r.topic != def.topic) continue;
    auto [it, inserted] = stream_time.emplace(r.partition, r.ts);
    if (!inserted) it->second = std::max(it->second, r.ts);
    const int64_t now = it->second;
    for (int64_t k = r.ts / def.advance - def.size / def.advance - 2; k <= r.ts / def.advance;
         ++k) {
      const int64_t start = k * def.advance;
      if (start < 0 || !(start <= r.ts && r.ts < start + def.size)) continue;
      if (start + def.size + def.grace <= now) {
        ++truth.late;
        continue;
      }
      all[{r.key, start}] += def.sum ? r.amount : 1;
      partition_of[{r.key, start}] = r.partition;
    }
  }
  for (const auto& [window, value] : all) {
    const int64_t now = stream_time[partition_of[window]];
    if (now - window.second < def.retention) truth.live[window] = value;
  }
  return truth;
}

class WindowsTest : public KafkaFixture {
 protected:
  void SetUp() override {
    StartKafka("windows", {{"page_views", kPartitions},
                           {"purchases", kPartitions},
                           {"shop-views_per_category-changelog", kPartitions},
                           {"shop-views_per_category_hopping-changelog", kPartitions},
                           {"shop-spend_per_user-changelog", kPartitions},
                           {"customers", kPartitions},
                           {"shop-purchases_per_city-changelog", kPartitions},
                           {"shop-purchases_per_city-repartition", kPartitions}});
  }

  void StartNode(const std::string& id) {
    auto node = LaunchNode(ExampleTopology("shop"), id);
    ASSERT_OK(node);
    clients_[id] = std::make_unique<NodeClient>((*node)->target());
    stubs_[id] = kiq::v1::QueryService::NewStub(
        grpc::CreateChannel((*node)->target(), grpc::InsecureChannelCredentials()));
    nodes_[id] = std::move(*node);
  }

  void Produce(const std::string& topic, const std::string& key, int64_t ts, int64_t amount = 0) {
    const std::string value =
        topic == "page_views"
            ? absl::StrCat(R"({"user":"u)", amount, R"(","category":")", key, R"(","page":"/)", key,
                           "/", ts % 1000, R"("})")
            : absl::StrCat(R"({"user":")", key, R"(","item":"lamp","amount":)", amount, "}");
    const TestProducer::Delivered delivered = ProduceAndTrack(topic, key, value, ts);
    records_.push_back(Produced{topic, key, ts, amount, delivered.partition});
  }

  // A batch of views and purchases around `from`..`from + span`: mostly in order, some out of
  // order within the grace period, some far behind (late), and some exactly on boundaries.
  void ProduceBatch(std::mt19937& rng, int64_t from, int64_t span, int n) {
    const std::vector<std::string> categories = {"books", "garden", "toys", "music",
                                                 "games", "food",   "tools"};
    int64_t ts = from;
    for (int i = 0; i < n; ++i) {
      ts = std::min(from + span, ts + static_cast<int64_t>(rng() % (2 * span / n + 1)));
      int64_t t = ts;
      switch (rng() % 10) {
        case 0:
          t = ts - static_cast<int64_t>(rng() % 15'000);
          break;  // out of order
        case 1:
          t = ts - 60'000 - static_cast<int64_t>(rng() % 60'000);
          break;  // late
        case 2:
          t = ts / 30'000 * 30'000;
          break;  // = start
        case 3:
          t = ts / 30'000 * 30'000 - 1;
          break;  // = end - 1
        default:
          break;
      }
      if (t < 0) t = 0;
      Produce("page_views", categories[rng() % categories.size()], t, rng() % 50);
      if (i % 3 == 0) {
        ASSERT_NO_FATAL_FAILURE(Produce("purchases", absl::StrCat("u", rng() % 5), t,
                                        static_cast<int64_t>(rng() % 200) - 20));
      }
    }
  }

  void WaitCaughtUp(const std::string& id) {
    for (const WindowDef& def : Defs()) {
      ASSERT_TRUE(
          WaitFor([&] { return clients_[id]->CaughtUp(def.store, Topic(def.topic), produced_); },
                  absl::Seconds(90)))
          << "store " << def.store << " did not catch up on node " << id;
    }
  }

  grpc::Status Fetch(const std::string& id, const std::string& store, const std::string& key,
                     int64_t from, int64_t to, kiq::v1::WindowFetchResponse* response) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
    kiq::v1::WindowFetchRequest request;
    request.set_store(store);
    request.set_key(key);
    request.set_time_from(from);
    request.set_time_to(to);
    return stubs_[id]->WindowFetch(&context, request, response);
  }

  // Every live window of `store` through All (or Range when `from`/`to` are given), paginated
  // with a small page size.
  Windows AllWindows(const std::string& id, const std::string& store, int64_t size,
                     const std::string& from = "", const std::string& to = "") {
    Windows out;
    std::string token;
    for (int page = 0; page < 1000; ++page) {
      grpc::ClientContext context;
      context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
      kiq::v1::ScanResponse response;
      grpc::Status status;
      if (from.empty() && to.empty()) {
        kiq::v1::AllRequest request;
        request.set_store(store);
        request.set_page_size(7);
        request.set_page_token(token);
        status = stubs_[id]->All(&context, request, &response);
      } else {
        kiq::v1::RangeRequest request;
        request.set_store(store);
        request.set_from(from);
        request.set_to(to);
        request.set_page_size(5);
        request.set_page_token(token);
        status = stubs_[id]->Range(&context, request, &response);
      }
      EXPECT_TRUE(status.ok()) << status.error_message();
      if (!status.ok()) break;
      for (const kiq::v1::Entry& e : response.entries()) {
        EXPECT_TRUE(e.has_window()) << e.key();
        EXPECT_EQ(e.window().end_ms() - e.window().start_ms(), size);
        int64_t v = 0;
        EXPECT_TRUE(absl::SimpleAtoi(e.value(), &v)) << e.value();
        EXPECT_TRUE(out.emplace(std::make_pair(e.key(), e.window().start_ms()), v).second)
            << "duplicate window " << e.key() << "@" << e.window().start_ms();
      }
      token = response.next_page_token();
      if (token.empty()) break;
    }
    return out;
  }

  // Asserts every window of every store through node `id`: WindowFetch per key (all windows,
  // and a sub-range), All (paginated) and Count.
  void ExpectExact(const std::string& id) {
    for (const WindowDef& def : Defs()) {
      SCOPED_TRACE(absl::StrCat("node ", id, " store ", def.store));
      const Truth truth = Recompute(def, records_);
      std::map<std::string, std::vector<std::pair<int64_t, int64_t>>> by_key;
      std::set<std::string> keys;
      for (const Produced& r : records_) {
        if (r.topic == def.topic) keys.insert(r.key);
      }
      for (const auto& [window, value] : truth.live) {
        by_key[window.first].emplace_back(window.second, value);
      }
      for (const std::string& key : keys) {
        kiq::v1::WindowFetchResponse response;
        grpc::Status status = Fetch(id, def.store, key, 0, 0, &response);
        ASSERT_TRUE(status.ok()) << status.error_message();
        std::vector<std::pair<int64_t, int64_t>> got;
        for (const kiq::v1::Entry& e : response.entries()) {
          EXPECT_EQ(e.key(), key);
          EXPECT_EQ(e.window().end_ms() - e.window().start_ms(), def.size);
          int64_t v = 0;
          EXPECT_TRUE(absl::SimpleAtoi(e.value(), &v));
          got.emplace_back(e.window().start_ms(), v);
        }
        EXPECT_EQ(got, by_key[key]) << "key " << key;
        // A sub-range: inclusive bounds on the window start.
        const auto& want = by_key[key];
        if (want.size() >= 3) {
          const int64_t lo = want[1].first;
          const int64_t hi = want[want.size() - 2].first;
          ASSERT_TRUE(Fetch(id, def.store, key, lo, hi, &response).ok());
          std::vector<std::pair<int64_t, int64_t>> sub;
          for (const kiq::v1::Entry& e : response.entries()) {
            int64_t v = 0;
            EXPECT_TRUE(absl::SimpleAtoi(e.value(), &v));
            sub.emplace_back(e.window().start_ms(), v);
          }
          const std::vector<std::pair<int64_t, int64_t>> inner(want.begin() + 1, want.end() - 1);
          EXPECT_EQ(sub, inner);
        }
      }
      EXPECT_EQ(AllWindows(id, def.store, def.size), truth.live);
      // Range bounds apply to the key; every window of `to` is included.
      const std::string from = def.sum ? "u1" : "food";
      const std::string to = def.sum ? "u3" : "games";
      Windows in_range;
      for (const auto& [window, value] : truth.live) {
        if (window.first >= from && window.first <= to) in_range[window] = value;
      }
      EXPECT_EQ(AllWindows(id, def.store, def.size, from, to), in_range);
      kiq::v1::CountResponse count;
      ASSERT_TRUE(clients_[id]->Count(def.store, &count).ok());
      EXPECT_EQ(count.count(), static_cast<int64_t>(truth.live.size()));
    }
  }

  // kiq_late_records_total{store} as scraped from node `id` (0 when absent).
  int64_t LateMetric(const std::string& id, const std::string& store) {
    httplib::Client http("127.0.0.1", nodes_[id]->http_port());
    auto result = http.Get("/metrics");
    EXPECT_TRUE(result && result->status == 200);
    if (!result) return -1;
    const std::string prefix = absl::StrCat("kiq_late_records_total{store=\"", store, "\"} ");
    const std::string& body = result->body;
    size_t at = body.find(prefix);
    if (at == std::string::npos) return 0;
    size_t end = body.find('\n', at);
    double v = 0;
    EXPECT_TRUE(absl::SimpleAtod(body.substr(at + prefix.size(), end - at - prefix.size()), &v));
    return static_cast<int64_t>(v);
  }

  std::map<std::string, std::unique_ptr<NodeProcess>> nodes_;
  std::map<std::string, std::unique_ptr<NodeClient>> clients_;
  std::map<std::string, std::unique_ptr<kiq::v1::QueryService::Stub>> stubs_;
  std::vector<Produced> records_;
};

TEST_F(WindowsTest, WindowsMatchRecomputationAcrossLateRecordsExpiryAndKill9) {
  std::mt19937 rng(4242);
  ASSERT_NO_FATAL_FAILURE(StartNode("n1"));
  // Boundary records of one key, first in its partition: start, end - 1 and end of the
  // window [kT0, kT0 + 30s); then the grace boundary of that window (end + 10s grace): at
  // stream time kT0 + 39.999s it still accepts, at kT0 + 40s it no longer does.
  for (int64_t ts :
       {kT0, kT0 + 29'999, kT0 + 30'000, kT0 + 39'999, kT0 + 1, kT0 + 40'000, kT0 + 2}) {
    ASSERT_NO_FATAL_FAILURE(Produce("page_views", "edge", ts));
  }
  ASSERT_NO_FATAL_FAILURE(WaitCaughtUp("n1"));
  ASSERT_NO_FATAL_FAILURE(ExpectExact("n1"));
  {
    // Spelled out for the tumbling store: [kT0, +30s) has kT0, +29.999s, +1ms; kT0 + 2 was late.
    kiq::v1::WindowFetchResponse edge;
    ASSERT_TRUE(Fetch("n1", "views_per_category", "edge", 0, 0, &edge).ok());
    ASSERT_EQ(edge.entries_size(), 2);
    EXPECT_EQ(edge.entries(0).window().start_ms(), kT0);
    EXPECT_EQ(edge.entries(0).value(), "3");
    EXPECT_EQ(edge.entries(1).window().start_ms(), kT0 + 30'000);
    EXPECT_EQ(edge.entries(1).value(), "3");
    EXPECT_EQ(LateMetric("n1", "views_per_category"), 1);
  }
  // 12 minutes of stream time: windows older than 5 minutes (10 for spend) expire.
  ASSERT_NO_FATAL_FAILURE(ProduceBatch(rng, kT0, 12 * 60'000, 300));
  ASSERT_NO_FATAL_FAILURE(WaitCaughtUp("n1"));
  ASSERT_NO_FATAL_FAILURE(ExpectExact("n1"));

  int64_t late_total = 0;
  for (const WindowDef& def : Defs()) {
    const Truth truth = Recompute(def, records_);
    EXPECT_EQ(LateMetric("n1", def.store), truth.late) << def.store;
    late_total += truth.late;
  }
  EXPECT_GT(late_total, 0) << "the data set must contain late records";

  // A non-windowed read of a windowed store, and WindowFetch of a table.
  kiq::v1::GetResponse get;
  grpc::Status status = clients_["n1"]->Get("views_per_category", "books", &get);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(status.error_message(), ::testing::HasSubstr("WindowFetch"));
  kiq::v1::WindowFetchResponse fetched;
  status = Fetch("n1", "big_purchases", "u1", 0, 0, &fetched);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  status = Fetch("n1", "no_such_store", "u1", 0, 0, &fetched);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(status.error_message(), ::testing::HasSubstr("no_such_store"));
  {
    // Subscribe to one key of a windowed store: the snapshot is exactly the key's live
    // windows (as WindowFetch answers them; never the stream-time entry, never a longer key),
    // then a record makes one CHANGE of its window.
    kiq::v1::WindowFetchResponse live;
    ASSERT_TRUE(Fetch("n1", "views_per_category", "books", 0, 0, &live).ok());
    ASSERT_GT(live.entries_size(), 0);
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    kiq::v1::SubscribeRequest request;
    request.set_store("views_per_category");
    request.set_key("books");
    request.set_from(kiq::v1::SubscribeRequest::FROM_SNAPSHOT);
    auto reader = stubs_["n1"]->Subscribe(&context, request);
    std::vector<std::string> snapshot;
    kiq::v1::SubscribeResponse event;
    while (reader->Read(&event) && event.type() == kiq::v1::SubscribeResponse::SNAPSHOT) {
      snapshot.push_back(absl::StrCat(event.entry().key(), "@", event.entry().window().start_ms(),
                                      "-", event.entry().window().end_ms(), "=",
                                      event.entry().value()));
    }
    ASSERT_EQ(event.type(), kiq::v1::SubscribeResponse::SNAPSHOT_END)
        << reader->Finish().error_message();
    std::vector<std::string> want;
    for (const kiq::v1::Entry& e : live.entries()) {
      want.push_back(absl::StrCat(e.key(), "@", e.window().start_ms(), "-", e.window().end_ms(),
                                  "=", e.value()));
    }
    EXPECT_EQ(snapshot, want);
    int64_t now = 0;
    for (const Produced& r : records_) now = std::max(now, r.ts);
    ASSERT_NO_FATAL_FAILURE(Produce("page_views", "books-and-more", now));  // another key
    ASSERT_NO_FATAL_FAILURE(Produce("page_views", "books", now));
    // The retention sweep may delete expired windows of the key first: never live ones.
    std::set<int64_t> live_starts;
    for (const kiq::v1::Entry& e : live.entries()) live_starts.insert(e.window().start_ms());
    do {
      ASSERT_TRUE(reader->Read(&event)) << reader->Finish().error_message();
      EXPECT_EQ(event.type(), kiq::v1::SubscribeResponse::CHANGE);
      if (event.deleted()) {
        EXPECT_FALSE(live_starts.count(event.entry().window().start_ms()));
      }
    } while (event.deleted());
    EXPECT_EQ(event.entry().key(), "books");
    kiq::v1::WindowFetchResponse after;
    const int64_t start = now / 30'000 * 30'000;
    ASSERT_TRUE(Fetch("n1", "views_per_category", "books", start, start, &after).ok());
    ASSERT_EQ(after.entries_size(), 1);
    EXPECT_EQ(event.entry().window().start_ms(), start);
    EXPECT_EQ(event.entry().window().end_ms(), start + 30'000);
    EXPECT_EQ(event.entry().value(), after.entries(0).value());
    context.TryCancel();
  }

  // kill -9 and restart on the same data: every window and the stream time survive. Records
  // produced after the restart that are late only with respect to the old stream time must
  // be dropped.
  const std::vector<Produced> before = records_;
  nodes_["n1"]->process().Kill();
  nodes_.erase("n1");
  ASSERT_NO_FATAL_FAILURE(StartNode("n1"));
  ASSERT_NO_FATAL_FAILURE(WaitCaughtUp("n1"));
  ASSERT_NO_FATAL_FAILURE(ExpectExact("n1"));
  int64_t stream_end = 0;
  for (const Produced& r : records_) stream_end = std::max(stream_end, r.ts);
  // Late for every partition that saw the stream's end region; in any case the truth decides.
  for (const char* category : {"books", "garden", "toys", "music", "games", "food", "tools"}) {
    ASSERT_NO_FATAL_FAILURE(Produce("page_views", category, stream_end - 4 * 60'000));
  }
  ASSERT_NO_FATAL_FAILURE(ProduceBatch(rng, stream_end, 10 * 60'000, 200));
  ASSERT_NO_FATAL_FAILURE(WaitCaughtUp("n1"));
  ASSERT_NO_FATAL_FAILURE(ExpectExact("n1"));
  for (const WindowDef& def : Defs()) {
    const int64_t late_after = Recompute(def, records_).late - Recompute(def, before).late;
    EXPECT_EQ(LateMetric("n1", def.store), late_after) << def.store;
  }
}

TEST_F(WindowsTest, ClusterAnswersEveryWindowThroughEveryNodeAndAcrossAPartitionMove) {
  std::mt19937 rng(77);
  for (const char* id : {"n1", "n2", "n3"}) ASSERT_NO_FATAL_FAILURE(StartNode(id));
  ASSERT_NO_FATAL_FAILURE(ProduceBatch(rng, kT0, 10 * 60'000, 240));
  for (const char* id : {"n1", "n2", "n3"}) ASSERT_NO_FATAL_FAILURE(WaitCaughtUp(id));
  // Every key through every node: at least two of the three are not its owner.
  for (const char* id : {"n1", "n2", "n3"}) ASSERT_NO_FATAL_FAILURE(ExpectExact(id));
  {
    // And through a kiq-router, which holds no partition: everything is forwarded.
    auto router = LaunchRouter(ExampleTopology("shop"));
    ASSERT_OK(router);
    clients_["router"] = std::make_unique<NodeClient>((*router)->target());
    stubs_["router"] = kiq::v1::QueryService::NewStub(
        grpc::CreateChannel((*router)->target(), grpc::InsecureChannelCredentials()));
    nodes_["router"] = std::move(*router);
    ASSERT_NO_FATAL_FAILURE(ExpectExact("router"));
    nodes_.erase("router");
    clients_.erase("router");
    stubs_.erase("router");
  }

  // A partition move: kill -9 one node; its partitions are restored from the changelogs
  // (windows and stream time) by the others.
  nodes_["n2"]->process().Kill();
  nodes_.erase("n2");
  clients_.erase("n2");
  stubs_.erase("n2");
  int64_t stream_end = 0;
  for (const Produced& r : records_) stream_end = std::max(stream_end, r.ts);
  for (const char* category : {"books", "garden", "toys", "music", "games", "food", "tools"}) {
    ASSERT_NO_FATAL_FAILURE(Produce("page_views", category, stream_end - 3 * 60'000));
  }
  ASSERT_NO_FATAL_FAILURE(ProduceBatch(rng, stream_end, 3 * 60'000, 90));
  for (const char* id : {"n1", "n3"}) ASSERT_NO_FATAL_FAILURE(WaitCaughtUp(id));
  for (const char* id : {"n1", "n3"}) ASSERT_NO_FATAL_FAILURE(ExpectExact(id));
}

}  // namespace
}  // namespace kiq::testing
