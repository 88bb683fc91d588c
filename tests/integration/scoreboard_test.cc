// The scoreboard example (examples/scoreboard/topology.yaml) on one kiq-node over a
// kiq-dev-kafka: sum of string-typed points, latest avatar, a filtered count and a row of eight
// aggregates (count_distinct of the game among them), compared with a truth computed here from the generated records, bad records
// included.
#include <algorithm>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <rapidjson/document.h>

#include "absl/strings/str_cat.h"
#include "tests/testing/kafka_fixture.h"
#include "tests/testing/kiq_processes.h"
#include "tests/testing/queries.h"
#include "tests/testing/status_matchers.h"

namespace kiq::testing {
namespace {

constexpr int kPartitions = 4;
constexpr int kPlayers = 20;
const char* const kGames[] = {"chess", "go",    "shogi", "xiangqi", "checkers", "othello",
                              "hex",   "havannah", "tak", "hive",   "onitama",  "santorini"};

// Run on one node and on a 3-node cluster (every query through every node).
class ScoreboardTest : public KafkaFixture, public ::testing::WithParamInterface<int> {
 protected:
  void SetUp() override {
    StartKafka("scoreboard", {{"score_events", kPartitions},
                              {"player_events", kPartitions},
                              {"scoreboard-score-changelog", kPartitions},
                              {"scoreboard-avatar-changelog", kPartitions},
                              {"scoreboard-big_scores-changelog", kPartitions},
                              {"scoreboard-players-changelog", kPartitions}});
  }

  void StartNodes(int n) {
    for (int i = 1; i <= n; ++i) {
      auto node = LaunchNode(ExampleTopology("scoreboard"), absl::StrCat("n", i));
      ASSERT_OK(node);
      clients_.push_back(std::make_unique<NodeClient>((*node)->target()));
      nodes_.push_back(std::move(*node));
    }
  }

  void Produce(const std::string& topic, const std::string& key, const std::string& value) {
    ProduceAndTrack(topic, key, value);
  }

  void WaitCaughtUp(NodeClient& client, const std::string& store, const std::string& topic) {
    ASSERT_TRUE(
        WaitFor([&] { return client.CaughtUp(store, Topic(topic), produced_); }, absl::Seconds(60)))
        << "store " << store << " did not reach the produced offsets of " << topic << "\n"
        << nodes_[0]->process().ReadLog();
  }

  static Entries ScanAll(NodeClient& client, const std::string& store) {
    grpc::Status status;
    Entries out = client.Scan(store, 7, "", "", nullptr, &status);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return out;
  }

