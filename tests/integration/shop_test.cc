// The join + group_by + window pipeline of the shop example (examples/shop/topology.yaml):
// purchases joined with their customer, re-keyed by city through the repartition topic and
// counted per 30-minute window, compared with a recomputation here, on one node and through
// every node of a 3-node cluster. Purchases are produced half hour by half hour, each waited
// for: a window's records can only be late once a later window has been reached, so the
// phases make the truth independent of how upstream partitions interleave downstream.
#include <map>
#include <memory>
#include <random>
#include <string>
#include <utility>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "tests/testing/kafka_fixture.h"
#include "tests/testing/kiq_processes.h"
#include "tests/testing/queries.h"
#include "tests/testing/status_matchers.h"

namespace kiq::testing {
namespace {

constexpr int kPartitions = 4;
constexpr int64_t kHalfHour = 30 * 60'000;
constexpr int64_t kT0 = 1'700'000'000'000 / kHalfHour * kHalfHour;  // a window start

// (city, window start) → purchases.
using CityWindows = std::map<std::pair<std::string, int64_t>, int64_t>;

class ShopTest : public KafkaFixture, public ::testing::WithParamInterface<int> {
 protected:
  void SetUp() override {
    StartKafka("shop", {{"page_views", kPartitions},
                        {"purchases", kPartitions},
                        {"customers", kPartitions},
                        {"shop-views_per_category-changelog", kPartitions},
                        {"shop-views_per_category_hopping-changelog", kPartitions},
                        {"shop-spend_per_user-changelog", kPartitions},
                        {"shop-purchases_per_city-changelog", kPartitions},
                        {"shop-purchases_per_city-repartition", kPartitions}});
  }

  void Produce(const std::string& topic, const std::string& key, const std::string& value,
               int64_t ts = 0) {
    ProduceAndTrack(topic, key, value, ts);
  }

  // Every window of purchases_per_city through `via`, following page tokens.
  CityWindows AllWindows(const std::string& via, grpc::Status* status) {
    CityWindows out;
    std::string token;
    do {
      grpc::ClientContext context;
      context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
      kiq::v1::AllRequest request;
      request.set_store("purchases_per_city");
      request.set_page_size(5);
      request.set_page_token(token);
      kiq::v1::ScanResponse response;
      *status = stubs_[via]->All(&context, request, &response);
      if (!status->ok()) return out;
      for (const kiq::v1::Entry& e : response.entries()) {
        int64_t n = 0;
        EXPECT_TRUE(absl::SimpleAtoi(e.value(), &n)) << e.value();
        EXPECT_EQ(e.window().end_ms() - e.window().start_ms(), kHalfHour);
        out[{e.key(), e.window().start_ms()}] = n;
      }
      token = response.next_page_token();
    } while (!token.empty());
    return out;
  }

  void WaitForTruth(const std::string& via) {
    CityWindows last;
    const bool reached = WaitFor(
        [&] {
          grpc::Status status;
          last = AllWindows(via, &status);
          return status.ok() && last == truth_;
        },
        absl::Seconds(90));
    ASSERT_TRUE(reached) << "via " << via << ": got " << ::testing::PrintToString(last) << "\nwant "
                         << ::testing::PrintToString(truth_);
  }

  std::map<std::string, std::unique_ptr<NodeProcess>> nodes_;
  std::map<std::string, std::unique_ptr<NodeClient>> clients_;
  std::map<std::string, std::unique_ptr<kiq::v1::QueryService::Stub>> stubs_;
  CityWindows truth_;
};

TEST_P(ShopTest, PurchasesPerCityPerHalfHourMatchTheTruth) {
  for (int i = 1; i <= GetParam(); ++i) {
    const std::string id = absl::StrCat("n", i);
    auto node = LaunchNode(ExampleTopology("shop"), id);
    ASSERT_OK(node);
    clients_[id] = std::make_unique<NodeClient>((*node)->target());
    stubs_[id] = kiq::v1::QueryService::NewStub(
        grpc::CreateChannel((*node)->target(), grpc::InsecureChannelCredentials()));
    nodes_[id] = std::move(*node);
  }
  const char* kCities[] = {"Lisbon", "Oslo", "Lima", "São Paulo"};
  std::map<std::string, std::string> city_of;  // u0..u11; u12..u14 are unknown customers
  for (int u = 0; u < 12; ++u) {
    const std::string user = absl::StrCat("u", u);
    city_of[user] = kCities[u % 4];
    Produce("customers", user,
            absl::StrCat(R"({"name":"n)", u, R"(","city":")", city_of[user], R"("})"));
  }
  for (auto& entry : clients_) {
    auto& client = entry.second;
    ASSERT_TRUE(
        WaitFor([&] { return client->CaughtUp("customers", Topic("customers"), produced_); },
                absl::Seconds(60)));
  }

  std::mt19937 rng(30);
  for (int phase = 0; phase < 4; ++phase) {
    const int64_t start = kT0 + phase * kHalfHour;
    for (int i = 0; i < 40; ++i) {
      // Anywhere in the window, its first and last millisecond included.
      const int64_t ts = i == 0   ? start
                         : i == 1 ? start + kHalfHour - 1
                                  : start + static_cast<int64_t>(rng() % kHalfHour);
      const std::string user = absl::StrCat("u", rng() % 15);
      Produce("purchases", user, absl::StrCat(R"({"user":")", user, R"(","amount":)", i, "}"), ts);
      if (auto it = city_of.find(user); it != city_of.end()) ++truth_[{it->second, start}];
    }
    for (const auto& [id, stub] : stubs_) ASSERT_NO_FATAL_FAILURE(WaitForTruth(id));
  }
  // WindowFetch of one city through every node: its windows, oldest first.
  for (const auto& [id, stub] : stubs_) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
    kiq::v1::WindowFetchRequest request;
    request.set_store("purchases_per_city");
    request.set_key("São Paulo");
    kiq::v1::WindowFetchResponse response;
    ASSERT_TRUE(stub->WindowFetch(&context, request, &response).ok());
    std::vector<std::pair<int64_t, int64_t>> got;
    std::vector<std::pair<int64_t, int64_t>> want;
    for (const kiq::v1::Entry& e : response.entries()) {
      int64_t n = 0;
      EXPECT_TRUE(absl::SimpleAtoi(e.value(), &n));
      got.emplace_back(e.window().start_ms(), n);
    }
    for (const auto& [window, n] : truth_) {
      if (window.first == "São Paulo") want.emplace_back(window.second, n);
    }
    EXPECT_EQ(got, want) << "via " << id;
  }
}

INSTANTIATE_TEST_SUITE_P(Nodes, ShopTest, ::testing::Values(1, 3),
                         [](const ::testing::TestParamInfo<int>& info) {
                           return absl::StrCat(info.param, info.param == 1 ? "Node" : "Nodes");
                         });

}  // namespace
}  // namespace kiq::testing
