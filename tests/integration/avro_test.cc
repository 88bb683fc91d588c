// The payments-avro example (examples/payments-avro/topology.yaml): Avro values written by a
// real serializer (@kafkajs/confluent-schema-registry, tests/js/encode.js) against a test
// Schema Registry (tests/js/registry.js), on one node and on a 3-node cluster, every store
// compared with a truth computed here; two writer schema versions (v2 adds a field with a
// default); undecodable records dead-lettered with their reason; and a registry outage: a
// partition whose next record has a schema id not yet cached waits (nothing dropped, nothing
// dead-lettered) while the others go on, and catches up once the registry is back; the same
// with a registry that holds requests open (the fetch is off the ingestion thread); standby
// replicas decoding through the same cache.
#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
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
#include <rapidjson/document.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "common/topology/partitioner.h"
#include "kiq/v1/query.grpc.pb.h"
#include "tests/testing/kafka_fixture.h"
#include "tests/testing/kiq_processes.h"
#include "tests/testing/metrics.h"
#include "tests/testing/queries.h"
#include "tests/testing/schema_registry.h"
#include "tests/testing/status_matchers.h"

namespace kiq::testing {
namespace {

constexpr int kPartitions = 4;
constexpr char kApp[] = "payments-avro";
const char* const kMethods[] = {"CARD", "CASH", "TRANSFER"};
const char* const kStores[] = {"last_payment", "spend", "payments_per_method", "big_payments",
                               "totals_per_5s"};
// The record timestamps of the cluster test: payment i at kT0 + i * kStepMs, so its 5-second
// window of totals_per_5s is known here.
constexpr int64_t kT0 = 1'700'000'000'000;  // a multiple of 5 s
constexpr int64_t kStepMs = 40;
constexpr int64_t kWindowMs = 5'000;

const char kPaymentV1[] =
    R"({"type":"record","name":"Payment","namespace":"shop","fields":[)"
    R"({"name":"id","type":"string"},{"name":"customer","type":"string"},)"
    R"({"name":"amount","type":"long"},)"
    R"({"name":"method","type":{"type":"enum","name":"Method","symbols":["CARD","CASH","TRANSFER"]}}]})";
const char kPaymentV2[] =
    R"({"type":"record","name":"Payment","namespace":"shop","fields":[)"
    R"({"name":"id","type":"string"},{"name":"customer","type":"string"},)"
    R"({"name":"amount","type":"long"},)"
    R"({"name":"method","type":{"type":"enum","name":"Method","symbols":["CARD","CASH","TRANSFER"]}},)"
    R"({"name":"currency","type":"string","default":"EUR"}]})";
// A third version, registered only for the outage test.
const char kPaymentV3[] =
    R"({"type":"record","name":"Payment","namespace":"shop","fields":[)"
    R"({"name":"id","type":"string"},{"name":"customer","type":"string"},)"
    R"({"name":"amount","type":"long"},)"
    R"({"name":"method","type":{"type":"enum","name":"Method","symbols":["CARD","CASH","TRANSFER"]}},)"
    R"({"name":"currency","type":"string","default":"EUR"},)"
    R"({"name":"note","type":["null","string"],"default":null}]})";

struct Payment {
  std::string id;
  std::string customer;
  int64_t amount = 0;
  std::string method;
  int version = 1;  // 1, 2 or 3
};

std::string ValueJson(const Payment& p) {
  std::string json = absl::StrCat(R"({"id":")", p.id, R"(","customer":")", p.customer,
                                  R"(","amount":)", p.amount, R"(,"method":")", p.method, "\"");
  if (p.version >= 2) absl::StrAppend(&json, R"(,"currency":"USD")");
  if (p.version >= 3) absl::StrAppend(&json, R"(,"note":"v3")");
  return json + "}";
}

// What each store must hold after `payments` (the bad records left out).
struct Truth {
  std::map<std::string, int64_t> spend, big, per_method;
  std::map<std::string, Payment> last;
  // totals_per_5s: window start → {sum, count, max} of the payments with a known timestamp.
  std::map<int64_t, std::array<int64_t, 3>> totals;
  void Add(const Payment& p, std::optional<int64_t> timestamp_ms = std::nullopt) {
    spend[p.customer] += p.amount;
    if (p.amount >= 10000) ++big[p.customer];
    ++per_method[p.method];
    last[p.customer] = p;
    if (timestamp_ms) {
      std::array<int64_t, 3>& t = totals[*timestamp_ms / kWindowMs * kWindowMs];
      t[0] += p.amount;
      ++t[1];
      t[2] = std::max(t[2], p.amount);
    }
  }
};

Entries AsEntries(const std::map<std::string, int64_t>& m) {
  Entries out;
  for (const auto& [k, v] : m) out.emplace_back(k, std::to_string(v));
  return out;
}

class AvroTest : public KafkaFixture {
 protected:
  void SetUp() override {
    StartKafka(kApp, {{"payments", kPartitions},
                      {"payments-avro-spend-changelog", kPartitions},
                      {"payments-avro-payments_per_method-changelog", kPartitions},
                      {"payments-avro-payments_per_method-repartition", kPartitions},
                      {"payments-avro-big_payments-changelog", kPartitions},
                      {"payments-avro-totals_per_5s-changelog", kPartitions},
                      {"payments-avro-totals_per_5s-repartition", kPartitions}});
    absl::StatusOr<std::unique_ptr<SchemaRegistryProcess>> registry =
        SchemaRegistryProcess::Start(dir_);
    ASSERT_OK(registry);
    registry_ = *std::move(registry);
    // The example's topology, pointed at the test registry.
    config_ = WriteFile("payments-avro.yaml",
                        absl::StrReplaceAll(ReadFile(ExampleTopology("payments-avro")),
                                            {{"http://127.0.0.1:8081", registry_->url()}}));
  }

