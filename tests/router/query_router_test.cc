#include "router/query_router.h"

#include <algorithm>
#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/topology/partitioner.h"
#include "common/topology/value_codec.h"
#include "common/types.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kiq/v1/query.pb.h"
#include "router/port/local_stores.h"
#include "router/request_limits.h"
#include "tests/testing/status_matchers.h"

namespace kiq::router {
namespace {

using ::kiq::testing::IsOkAndHolds;
using ::kiq::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr char kTopic[] = "orders";

// An in-memory LocalStores: per store, one std::map per partition. Keys are placed with the
// store's own partitioner (Put) or, to test routing, in a chosen partition (PutIn). Partitions
// can be made unreadable, scans can fail, and WaitForPosition answers at once: a position that
// is not reached stands for a deadline that passed.
class FakeLocalStores : public LocalStores {
 public:
  void AddStore(const std::string& name, int32_t partitions, ValueKind kind = ValueKind::kString,
                PartitionerKind partitioner = PartitionerKind::kMurmur2) {
    StoreInfo info;
    info.name = name;
    info.kind = kind == ValueKind::kInt64 ? "count" : "table";
    info.num_partitions = partitions;
    info.partitioner = partitioner;
    info.value_kind = kind;
    stores_[name].info = info;
    stores_[name].partitions.resize(partitions);
    for (int32_t p = 0; p < partitions; ++p) {
      if (processed_.find(p) == processed_.end()) processed_[p] = 100 + p;
    }
  }

  // Stores `key` in the partition the store's partitioner gives it; returns that partition.
  int32_t Put(const std::string& store, const std::string& key, const std::string& value) {
    const StoreInfo& info = stores_.at(store).info;
    const int32_t p = PartitionForKey(info.partitioner, key, info.num_partitions);
    PutIn(store, p, key, value);
    return p;
  }
  void PutIn(const std::string& store, int32_t p, const std::string& key,
             const std::string& value) {
    stores_.at(store).partitions.at(p)[key] = value;
  }

  void SetUnreadable(const std::string& store, int32_t p, absl::Status status) {
    unreadable_[{store, p}] = std::move(status);
  }
  void SetScanError(const std::string& store, int32_t p, absl::Status status) {
    scan_errors_[{store, p}] = std::move(status);
  }
  void SetEntryCount(const std::string& store, int32_t p, int64_t n) {
    approximate_[{store, p}] = n;
  }
  // The next offset processed in (kTopic, p).
  void SetProcessed(int32_t p, int64_t next) { processed_[p] = next; }

  int gets() const { return gets_; }
  int scans() const { return scans_; }
  // Entries all scans have returned, summed.
  int64_t scanned_entries() const { return scanned_entries_; }
  int waits() const { return waits_; }
  absl::Time last_deadline() const { return last_deadline_; }

  absl::StatusOr<StoreInfo> Describe(absl::string_view store) const override {
    auto it = stores_.find(std::string(store));
    if (it == stores_.end())
      return absl::NotFoundError(absl::StrCat("unknown store \"", store, "\""));
    return it->second.info;
  }

  std::vector<StoreInfo> ListStores() const override {
    std::vector<StoreInfo> out;
    for (const auto& [name, s] : stores_) out.push_back(s.info);
    return out;
  }

  absl::Status CheckReadable(absl::string_view store, PartitionId p) const override {
    auto it = unreadable_.find({std::string(store), p.value()});
    return it == unreadable_.end() ? absl::OkStatus() : it->second;
  }

  absl::StatusOr<std::optional<std::string>> Get(absl::string_view store, PartitionId p,
                                                 absl::string_view key) const override {
    ++gets_;
    const std::map<std::string, std::string>& m = Partition(store, p);
    auto it = m.find(std::string(key));
    if (it == m.end()) return std::optional<std::string>();
    return std::optional<std::string>(it->second);
  }

  absl::StatusOr<std::vector<KeyValue>> Scan(absl::string_view store, PartitionId p,
                                             const KeyRange& range,
                                             const std::optional<std::string>& after,
                                             size_t limit) const override {
    ++scans_;
    if (auto e = scan_errors_.find({std::string(store), p.value()}); e != scan_errors_.end()) {
      return e->second;
    }
    std::vector<KeyValue> out;
    for (const auto& [k, v] : Partition(store, p)) {
      if (out.size() >= limit) break;
      if (range.from && k < *range.from) continue;
      if (range.to && k > *range.to) continue;
      if (after && k <= *after) continue;
      out.push_back(KeyValue{k, v, p});
    }
    scanned_entries_ += static_cast<int64_t>(out.size());
    return out;
  }

  absl::StatusOr<int64_t> EntryCount(absl::string_view store, PartitionId p) const override {
    auto it = approximate_.find({std::string(store), p.value()});
    if (it != approximate_.end()) return it->second;
    return static_cast<int64_t>(Partition(store, p).size());
  }

  void AppendPosition(absl::string_view store, PartitionId p,
                      kiq::v1::Position* out) const override {
    kiq::v1::PartitionOffset* po = out->add_offsets();
    po->set_topic(kTopic);
    po->set_partition(p.value());
    po->set_offset(processed_.at(p.value()));
  }

  absl::Status WaitForPosition(absl::string_view store, const kiq::v1::Position& min,
                               absl::Time deadline) const override {
    ++waits_;
    last_deadline_ = deadline;
    for (const kiq::v1::PartitionOffset& po : min.offsets()) {
      auto it = processed_.find(po.partition());
      const int64_t at = it == processed_.end() ? 0 : it->second;
      if (po.topic() != kTopic || at < po.offset()) {
        return absl::DeadlineExceededError(
            absl::StrCat("fake: topic=", po.topic(), " partition=", po.partition(), " is at ", at));
      }
    }
    return absl::OkStatus();
  }

 private:
  struct FakeStore {
    StoreInfo info;
    std::vector<std::map<std::string, std::string>> partitions;
  };

  const std::map<std::string, std::string>& Partition(absl::string_view store,
                                                      PartitionId p) const {
    return stores_.at(std::string(store)).partitions.at(p.value());
  }

  std::map<std::string, FakeStore> stores_;
  std::map<std::pair<std::string, int32_t>, absl::Status> unreadable_;
  std::map<std::pair<std::string, int32_t>, absl::Status> scan_errors_;
  std::map<std::pair<std::string, int32_t>, int64_t> approximate_;
  std::map<int32_t, int64_t> processed_;
  mutable int gets_ = 0;
  mutable int scans_ = 0;
  mutable int64_t scanned_entries_ = 0;
  mutable int waits_ = 0;
  mutable absl::Time last_deadline_ = absl::InfinitePast();
};

// The stored key of an answer: key_bytes when the key is not UTF-8, else key.
std::string KeyOf(const kiq::v1::Entry& e) {
  return e.key_bytes().empty() ? e.key() : e.key_bytes();
}

std::vector<std::string> KeysOf(const kiq::v1::ScanResponse& r) {
  std::vector<std::string> out;
  for (const kiq::v1::Entry& e : r.entries()) out.push_back(KeyOf(e));
  return out;
}

std::vector<int32_t> PartitionsOf(const kiq::v1::Position& position) {
  std::vector<int32_t> out;
  for (const kiq::v1::PartitionOffset& po : position.offsets()) out.push_back(po.partition());
  return out;
}

kiq::v1::Position MinPosition(int32_t p, int64_t offset) {
  kiq::v1::Position position;
  kiq::v1::PartitionOffset* po = position.add_offsets();
  po->set_topic(kTopic);
  po->set_partition(p);
  po->set_offset(offset);
  return position;
}

class QueryRouterTest : public ::testing::Test {
 protected:
  QueryRouterTest() : router_(local_) {}

