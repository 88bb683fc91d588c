// The book-interactions example (examples/book-interactions/topology.yaml): interactions keyed
// by customer id joined with a books table on the interaction's book_id (join.by), so every
// record goes through a join repartition topic first; counted per book, kept as the latest
// joined interaction per book, and, after the join, filtered and grouped by fields of the
// joined value (a second repartition). Every store is compared with a truth recomputed here
// from the generated records, on one node and through a 3-node cluster (through non-owners and
// a kiq-router) with a node killed (-9) while interactions flow: counts must stay exact.
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "tests/testing/kafka_fixture.h"
#include "tests/testing/kiq_processes.h"
#include "tests/testing/metrics.h"
#include "tests/testing/queries.h"
#include "tests/testing/status_matchers.h"

namespace kiq::testing {
namespace {

constexpr int kPartitions = 6;
constexpr char kApp[] = "book-interactions";
const char* const kStores[] = {"interactions_per_book", "last_interaction", "buys_per_genre",
                               "copies_per_author"};

std::vector<std::pair<std::string, int>> BookInteractionsTopics() {
  std::vector<std::pair<std::string, int>> topics = {{"books", kPartitions},
                                                     {"interactions", kPartitions}};
  for (const char* store : kStores) {
    topics.emplace_back(absl::StrCat(kApp, "-", store, "-join-repartition"), kPartitions);
    if (std::string(store) != "last_interaction") {
      topics.emplace_back(absl::StrCat(kApp, "-", store, "-changelog"), kPartitions);
    }
  }
  for (const char* grouped : {"buys_per_genre", "copies_per_author"}) {
    topics.emplace_back(absl::StrCat(kApp, "-", grouped, "-repartition"), kPartitions);
  }
  return topics;
}

struct Book {
  std::string genre;
  std::string author;
  std::string json;
};

class JoinFieldTest : public KafkaFixture {
 protected:
  void SetUp() override { StartKafka("join-field", BookInteractionsTopics()); }

  void StartNode(const std::string& id) {
    auto node = LaunchNode(ExampleTopology("book-interactions"), id);
    ASSERT_OK(node);
    clients_[id] = std::make_unique<NodeClient>((*node)->target());
    nodes_[id] = std::move(*node);
  }

  void StartRouter() {
    auto router = LaunchRouter(ExampleTopology("book-interactions"));
    ASSERT_OK(router);
    clients_["router"] = std::make_unique<NodeClient>((*router)->target());
    nodes_["router"] = std::move(*router);
  }

  // Books b0..b19; interactions also name b20..b24, which never exist.
  void ProduceBooks() {
    static const char* kGenres[] = {"fantasy", "crime", "poetry", "history"};
    static const char* kAuthors[] = {"Le Guin", "Christie", "Szymborska", "Beard", "Sagan"};
    for (int i = 0; i < 20; ++i) {
      Book book{kGenres[i % 4], kAuthors[i % 5], ""};
      book.json = absl::StrCat(R"({"title":"Book )", i, R"(","author":")", book.author,
                               R"(","genre":")", book.genre, R"("})");
      books_[absl::StrCat("b", i)] = book;
      ProduceAndTrack("books", absl::StrCat("b", i), book.json);
    }
  }

  // One interaction by `customer` (the record key: not the join key). `book` empty: no
  // book_id at all. The truth joins it with the table as it is: the test waits for the table
  // before producing interactions.
  void Interaction(const std::string& customer, const std::string& book, const std::string& event,
                   int quantity = 0) {
    std::string value = absl::StrCat(R"({"event":")", event, R"(")");
    if (!book.empty()) absl::StrAppend(&value, R"(,"book_id":")", book, R"(")");
    if (event == "buy") absl::StrAppend(&value, R"(,"quantity":)", quantity);
    absl::StrAppend(&value, "}");
    ProduceAndTrack("interactions", customer, value);
    if (book.empty()) {
      ++no_book_id_;
      return;
    }
    auto it = books_.find(book);
    ++interactions_per_book_[book];
    last_interaction_[book] = absl::StrCat(R"({"interaction":)", value, R"(,"book":)",
                                           it == books_.end() ? "null" : it->second.json, "}");
    if (event != "buy") return;
    if (it == books_.end()) {
      ++unknown_book_buys_;
      return;
    }
    ++buys_per_genre_[it->second.genre];
    copies_per_author_[it->second.author] += quantity;
  }

  void ProduceInteractions(std::mt19937& rng, int n) {
    static const char* kEvents[] = {"view", "view", "cart", "buy"};
    for (int i = 0; i < n; ++i) {
      const std::string customer = absl::StrCat("c", rng() % 30);
      const std::string book = rng() % 40 == 0 ? "" : absl::StrCat("b", rng() % 25);
      const std::string event = kEvents[rng() % 4];
      Interaction(customer, book, event, 1 + static_cast<int>(rng() % 3));
    }
  }