  void StartNodes(int n) {
    for (int i = 1; i <= n; ++i) {
      auto node = LaunchNode(config_, absl::StrCat("n", i));
      ASSERT_OK(node);
      clients_.push_back(std::make_unique<NodeClient>((*node)->target()));
      nodes_.push_back(std::move(*node));
    }
  }

  // Registers v1..v3 and encodes `payments` with their versions' schemas.
  std::vector<std::string> Encode(const std::vector<Payment>& payments) {
    std::vector<SerializerRecord> records;
    for (const Payment& p : payments) records.push_back({p.version - 1, ValueJson(p), ""});
    absl::StatusOr<Encoded> encoded = EncodeWithSerializer(
        dir_, registry_->url(),
        {{"payments-value", "AVRO", kPaymentV1},
         {"payments-value", "AVRO", kPaymentV2},
         {"payments-value", "AVRO", kPaymentV3}},
        records);
    EXPECT_OK(encoded);
    if (!encoded.ok()) return {};
    schema_ids_ = encoded->schema_ids;
    return encoded->values;
  }

  // Every store of every node equals the truth (grouped stores are waited for: their
  // positions are those of the repartition topic).
  void ExpectTruth(const Truth& truth) {
    for (size_t n = 0; n < clients_.size(); ++n) {
      NodeClient& client = *clients_[n];
      for (const char* store : {"last_payment", "spend", "big_payments"}) {
        ASSERT_TRUE(WaitFor([&] { return client.CaughtUp(store, Topic("payments"), produced_); },
                            absl::Seconds(60)))
            << store << " through node " << n + 1 << "\n"
            << nodes_[0]->process().ReadLog();
      }
      EXPECT_EQ(Scan(client, "spend"), AsEntries(truth.spend)) << "node " << n + 1;
      EXPECT_EQ(Scan(client, "big_payments"), AsEntries(truth.big)) << "node " << n + 1;
      ASSERT_TRUE(WaitFor([&] { return Scan(client, "payments_per_method") == AsEntries(truth.per_method); },
                          absl::Seconds(30)))
          << "payments_per_method through node " << n + 1;
      if (!truth.totals.empty()) {
        ASSERT_TRUE(WaitFor([&] { return Totals(n) == truth.totals; }, absl::Seconds(30)))
            << "totals_per_5s through node " << n + 1 << ": " << Totals(n).size() << " of "
            << truth.totals.size() << " windows";
      }
      // The table holds the JSON of each customer's latest record, as its writer wrote it:
      // v1 records have no currency, v2 and v3 ones do.
      const Entries last = Scan(client, "last_payment");
      ASSERT_EQ(last.size(), truth.last.size());
      for (const auto& [customer, json] : last) {
        const Payment& want = truth.last.at(customer);
        rapidjson::Document doc;
        doc.Parse(json.c_str());
        ASSERT_TRUE(doc.IsObject()) << json;
        EXPECT_EQ(std::string(doc["id"].GetString()), want.id);
        EXPECT_EQ(doc["amount"].GetInt64(), want.amount);
        EXPECT_EQ(std::string(doc["method"].GetString()), want.method);
        EXPECT_EQ(doc.HasMember("currency"), want.version >= 2) << json;
      }
      // Answers carry the structured value, as for JSON stores.
      kiq::v1::GetResponse get;
      const auto& [customer, want] = *truth.last.begin();
      ASSERT_TRUE(client.Get("last_payment", customer, &get).ok());
      EXPECT_EQ(get.entry().json().struct_value().fields().at("id").string_value(), want.id);
    }
  }