  kiq::v1::GetRequest GetKey(const std::string& store, const std::string& key) {
    kiq::v1::GetRequest request;
    request.set_store(store);
    request.set_key(key);
    return request;
  }

  kiq::v1::RangeRequest RangeOf(const std::string& store, const std::string& from,
                                const std::string& to, int32_t page_size = 0) {
    kiq::v1::RangeRequest request;
    request.set_store(store);
    request.set_from(from);
    request.set_to(to);
    request.set_page_size(page_size);
    return request;
  }

  kiq::v1::AllRequest AllOf(const std::string& store, int32_t page_size = 0) {
    kiq::v1::AllRequest request;
    request.set_store(store);
    request.set_page_size(page_size);
    return request;
  }

  // Follows next_page_token to the end; checks every page but the last is full.
  std::vector<std::string> AllPages(kiq::v1::AllRequest request, int* pages) {
    std::vector<std::string> keys;
    *pages = 0;
    for (;;) {
      absl::StatusOr<kiq::v1::ScanResponse> r = router_.All(request, deadline_);
      EXPECT_OK(r);
      if (!r.ok()) break;
      ++*pages;
      for (const kiq::v1::Entry& e : r->entries()) keys.push_back(KeyOf(e));
      if (r->next_page_token().empty()) break;
      EXPECT_EQ(r->entries_size(), request.page_size()) << "a non-final page is short";
      if (*pages > 10000) {
        ADD_FAILURE() << "pagination does not end";
        break;
      }
      request.set_page_token(r->next_page_token());
    }
    return keys;
  }

