// The vehicles example (examples/vehicles/topology.yaml): latest position (a JSON object),
// top speed (max of a double) and a filtered count per vehicle, compared with a truth computed
// here, on one node and through every node of a 3-node cluster, before and after a node is
// killed (-9) while reports flow.
#include <algorithm>
#include <map>
#include <memory>
#include <random>
#include <string>

#include <cmath>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <rapidjson/document.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "tests/testing/kafka_fixture.h"
#include "tests/testing/kiq_processes.h"
#include "tests/testing/queries.h"
#include "tests/testing/status_matchers.h"

namespace kiq::testing {
namespace {

constexpr int kPartitions = 6;

// (lat, lon) of a position object.
std::pair<double, double> Coordinates(const std::string& json) {
  rapidjson::Document doc;
  doc.Parse(json.data(), json.size());
  if (!doc.IsObject() || !doc.HasMember("lat") || !doc.HasMember("lon")) return {NAN, NAN};
  return {doc["lat"].GetDouble(), doc["lon"].GetDouble()};
}

class VehiclesTest : public KafkaFixture, public ::testing::WithParamInterface<int> {
 protected:
  void SetUp() override {
    StartKafka("vehicles", {{"positions", kPartitions},
                            {"vehicles-last_position-changelog", kPartitions},
                            {"vehicles-top_speed-changelog", kPartitions},
                            {"vehicles-speeding-changelog", kPartitions}});
  }

  void Report(const std::string& vehicle, double lat, double lon, double speed) {
    const std::string position = absl::StrFormat(R"({"lat":%.4f,"lon":%.4f})", lat, lon);
    ProduceAndTrack("positions", vehicle,
                    absl::StrCat(R"({"vehicle":")", vehicle, R"(","position":)", position,
                                 R"(,"speed":)", absl::StrFormat("%.1f", speed), "}"));
    last_position_[vehicle] = position;
    auto [it, inserted] = top_speed_.try_emplace(vehicle, speed);
    if (!inserted) it->second = std::max(it->second, speed);
    if (speed > 130) ++speeding_[vehicle];
  }

  // Waits until every store reflects every report, then compares it with the truth.
  void VerifyThroughEveryNode();

  std::map<std::string, std::unique_ptr<NodeProcess>> nodes_;
  std::map<std::string, std::unique_ptr<NodeClient>> clients_;
  std::map<std::string, std::string> last_position_;
  std::map<std::string, double> top_speed_;
  std::map<std::string, int64_t> speeding_;
};

TEST_P(VehiclesTest, LatestPositionTopSpeedAndSpeedingMatchTheTruth) {
  const int nodes = GetParam();
  for (int i = 1; i <= nodes; ++i) {
    const std::string id = absl::StrCat("n", i);
    auto node = LaunchNode(ExampleTopology("vehicles"), id);
    ASSERT_OK(node);
    clients_[id] = std::make_unique<NodeClient>((*node)->target());
    nodes_[id] = std::move(*node);
  }
  std::mt19937 rng(7);
  std::uniform_real_distribution<double> coordinate(-80, 80);
  auto report = [&](int n) {
    for (int i = 0; i < n; ++i) {
      Report(absl::StrCat("v", rng() % 25), coordinate(rng), coordinate(rng),
             static_cast<double>(rng() % 1800) / 10);
    }
  };
  report(400);
  VerifyThroughEveryNode();
  if (nodes == 1) return;
  // A node killed (-9) while reports flow: its partitions move, restored from the changelogs
  // (latest, max and count alike), and every store stays exact.
  report(100);
  nodes_["n2"]->process().Kill();
  nodes_.erase("n2");
  clients_.erase("n2");
  report(200);
  VerifyThroughEveryNode();
}

void VehiclesTest::VerifyThroughEveryNode() {
  for (auto& [id, node_client] : clients_) {
    auto& client = node_client;  // a lambda cannot capture a structured binding in C++17
    for (const char* store : {"last_position", "top_speed", "speeding"}) {
      ASSERT_TRUE(WaitFor([&] { return client->CaughtUp(store, Topic("positions"), produced_); },
                          absl::Seconds(90)))
          << store << " via " << id;
    }
    grpc::Status status;
    Entries positions = client->Scan("last_position", 8, "", "", nullptr, &status);
    ASSERT_TRUE(status.ok()) << status.error_message();
    // latest keeps the field as JSON (re-serialized: 49.0780 comes back as 49.078).
    ASSERT_EQ(positions.size(), last_position_.size()) << id;
    for (const auto& [vehicle, text] : positions) {
      EXPECT_EQ(Coordinates(text), Coordinates(last_position_.at(vehicle)))
          << vehicle << " via " << id << ": " << text;
    }

    Entries speeds = client->Scan("top_speed", 8, "", "", nullptr, &status);
    ASSERT_TRUE(status.ok()) << status.error_message();
    ASSERT_EQ(speeds.size(), top_speed_.size()) << id;
    for (const auto& [vehicle, text] : speeds) {
      double value = 0;
      ASSERT_TRUE(absl::SimpleAtod(text, &value)) << text;
      EXPECT_DOUBLE_EQ(value, top_speed_.at(vehicle)) << vehicle << " via " << id;
    }

    Entries speeding = client->Scan("speeding", 8, "", "", nullptr, &status);
    ASSERT_TRUE(status.ok()) << status.error_message();
    Entries truth;
    for (const auto& [vehicle, n] : speeding_) truth.emplace_back(vehicle, absl::StrCat(n));
    EXPECT_EQ(speeding, truth) << id;

    // The object comes back structured too.
    kiq::v1::GetResponse response;
    ASSERT_TRUE(client->Get("last_position", "v3", &response).ok());
    ASSERT_TRUE(response.found());
    EXPECT_TRUE(response.entry().json().struct_value().fields().contains("lat"));
  }
}

INSTANTIATE_TEST_SUITE_P(Nodes, VehiclesTest, ::testing::Values(1, 3),
                         [](const ::testing::TestParamInfo<int>& info) {
                           return absl::StrCat(info.param, info.param == 1 ? "Node" : "Nodes");
                         });

}  // namespace
}  // namespace kiq::testing