  // totals_per_5s through node n: every window of the key "all" (paged All), as
  // window start → {amount, payments, largest}.
  std::map<int64_t, std::array<int64_t, 3>> Totals(size_t n) {
    auto stub = kiq::v1::QueryService::NewStub(
        grpc::CreateChannel(nodes_[n]->target(), grpc::InsecureChannelCredentials()));
    std::map<int64_t, std::array<int64_t, 3>> out;
    std::string token;
    for (int page = 0; page < 100; ++page) {
      grpc::ClientContext context;
      context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
      kiq::v1::AllRequest request;
      request.set_store("totals_per_5s");
      request.set_page_size(3);
      request.set_page_token(token);
      kiq::v1::ScanResponse response;
      grpc::Status status = stub->All(&context, request, &response);
      EXPECT_TRUE(status.ok()) << status.error_message();
      if (!status.ok()) break;
      for (const kiq::v1::Entry& e : response.entries()) {
        EXPECT_EQ(e.key(), "all");
        EXPECT_EQ(e.window().end_ms() - e.window().start_ms(), kWindowMs);
        const auto& row = e.json().struct_value().fields();
        std::array<int64_t, 3> t{};
        for (const auto& [i, name] : {std::pair<int, const char*>{0, "amount"}, {1, "payments"},
                                      {2, "largest"}}) {
          auto it = row.find(name);
          EXPECT_TRUE(it != row.end()) << e.value();
          if (it != row.end()) t[i] = static_cast<int64_t>(it->second.number_value());
        }
        EXPECT_TRUE(out.emplace(e.window().start_ms(), t).second)
            << "window " << e.window().start_ms() << " twice";
      }
      token = response.next_page_token();
      if (token.empty()) break;
    }
    return out;
  }

  static Entries Scan(NodeClient& client, const std::string& store) {
    grpc::Status status;
    Entries out = client.Scan(store, 50, "", "", nullptr, &status);
    EXPECT_TRUE(status.ok()) << store << ": " << status.error_message();
    return out;
  }