  FakeLocalStores local_;
  QueryRouter router_;
  const absl::Time deadline_ = absl::FromUnixSeconds(2000000000);
};

// --- Get ---

TEST_F(QueryRouterTest, GetFindsKeyInItsPartition) {
  local_.AddStore("users", 8);
  const int32_t p = local_.Put("users", "alice", "hello");
  local_.Put("users", "bob", "other");
  absl::StatusOr<kiq::v1::GetResponse> r = router_.Get(GetKey("users", "alice"), deadline_);
  ASSERT_OK(r);
  EXPECT_TRUE(r->found());
  EXPECT_EQ(r->entry().key(), "alice");
  EXPECT_EQ(r->entry().key_bytes(), "");
  EXPECT_EQ(r->entry().value(), "hello");
  EXPECT_EQ(r->entry().partition(), p);
  EXPECT_FALSE(r->entry().has_json());  // a string store's values are not structured
  // The position of the one partition read.
  ASSERT_EQ(r->position().offsets_size(), 1);
  EXPECT_EQ(r->position().offsets(0).topic(), kTopic);
  EXPECT_EQ(r->position().offsets(0).partition(), p);
  EXPECT_EQ(r->position().offsets(0).offset(), 100 + p);
}

TEST_F(QueryRouterTest, GetOfMissingKeyIsFoundFalseNotAnError) {
  local_.AddStore("users", 8);
  local_.Put("users", "alice", "hello");
  absl::StatusOr<kiq::v1::GetResponse> r = router_.Get(GetKey("users", "nobody"), deadline_);
  ASSERT_OK(r);
  EXPECT_FALSE(r->found());
  EXPECT_FALSE(r->has_entry());
  EXPECT_EQ(r->position().offsets_size(), 1);
  EXPECT_EQ(local_.gets(), 1);
}

TEST_F(QueryRouterTest, GetLooksOnlyInTheKeysPartition) {
  local_.AddStore("users", 8);
  const int32_t right = PartitionForKey(PartitionerKind::kMurmur2, "alice", 8);
  local_.PutIn("users", (right + 1) % 8, "alice", "misplaced");
  EXPECT_THAT(router_.Get(GetKey("users", "alice"), deadline_),
              IsOkAndHolds(::testing::Property(&kiq::v1::GetResponse::found, false)));
}

TEST_F(QueryRouterTest, GetRoutesWithTheStoresPartitioner) {
  constexpr int32_t kPartitions = 16;
  local_.AddStore("c", kPartitions, ValueKind::kString, PartitionerKind::kConsistent);
  // A key the two partitioners place apart, so that routing with murmur2 would miss it.
  std::string key;
  for (int i = 0; key.empty(); ++i) {
    const std::string candidate = absl::StrCat("key-", i);
    if (PartitionForKey(PartitionerKind::kConsistent, candidate, kPartitions) !=
        PartitionForKey(PartitionerKind::kMurmur2, candidate, kPartitions)) {
      key = candidate;
    }
  }
  const int32_t p = local_.Put("c", key, "v");
  absl::StatusOr<kiq::v1::GetResponse> r = router_.Get(GetKey("c", key), deadline_);
  ASSERT_OK(r);
  EXPECT_TRUE(r->found());
  EXPECT_EQ(r->entry().partition(), p);
}

TEST_F(QueryRouterTest, GetByKeyBytesFindsABinaryKeyAndAnswersItInKeyBytes) {
  local_.AddStore("bin", 4, ValueKind::kBytes);
  const std::string key("\xff\x00\xfe", 3);
  const std::string value("\x00\x01", 2);
  local_.Put("bin", key, value);
  kiq::v1::GetRequest request;
  request.set_store("bin");
  request.set_key_bytes(key);
  absl::StatusOr<kiq::v1::GetResponse> r = router_.Get(request, deadline_);
  ASSERT_OK(r);
  EXPECT_TRUE(r->found());
  EXPECT_EQ(r->entry().key(), "");
  EXPECT_EQ(r->entry().key_bytes(), key);
  EXPECT_EQ(r->entry().value(), value);
}

TEST_F(QueryRouterTest, GetByKeyBytesOfATextKeyAnswersTheKeyAsText) {
  local_.AddStore("users", 4);
  local_.Put("users", "caf\xc3\xa9", "v");
  kiq::v1::GetRequest request;
  request.set_store("users");
  request.set_key_bytes("caf\xc3\xa9");
  absl::StatusOr<kiq::v1::GetResponse> r = router_.Get(request, deadline_);
  ASSERT_OK(r);
  EXPECT_TRUE(r->found());
  EXPECT_EQ(r->entry().key(), "caf\xc3\xa9");
  EXPECT_EQ(r->entry().key_bytes(), "");
}

TEST_F(QueryRouterTest, GetOfTheEmptyKeyIsALookupNotAMissingKey) {
  local_.AddStore("users", 4);
  local_.Put("users", "", "empty");
  absl::StatusOr<kiq::v1::GetResponse> r = router_.Get(GetKey("users", ""), deadline_);
  ASSERT_OK(r);
  EXPECT_TRUE(r->found());
  EXPECT_EQ(r->entry().value(), "empty");
}

TEST_F(QueryRouterTest, GetWithoutAKeyIsInvalidArgument) {
  local_.AddStore("users", 4);
  kiq::v1::GetRequest request;
  request.set_store("users");
  EXPECT_THAT(router_.Get(request, deadline_),
              StatusIs(absl::StatusCode::kInvalidArgument, "key is required"));
  EXPECT_EQ(local_.gets(), 0);
}

TEST_F(QueryRouterTest, CountStoreRendersDecimalTextAndJsonNumber) {
  local_.AddStore("counts", 4, ValueKind::kInt64);
  local_.Put("counts", "a", EncodeInt64(42));
  local_.Put("counts", "neg", EncodeInt64(-7));
  absl::StatusOr<kiq::v1::GetResponse> r = router_.Get(GetKey("counts", "a"), deadline_);
  ASSERT_OK(r);
  EXPECT_EQ(r->entry().value(), "42");
  ASSERT_TRUE(r->entry().has_json());
  EXPECT_EQ(r->entry().json().kind_case(), google::protobuf::Value::kNumberValue);
  EXPECT_EQ(r->entry().json().number_value(), 42);

  r = router_.Get(GetKey("counts", "neg"), deadline_);
  ASSERT_OK(r);
  EXPECT_EQ(r->entry().value(), "-7");
  EXPECT_EQ(r->entry().json().number_value(), -7);
}

TEST_F(QueryRouterTest, CountStoreValueThatIsNotEightBytesFallsBackToBytes) {
  local_.AddStore("counts", 4, ValueKind::kInt64);
  local_.Put("counts", "odd", "abc");
  absl::StatusOr<kiq::v1::GetResponse> r = router_.Get(GetKey("counts", "odd"), deadline_);
  ASSERT_OK(r);
  EXPECT_EQ(r->entry().value(), "abc");
  EXPECT_FALSE(r->entry().has_json());
}

TEST_F(QueryRouterTest, JsonStoreRendersAJsonStruct) {
  local_.AddStore("docs", 4, ValueKind::kJson);
  local_.Put("docs", "d1", R"({"name":"ann","n":3,"tags":["x"]})");
  absl::StatusOr<kiq::v1::GetResponse> r = router_.Get(GetKey("docs", "d1"), deadline_);
  ASSERT_OK(r);
  EXPECT_EQ(r->entry().value(), R"({"name":"ann","n":3,"tags":["x"]})");
  ASSERT_EQ(r->entry().json().kind_case(), google::protobuf::Value::kStructValue);
  const auto& fields = r->entry().json().struct_value().fields();
  ASSERT_EQ(fields.count("name"), 1u);
  EXPECT_EQ(fields.at("name").string_value(), "ann");
  ASSERT_EQ(fields.count("n"), 1u);
  EXPECT_EQ(fields.at("n").number_value(), 3);
  ASSERT_EQ(fields.count("tags"), 1u);
  ASSERT_EQ(fields.at("tags").list_value().values_size(), 1);
  EXPECT_EQ(fields.at("tags").list_value().values(0).string_value(), "x");
}

TEST_F(QueryRouterTest, JsonStoreValueThatIsNotJsonLeavesJsonUnset) {
  local_.AddStore("docs", 4, ValueKind::kJson);
  local_.Put("docs", "bad", "{not json");
  absl::StatusOr<kiq::v1::GetResponse> r = router_.Get(GetKey("docs", "bad"), deadline_);
  ASSERT_OK(r);
  EXPECT_EQ(r->entry().value(), "{not json");
  EXPECT_FALSE(r->entry().has_json());
}

TEST_F(QueryRouterTest, GetOfUnreadablePartitionIsTheErrorNamingKeyAndPartition) {
  local_.AddStore("users", 8);
  const int32_t p = local_.Put("users", "alice", "v");
  local_.SetUnreadable("users", p, absl::UnavailableError("partition is restoring"));
  EXPECT_THAT(router_.Get(GetKey("users", "alice"), deadline_),
              StatusIs(absl::StatusCode::kUnavailable, "partition is restoring"));
  EXPECT_THAT(router_.Get(GetKey("users", "alice"), deadline_),
              StatusIs(absl::StatusCode::kUnavailable,
                       absl::StrCat("get store=users key=\"alice\" partition=", p)));
  local_.SetUnreadable("users", p, absl::FailedPreconditionError("NOT_OWNER: node-2 owns it"));
  EXPECT_THAT(router_.Get(GetKey("users", "alice"), deadline_),
              StatusIs(absl::StatusCode::kFailedPrecondition, "NOT_OWNER"));
  EXPECT_EQ(local_.gets(), 0);
}

TEST_F(QueryRouterTest, GetWaitsForMinPositionBeforeReading) {
  local_.AddStore("users", 8);
  const int32_t p = local_.Put("users", "alice", "v");
  kiq::v1::GetRequest request = GetKey("users", "alice");
  *request.mutable_min_position() = MinPosition(p, 100 + p + 1);  // one past what is processed
  EXPECT_THAT(router_.Get(request, deadline_),
              StatusIs(absl::StatusCode::kDeadlineExceeded,
                       absl::StrCat("fake: topic=orders partition=", p)));
  EXPECT_EQ(local_.waits(), 1);
  EXPECT_EQ(local_.last_deadline(), deadline_);
  EXPECT_EQ(local_.gets(), 0);

  local_.SetProcessed(p, 100 + p + 1);
  absl::StatusOr<kiq::v1::GetResponse> r = router_.Get(request, deadline_);
  ASSERT_OK(r);
  EXPECT_TRUE(r->found());
  EXPECT_EQ(r->position().offsets(0).offset(), 100 + p + 1);
}

// --- Store validation, for every method ---

TEST_F(QueryRouterTest, EmptyStoreNameIsInvalidArgument) {
  local_.AddStore("users", 4);
  EXPECT_THAT(router_.Get(GetKey("", "k"), deadline_),
              StatusIs(absl::StatusCode::kInvalidArgument, "store is required"));
  EXPECT_THAT(router_.Range(RangeOf("", "a", "b"), deadline_),
              StatusIs(absl::StatusCode::kInvalidArgument, "store is required"));
  EXPECT_THAT(router_.All(AllOf(""), deadline_),
              StatusIs(absl::StatusCode::kInvalidArgument, "store is required"));
  kiq::v1::CountRequest count;
  EXPECT_THAT(router_.Count(count, deadline_),
              StatusIs(absl::StatusCode::kInvalidArgument, "store is required"));
}

TEST_F(QueryRouterTest, UnknownStoreIsNotFoundNamingIt) {
  local_.AddStore("users", 4);
  EXPECT_THAT(router_.Get(GetKey("nosuch", "k"), deadline_),
              StatusIs(absl::StatusCode::kNotFound, "nosuch"));
  EXPECT_THAT(router_.Range(RangeOf("nosuch", "a", "b"), deadline_),
              StatusIs(absl::StatusCode::kNotFound, "nosuch"));
  EXPECT_THAT(router_.All(AllOf("nosuch"), deadline_),
              StatusIs(absl::StatusCode::kNotFound, "nosuch"));
  kiq::v1::CountRequest count;
  count.set_store("nosuch");
  EXPECT_THAT(router_.Count(count, deadline_), StatusIs(absl::StatusCode::kNotFound, "nosuch"));
}

// --- Range ---

class QueryRouterRangeTest : public QueryRouterTest {
 protected:
  void SetUp() override {
    local_.AddStore("s", 5);
    for (const char* k : {"a", "b", "c", "d", "e", "f"}) local_.Put("s", k, absl::StrCat("v", k));
  }
  std::vector<std::string> RangeKeys(const kiq::v1::RangeRequest& request) {
    absl::StatusOr<kiq::v1::ScanResponse> r = router_.Range(request, deadline_);
    EXPECT_OK(r);
    if (!r.ok()) return {};
    EXPECT_EQ(r->next_page_token(), "");
    return KeysOf(*r);
  }
};

TEST_F(QueryRouterRangeTest, RangeIsInclusiveOnBothEnds) {
  absl::StatusOr<kiq::v1::ScanResponse> r = router_.Range(RangeOf("s", "b", "d"), deadline_);
  ASSERT_OK(r);
  EXPECT_THAT(KeysOf(*r), ElementsAre("b", "c", "d"));
  EXPECT_EQ(r->entries(0).value(), "vb");
  for (const kiq::v1::Entry& e : r->entries()) {
    EXPECT_EQ(e.partition(), PartitionForKey(PartitionerKind::kMurmur2, e.key(), 5));
  }
}

TEST_F(QueryRouterRangeTest, RangeBoundsNeedNotBeKeys) {
  EXPECT_THAT(RangeKeys(RangeOf("s", "bb", "dd")), ElementsAre("c", "d"));
  EXPECT_THAT(RangeKeys(RangeOf("s", "c", "c")), ElementsAre("c"));
  EXPECT_THAT(RangeKeys(RangeOf("s", "cc", "cd")), IsEmpty());
}

TEST_F(QueryRouterRangeTest, EmptyBoundIsOpen) {
  EXPECT_THAT(RangeKeys(RangeOf("s", "", "b")), ElementsAre("a", "b"));
  EXPECT_THAT(RangeKeys(RangeOf("s", "e", "")), ElementsAre("e", "f"));
  EXPECT_THAT(RangeKeys(RangeOf("s", "", "")), ElementsAre("a", "b", "c", "d", "e", "f"));
}

TEST_F(QueryRouterRangeTest, ByteBoundsTakePrecedenceAndMayBeBinary) {
  local_.Put("s", "\xff\x01", "hi");
  local_.Put("s", std::string("b\0", 2), "nul");
  kiq::v1::RangeRequest request = RangeOf("s", "zzz", "");
  request.set_from_bytes(std::string("b\0", 2));
  request.set_to_bytes("\xff\x01");
  EXPECT_THAT(RangeKeys(request),
              ElementsAre(std::string("b\0", 2), "c", "d", "e", "f", "\xff\x01"));
}

TEST_F(QueryRouterRangeTest, FromAfterToIsInvalidArgument) {
  EXPECT_THAT(router_.Range(RangeOf("s", "d", "b"), deadline_),
              StatusIs(absl::StatusCode::kInvalidArgument, "is after to"));
  kiq::v1::RangeRequest request = RangeOf("s", "", "");
  request.set_from_bytes("\xff");
  request.set_to_bytes("\x01");
  EXPECT_THAT(router_.Range(request, deadline_),
              StatusIs(absl::StatusCode::kInvalidArgument, "range store=s"));
  EXPECT_EQ(local_.scans(), 0);
}

TEST_F(QueryRouterRangeTest, RangePagesStayInsideTheRange) {
  kiq::v1::RangeRequest request = RangeOf("s", "b", "e", 2);
  absl::StatusOr<kiq::v1::ScanResponse> first = router_.Range(request, deadline_);
  ASSERT_OK(first);
  EXPECT_THAT(KeysOf(*first), ElementsAre("b", "c"));
  ASSERT_NE(first->next_page_token(), "");
  request.set_page_token(first->next_page_token());
  absl::StatusOr<kiq::v1::ScanResponse> second = router_.Range(request, deadline_);
  ASSERT_OK(second);
  EXPECT_THAT(KeysOf(*second), ElementsAre("d", "e"));
  // Exactly full with nothing after it inside the range: the last page.
  EXPECT_EQ(second->next_page_token(), "");
}

// --- All and pagination ---

class QueryRouterPagingTest : public QueryRouterTest,
                              public ::testing::WithParamInterface<int32_t> {
 protected:
  void SetUp() override {
    local_.AddStore("big", 13);
    std::mt19937 rng(7);
    const std::string alphabet(
        "\0\x01"
        "a\x7f\x80\xc3\xa9\xff",
        8);
    // Edge keys plus random ones: empty, NUL, 0xff, prefixes of one another, invalid UTF-8.
    for (const std::string& k :
         {std::string(), std::string("\0", 1), std::string("\xff"), std::string("\xff\xff"),
          std::string("a"), std::string("a\0", 2), std::string("caf\xc3\xa9")}) {
      model_[k] = "edge";
    }
    while (model_.size() < 150) {
      std::string k;
      const int len = 1 + static_cast<int>(rng() % 5);
      for (int i = 0; i < len; ++i) k.push_back(alphabet[rng() % alphabet.size()]);
      model_[k] = absl::StrCat("v", model_.size());
    }
    for (const auto& [k, v] : model_) local_.Put("big", k, v);
  }

  std::vector<std::string> ModelKeys() const {
    std::vector<std::string> keys;
    for (const auto& [k, v] : model_) keys.push_back(k);
    return keys;
  }

  std::map<std::string, std::string> model_;
};

TEST_P(QueryRouterPagingTest, AllReturnsEveryKeyOnceInByteOrderAcrossPages) {
  const int32_t page_size = GetParam();
  int pages = 0;
  std::vector<std::string> keys = AllPages(AllOf("big", page_size), &pages);
  EXPECT_EQ(keys, ModelKeys());
  EXPECT_EQ(std::set<std::string>(keys.begin(), keys.end()).size(), keys.size());
  const int expected_pages =
      std::max<int>(1, static_cast<int>((model_.size() + page_size - 1) / page_size));
  EXPECT_EQ(pages, expected_pages);
}

INSTANTIATE_TEST_SUITE_P(PageSizes, QueryRouterPagingTest,
                         ::testing::Values(1, 2, 7, 100, 150, 151));

TEST_F(QueryRouterTest, ScanPagesReadAShareOfThePageFromEachPartition) {
  // Reading page_size + 1 entries from each of 6 partitions would read 6x the page.
  local_.AddStore("s", 6);
  std::set<std::string> model;
  for (int i = 0; i < 6000; ++i) {
    const std::string k = absl::StrCat("key-", i);
    local_.Put("s", k, "v");
    model.insert(k);
  }
  kiq::v1::AllRequest request = AllOf("s", 1000);
  std::vector<std::string> keys;
  int pages = 0;
  for (;;) {
    const int64_t before = local_.scanned_entries();
    absl::StatusOr<kiq::v1::ScanResponse> r = router_.All(request, deadline_);
    ASSERT_OK(r);
    ++pages;
    ASSERT_LE(pages, 100) << "pagination does not end";
    EXPECT_LE(local_.scanned_entries() - before, 2 * 1000) << "page " << pages;
    EXPECT_LE(r->entries_size(), 1000);
    for (const kiq::v1::Entry& e : r->entries()) keys.push_back(e.key());
    if (r->next_page_token().empty()) break;
    request.set_page_token(r->next_page_token());
  }
  EXPECT_EQ(keys, std::vector<std::string>(model.begin(), model.end()));
}

TEST_F(QueryRouterTest, RangePagesReadsOneBatchPerScatterCutIntoResumablePages) {
  // Scan's stream reads 5,000 entries per scatter and sends them as pages: each page at most
  // page_size, in key order, and each page's token resumes (with Range) right after it.
  local_.AddStore("s", 6);
  std::set<std::string> model;
  for (int i = 0; i < 12000; ++i) {
    const std::string k = absl::StrCat("key-", 100000 + i);
    local_.Put("s", k, "v");
    model.insert(k);
  }
  kiq::v1::RangeRequest request = RangeOf("s", "key-100500", "key-111499", 1000);
  std::vector<std::string> expected;
  for (const std::string& k : model) {
    if (k >= "key-100500" && k <= "key-111499") expected.push_back(k);
  }
  std::vector<std::string> keys;
  int batches = 0;
  int pages = 0;
  for (;;) {
    const int scans_before = local_.scans();
    const int64_t scanned_before = local_.scanned_entries();
    absl::StatusOr<std::vector<kiq::v1::ScanResponse>> r =
        router_.RangePages(request, kMaxPageSize, deadline_);
    ASSERT_OK(r);
    ASSERT_LE(++batches, 100) << "pagination does not end";
    // One scatter: one read per partition, of its share of the batch (not of each page).
    EXPECT_EQ(local_.scans() - scans_before, 6);
    EXPECT_LE(local_.scanned_entries() - scanned_before, 2 * kMaxPageSize);
    ASSERT_FALSE(r->empty());
    EXPECT_LE(r->size(), static_cast<size_t>(kMaxPageSize / 1000));
    for (size_t i = 0; i < r->size(); ++i) {
      const kiq::v1::ScanResponse& page = (*r)[i];
      ++pages;
      EXPECT_LE(page.entries_size(), 1000);
      EXPECT_EQ(page.position().offsets_size(), 6) << "every page carries the position";
      for (const kiq::v1::Entry& e : page.entries()) keys.push_back(e.key());
      if (i + 1 < r->size()) {
        // Not the batch's last: full, and its token resumes exactly at the next page.
        EXPECT_EQ(page.entries_size(), 1000);
        ASSERT_FALSE(page.next_page_token().empty());
        kiq::v1::RangeRequest resume = request;
        resume.set_page_token(page.next_page_token());
        absl::StatusOr<kiq::v1::ScanResponse> next = router_.Range(resume, deadline_);
        ASSERT_OK(next);
        ASSERT_GT(next->entries_size(), 0);
        EXPECT_EQ(next->entries(0).key(), (*r)[i + 1].entries(0).key());
      }
    }
    const std::string& token = r->back().next_page_token();
    if (token.empty()) break;
    request.set_page_token(token);
  }
  EXPECT_EQ(keys, expected);
  EXPECT_GE(pages, 11);
  EXPECT_LE(batches, 4) << "11,000 entries in batches of up to 5,000";
}

TEST_F(QueryRouterTest, RangePagesOfABatchSmallerThanThePageIsOnePage) {
  local_.AddStore("s", 6);
  for (int i = 0; i < 300; ++i) local_.Put("s", absl::StrCat("key-", 1000 + i), "v");
  absl::StatusOr<std::vector<kiq::v1::ScanResponse>> r =
      router_.RangePages(RangeOf("s", "", "", 100), 0, deadline_);
  ASSERT_OK(r);
  ASSERT_EQ(r->size(), 1u);
  EXPECT_GT((*r)[0].entries_size(), 0);
  EXPECT_LE((*r)[0].entries_size(), 100);
  EXPECT_FALSE((*r)[0].next_page_token().empty());
  EXPECT_THAT(router_.RangePages(RangeOf("s", "b", "a", 100), kMaxPageSize, deadline_),
              StatusIs(absl::StatusCode::kInvalidArgument, "is after to"));
}

TEST_F(QueryRouterTest, ScanOfASkewedStoreEndsPagesWhereAPartitionMayHaveMore) {
  // Partition 0 holds most keys: its share of a page runs out before the page is full, and
  // the page ends at its last entry (short, with a token) instead of skipping what follows.
  local_.AddStore("s", 6);
  std::set<std::string> model;
  for (int i = 0; i < 300; ++i) {
    const std::string k = absl::StrCat("p0-", 1000 + i);
    local_.PutIn("s", 0, k, "v");
    model.insert(k);
  }
  for (int p = 1; p < 6; ++p) {
    for (int i = 0; i < 10; ++i) {
      // Interleaved with partition 0's keys in byte order.
      const std::string k = absl::StrCat("p0-", 1000 + i * 30 + p, "x");
      local_.PutIn("s", p, k, "v");
      model.insert(k);
    }
  }
  kiq::v1::AllRequest request = AllOf("s", 100);
  std::vector<std::string> keys;
  int pages = 0;
  int short_pages = 0;
  for (;;) {
    absl::StatusOr<kiq::v1::ScanResponse> r = router_.All(request, deadline_);
    ASSERT_OK(r);
    ASSERT_LE(++pages, 1000) << "pagination does not end";
    for (const kiq::v1::Entry& e : r->entries()) keys.push_back(e.key());
    if (r->next_page_token().empty()) break;
    EXPECT_GE(r->entries_size(), 1) << "a non-final page is empty";
    EXPECT_LE(r->entries_size(), 100);
    if (r->entries_size() < 100) ++short_pages;
    request.set_page_token(r->next_page_token());
  }
  EXPECT_EQ(keys, std::vector<std::string>(model.begin(), model.end()));
  EXPECT_GT(short_pages, 0);
}

TEST_F(QueryRouterTest, AllEntriesCarryTheirPartitionAndValue) {
  local_.AddStore("s", 7);
  std::map<std::string, std::pair<std::string, int32_t>> model;
  for (int i = 0; i < 40; ++i) {
    const std::string k = absl::StrCat("k", i);
    const std::string v = absl::StrCat("v", i);
    model[k] = {v, local_.Put("s", k, v)};
  }
  absl::StatusOr<kiq::v1::ScanResponse> r = router_.All(AllOf("s", 100), deadline_);
  ASSERT_OK(r);
  ASSERT_EQ(r->entries_size(), 40);
  EXPECT_EQ(r->next_page_token(), "");
  for (const kiq::v1::Entry& e : r->entries()) {
    ASSERT_EQ(model.count(e.key()), 1u) << e.key();
    EXPECT_EQ(e.value(), model[e.key()].first);
    EXPECT_EQ(e.partition(), model[e.key()].second);
  }
}

TEST_F(QueryRouterTest, AllOfEmptyStoreIsOneEmptyPage) {
  local_.AddStore("s", 4);
  absl::StatusOr<kiq::v1::ScanResponse> r = router_.All(AllOf("s", 1), deadline_);
  ASSERT_OK(r);
  EXPECT_EQ(r->entries_size(), 0);
  EXPECT_EQ(r->next_page_token(), "");
}

TEST_F(QueryRouterTest, PageSizeZeroMeansTheDefault) {
  local_.AddStore("s", 3);
  for (int i = 0; i < kDefaultPageSize + 5; ++i) local_.Put("s", absl::StrCat("k", 1000 + i), "v");
  absl::StatusOr<kiq::v1::ScanResponse> r = router_.All(AllOf("s", 0), deadline_);
  ASSERT_OK(r);
  EXPECT_EQ(r->entries_size(), kDefaultPageSize);
  EXPECT_NE(r->next_page_token(), "");
}

TEST_F(QueryRouterTest, PageSizeOutOfBoundsIsInvalidArgument) {
  local_.AddStore("s", 3);
  for (int32_t bad : {-1, kMaxPageSize + 1, std::numeric_limits<int32_t>::min()}) {
    SCOPED_TRACE(bad);
    EXPECT_THAT(router_.All(AllOf("s", bad), deadline_),
                StatusIs(absl::StatusCode::kInvalidArgument, "page_size"));
    EXPECT_THAT(router_.Range(RangeOf("s", "a", "b", bad), deadline_),
                StatusIs(absl::StatusCode::kInvalidArgument, "page_size"));
  }
  EXPECT_THAT(router_.All(AllOf("s", 5001), deadline_),
              StatusIs(absl::StatusCode::kInvalidArgument, "got 5001"));
  EXPECT_OK(router_.All(AllOf("s", kMaxPageSize), deadline_));
  EXPECT_EQ(local_.scans(), 3);  // only the valid request read anything
}

TEST_F(QueryRouterTest, PageTokenIsRejectedByAnotherStoreOrRange) {
  local_.AddStore("s", 3);
  local_.AddStore("t", 3);
  for (const char* k : {"a", "b", "c", "d"}) {
    local_.Put("s", k, "v");
    local_.Put("t", k, "v");
  }
  absl::StatusOr<kiq::v1::ScanResponse> all = router_.All(AllOf("s", 1), deadline_);
  ASSERT_OK(all);
  ASSERT_NE(all->next_page_token(), "");
  const std::string all_token = all->next_page_token();

  kiq::v1::AllRequest other_store = AllOf("t", 1);
  other_store.set_page_token(all_token);
  EXPECT_THAT(router_.All(other_store, deadline_),
              StatusIs(absl::StatusCode::kInvalidArgument, "another request"));

  kiq::v1::RangeRequest bounded = RangeOf("s", "a", "c", 1);
  bounded.set_page_token(all_token);
  EXPECT_THAT(router_.Range(bounded, deadline_),
              StatusIs(absl::StatusCode::kInvalidArgument, "another request"));

  absl::StatusOr<kiq::v1::ScanResponse> range = router_.Range(RangeOf("s", "a", "c", 1), deadline_);
  ASSERT_OK(range);
  ASSERT_NE(range->next_page_token(), "");
  kiq::v1::RangeRequest wider = RangeOf("s", "a", "d", 1);
  wider.set_page_token(range->next_page_token());
  EXPECT_THAT(router_.Range(wider, deadline_),
              StatusIs(absl::StatusCode::kInvalidArgument, "another request"));
  // An open bound is not the empty key.
  kiq::v1::RangeRequest open_to = RangeOf("s", "a", "", 1);
  open_to.set_page_token(range->next_page_token());
  EXPECT_THAT(router_.Range(open_to, deadline_),
              StatusIs(absl::StatusCode::kInvalidArgument, "another request"));
  kiq::v1::AllRequest all_with_range_token = AllOf("s", 1);
  all_with_range_token.set_page_token(range->next_page_token());
  EXPECT_THAT(router_.All(all_with_range_token, deadline_),
              StatusIs(absl::StatusCode::kInvalidArgument, "another request"));

  // The same request accepts it.
  kiq::v1::RangeRequest same = RangeOf("s", "a", "c", 1);
  same.set_page_token(range->next_page_token());
  absl::StatusOr<kiq::v1::ScanResponse> next = router_.Range(same, deadline_);
  ASSERT_OK(next);
  EXPECT_THAT(KeysOf(*next), ElementsAre("b"));
}

TEST_F(QueryRouterTest, MalformedPageTokenIsInvalidArgument) {
  local_.AddStore("s", 3);
  for (const std::string& token :
       {std::string("!!not base64!!"), std::string("AAAA"), std::string("\xff\xfe")}) {
    SCOPED_TRACE(absl::CHexEscape(token));
    kiq::v1::AllRequest request = AllOf("s", 1);
    request.set_page_token(token);
    EXPECT_THAT(router_.All(request, deadline_),
                StatusIs(absl::StatusCode::kInvalidArgument, "page_token"));
  }
  EXPECT_EQ(local_.scans(), 0);
}

// --- Partitions that cannot be read ---

class QueryRouterPartialTest : public QueryRouterTest {
 protected:
  void SetUp() override {
    local_.AddStore("s", 6);
    for (int i = 0; i < 60; ++i) {
      const std::string k = absl::StrCat("k", 100 + i);
      partition_of_[k] = local_.Put("s", k, "v");
    }
    local_.SetUnreadable("s", 3, absl::UnavailableError("partition 3 is restoring"));
  }
  std::map<std::string, int32_t> partition_of_;
};

TEST_F(QueryRouterPartialTest, ScanOfUnreadablePartitionIsTheError) {
  EXPECT_THAT(router_.All(AllOf("s", 1000), deadline_),
              StatusIs(absl::StatusCode::kUnavailable, "partition 3 is restoring"));
  EXPECT_THAT(router_.All(AllOf("s", 1000), deadline_),
              StatusIs(absl::StatusCode::kUnavailable, "scan store=s partition=3"));
  EXPECT_THAT(router_.Range(RangeOf("s", "a", "z"), deadline_),
              StatusIs(absl::StatusCode::kUnavailable, "partition=3"));
  kiq::v1::CountRequest count;
  count.set_store("s");
  EXPECT_THAT(router_.Count(count, deadline_),
              StatusIs(absl::StatusCode::kUnavailable, "count store=s partition=3"));
}

TEST_F(QueryRouterPartialTest, AllowPartialListsMissingPartitionAndOmitsItsKeys) {
  kiq::v1::AllRequest request = AllOf("s", 1000);
  request.set_allow_partial(true);
  absl::StatusOr<kiq::v1::ScanResponse> r = router_.All(request, deadline_);
  ASSERT_OK(r);
  EXPECT_THAT(r->missing_partitions(), ElementsAre(3));
  std::vector<std::string> expected;
  for (const auto& [k, p] : partition_of_) {
    if (p != 3) expected.push_back(k);
  }
  ASSERT_LT(expected.size(), partition_of_.size()) << "no key landed in partition 3";
  EXPECT_EQ(KeysOf(*r), expected);
  EXPECT_THAT(PartitionsOf(r->position()), ElementsAre(0, 1, 2, 4, 5));

  kiq::v1::RangeRequest range = RangeOf("s", "k1", "k2");
  range.set_allow_partial(true);
  absl::StatusOr<kiq::v1::ScanResponse> rr = router_.Range(range, deadline_);
  ASSERT_OK(rr);
  EXPECT_THAT(rr->missing_partitions(), ElementsAre(3));
  EXPECT_EQ(KeysOf(*rr), expected);
}

TEST_F(QueryRouterPartialTest, CountWithAllowPartialSumsTheReadablePartitions) {
  kiq::v1::CountRequest count;
  count.set_store("s");
  count.set_allow_partial(true);
  int64_t expected = 0;
  for (const auto& [k, p] : partition_of_) expected += p != 3;
  absl::StatusOr<kiq::v1::CountResponse> r = router_.Count(count, deadline_);
  ASSERT_OK(r);
  EXPECT_EQ(r->count(), expected);
  EXPECT_THAT(r->missing_partitions(), ElementsAre(3));
  EXPECT_THAT(PartitionsOf(r->position()), ElementsAre(0, 1, 2, 4, 5));
}

TEST_F(QueryRouterTest, ScanErrorOfAPartitionIsReturnedNamingIt) {
  local_.AddStore("s", 4);
  local_.Put("s", "a", "v");
  local_.SetScanError("s", 2, absl::DataLossError("bad block"));
  EXPECT_THAT(router_.All(AllOf("s"), deadline_),
              StatusIs(absl::StatusCode::kDataLoss, "scan store=s partition=2: bad block"));
}

// --- Count and positions ---

TEST_F(QueryRouterTest, CountSumsTheEntryCountsOfEveryPartition) {
  local_.AddStore("s", 4);
  local_.SetEntryCount("s", 0, 10);
  local_.SetEntryCount("s", 1, 0);
  local_.SetEntryCount("s", 2, 5);
  local_.SetEntryCount("s", 3, int64_t{1} << 40);
  kiq::v1::CountRequest count;
  count.set_store("s");
  absl::StatusOr<kiq::v1::CountResponse> r = router_.Count(count, deadline_);
  ASSERT_OK(r);
  EXPECT_EQ(r->count(), 15 + (int64_t{1} << 40));
  EXPECT_THAT(r->missing_partitions(), IsEmpty());
  EXPECT_THAT(PartitionsOf(r->position()), ElementsAre(0, 1, 2, 3));
}

TEST_F(QueryRouterTest, ScanPositionHasOneOffsetPerPartitionRead) {
  local_.AddStore("s", 5);
  local_.Put("s", "a", "v");
  local_.SetProcessed(2, 777);
  for (int32_t page_size : {1, 100}) {
    absl::StatusOr<kiq::v1::ScanResponse> r = router_.All(AllOf("s", page_size), deadline_);
    ASSERT_OK(r);
    EXPECT_THAT(PartitionsOf(r->position()), ElementsAre(0, 1, 2, 3, 4));
    for (const kiq::v1::PartitionOffset& po : r->position().offsets()) {
      EXPECT_EQ(po.topic(), kTopic);
      EXPECT_EQ(po.offset(), po.partition() == 2 ? 777 : 100 + po.partition());
    }
  }
}

TEST_F(QueryRouterTest, MinPositionNotReachedIsDeadlineExceededForScansAndCount) {
  local_.AddStore("s", 4);
  local_.Put("s", "a", "v");
  const kiq::v1::Position ahead = MinPosition(1, 5000);

  kiq::v1::AllRequest all = AllOf("s");
  *all.mutable_min_position() = ahead;
  EXPECT_THAT(router_.All(all, deadline_),
              StatusIs(absl::StatusCode::kDeadlineExceeded, "fake: topic=orders partition=1"));
  kiq::v1::RangeRequest range = RangeOf("s", "a", "b");
  *range.mutable_min_position() = ahead;
  EXPECT_THAT(router_.Range(range, deadline_),
              StatusIs(absl::StatusCode::kDeadlineExceeded, "scan store=s"));
  kiq::v1::CountRequest count;
  count.set_store("s");
  *count.mutable_min_position() = ahead;
  EXPECT_THAT(router_.Count(count, deadline_),
              StatusIs(absl::StatusCode::kDeadlineExceeded, "count store=s"));
  EXPECT_EQ(local_.waits(), 3);
  EXPECT_EQ(local_.last_deadline(), deadline_);
  EXPECT_EQ(local_.scans(), 0);

  // Reached: the answer comes.
  local_.SetProcessed(1, 5000);
  absl::StatusOr<kiq::v1::ScanResponse> r = router_.All(all, deadline_);
  ASSERT_OK(r);
  EXPECT_THAT(KeysOf(*r), ElementsAre("a"));
  EXPECT_OK(router_.Count(count, deadline_));
}

TEST_F(QueryRouterTest, EmptyMinPositionDoesNotWait) {
  local_.AddStore("s", 2);
  EXPECT_OK(router_.All(AllOf("s"), deadline_));
  kiq::v1::CountRequest count;
  count.set_store("s");
  EXPECT_OK(router_.Count(count, deadline_));
  EXPECT_EQ(local_.waits(), 0);
}

// --- GetMany (local partitions; forwarding is in query_service_test.cc) ---

kiq::v1::GetManyRequest GetManyOf(const std::string& store, const std::vector<std::string>& keys) {
  kiq::v1::GetManyRequest request;
  request.set_store(store);
  for (const std::string& k : keys) request.add_keys(k);
  return request;
}

TEST_F(QueryRouterTest, GetManyAnswersEveryKeyInRequestOrderAsGetWould) {
  local_.AddStore("users", 8);
  std::map<std::string, std::string> truth;
  for (int i = 0; i < 40; ++i) {
    const std::string k = absl::StrCat("user-", i);
    truth[k] = absl::StrCat("v", i);
    local_.Put("users", k, truth[k]);
  }
  // Keys from many partitions, absent ones, and duplicates (each position is answered).
  const std::vector<std::string> keys = {"user-7", "nobody", "user-3", "user-7", "user-39",
                                         "",       "user-0", "gone",   "user-3"};
  absl::StatusOr<kiq::v1::GetManyResponse> r = router_.GetMany(GetManyOf("users", keys), deadline_);
  ASSERT_OK(r);
  ASSERT_EQ(r->results_size(), static_cast<int>(keys.size()));
  for (size_t i = 0; i < keys.size(); ++i) {
    const kiq::v1::GetResponse& result = r->results(static_cast<int>(i));
    const int32_t p = PartitionForKey(PartitionerKind::kMurmur2, keys[i], 8);
    SCOPED_TRACE(keys[i]);
    auto it = truth.find(keys[i]);
    EXPECT_EQ(result.found(), it != truth.end());
    EXPECT_EQ(result.entry().key(), keys[i]);
    EXPECT_EQ(result.entry().partition(), p);
    EXPECT_EQ(result.entry().value(), it == truth.end() ? "" : it->second);
    // The same answer as a Get of that key (entry aside for the missing: Get has none).
    absl::StatusOr<kiq::v1::GetResponse> single = router_.Get(GetKey("users", keys[i]), deadline_);
    ASSERT_OK(single);
    EXPECT_EQ(single->found(), result.found());
    if (single->found()) {
      EXPECT_EQ(single->entry().SerializeAsString(), result.entry().SerializeAsString());
    }
    EXPECT_EQ(single->position().SerializeAsString(), result.position().SerializeAsString());
  }
}

TEST_F(QueryRouterTest, GetManyReadsEachKeyOnceAndEachPartitionAtOnePosition) {
  local_.AddStore("s", 4);
  std::vector<std::string> keys;
  for (int i = 0; i < 64; ++i) keys.push_back(absl::StrCat("k", i));
  absl::StatusOr<kiq::v1::GetManyResponse> r = router_.GetMany(GetManyOf("s", keys), deadline_);
  ASSERT_OK(r);
  EXPECT_EQ(local_.gets(), 64);
  for (const kiq::v1::GetResponse& result : r->results()) {
    EXPECT_THAT(PartitionsOf(result.position()), ElementsAre(result.entry().partition()));
    EXPECT_EQ(result.position().offsets(0).offset(), 100 + result.entry().partition());
  }
}

TEST_F(QueryRouterTest, GetManyRefusesEmptyAndOversizedBatchesNamingTheLimit) {
  local_.AddStore("s", 4);
  EXPECT_THAT(router_.GetMany(GetManyOf("s", {}), deadline_),
              StatusIs(absl::StatusCode::kInvalidArgument, "keys is required"));
  std::vector<std::string> too_many(kMaxGetManyKeys + 1, "k");
  EXPECT_THAT(router_.GetMany(GetManyOf("s", too_many), deadline_),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       absl::StrCat("keys has ", kMaxGetManyKeys + 1,
                                    " entries, over the limit of ", kMaxGetManyKeys)));
  std::vector<std::string> at_limit(kMaxGetManyKeys, "k");
  absl::StatusOr<kiq::v1::GetManyResponse> r = router_.GetMany(GetManyOf("s", at_limit), deadline_);
  ASSERT_OK(r);
  EXPECT_EQ(r->results_size(), kMaxGetManyKeys);
  EXPECT_THAT(router_.GetMany(GetManyOf("s", {"a", std::string(kMaxKeyBytes + 1, 'x')}), deadline_),
              StatusIs(absl::StatusCode::kInvalidArgument, "keys[1] is"));
  EXPECT_EQ(local_.gets(), kMaxGetManyKeys) << "a refused batch reads nothing";
}

TEST_F(QueryRouterTest, GetManyOfUnknownStoreIsRefusedLikeGet) {
  local_.AddStore("users", 4);
  EXPECT_THAT(router_.GetMany(GetManyOf("nosuch", {"a"}), deadline_),
              StatusIs(absl::StatusCode::kNotFound, "nosuch"));
  EXPECT_THAT(router_.GetMany(GetManyOf("", {"a"}), deadline_),
              StatusIs(absl::StatusCode::kInvalidArgument, "store is required"));
}

TEST_F(QueryRouterTest, GetManyFailsWholeWhenOnePartitionCannotBeReadNamingIt) {
  local_.AddStore("s", 4);
  std::vector<std::string> keys;
  int32_t restoring = -1;
  for (int i = 0; i < 16; ++i) {
    keys.push_back(absl::StrCat("k", i));
    local_.Put("s", keys.back(), "v");
  }
  restoring = PartitionForKey(PartitionerKind::kMurmur2, keys[5], 4);
  local_.SetUnreadable("s", restoring, absl::UnavailableError("partition is restoring"));
  // No cluster to wait for: the call ends at once, never OK with a result missing.
  EXPECT_THAT(router_.GetMany(GetManyOf("s", keys), deadline_),
              StatusIs(absl::StatusCode::kUnavailable,
                       absl::StrCat("get-many store=s partition=", restoring)));
  EXPECT_THAT(router_.GetMany(GetManyOf("s", keys), deadline_),
              StatusIs(absl::StatusCode::kUnavailable, "partition is restoring"));
}

TEST_F(QueryRouterTest, GetManyWaitsForMinPositionOfTheKeysPartitionsOnly) {
  local_.AddStore("s", 4);
  const int32_t p = local_.Put("s", "a", "v");
  // A position of another partition that is not reached does not hold this read up.
  kiq::v1::GetManyRequest request = GetManyOf("s", {"a"});
  *request.mutable_min_position() = MinPosition((p + 1) % 4, 100000);
  ASSERT_OK(router_.GetMany(request, deadline_));
  *request.mutable_min_position() = MinPosition(p, 100000);
  EXPECT_THAT(router_.GetMany(request, deadline_),
              StatusIs(absl::StatusCode::kDeadlineExceeded,
                       absl::StrCat("get-many store=s partition=", p)));
  *request.mutable_min_position() = MinPosition(p, 100 + p);
  absl::StatusOr<kiq::v1::GetManyResponse> r = router_.GetMany(request, deadline_);
  ASSERT_OK(r);
  EXPECT_TRUE(r->results(0).found());
}

}  // namespace
}  // namespace kiq::router