  template <typename Map>
  static Entries AsEntries(const Map& map) {
    Entries out;
    for (const auto& [k, v] : map) out.emplace_back(k, absl::StrCat(v));
    return out;
  }

  // Every store is positioned on a repartition topic, not on interactions: wait for contents.
  // `with_last`: also last_interaction (only well defined after FinalRound).
  void ExpectEveryStoreExact(const std::string& via, bool with_last = false) {
    std::vector<std::pair<std::string, Entries>> truths = {
        {"interactions_per_book", AsEntries(interactions_per_book_)},
        {"buys_per_genre", AsEntries(buys_per_genre_)},
        {"copies_per_author", AsEntries(copies_per_author_)}};
    if (with_last) {
      truths.emplace_back("last_interaction",
                          Entries(last_interaction_.begin(), last_interaction_.end()));
    }
    for (const auto& store_truth : truths) {
      // Named copies: a lambda cannot capture structured bindings (C++17).
      const std::string& store = store_truth.first;
      const Entries& truth = store_truth.second;
      Entries last;
      const bool reached = WaitFor(
          [&] {
            grpc::Status status;
            last = clients_[via]->Scan(store, 7, "", "", nullptr, &status);
            return status.ok() && last == truth;
          },
          absl::Seconds(90));
      ASSERT_TRUE(reached) << store << " via " << via << " never matched the truth; last "
                           << ::testing::PrintToString(last) << "\nexpected "
                           << ::testing::PrintToString(truth) << "\n"
                           << AllLogs();
    }
    // Point reads, through whichever node owns the key (forwarded by the others).
    kiq::v1::GetResponse response;
    for (const auto& [book, count] : interactions_per_book_) {
      ASSERT_TRUE(clients_[via]->Get("interactions_per_book", book, &response).ok()) << book;
      EXPECT_EQ(response.entry().value(), absl::StrCat(count)) << book << " via " << via;
    }
    for (const auto& [genre, count] : buys_per_genre_) {
      ASSERT_TRUE(clients_[via]->Get("buys_per_genre", genre, &response).ok()) << genre;
      EXPECT_EQ(response.entry().value(), absl::StrCat(count)) << genre << " via " << via;
    }
  }

  // One more interaction with every book seen so far, once everything before it is in: each
  // becomes the latest of its book (interactions of one book come from many source partitions
  // through the join repartition topic, so "latest" is only defined once they have all landed).
  void FinalRound(const std::string& via) {
    ASSERT_NO_FATAL_FAILURE(ExpectEveryStoreExact(via));
    std::vector<std::string> seen;
    for (const auto& [book, count] : interactions_per_book_) seen.push_back(book);
    for (const std::string& book : seen) Interaction("final", book, "view");
    ASSERT_NO_FATAL_FAILURE(ExpectEveryStoreExact(via, /*with_last=*/true));
  }

  std::string AllLogs() {
    std::string out;
    for (auto& [id, node] : nodes_) {
      absl::StrAppend(&out, "---- ", id, "\n", node->process().ReadLog());
    }
    return out;
  }

  double NodeMetric(const std::string& id, const std::string& name, const std::string& store) {
    return MetricSum(ScrapeMetrics(nodes_[id]->http_port()), name,
                     {absl::StrCat("store=\"", store, "\"")});
  }

  std::map<std::string, std::unique_ptr<NodeProcess>> nodes_;
  std::map<std::string, std::unique_ptr<NodeClient>> clients_;
  std::map<std::string, Book> books_;
  std::map<std::string, int64_t> interactions_per_book_;
  std::map<std::string, std::string> last_interaction_;
  std::map<std::string, int64_t> buys_per_genre_;
  std::map<std::string, int64_t> copies_per_author_;
  int64_t no_book_id_ = 0;
  int64_t unknown_book_buys_ = 0;
};