  std::vector<std::unique_ptr<NodeProcess>> nodes_;
  std::vector<std::unique_ptr<NodeClient>> clients_;
};

// The `players` row of one player, as the test computes it.
struct PlayerRow {
  int64_t points = 0;
  int64_t plays = 0;
  int64_t best = 0;
  int64_t worst = 0;
  std::vector<int64_t> all;  // every value, for top3
  std::string last;          // JSON text of the latest points field
  std::set<std::string> games;  // distinct non-null games (JSON text), for games
};

// Checks a stored row (JSON text) against the truth.
void ExpectRow(const std::string& player, const std::string& text, const PlayerRow& want) {
  SCOPED_TRACE(absl::StrCat("players row of ", player, ": ", text));
  rapidjson::Document row;
  row.Parse(text.data(), text.size());
  ASSERT_TRUE(!row.HasParseError() && row.IsObject());
  std::vector<std::string> names;
  for (const auto& m : row.GetObject()) names.emplace_back(m.name.GetString());
  EXPECT_EQ(names, (std::vector<std::string>{"points", "plays", "best", "worst", "mean", "top3",
                                             "last", "games"}));
  ASSERT_TRUE(row["points"].IsInt64() && row["plays"].IsInt64() && row["best"].IsInt64() &&
              row["worst"].IsInt64() && row["mean"].IsNumber() && row["top3"].IsArray());
  EXPECT_EQ(row["points"].GetInt64(), want.points);
  EXPECT_EQ(row["plays"].GetInt64(), want.plays);
  EXPECT_EQ(row["best"].GetInt64(), want.best);
  EXPECT_EQ(row["worst"].GetInt64(), want.worst);
  EXPECT_DOUBLE_EQ(row["mean"].GetDouble(),
                   static_cast<double>(want.points) / static_cast<double>(want.plays));
  std::vector<int64_t> top = want.all;
  std::sort(top.rbegin(), top.rend());
  top.resize(std::min<size_t>(top.size(), 3));
  std::vector<int64_t> got_top;
  for (const rapidjson::Value& v : row["top3"].GetArray()) got_top.push_back(v.GetInt64());
  EXPECT_EQ(got_top, top);
  ASSERT_TRUE(row["games"].IsInt64());
  EXPECT_EQ(row["games"].GetInt64(), static_cast<int64_t>(want.games.size()));  // exact: < 1,000
  const rapidjson::Value& last = row["last"];
  EXPECT_EQ(last.IsString() ? absl::StrCat("\"", last.GetString(), "\"")
                            : absl::StrCat(last.GetInt64()),
            want.last);
}

TEST_P(ScoreboardTest, SumLatestFilteredCountAndRowMatchTheTruth) {
  std::mt19937 rng(2024);
  std::map<std::string, int64_t> score;
  std::map<std::string, PlayerRow> players;
  std::map<std::string, int64_t> big_scores;
  std::map<std::string, std::string> avatar;  // JSON text
  // (store, reason) of each dead letter the bad records must produce.
  std::multiset<std::pair<std::string, std::string>> expected_letters;

  StartNodes(GetParam());
  for (int i = 0; i < 600; ++i) {
    const std::string player = absl::StrCat("p", rng() % kPlayers);
    const int64_t points = static_cast<int64_t>(rng() % 101);
    if (i % 97 == 13) {  // points that are not a number: bad for both stores of the source
      Produce("score_events", player,
              absl::StrCat(R"({"player":")", player, R"(","points":"lots"})"));
      for (const char* store : {"score", "big_scores"}) {
        expected_letters.emplace(store, std::string(store) == "score"
                                            ? "field points is not a number: \"lots\""
                                            : "filter: field points is not a number: \"lots\"");
      }
      expected_letters.emplace("players", "column points: field points is not a number: \"lots\"");
      continue;
    }
    if (i % 89 == 5) {  // no points at all
      Produce("score_events", player, absl::StrCat(R"({"player":")", player, R"("})"));
      expected_letters.emplace("score", "field points is missing");
      expected_letters.emplace("big_scores", "filter: field points is missing");
      expected_letters.emplace("players", "column points: field points is missing");
      continue;
    }
    if (i % 101 == 50) {  // not JSON
      Produce("score_events", player, "points=12");
      expected_letters.emplace("score", "value is not JSON");
      expected_letters.emplace("big_scores", "value is not JSON");
      expected_letters.emplace("players", "value is not JSON");
      continue;
    }
    // Mostly strings ("17"), as the producers send them; some plain JSON numbers.
    const std::string points_json =
        i % 5 == 0 ? absl::StrCat(points) : absl::StrCat("\"", points, "\"");
    // The game: one of 12, null now and then (not counted by count_distinct).
    const std::string game_json =
        i % 11 == 4 ? "null" : absl::StrCat("\"", kGames[rng() % 12], "\"");
    Produce("score_events", player,
            absl::StrCat(R"({"player":")", player, R"(","points":)", points_json,
                         R"(,"game":)", game_json, "}"));
    score[player] += points;
    if (points > 50) ++big_scores[player];
    PlayerRow& row = players[player];
    row.best = row.plays == 0 ? points : std::max(row.best, points);
    row.worst = row.plays == 0 ? points : std::min(row.worst, points);
    row.points += points;
    ++row.plays;
    row.all.push_back(points);
    row.last = points_json;
    if (game_json != "null") row.games.insert(game_json);
  }
  for (int i = 0; i < 120; ++i) {
    const std::string player = absl::StrCat("p", rng() % kPlayers);
    if (i % 37 == 3) {
      Produce("player_events", player, absl::StrCat(R"({"player":")", player, R"("})"));
      expected_letters.emplace("avatar", "field avatar is missing");
      continue;
    }
    const std::string image = absl::StrCat("img-", i, ".png");
    Produce("player_events", player,
            absl::StrCat(R"({"player":")", player, R"(", "avatar": ")", image, "\"}"));
    avatar[player] = absl::StrCat("\"", image, "\"");
  }
  auto as_entries = [](const std::map<std::string, int64_t>& m) {
    Entries out;
    for (const auto& [k, v] : m) out.emplace_back(k, absl::StrCat(v));
    return out;
  };
  for (size_t i = 0; i < clients_.size(); ++i) {
    SCOPED_TRACE(absl::StrCat("via n", i + 1));
    NodeClient& client = *clients_[i];
    WaitCaughtUp(client, "score", "score_events");
    WaitCaughtUp(client, "big_scores", "score_events");
    WaitCaughtUp(client, "avatar", "player_events");
    EXPECT_EQ(ScanAll(client, "score"), as_entries(score));
    EXPECT_EQ(ScanAll(client, "big_scores"), as_entries(big_scores));
    EXPECT_EQ(ScanAll(client, "avatar"), Entries(avatar.begin(), avatar.end()));
    WaitCaughtUp(client, "players", "score_events");
    const Entries rows = ScanAll(client, "players");
    ASSERT_EQ(rows.size(), players.size());
    for (const auto& [player, text] : rows) {
      ASSERT_EQ(players.count(player), 1u) << player;
      ExpectRow(player, text, players[player]);
    }

    // Answers carry the structured value too: a number for sums, the JSON for latest.
    const std::string player = score.begin()->first;
    kiq::v1::GetResponse get;
    ASSERT_TRUE(client.Get("score", player, &get).ok());
    EXPECT_EQ(get.entry().json().number_value(), static_cast<double>(score.begin()->second));
    const std::string with_avatar = avatar.begin()->first;
    ASSERT_TRUE(client.Get("avatar", with_avatar, &get).ok());
    EXPECT_EQ(absl::StrCat("\"", get.entry().json().string_value(), "\""), avatar.begin()->second);
    // A row is a JSON object in Entry.json, without avg's and count_distinct's state.
    ASSERT_TRUE(client.Get("players", player, &get).ok());
    const auto& fields = get.entry().json().struct_value().fields();
    ASSERT_EQ(fields.size(), 8u) << get.entry().value();
    EXPECT_EQ(fields.at("games").number_value(),
              static_cast<double>(players[player].games.size()));
    EXPECT_EQ(fields.at("plays").number_value(), static_cast<double>(players[player].plays));
    EXPECT_EQ(get.entry().value().find('\0'), std::string::npos);
  }

  auto letters = ConsumeAll(bootstrap_servers(), Topic("scoreboard-dlq"),
                            static_cast<int>(expected_letters.size()), absl::Seconds(30));
  std::multiset<std::pair<std::string, std::string>> got;
  for (const ConsumedRecord& letter : letters) {
    std::map<std::string, std::string> headers(letter.headers.begin(), letter.headers.end());
    got.emplace(headers["kiq.store"], headers["kiq.reason"]);
  }
  EXPECT_EQ(got, expected_letters);
  for (auto& node : nodes_) EXPECT_TRUE(node->process().running());
}

INSTANTIATE_TEST_SUITE_P(Nodes, ScoreboardTest, ::testing::Values(1, 3),
                         [](const ::testing::TestParamInfo<int>& info) {
                           return absl::StrCat(info.param, info.param == 1 ? "Node" : "Nodes");
                         });

}  // namespace
}  // namespace kiq::testing