  std::unique_ptr<SchemaRegistryProcess> registry_;
  std::string config_;
  std::vector<int32_t> schema_ids_;
  std::vector<std::unique_ptr<NodeProcess>> nodes_;
  std::vector<std::unique_ptr<NodeClient>> clients_;
};

class AvroClusterTest : public AvroTest, public ::testing::WithParamInterface<int> {};

TEST_P(AvroClusterTest, StoresOverTwoWriterVersionsMatchTheTruthAndBadRecordsAreDeadLettered) {
  std::mt19937 rng(1212);
  std::vector<Payment> payments;
  for (int i = 0; i < 400; ++i) {
    Payment p;
    p.id = absl::StrCat("pay-", i);
    p.customer = absl::StrCat("c", rng() % 20);
    p.amount = 1 + static_cast<int64_t>(rng() % 20000);
    p.method = kMethods[rng() % 3];
    p.version = 1 + static_cast<int>(rng() % 2);  // v1 and v2 interleaved (evolution)
    payments.push_back(p);
  }
  const std::vector<std::string> encoded = Encode(payments);
  ASSERT_EQ(encoded.size(), payments.size());
  StartNodes(GetParam());

  Truth truth;
  // Each bad record is bad for every store of the source: one letter per store.
  std::multiset<std::pair<std::string, std::string>> expected_letters;
  auto expect_bad = [&](const std::string& why) {
    for (const char* store : kStores) expected_letters.emplace(store, why);
  };
  for (size_t i = 0; i < payments.size(); ++i) {
    const Payment& p = payments[i];
    const int64_t timestamp_ms = kT0 + static_cast<int64_t>(i) * kStepMs;
    ProduceAndTrack("payments", p.customer, encoded[i], timestamp_ms);
    truth.Add(p, timestamp_ms);
    if (i % 100 == 7) {  // JSON where Avro is expected: no magic byte
      ProduceAndTrack("payments", p.customer, ValueJson(p));
      expect_bad("not_wire_format");
    } else if (i % 100 == 31) {  // an id the registry never gave out
      std::string unknown = encoded[i];
      unknown.replace(1, 4, std::string("\x00\x00\x27\x0f", 4));  // id 9999
      ProduceAndTrack("payments", p.customer, unknown);
      expect_bad("unknown_schema");
    } else if (i % 100 == 67) {  // truncated: the enum's index is cut off
      ProduceAndTrack("payments", p.customer, encoded[i].substr(0, encoded[i].size() - 1));
      expect_bad("undecodable");
    }
  }
  ExpectTruth(truth);

  // At least once: with 3 nodes a partition can move while its first records are read, and
  // its new owner dead-letters again what the previous one did since that store's last
  // changelog record. Every copy must be the same letter.
  const auto letters = ConsumeDeadLetters(bootstrap_servers(), Topic("payments-avro-dlq"),
                                          expected_letters.size(), absl::Seconds(30));
  std::multiset<std::pair<std::string, std::string>> got;
  for (const auto& [identity, copies] : letters) {
    std::set<std::tuple<std::string, std::optional<std::string>, std::string>> distinct;
    for (const ConsumedRecord& letter : copies) {
      std::map<std::string, std::string> h(letter.headers.begin(), letter.headers.end());
      distinct.emplace(letter.key, letter.value, h["kiq.reason"]);
    }
    EXPECT_EQ(distinct.size(), 1u) << identity << ": copies differ";
    std::map<std::string, std::string> h(copies[0].headers.begin(), copies[0].headers.end());
    const std::string& reason = h["kiq.reason"];
    std::string why = "other: " + reason;
    if (absl::StrContains(reason, "not in the Schema Registry wire format (magic byte 0x7b")) {
      why = "not_wire_format";
    } else if (absl::StrContains(reason, "unknown schema id 9999")) {
      why = "unknown_schema";
    } else if (absl::StrContains(reason, "not valid Avro for its writer schema")) {
      why = "undecodable";
    }
    got.emplace(h["kiq.store"], why);
    // Dead letters carry the bytes as produced, not their decoding.
    EXPECT_FALSE(copies[0].value && absl::StartsWith(*copies[0].value, "{\"id\":\"pay") &&
                 why != "not_wire_format");
  }
  EXPECT_EQ(got, expected_letters);
  // Counted by reason on every node together.
  double undecodable = 0;
  for (auto& node : nodes_) {
    undecodable += MetricSum(ScrapeMetrics(node->http_port()), "kiq_bad_records_total",
                             {"store=\"spend\"", "reason=\"undecodable\""});
  }
  // Counted with each letter sent: once on one node, at least once where partitions moved.
  if (GetParam() == 1) {
    EXPECT_EQ(undecodable, 4);
  } else {
    EXPECT_GE(undecodable, 4);
  }
  for (auto& node : nodes_) EXPECT_TRUE(node->process().running());
}

INSTANTIATE_TEST_SUITE_P(Nodes, AvroClusterTest, ::testing::Values(1, 3),
                         [](const ::testing::TestParamInfo<int>& info) {
                           return absl::StrCat(info.param, info.param == 1 ? "Node" : "Nodes");
                         });

TEST_F(AvroTest, ARegistryOutagePausesOnlyThePartitionWithAnUnknownIdAndLosesNothing) {
  // Customers by partition: `blocked` is the one customer whose records will carry the new id.
  std::map<int32_t, std::vector<std::string>> by_partition;
  for (int c = 0; c < 40; ++c) {
    const std::string customer = absl::StrCat("c", c);
    by_partition[Murmur2Partition(customer, kPartitions)].push_back(customer);
  }
  const std::string blocked = by_partition[0].front();
  std::vector<std::string> others;  // customers of the other partitions
  for (int32_t p = 1; p < kPartitions; ++p) {
    for (const std::string& c : by_partition[p]) others.push_back(c);
  }

  std::vector<Payment> before, during_known, during_new;
  int n = 0;
  auto payment = [&](const std::string& customer, int version) {
    Payment p{absl::StrCat("pay-", n), customer, 100 + n, kMethods[n % 3], version};
    ++n;
    return p;
  };
  for (int i = 0; i < 60; ++i) before.push_back(payment(i % 2 ? blocked : others[i % others.size()], 1));
  for (int i = 0; i < 30; ++i) during_new.push_back(payment(blocked, 3));
  for (int i = 0; i < 60; ++i) during_known.push_back(payment(others[i % others.size()], 2));
  std::vector<Payment> all = before;
  all.insert(all.end(), during_new.begin(), during_new.end());
  all.insert(all.end(), during_known.begin(), during_known.end());
  const std::vector<std::string> encoded = Encode(all);  // registers v3 too; the node has not seen it
  ASSERT_EQ(encoded.size(), all.size());

  StartNodes(1);
  Truth truth;
  size_t i = 0;
  // v1 only, then a v2 record of a partition other than the blocked one (both ids cached).
  for (; i < before.size(); ++i) {
    ProduceAndTrack("payments", all[i].customer, encoded[i]);
    truth.Add(all[i]);
  }
  ProduceAndTrack("payments", during_known[0].customer, encoded[before.size() + during_new.size()]);
  truth.Add(during_known[0]);
  ExpectTruth(truth);

  ASSERT_OK(registry_->Stop());
  const Truth at_outage = truth;
  for (; i < all.size(); ++i) {
    if (i == before.size() + during_new.size()) continue;  // produced above
    ProduceAndTrack("payments", all[i].customer, encoded[i]);
    truth.Add(all[i]);
  }
  // The blocked partition waits; the others (cached ids) are ingested to the end.
  NodeClient& client = *clients_[0];
  ASSERT_TRUE(WaitFor(
      [&] {
        return MetricSum(ScrapeMetrics(nodes_[0]->http_port()), "kiq_registry_paused_partitions") == 1;
      },
      absl::Seconds(30)))
      << nodes_[0]->process().ReadLog();
  ASSERT_TRUE(WaitFor(
      [&] {
        for (const std::string& c : others) {
          kiq::v1::GetResponse get;
          if (!client.Get("spend", c, &get).ok()) return false;
          const int64_t want = truth.spend.count(c) ? truth.spend.at(c) : 0;
          if (want != 0 && get.entry().json().number_value() != static_cast<double>(want)) {
            return false;
          }
        }
        return true;
      },
      absl::Seconds(30)))
      << "partitions with cached ids did not go on";
  kiq::v1::GetResponse get;
  ASSERT_TRUE(client.Get("spend", blocked, &get).ok());
  EXPECT_EQ(get.entry().json().number_value(), static_cast<double>(at_outage.spend.at(blocked)))
      << "the blocked partition must wait, not skip";
  const std::string metrics = ScrapeMetrics(nodes_[0]->http_port());
  EXPECT_EQ(MetricSum(metrics, "kiq_bad_records_total"), 0) << "nothing is dead-lettered";

  // Back: the partition resumes from the record that waited and catches up.
  ASSERT_OK(registry_->Restart());
  ExpectTruth(truth);
  EXPECT_EQ(MetricSum(ScrapeMetrics(nodes_[0]->http_port()), "kiq_registry_paused_partitions"), 0);
  EXPECT_EQ(MetricSum(ScrapeMetrics(nodes_[0]->http_port()), "kiq_bad_records_total"), 0);
  EXPECT_THAT(nodes_[0]->process().ReadLog(), ::testing::HasSubstr("the records wait (none is skipped)"));
}

TEST_F(AvroTest, AHangingRegistryForAnUncachedIdDoesNotStopTheOtherPartitions) {
  // A registry that holds requests open (rather than refusing connections) with a long request
  // timeout: were the fetch on the ingestion thread, every partition would stall for a minute.
  config_ = WriteFile("payments-avro-hang.yaml",
                      absl::StrReplaceAll(ReadFile(config_),
                                          {{absl::StrCat("url: ", registry_->url()),
                                            absl::StrCat("url: ", registry_->url(),
                                                         "\n  timeout_ms: 60000")}}));
  ASSERT_THAT(ReadFile(config_), ::testing::HasSubstr("timeout_ms: 60000"));
  std::map<int32_t, std::vector<std::string>> by_partition;
  for (int c = 0; c < 40; ++c) {
    const std::string customer = absl::StrCat("c", c);
    by_partition[Murmur2Partition(customer, kPartitions)].push_back(customer);
  }
  const std::string blocked = by_partition[0].front();
  std::vector<std::string> others;
  for (int32_t p = 1; p < kPartitions; ++p) {
    for (const std::string& c : by_partition[p]) others.push_back(c);
  }
  ASSERT_FALSE(others.empty());
  std::vector<Payment> all;
  auto payment = [&](const std::string& customer, int version) {
    const int n = static_cast<int>(all.size());
    all.push_back({absl::StrCat("pay-", n), customer, 100 + n, kMethods[n % 3], version});
  };
  for (int i = 0; i < 40; ++i) payment(i % 2 ? blocked : others[i % others.size()], 1);
  const size_t first_new = all.size();
  payment(blocked, 3);  // v3: an id the node has never seen
  for (int i = 0; i < 5; ++i) payment(blocked, 1);  // behind it, in the same partition
  const size_t first_after = all.size();
  for (int i = 0; i < 80; ++i) payment(others[i % others.size()], 1);
  const std::vector<std::string> encoded = Encode(all);
  ASSERT_EQ(encoded.size(), all.size());

  StartNodes(1);
  NodeClient& client = *clients_[0];
  Truth truth;
  for (size_t i = 0; i < first_new; ++i) {
    ProduceAndTrack("payments", all[i].customer, encoded[i]);
    truth.Add(all[i]);
  }
  ExpectTruth(truth);  // v1 is cached

  ASSERT_OK(registry_->SetHang(true).status());
  const Truth at_hang = truth;
  for (size_t i = first_new; i < first_after; ++i) {
    ProduceAndTrack("payments", all[i].customer, encoded[i]);
    truth.Add(all[i]);
  }
  ASSERT_TRUE(WaitFor(
      [&] {
        return MetricSum(ScrapeMetrics(nodes_[0]->http_port()), "kiq_registry_paused_partitions") == 1;
      },
      absl::Seconds(20)))
      << nodes_[0]->process().ReadLog();
  // The other partitions' records, produced while the fetch hangs, are all applied well within
  // the registry's timeout.
  for (size_t i = first_after; i < all.size(); ++i) {
    ProduceAndTrack("payments", all[i].customer, encoded[i]);
    truth.Add(all[i]);
  }
  const absl::Time start = absl::Now();
  ASSERT_TRUE(WaitFor(
      [&] {
        for (const std::string& c : others) {
          const int64_t want = truth.spend.count(c) ? truth.spend.at(c) : 0;
          if (want == 0) continue;
          kiq::v1::GetResponse get;
          if (!client.Get("spend", c, &get).ok() ||
              get.entry().json().number_value() != static_cast<double>(want)) {
            return false;
          }
        }
        return true;
      },
      absl::Seconds(20)))
      << "the other partitions stalled behind the hanging registry\n"
      << nodes_[0]->process().ReadLog();
  EXPECT_LT(absl::Now() - start, absl::Seconds(20));
  kiq::v1::GetResponse get;
  ASSERT_TRUE(client.Get("spend", blocked, &get).ok());
  EXPECT_EQ(get.entry().json().number_value(), static_cast<double>(at_hang.spend.at(blocked)))
      << "the partition with the uncached id waits";
  EXPECT_EQ(MetricSum(ScrapeMetrics(nodes_[0]->http_port()), "kiq_registry_paused_partitions"), 1);

  // The registry answers the held request (the fetch was still waiting for it all along): the
  // partition resumes from the record that waited.
  absl::StatusOr<int> released = registry_->SetHang(false);
  ASSERT_OK(released);
  EXPECT_GE(*released, 1);
  ExpectTruth(truth);
  const std::string metrics = ScrapeMetrics(nodes_[0]->http_port());
  EXPECT_EQ(MetricSum(metrics, "kiq_registry_paused_partitions"), 0);
  EXPECT_EQ(MetricSum(metrics, "kiq_bad_records_total"), 0);
}

// Standby replicas decode with the same SchemaDecoder: a replica whose next record has a schema
// id not yet cached waits for the background fetch (as the owner does) and goes on. Two nodes,
// one standby each; after a kill -9 of n1, n2's replicas of n1's partitions answer stale
// reads of the table with the truth (the Avro records as JSON), before n2 takes them over.
TEST_F(AvroTest, StandbyReplicasWaitForTheFetchAndServeTheTruthAfterAKill) {
  config_ = WriteFile("payments-avro-standby.yaml",
                      absl::StrCat(ReadFile(config_), "\nnum_standby_replicas: 1\n"));
  std::mt19937 rng(99);
  std::vector<Payment> payments;
  for (int i = 0; i < 200; ++i) {
    payments.push_back({absl::StrCat("pay-", i), absl::StrCat("c", rng() % 24),
                        1 + static_cast<int64_t>(rng() % 500), kMethods[rng() % 3],
                        1 + static_cast<int>(rng() % 2)});
  }
  const std::vector<std::string> encoded = Encode(payments);
  ASSERT_EQ(encoded.size(), payments.size());
  StartNodes(2);
  ASSERT_TRUE(WaitFor([&] { return clients_[1]->SettledOwners({"n1", "n2"}, kPartitions).has_value(); },
                      absl::Seconds(60)))
      << nodes_[0]->process().ReadLog();
  Truth truth;
  for (size_t i = 0; i < payments.size(); ++i) {
    ProduceAndTrack("payments", payments[i].customer, encoded[i]);
    truth.Add(payments[i]);
  }
  ExpectTruth(truth);
  nodes_[0]->process().Kill();
  // Until n2 takes n1's partitions over (a session timeout), its replicas answer.
  bool from_standby = false;
  Entries last;
  ASSERT_TRUE(WaitFor(
      [&] {
        kiq::v1::ScanResponse scan;
        if (!clients_[1]->AllStale("last_payment", &scan, 5).ok()) return false;
        last.clear();
        for (const kiq::v1::Entry& e : scan.entries()) last.emplace_back(e.key(), e.value());
        from_standby = !scan.standby_reads().empty();
        return from_standby && last.size() == truth.last.size();
      },
      absl::Seconds(15)))
      << "standby_reads: " << from_standby << ", " << last.size() << " of " << truth.last.size()
      << "\n" << nodes_[1]->process().ReadLog();
  for (const auto& [customer, json] : last) {
    rapidjson::Document doc;
    doc.Parse(json.c_str());
    ASSERT_TRUE(doc.IsObject()) << json;
    EXPECT_EQ(std::string(doc["id"].GetString()), truth.last.at(customer).id) << customer;
  }
  // Whether a replica met an id first (n2's own partitions may have fetched it before): shown.
  std::printf("standby replicas on n2 waited for a schema fetch: %s\n",
              absl::StrContains(nodes_[1]->process().ReadLog(), "waits: value has schema id")
                  ? "yes"
                  : "no (its active partitions fetched the ids first)");
}

}  // namespace
}  // namespace kiq::testing