TEST_F(JoinFieldTest, OneNodeJoinsOnTheFieldCountsAndGroupsExactly) {
  StartNode("n1");
  ProduceBooks();
  ASSERT_TRUE(WaitFor([&] { return clients_["n1"]->CaughtUp("books", Topic("books"), produced_); },
                      absl::Seconds(90)))
      << AllLogs();
  std::mt19937 rng(31);
  ProduceInteractions(rng, 400);
  ASSERT_NO_FATAL_FAILURE(FinalRound("n1"));
  ASSERT_GT(no_book_id_, 0);
  ASSERT_GT(unknown_book_buys_, 0);
  ASSERT_GT(interactions_per_book_.count("b21"), 0u);  // left-join misses are counted per book
  kiq::v1::GetResponse response;
  ASSERT_TRUE(clients_["n1"]->Get("last_interaction", "b21", &response).ok());
  EXPECT_EQ(response.entry().json().struct_value().fields().at("book").kind_case(),
            google::protobuf::Value::kNullValue);

  // Null join keys are dropped and counted for every store that joins on the field; buys of
  // unknown books have no genre or author to group by: dropped and counted too.
  for (const char* store : {"interactions_per_book", "last_interaction"}) {
    EXPECT_EQ(NodeMetric("n1", "kiq_null_key_records_total", store), no_book_id_) << store;
  }
  for (const char* store : {"buys_per_genre", "copies_per_author"}) {
    EXPECT_EQ(NodeMetric("n1", "kiq_null_key_records_total", store),
              no_book_id_ + unknown_book_buys_)
        << store;
  }

  // Malformed records are dead-lettered and counted, and change no answer: a value that is
  // not JSON (bad for every store), a book_id that cannot be a key (an object: bad for every
  // store, in the re-keying stage), a buy whose quantity is no number (bad for the sum only).
  ProduceAndTrack("interactions", "c1", "not json {");
  ProduceAndTrack("interactions", "c2", R"({"event":"view","book_id":{"id":"b1"}})");
  ProduceAndTrack("interactions", "c3", R"({"event":"buy","book_id":"b1","quantity":"lots"})");
  ++interactions_per_book_["b1"];
  ++buys_per_genre_[books_["b1"].genre];
  last_interaction_["b1"] = absl::StrCat(
      R"({"interaction":{"event":"buy","book_id":"b1","quantity":"lots"},"book":)",
      books_["b1"].json, "}");
  ASSERT_NO_FATAL_FAILURE(ExpectEveryStoreExact("n1", /*with_last=*/true));
  std::multiset<std::string> letters;
  ASSERT_TRUE(WaitFor(
      [&] {
        letters.clear();
        for (const ConsumedRecord& letter : ConsumeAll(
                 bootstrap_servers(), Topic(absl::StrCat(kApp, "-dlq")), 9, absl::Seconds(3))) {
          for (const auto& [name, value] : letter.headers) {
            if (name == "kiq.store") letters.insert(value);
          }
        }
        return letters.size() == 9;
      },
      absl::Seconds(30)));
  EXPECT_THAT(letters, ::testing::UnorderedElementsAre(
                           "interactions_per_book", "interactions_per_book", "last_interaction",
                           "last_interaction", "buys_per_genre", "buys_per_genre",
                           "copies_per_author", "copies_per_author", "copies_per_author"));
  EXPECT_EQ(MetricSum(ScrapeMetrics(nodes_["n1"]->http_port()), "kiq_bad_records_total", {}), 9);

  // A restart on the same data (kill -9) keeps every store, and what follows adds up.
  nodes_["n1"]->process().Kill();
  StartNode("n1");
  ProduceInteractions(rng, 150);
  ASSERT_NO_FATAL_FAILURE(FinalRound("n1"));
}

TEST_F(JoinFieldTest, ThreeNodesAndARouterStayExactThroughKillNineAndRestart) {
  for (const char* id : {"n1", "n2", "n3"}) StartNode(id);
  ProduceBooks();
  for (const char* id : {"n1", "n2", "n3"}) {
    ASSERT_TRUE(WaitFor([&] { return clients_[id]->CaughtUp("books", Topic("books"), produced_); },
                        absl::Seconds(90)))
        << AllLogs();
  }
  std::mt19937 rng(32);
  ProduceInteractions(rng, 300);
  ASSERT_NO_FATAL_FAILURE(StartRouter());
  for (const char* via : {"n1", "n2", "n3", "router"}) {
    ASSERT_NO_FATAL_FAILURE(ExpectEveryStoreExact(via));
  }

  // n2 dies while interactions flow: its partitions of every topic (the source, the join
  // repartition topics and the group_by ones) move, with what it forwarded but had not
  // committed, which the new owners forward again: duplicates must be dropped.
  ProduceInteractions(rng, 150);
  nodes_["n2"]->process().Kill();
  ProduceInteractions(rng, 250);
  for (const char* via : {"n1", "n3", "router"}) {
    ASSERT_NO_FATAL_FAILURE(ExpectEveryStoreExact(via));
  }

  StartNode("n2");
  ProduceInteractions(rng, 150);
  ASSERT_NO_FATAL_FAILURE(FinalRound("n1"));
  for (const char* via : {"n2", "n3", "router"}) {
    ASSERT_NO_FATAL_FAILURE(ExpectEveryStoreExact(via, /*with_last=*/true));
  }
}

}  // namespace
}  // namespace kiq::testing