namespace kiq::testing {
namespace {

// Protobuf (message indexes honoured: the records are of the file's second message) and JSON
// Schema values, on one node: a sum and a count over Protobuf fields, a table of JSON Schema
// values, against a truth computed here; a record of the wrong message type for its bytes is
// a bad record.
class ProtobufJsonSrTest : public KafkaFixture {};

TEST_F(ProtobufJsonSrTest, ProtobufAndJsonSchemaSourcesMatchTheTruth) {
  StartKafka("formats", {{"orders_pb", 4}, {"events_js", 4}, {"formats-qty-changelog", 4},
                         {"formats-big-changelog", 4}});
  absl::StatusOr<std::unique_ptr<SchemaRegistryProcess>> registry =
      SchemaRegistryProcess::Start(dir_);
  ASSERT_OK(registry);
  const std::string config = WriteFile("formats.yaml", absl::StrCat(R"(
application_id: formats
schema_registry: {url: ")", (*registry)->url(), R"("}
sources:
  - {topic: orders_pb, value_format: protobuf}
  - {topic: events_js, value_format: json_sr}
stores:
  - {name: qty, source: orders_pb, sum: {field: line.quantity, type: int64}}
  - name: big
    source: orders_pb
    count: {}
    filter: {all: [{compare: {field: line.quantity, op: ge, number_value: 50}}]}
  - {name: events, source: events_js, table: {}}
)"));
  const std::string proto =
      "syntax = \"proto3\";\npackage shop;\n"
      "message Header { string source = 1; }\n"
      "message Order { string id = 1; Line line = 2; message Line { string sku = 1; int64 quantity = 2; } }\n";
  std::mt19937 rng(7);
  std::vector<SerializerRecord> records;
  std::vector<std::pair<std::string, int64_t>> orders;  // (customer, quantity)
  for (int i = 0; i < 120; ++i) {
    const std::string customer = absl::StrCat("c", rng() % 10);
    const int64_t quantity = static_cast<int64_t>(rng() % 100);
    orders.emplace_back(customer, quantity);
    records.push_back({0,
                       absl::StrCat(R"({"id":"o)", i, R"(","line":{"sku":"s)", i % 7,
                                    R"(","quantity":)", quantity, "}}"),
                       "Order"});
  }
  std::map<std::string, std::string> events;  // the latest event per key, as JSON
  for (int i = 0; i < 40; ++i) {
    const std::string key = absl::StrCat("e", i % 8);
    events[key] = absl::StrCat(R"({"n":)", i, R"(,"kind":"k)", i % 3, R"("})");
    records.push_back({1, events[key], ""});
  }
  records.push_back({0, R"({"source":"web"})", "Header"});  // the wrong message for orders
  absl::StatusOr<Encoded> encoded = EncodeWithSerializer(
      dir_, (*registry)->url(),
      {{"orders_pb-value", "PROTOBUF", proto},
       {"events_js-value", "JSON",
        R"({"type":"object","properties":{"n":{"type":"integer"},"kind":{"type":"string"}}})"}},
      records);
  ASSERT_OK(encoded);
  ASSERT_EQ(encoded->values.size(), records.size());
  // The Order message is the file's second: its indexes are [1], not the single 0.
  ASSERT_EQ(encoded->values[0].substr(5, 2), std::string("\x02\x02", 2));

  auto node = LaunchNode(config, "n1");
  ASSERT_OK(node);
  NodeClient client((*node)->target());
  std::map<std::string, int64_t> qty, big;
  for (size_t i = 0; i < orders.size(); ++i) {
    ProduceAndTrack("orders_pb", orders[i].first, encoded->values[i]);
    qty[orders[i].first] += orders[i].second;
    if (orders[i].second >= 50) ++big[orders[i].first];
  }
  for (size_t i = orders.size(); i < orders.size() + 40; ++i) {
    const std::string key = absl::StrCat("e", (i - orders.size()) % 8);
    ProduceAndTrack("events_js", key, encoded->values[i]);
  }
  // The Header record with its indexes ([0], a single 0) rewritten to [5]: no such message.
  std::string wrong = encoded->values.back();
  wrong.replace(5, 1, std::string("\x02\x0a", 2));  // indexes [5]: no such message
  ProduceAndTrack("orders_pb", "c0", wrong);
  for (const char* store : {"qty", "big"}) {
    ASSERT_TRUE(WaitFor([&] { return client.CaughtUp(store, Topic("orders_pb"), produced_); },
                        absl::Seconds(60)))
        << (*node)->process().ReadLog();
  }
  ASSERT_TRUE(WaitFor([&] { return client.CaughtUp("events", Topic("events_js"), produced_); },
                      absl::Seconds(60)));
  grpc::Status status;
  EXPECT_EQ(client.Scan("qty", 100, "", "", nullptr, &status), AsEntries(qty));
  EXPECT_EQ(client.Scan("big", 100, "", "", nullptr, &status), AsEntries(big));
  EXPECT_EQ(client.Scan("events", 100, "", "", nullptr, &status),
            Entries(events.begin(), events.end()));
  const auto letters = ConsumeAll(bootstrap_servers(), Topic("formats-dlq"), 2, absl::Seconds(30));
  ASSERT_EQ(letters.size(), 2u);  // one per store of orders_pb
  for (const ConsumedRecord& letter : letters) {
    std::map<std::string, std::string> h(letter.headers.begin(), letter.headers.end());
    EXPECT_THAT(h["kiq.reason"], ::testing::HasSubstr("message index 5 at level 0"));
  }
}

}  // namespace
}  // namespace kiq::testing
