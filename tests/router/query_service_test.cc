#include "router/query_service.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <prometheus/registry.h>

#include "absl/cleanup/cleanup.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/status.h"
#include "common/topology/partitioner.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kiq/v1/membership.pb.h"
#include "kiq/v1/peer.grpc.pb.h"
#include "kiq/v1/query.grpc.pb.h"
#include "router/auth.h"
#include "router/peer_pool.h"
#include "router/peer_service.h"
#include "router/position_waiter.h"
#include "router/query_metrics.h"
#include "router/query_router.h"
#include "router/request_limits.h"
#include "router/routing_table.h"
#include "router/thread_pool.h"

namespace kiq::router {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kStore[] = "orders";
constexpr char kTopic[] = "orders-in";
constexpr int32_t kPartitions = 4;
// Enough for any answer here; the ones that must be prompt are checked against kPrompt.
constexpr absl::Duration kPrompt = absl::Seconds(1);

// One store of kPartitions partitions, all ACTIVE here, with a position per partition that the
// test moves (the version and WaitForPositionChange follow it, as the node's tracker does).
class FakeStores : public LocalStores {
 public:
  FakeStores() {
    for (int32_t p = 0; p < kPartitions; ++p) next_[p] = 10;
    data_["apple"] = "1";
    data_["banana"] = "2";
  }

  // Before the server serves: the data is read without a lock.
  void Put(const std::string& key, const std::string& value) { data_[key] = value; }

  void SetNext(int32_t p, int64_t next) {
    absl::MutexLock lock(&mu_);
    next_[p] = next;
    ++version_;
  }

  absl::StatusOr<StoreInfo> Describe(absl::string_view store) const override {
    if (store != kStore) return absl::NotFoundError(absl::StrCat("unknown store ", ClipKey(store)));
    StoreInfo info;
    info.name = kStore;
    info.kind = "table";
    info.num_partitions = kPartitions;
    info.value_kind = ValueKind::kString;
    return info;
  }
  std::vector<StoreInfo> ListStores() const override { return {*Describe(kStore)}; }
  absl::Status CheckReadable(absl::string_view store, PartitionId p) const override {
    if (p.value() < 0 || p.value() >= kPartitions) return absl::UnavailableError("no partition");
    {
      absl::MutexLock lock(&mu_);
      auto it = not_owner_.find(p.value());
      if (it != not_owner_.end() && it->second > 0) {
        --it->second;
        ++refused_;
        return NotOwnerError(absl::StrCat("NOT_OWNER: partition ", p.value(), " moved away"));
      }
      if (failed_.count(p.value()) > 0) {
        ++failed_checks_;
        return ErrorWithReason(absl::StatusCode::kUnavailable, kReasonPartitionFailed,
                               absl::StrCat("partition ", p.value(),
                                            " is FAILED: stored offset 7 "
                                            "is outside the log [0, 0]"));
      }
    }
    return Describe(store).status();
  }
  // Partition `p` is FAILED here (as PartitionStates says of it: it waits for an operator).
  void Fail(int32_t p) {
    absl::MutexLock lock(&mu_);
    failed_.insert(p);
  }
  int failed_checks() const {
    absl::MutexLock lock(&mu_);
    return failed_checks_;
  }
  // The next `times` checks of partition `p` say it is not owned here (it is moving).
  void RefuseAsNotOwner(int32_t p, int times) {
    absl::MutexLock lock(&mu_);
    not_owner_[p] = times;
  }
  int refused() const {
    absl::MutexLock lock(&mu_);
    return refused_;
  }
  int gets() const { return gets_.load(); }
  // While held, reads block (so that calls to this node stay in flight), counted in held().
  void HoldGets(bool hold) {
    absl::MutexLock lock(&mu_);
    hold_gets_ = hold;
  }
  int held() const {
    absl::MutexLock lock(&mu_);
    return held_;
  }
  absl::StatusOr<std::optional<std::string>> Get(absl::string_view, PartitionId,
                                                 absl::string_view key) const override {
    {
      absl::MutexLock lock(&mu_);
      if (hold_gets_) {
        ++held_;
        mu_.Await(absl::Condition(
            +[](bool* hold) { return !*hold; }, &hold_gets_));
      }
    }
    gets_.fetch_add(1);
    auto it = data_.find(std::string(key));
    if (it == data_.end()) return std::optional<std::string>();
    return std::optional<std::string>(it->second);
  }
  // Scans of partition 0, the one holding data.
  int data_scans() const { return data_scans_.load(); }
  // Every key is in every partition's scan (the test does not care about placement).
  absl::StatusOr<std::vector<KeyValue>> Scan(absl::string_view, PartitionId p,
                                             const KeyRange& range,
                                             const std::optional<std::string>& after,
                                             size_t limit) const override {
    std::vector<KeyValue> out;
    if (p.value() != 0) return out;
    data_scans_.fetch_add(1);
    for (const auto& [k, v] : data_) {
      if (out.size() >= limit) break;
      if ((range.from && k < *range.from) || (range.to && k > *range.to)) continue;
      if (after && k <= *after) continue;
      out.push_back(KeyValue{k, v, p});
    }
    return out;
  }
  absl::StatusOr<int64_t> EntryCount(absl::string_view, PartitionId p) const override {
    return p.value() == 0 ? static_cast<int64_t>(data_.size()) : 0;
  }
  void AppendPosition(absl::string_view, PartitionId p, kiq::v1::Position* out) const override {
    absl::MutexLock lock(&mu_);
    kiq::v1::PartitionOffset* po = out->add_offsets();
    po->set_topic(kTopic);
    po->set_partition(p.value());
    po->set_offset(next_.at(p.value()));
  }
  absl::Status WaitForPosition(absl::string_view, const kiq::v1::Position& min,
                               absl::Time deadline) const override {
    absl::MutexLock lock(&mu_);
    auto reached = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      for (const kiq::v1::PartitionOffset& po : min.offsets()) {
        auto it = next_.find(po.partition());
        if (po.topic() != kTopic || it == next_.end() || it->second < po.offset()) return false;
      }
      return true;
    };
    if (mu_.AwaitWithDeadline(absl::Condition(&reached), deadline)) return absl::OkStatus();
    return absl::DeadlineExceededError("fake: min_position not reached");
  }
  uint64_t PositionVersion() const override {
    absl::MutexLock lock(&mu_);
    return version_;
  }
  void WaitForPositionChange(uint64_t seen, absl::Time deadline) const override {
    absl::MutexLock lock(&mu_);
    auto changed = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return version_ != seen; };
    mu_.AwaitWithDeadline(absl::Condition(&changed), deadline);
  }

 private:
  std::map<std::string, std::string> data_;
  mutable std::atomic<int> gets_{0};
  mutable std::atomic<int> data_scans_{0};
  mutable absl::Mutex mu_;
  std::map<int32_t, int64_t> next_ ABSL_GUARDED_BY(mu_);
  uint64_t version_ ABSL_GUARDED_BY(mu_) = 0;
  mutable std::map<int32_t, int> not_owner_ ABSL_GUARDED_BY(mu_);
  mutable int refused_ ABSL_GUARDED_BY(mu_) = 0;
  std::set<int32_t> failed_ ABSL_GUARDED_BY(mu_);
  mutable int failed_checks_ ABSL_GUARDED_BY(mu_) = 0;
  mutable bool hold_gets_ ABSL_GUARDED_BY(mu_) = false;
  mutable int held_ ABSL_GUARDED_BY(mu_) = 0;
};

constexpr int64_t kFarOffset = 1000000000;

// A position no partition has reached (yet).
kiq::v1::Position Unreachable() {
  kiq::v1::Position position;
  for (int32_t p = 0; p < kPartitions; ++p) {
    kiq::v1::PartitionOffset* po = position.add_offsets();
    po->set_topic(kTopic);
    po->set_partition(p);
    po->set_offset(kFarOffset);
  }
  return position;
}

// QueryService and PeerService on 127.0.0.1:0 over FakeStores, with small pools (4 workers)
// and a waiter limit of kMaxWaiting, as a node runs them.
class QueryServiceTest : public ::testing::Test {
 protected:
  static constexpr int kMaxWaiting = 24;

  QueryServiceTest() {
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    builder.RegisterService(&query_service_);
    builder.RegisterService(&peer_service_);
    server_ = builder.BuildAndStart();
    channel_ =
        grpc::CreateChannel(absl::StrCat("127.0.0.1:", port_), grpc::InsecureChannelCredentials());
    query_ = kiq::v1::QueryService::NewStub(channel_);
    peer_ = kiq::v1::PeerService::NewStub(channel_);
  }
  ~QueryServiceTest() override {
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
  }

  std::unique_ptr<grpc::ClientContext> Context(absl::Duration timeout = absl::Seconds(5)) {
    auto context = std::make_unique<grpc::ClientContext>();
    context->set_deadline(absl::ToChronoTime(absl::Now() + timeout));
    return context;
  }

  grpc::Status GetKey(const std::string& store, const std::string& key,
                      kiq::v1::GetResponse* response) {
    kiq::v1::GetRequest request;
    request.set_store(store);
    request.set_key(key);
    return query_->Get(Context().get(), request, response);
  }

  // Waits until `n` requests are waiting in the waiter (or fails after 5 s).
  bool WaitForWaiting(int n) {
    const absl::Time deadline = absl::Now() + absl::Seconds(5);
    while (waiter_.waiting() < n && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(2));
    return waiter_.waiting() >= n;
  }

  FakeStores stores_;
  PositionWaiter waiter_{stores_, kMaxWaiting};
  QueryRouter router_{stores_, ClusterView{nullptr, nullptr, "self", nullptr, &waiter_}};
  ThreadPool pool_{4};
  ThreadPool wait_pool_{4};
  prometheus::Registry registry_;
  QueryMetrics metrics_{registry_};
  QueryServiceImpl query_service_{router_, pool_, wait_pool_, waiter_, &metrics_};
  PeerServiceImpl peer_service_{stores_, pool_, &waiter_};
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<kiq::v1::QueryService::Stub> query_;
  std::unique_ptr<kiq::v1::PeerService::Stub> peer_;
};

// --- Request field limits ---

TEST_F(QueryServiceTest, HugeStoreNameIsInvalidArgumentAtOnceAndTheChannelStaysUsable) {
  for (size_t size : {size_t{250}, size_t{100 * 1000}, size_t{1024 * 1024}}) {
    SCOPED_TRACE(size);
    const absl::Time start = absl::Now();
    kiq::v1::GetResponse response;
    grpc::Status status = GetKey(std::string(size, 's'), "apple", &response);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << status.error_message();
    EXPECT_LT(absl::Now() - start, kPrompt);
    EXPECT_THAT(status.error_message(), HasSubstr(absl::StrCat("store is ", size, " bytes")));
    EXPECT_LT(status.error_message().size(), 200u);
    // The next call on the same channel works.
    status = GetKey(kStore, "apple", &response);
    ASSERT_TRUE(status.ok()) << status.error_message();
    EXPECT_TRUE(response.found());
  }
}

TEST_F(QueryServiceTest, EveryRequestChecksItsFieldSizesFirst) {
  const std::string huge(kMaxKeyBytes + 1, 'k');
  kiq::v1::GetRequest get;
  get.set_store(kStore);
  get.set_key_bytes(huge);
  kiq::v1::GetResponse get_response;
  grpc::Status s = query_->Get(Context().get(), get, &get_response);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("key_bytes is 65537 bytes, over the limit of 65536"));

  kiq::v1::RangeRequest range;
  range.set_store(kStore);
  range.set_to(huge);
  kiq::v1::ScanResponse scan;
  s = query_->Range(Context().get(), range, &scan);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("to is 65537 bytes"));

  kiq::v1::AllRequest all;
  all.set_store(kStore);
  all.set_page_token(std::string(kMaxPageTokenBytes + 1, 'A'));
  s = query_->All(Context().get(), all, &scan);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("page_token is"));

  kiq::v1::CountRequest count;
  count.set_store(std::string(300, 'c'));
  kiq::v1::CountResponse count_response;
  s = query_->Count(Context().get(), count, &count_response);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);

  kiq::v1::SubscribeRequest subscribe;
  subscribe.set_store(kStore);
  subscribe.set_key_prefix(huge);
  auto context = Context();
  auto reader = query_->Subscribe(context.get(), subscribe);
  kiq::v1::SubscribeResponse event;
  EXPECT_FALSE(reader->Read(&event));
  s = reader->Finish();
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("key_prefix is 65537 bytes"));

  kiq::v1::ScanPartitionsRequest peer_scan;
  peer_scan.set_store(kStore);
  peer_scan.add_partitions(0);
  peer_scan.mutable_after()->set_value(huge);
  kiq::v1::ScanPartitionsResponse peer_response;
  s = peer_->ScanPartitions(Context().get(), peer_scan, &peer_response);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("after is 65537 bytes"));
}

TEST_F(QueryServiceTest, UnknownStoreIsNotFoundWithTheNameClipped) {
  kiq::v1::GetResponse response;
  grpc::Status status = GetKey(std::string(200, 'u'), "apple", &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(status.error_message(), HasSubstr("(200 bytes)"));
  EXPECT_THAT(status.error_message(), Not(HasSubstr(std::string(100, 'u'))));
}

// --- Scan: Range as a stream of pages ---

// Reads a Scan stream to its end: every message's keys, the number of messages, whether every
// message but the last had a next_page_token (and the last none), and the stream's status.
struct ScanRead {
  std::vector<std::string> keys;
  int messages = 0;
  int largest = 0;
  bool tokens_right = true;
  grpc::Status status;
};
ScanRead ReadScan(kiq::v1::QueryService::Stub& stub, const kiq::v1::RangeRequest& request,
                  int stop_after = -1) {
  ScanRead read;
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(20)));
  std::unique_ptr<grpc::ClientReader<kiq::v1::ScanResponse>> reader = stub.Scan(&context, request);
  kiq::v1::ScanResponse page;
  bool last_had_token = false;
  while (reader->Read(&page)) {
    ++read.messages;
    read.largest = std::max(read.largest, page.entries_size());
    for (const kiq::v1::Entry& e : page.entries()) read.keys.push_back(e.key());
    last_had_token = !page.next_page_token().empty();
    if (read.messages > 1 && read.keys.empty()) read.tokens_right = false;
    if (read.messages == stop_after) {
      context.TryCancel();
      break;
    }
  }
  read.status = reader->Finish();
  if (read.status.ok() && last_had_token) read.tokens_right = false;
  return read;
}

TEST_F(QueryServiceTest, ScanStreamsEveryEntryOnceInKeyOrderInPages) {
  std::set<std::string> model = {"apple", "banana"};
  for (int i = 0; i < 2345; ++i) {
    const std::string k = absl::StrCat("key-", i);
    stores_.Put(k, "v");
    model.insert(k);
  }
  kiq::v1::RangeRequest request;
  request.set_store(kStore);
  request.set_page_size(100);
  ScanRead read = ReadScan(*query_, request);
  ASSERT_TRUE(read.status.ok()) << read.status.error_message();
  EXPECT_EQ(read.keys, std::vector<std::string>(model.begin(), model.end()));
  // 2,347 entries in pages of at most 100 (shorter here: the fake holds every key in one
  // partition, whose share of a page runs out first).
  EXPECT_GE(read.messages, 24);
  EXPECT_LE(read.largest, 100);
  EXPECT_TRUE(read.tokens_right);

  // With bounds, only the range; the default page size holds it in one message.
  request.set_from("key-10");
  request.set_to("key-19");
  request.set_page_size(0);
  read = ReadScan(*query_, request);
  ASSERT_TRUE(read.status.ok()) << read.status.error_message();
  std::vector<std::string> in_range;
  for (const std::string& k : model) {
    if (k >= "key-10" && k <= "key-19") in_range.push_back(k);
  }
  EXPECT_EQ(read.keys, in_range);
}

TEST_F(QueryServiceTest, PagingThroughAllReadsAheadAndReturnsEveryEntryOnceInOrder) {
  std::set<std::string> model = {"apple", "banana"};
  for (int i = 0; i < 2345; ++i) {
    const std::string k = absl::StrCat("key-", 10000 + i);
    stores_.Put(k, "v");
    model.insert(k);
  }
  const int scans_before = stores_.data_scans();
  kiq::v1::AllRequest request;
  request.set_store(kStore);
  request.set_page_size(100);
  std::vector<std::string> keys;
  int pages = 0;
  for (;;) {
    kiq::v1::ScanResponse page;
    grpc::Status s = query_->All(Context().get(), request, &page);
    ASSERT_TRUE(s.ok()) << s.error_message();
    ASSERT_LE(++pages, 1000) << "pagination does not end";
    EXPECT_LE(page.entries_size(), 100);
    EXPECT_EQ(page.position().offsets_size(), kPartitions);
    for (const kiq::v1::Entry& e : page.entries()) keys.push_back(e.key());
    if (page.next_page_token().empty()) break;
    request.set_page_token(page.next_page_token());
  }
  EXPECT_EQ(keys, std::vector<std::string>(model.begin(), model.end()));
  // The first page alone, then one scatter for several pages (here two: the fake holds every
  // key in one of the 6 partitions, whose share of a batch runs out first).
  const int scans = stores_.data_scans() - scans_before;
  EXPECT_LT(scans, pages * 2 / 3) << pages << " pages";

  // A request that differs from the one a page was read ahead for (page size) reads afresh,
  // and what it answers is still the store's next entries.
  kiq::v1::AllRequest first;
  first.set_store(kStore);
  first.set_page_size(100);
  kiq::v1::ScanResponse page1;
  ASSERT_TRUE(query_->All(Context().get(), first, &page1).ok());
  first.set_page_token(page1.next_page_token());
  kiq::v1::ScanResponse page2;
  ASSERT_TRUE(query_->All(Context().get(), first, &page2).ok());  // reads pages 2-6
  kiq::v1::AllRequest other = first;
  other.set_page_token(page2.next_page_token());
  other.set_page_size(7);
  const int before_other = stores_.data_scans();
  kiq::v1::ScanResponse page3;
  ASSERT_TRUE(query_->All(Context().get(), other, &page3).ok());
  EXPECT_GT(stores_.data_scans(), before_other) << "answered from a page read for page_size 100";
  ASSERT_EQ(page3.entries_size(), 7);
  std::vector<std::string> all(model.begin(), model.end());
  const size_t next = static_cast<size_t>(page1.entries_size() + page2.entries_size());
  EXPECT_EQ(page3.entries(0).key(), all[next]);
  EXPECT_EQ(page3.entries(6).key(), all[next + 6]);
}

TEST_F(QueryServiceTest, PagingThroughRangeReadsAheadWithinItsBounds) {
  std::set<std::string> model;
  for (int i = 0; i < 1500; ++i) {
    const std::string k = absl::StrCat("key-", 10000 + i);
    stores_.Put(k, "v");
    if (k >= "key-10100" && k <= "key-11399") model.insert(k);
  }
  kiq::v1::RangeRequest request;
  request.set_store(kStore);
  request.set_from("key-10100");
  request.set_to("key-11399");
  request.set_page_size(50);
  std::vector<std::string> keys;
  for (int pages = 0;; ++pages) {
    ASSERT_LE(pages, 1000) << "pagination does not end";
    kiq::v1::ScanResponse page;
    grpc::Status s = query_->Range(Context().get(), request, &page);
    ASSERT_TRUE(s.ok()) << s.error_message();
    for (const kiq::v1::Entry& e : page.entries()) keys.push_back(e.key());
    if (page.next_page_token().empty()) break;
    request.set_page_token(page.next_page_token());
  }
  EXPECT_EQ(keys, std::vector<std::string>(model.begin(), model.end()));
}

TEST_F(QueryServiceTest, ScanResumesFromAPageTokenOfItsStream) {
  std::set<std::string> model = {"apple", "banana"};
  for (int i = 0; i < 500; ++i) {
    stores_.Put(absl::StrCat("key-", 1000 + i), "v");
    model.insert(absl::StrCat("key-", 1000 + i));
  }
  kiq::v1::RangeRequest request;
  request.set_store(kStore);
  request.set_page_size(50);
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(20)));
  auto reader = query_->Scan(&context, request);
  kiq::v1::ScanResponse first;
  ASSERT_TRUE(reader->Read(&first));
  context.TryCancel();
  kiq::v1::ScanResponse scratch;
  while (reader->Read(&scratch)) {
  }
  reader->Finish();
  ASSERT_GT(first.entries_size(), 0);
  ASSERT_FALSE(first.next_page_token().empty());
  // The rest, from the first page's token: together every key once.
  request.set_page_token(first.next_page_token());
  ScanRead rest = ReadScan(*query_, request);
  ASSERT_TRUE(rest.status.ok()) << rest.status.error_message();
  std::vector<std::string> all(model.begin(), model.end());
  EXPECT_EQ(rest.keys, std::vector<std::string>(all.begin() + first.entries_size(), all.end()));
}

TEST_F(QueryServiceTest, ScanOfAnUnknownStoreIsNotFoundNamingIt) {
  kiq::v1::RangeRequest request;
  request.set_store("nosuch");
  ScanRead read = ReadScan(*query_, request);
  EXPECT_EQ(read.status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(read.status.error_message(), HasSubstr("nosuch"));
  EXPECT_EQ(read.messages, 0);
  request.set_store(kStore);
  request.set_page_size(kMaxPageSize + 1);
  read = ReadScan(*query_, request);
  EXPECT_EQ(read.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(read.status.error_message(), HasSubstr("page_size"));
}

TEST_F(QueryServiceTest, ScanCancelledMidStreamEndsAndTheServerServesOn) {
  for (int i = 0; i < 3000; ++i) stores_.Put(absl::StrCat("key-", i), "v");
  kiq::v1::RangeRequest request;
  request.set_store(kStore);
  request.set_page_size(10);
  for (int round = 0; round < 20; ++round) {
    ScanRead read = ReadScan(*query_, request, /*stop_after=*/1 + round % 3);
    EXPECT_EQ(read.status.error_code(), grpc::StatusCode::CANCELLED);
  }
  // Every worker is free again: a full scan and a Get still answer.
  request.set_page_size(1000);
  ScanRead read = ReadScan(*query_, request);
  ASSERT_TRUE(read.status.ok()) << read.status.error_message();
  EXPECT_EQ(read.keys.size(), 3002u);
  kiq::v1::GetResponse got;
  ASSERT_TRUE(GetKey(kStore, "apple", &got).ok());
  EXPECT_TRUE(got.found());
}

TEST_F(QueryServiceTest, ScanWaitsForItsMinPositionWithoutAWorker) {
  kiq::v1::RangeRequest request;
  request.set_store(kStore);
  *request.mutable_min_position() = Unreachable();
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(20)));
  auto reader = query_->Scan(&context, request);
  ASSERT_TRUE(WaitForWaiting(1));
  // Waiting, it holds no worker: scans still run.
  kiq::v1::RangeRequest now;
  now.set_store(kStore);
  ScanRead other = ReadScan(*query_, now);
  ASSERT_TRUE(other.status.ok()) << other.status.error_message();
  EXPECT_EQ(other.keys, (std::vector<std::string>{"apple", "banana"}));
  // Reached: the stream answers from there.
  for (int32_t p = 0; p < kPartitions; ++p) stores_.SetNext(p, kFarOffset);
  kiq::v1::ScanResponse page;
  ASSERT_TRUE(reader->Read(&page));
  EXPECT_EQ(page.entries_size(), 2);
  EXPECT_FALSE(reader->Read(&page));
  EXPECT_TRUE(reader->Finish().ok());
}

// A body that is not a GetRequest (invalid UTF-8 in a proto3 string, or garbage) is refused
// by gRPC before any handler runs: the client sees a non-OK status at once, and the channel
// stays usable. (Which code is gRPC's choice; the README documents it.)
TEST_F(QueryServiceTest, UnparsableRequestIsRefusedAndTheChannelStaysUsable) {
  grpc::GenericStub generic(channel_);
  for (const std::string& body :
       {std::string("\x0a\x01\xff", 3), std::string("\xff\xff\xff\xff\xff\xff", 6)}) {
    grpc::Slice slice(body);
    grpc::ByteBuffer request(&slice, 1);
    grpc::ByteBuffer reply;
    auto context = Context();
    absl::Notification finished;
    grpc::Status status;
    const absl::Time start = absl::Now();
    generic.UnaryCall(context.get(), "/kiq.v1.QueryService/Get", grpc::StubOptions(), &request,
                      &reply, [&](grpc::Status s) {
                        status = std::move(s);
                        finished.Notify();
                      });
    ASSERT_TRUE(finished.WaitForNotificationWithTimeout(absl::Seconds(5)));
    EXPECT_FALSE(status.ok());
    std::cerr << "unparsable request answered " << status.error_code() << " \""
              << status.error_message() << "\"\n";
    EXPECT_LT(absl::Now() - start, kPrompt);
    kiq::v1::GetResponse response;
    grpc::Status next = GetKey(kStore, "apple", &response);
    EXPECT_TRUE(next.ok()) << next.error_message();
  }
}

// --- Waiting requests ---

// Requests waiting for a position that does not come hold no worker: with every worker's worth
// of them (and more) waiting, All, Range and Count still answer; past the limit, a waiter is
// refused; once the position comes, every waiter answers.
TEST_F(QueryServiceTest, WaitersOnAnUnreachablePositionDoNotStarveScans) {
  struct Call {
    std::unique_ptr<grpc::ClientContext> context;
    kiq::v1::GetRequest get;
    kiq::v1::GetResponse get_response;
    kiq::v1::AllRequest all;
    kiq::v1::ScanResponse scan_response;
    kiq::v1::ScanPartitionsRequest peer_scan;
    kiq::v1::ScanPartitionsResponse peer_response;
    grpc::Status status;
  };
  absl::Mutex mu;
  int done = 0;
  std::vector<std::unique_ptr<Call>> calls;
  for (int i = 0; i < kMaxWaiting; ++i) {
    auto call = std::make_unique<Call>();
    call->context = Context(absl::Seconds(20));
    Call* c = call.get();
    auto finished = [&mu, &done, c](grpc::Status status) {
      absl::MutexLock lock(&mu);
      c->status = std::move(status);
      ++done;
    };
    // Point reads, scans and peer scans, all waiting for partition 0's offset.
    if (i % 3 == 0) {
      c->get.set_store(kStore);
      c->get.set_key("apple");
      *c->get.mutable_min_position() = Unreachable();
      query_->async()->Get(c->context.get(), &c->get, &c->get_response, finished);
    } else if (i % 3 == 1) {
      c->all.set_store(kStore);
      *c->all.mutable_min_position() = Unreachable();
      query_->async()->All(c->context.get(), &c->all, &c->scan_response, finished);
    } else {
      c->peer_scan.set_store(kStore);
      c->peer_scan.add_partitions(0);
      c->peer_scan.set_limit(10);
      *c->peer_scan.mutable_min_position() = Unreachable();
      peer_->async()->ScanPartitions(c->context.get(), &c->peer_scan, &c->peer_response, finished);
    }
    calls.push_back(std::move(call));
  }
  // However the test ends, no call is left in flight when its context goes.
  auto all_done = [&done]() { return done == kMaxWaiting; };
  absl::Cleanup finish_calls = [&] {
    for (const auto& c : calls) c->context->TryCancel();
    absl::MutexLock lock(&mu);
    mu.Await(absl::Condition(&all_done));
  };
  ASSERT_TRUE(WaitForWaiting(kMaxWaiting)) << "waiting: " << waiter_.waiting();

  // Scans, counts and peer calls without a position answer at once.
  const absl::Time start = absl::Now();
  kiq::v1::AllRequest all;
  all.set_store(kStore);
  kiq::v1::ScanResponse scan;
  grpc::Status s = query_->All(Context(kPrompt).get(), all, &scan);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(scan.entries_size(), 2);
  kiq::v1::RangeRequest range;
  range.set_store(kStore);
  range.set_from("a");
  range.set_to("b");
  s = query_->Range(Context(kPrompt).get(), range, &scan);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(scan.entries_size(), 1);
  kiq::v1::CountRequest count;
  count.set_store(kStore);
  kiq::v1::CountResponse count_response;
  s = query_->Count(Context(kPrompt).get(), count, &count_response);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(count_response.count(), 2);
  kiq::v1::CountPartitionsRequest peer_count;
  peer_count.set_store(kStore);
  peer_count.add_partitions(0);
  kiq::v1::CountPartitionsResponse peer_count_response;
  s = peer_->CountPartitions(Context(kPrompt).get(), peer_count, &peer_count_response);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_LT(absl::Now() - start, kPrompt);

  // One more waiter is refused at once.
  kiq::v1::GetRequest get;
  get.set_store(kStore);
  get.set_key("apple");
  *get.mutable_min_position() = Unreachable();
  kiq::v1::GetResponse get_response;
  s = query_->Get(Context(kPrompt).get(), get, &get_response);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << s.error_message();
  kiq::v1::CountRequest waiting_count = count;
  *waiting_count.mutable_min_position() = Unreachable();
  s = query_->Count(Context(kPrompt).get(), waiting_count, &count_response);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << s.error_message();

  // The position comes: every waiter answers, promptly.
  const absl::Time moved = absl::Now();
  for (int32_t p = 0; p < kPartitions; ++p) stores_.SetNext(p, kFarOffset);
  {
    absl::MutexLock lock(&mu);
    ASSERT_TRUE(mu.AwaitWithTimeout(absl::Condition(&all_done), absl::Seconds(5)));
  }
  EXPECT_LT(absl::Now() - moved, kPrompt);
  for (const auto& c : calls) {
    EXPECT_TRUE(c->status.ok()) << c->status.error_message();
    if (c->get.has_min_position()) {
      EXPECT_TRUE(c->get_response.found());
    }
    if (c->peer_scan.has_min_position()) {
      ASSERT_EQ(c->peer_response.partitions_size(), 1);
      EXPECT_EQ(c->peer_response.partitions(0).code(), 0);
      EXPECT_EQ(c->peer_response.partitions(0).entries_size(), 2);
    }
  }
  EXPECT_EQ(waiter_.waiting(), 0);
  // The slots are free again.
  s = query_->Get(Context(kPrompt).get(), get, &get_response);
  EXPECT_TRUE(s.ok()) << s.error_message();
}

// A node that owns no partition of the store (all of them are "b", the fixture's server): its
// scans gather every partition from b through PeerService.
class RemoteStores : public FakeStores {
 public:
  absl::Status CheckReadable(absl::string_view store, PartitionId p) const override {
    if (local.count(p.value()) > 0) return FakeStores::CheckReadable(store, p);
    return NotOwnerError(absl::StrCat("partition ", p.value(), " is not here"));
  }
  // Partitions this node does own (none unless a test says so).
  std::set<int32_t> local;
};

// Node "a" (QueryService only, 4 workers and 4 wait workers, a waiter limit of kMaxWaiting)
// whose routing table says node "b" — the fixture's server over FakeStores — owns every
// partition.
class RemoteWaitTest : public QueryServiceTest {
 protected:
  static constexpr int kMaxWaiting = 12;

  RemoteWaitTest() {
    kiq::v1::MemberRecord b;
    b.set_node_id("b");
    b.set_application_id("app");
    b.set_grpc_endpoint(absl::StrCat("127.0.0.1:", port_));
    b.add_stores(kStore);
    for (int32_t p = 0; p < kPartitions; ++p) {
      kiq::v1::OwnedPartition* owned = b.add_partitions();
      owned->set_partition(p);
      owned->set_state(kiq::v1::PARTITION_STATE_ACTIVE);
    }
    b.set_generation(1);
    b.set_written_at_ms(absl::ToUnixMillis(absl::Now()));
    b.set_lease_expiry_ms(absl::ToUnixMillis(absl::Now() + absl::Hours(1)));
    table_.Apply(b);
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &a_port_);
    builder.RegisterService(&a_service_);
    a_server_ = builder.BuildAndStart();
    a_query_ = kiq::v1::QueryService::NewStub(grpc::CreateChannel(
        absl::StrCat("127.0.0.1:", a_port_), grpc::InsecureChannelCredentials()));
  }
  ~RemoteWaitTest() override {
    // A read's last callback may still be returning on a gRPC thread after its answer was
    // given: let the reads go before the servers (else the leak checker sees them at exit).
    const absl::Time deadline = absl::Now() + absl::Seconds(5);
    while (a_router_.ReadsAlive() > 0 && absl::Now() < deadline) {
      absl::SleepFor(absl::Milliseconds(1));
    }
    a_server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
  }

  RemoteStores a_stores_;
  RoutingTable table_;
  PeerPool peers_;
  PositionWaiter a_waiter_{a_stores_, kMaxWaiting};
  QueryRouter a_router_{a_stores_, ClusterView{&table_, &peers_, "a", nullptr, &a_waiter_}};
  ThreadPool a_pool_{4};
  ThreadPool a_wait_pool_{4};
  QueryServiceImpl a_service_{a_router_,    a_pool_,
                              a_wait_pool_, a_waiter_,
                              nullptr,      ClusterView{&table_, &peers_, "a", nullptr, nullptr}};
  int a_port_ = 0;
  std::unique_ptr<grpc::Server> a_server_;
  std::unique_ptr<kiq::v1::QueryService::Stub> a_query_;
};

// Scans whose min_position is not reached at the owner wait there asynchronously (a's waiter
// slot, b's waiter), not on a's wait workers: more of them than a has wait workers do not delay
// a scan whose position is reached, nor one without; past a's waiter limit they are
// RESOURCE_EXHAUSTED at once; when the position comes they all answer. (Before, each held one
// of a's 4 wait workers for the whole wait at b.)
TEST_F(RemoteWaitTest, ScansWaitingAtTheOwnerHoldNoWorkerOfTheForwardingNode) {
  struct Call {
    std::unique_ptr<grpc::ClientContext> context;
    kiq::v1::AllRequest all;
    kiq::v1::CountRequest count;
    kiq::v1::ScanResponse scan_response;
    kiq::v1::CountResponse count_response;
    grpc::Status status;
  };
  constexpr int kWaiting = kMaxWaiting - 1;  // a's last slot is for the reachable scans below
  absl::Mutex mu;
  int done = 0;
  std::vector<std::unique_ptr<Call>> calls;
  auto start_call = [&](bool count) {
    auto call = std::make_unique<Call>();
    call->context = Context(absl::Seconds(20));
    Call* c = call.get();
    auto finished = [&mu, &done, c](grpc::Status status) {
      absl::MutexLock lock(&mu);
      c->status = std::move(status);
      ++done;
    };
    if (count) {
      c->count.set_store(kStore);
      *c->count.mutable_min_position() = Unreachable();
      a_query_->async()->Count(c->context.get(), &c->count, &c->count_response, finished);
    } else {
      c->all.set_store(kStore);
      *c->all.mutable_min_position() = Unreachable();
      a_query_->async()->All(c->context.get(), &c->all, &c->scan_response, finished);
    }
    calls.push_back(std::move(call));
  };
  for (int i = 0; i < kWaiting; ++i) start_call(i % 2 == 1);
  auto all_done = [&]() { return done == static_cast<int>(calls.size()); };
  absl::Cleanup finish_calls = [&] {
    for (const auto& c : calls) c->context->TryCancel();
    absl::MutexLock lock(&mu);
    mu.Await(absl::Condition(&all_done));
  };
  // Every one of them waits at b, at once.
  ASSERT_TRUE(WaitForWaiting(kWaiting)) << "waiting at the owner: " << waiter_.waiting();

  // A scan whose position b has reached, and one without a position, answer promptly.
  kiq::v1::Position reached = Unreachable();
  for (kiq::v1::PartitionOffset& po : *reached.mutable_offsets()) po.set_offset(10);
  const absl::Time start = absl::Now();
  kiq::v1::AllRequest all;
  all.set_store(kStore);
  *all.mutable_min_position() = reached;
  kiq::v1::ScanResponse scan;
  grpc::Status s = a_query_->All(Context(kPrompt).get(), all, &scan);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(scan.entries_size(), 2);
  all.clear_min_position();
  s = a_query_->All(Context(kPrompt).get(), all, &scan);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(scan.entries_size(), 2);
  EXPECT_LT(absl::Now() - start, kPrompt);

  // a's last slot is taken; one more waiting scan is refused at once.
  start_call(false);
  ASSERT_TRUE(WaitForWaiting(kMaxWaiting)) << "waiting at the owner: " << waiter_.waiting();
  kiq::v1::CountRequest count;
  count.set_store(kStore);
  *count.mutable_min_position() = Unreachable();
  kiq::v1::CountResponse count_response;
  const absl::Time refused = absl::Now();
  s = a_query_->Count(Context(kPrompt).get(), count, &count_response);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << s.error_message();
  EXPECT_LT(absl::Now() - refused, kPrompt);

  // The position comes at b: every waiting scan answers, promptly, with what b holds.
  const absl::Time moved = absl::Now();
  for (int32_t p = 0; p < kPartitions; ++p) stores_.SetNext(p, kFarOffset);
  {
    absl::MutexLock lock(&mu);
    ASSERT_TRUE(mu.AwaitWithTimeout(absl::Condition(&all_done), absl::Seconds(5)));
  }
  EXPECT_LT(absl::Now() - moved, kPrompt);
  for (const auto& c : calls) {
    ASSERT_TRUE(c->status.ok()) << c->status.error_message();
    if (c->count.has_min_position()) {
      EXPECT_EQ(c->count_response.count(), 2);
    } else {
      EXPECT_EQ(c->scan_response.entries_size(), 2);
    }
  }
}

// A partition that leaves b between a's routing decision and b's read is refused by b with
// NOT_OWNER inside ScanPartitions' answer: a retries it (it would be answered by the new owner;
// here b takes it back) instead of failing the whole scan with FAILED_PRECONDITION. (Before,
// the per-partition refusal lost its reason on the way and the scan failed: seen on a real
// broker while partitions moved.)
TEST_F(RemoteWaitTest, PartitionRefusedAsNotOwnerByThePeerIsRetriedNotAnError) {
  stores_.RefuseAsNotOwner(1, 2);
  kiq::v1::AllRequest all;
  all.set_store(kStore);
  kiq::v1::ScanResponse scan;
  grpc::Status s = a_query_->All(Context().get(), all, &scan);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(scan.entries_size(), 2);
  EXPECT_EQ(scan.missing_partitions_size(), 0);
  EXPECT_EQ(stores_.refused(), 2);

  stores_.RefuseAsNotOwner(3, 1);
  kiq::v1::CountRequest count;
  count.set_store(kStore);
  kiq::v1::CountResponse counted;
  s = a_query_->Count(Context().get(), count, &counted);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(counted.count(), 2);
  EXPECT_EQ(stores_.refused(), 3);
}

// A FAILED partition waits for an operator, not for a rebalance: a Get or GetMany of it is
// answered UNAVAILABLE with the owner's reason at once, forwarded or local, instead of being
// retried until the deadline (which made an HTTP Get of it take the gateway's whole 30 s).
TEST_F(RemoteWaitTest, PointReadsOfAFailedPartitionAnswerItsReasonAtOnce) {
  const int32_t p = PartitionForKey(stores_.Describe(kStore)->partitioner, "apple", kPartitions);
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  stores_.Fail(p);  // at b, the owner: a forwards to it
  kiq::v1::GetRequest get;
  get.set_store(kStore);
  get.set_key("apple");
  absl::StatusOr<kiq::v1::GetResponse> r = a_router_.Get(get, deadline);
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(IsPartitionFailed(r.status())) << r.status();
  EXPECT_THAT(r.status().message(), HasSubstr("outside the log"));
  EXPECT_THAT(r.status().message(), HasSubstr("node b"));
  // b checks it twice for one forwarded Get (GetIfLocal, then the routing loop); a retry would
  // ask again after a backoff, up to the deadline.
  EXPECT_EQ(stores_.failed_checks(), 2) << "the failed partition was asked again";
  EXPECT_LT(absl::Now(), deadline - absl::Seconds(10)) << "the Get waited for its deadline";

  kiq::v1::GetManyRequest many;
  many.set_store(kStore);
  many.add_keys("apple");
  many.add_keys("banana");
  absl::StatusOr<kiq::v1::GetManyResponse> m = a_router_.GetMany(many, deadline);
  ASSERT_FALSE(m.ok()) << "answered OK with partition " << p << " unread";
  EXPECT_TRUE(IsPartitionFailed(m.status())) << m.status();
  EXPECT_EQ(stores_.failed_checks(), 3);

  // Failed here, at a (the local path of the routing loop): the same answer, no forward.
  a_stores_.local = {p};
  a_stores_.Fail(p);
  r = a_router_.Get(get, deadline);
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(IsPartitionFailed(r.status())) << r.status();
  EXPECT_EQ(a_stores_.failed_checks(), 1);
  EXPECT_EQ(stores_.failed_checks(), 3) << "a failed partition here was forwarded";
  EXPECT_LT(absl::Now(), deadline - absl::Seconds(10)) << "the Get waited for its deadline";
}

TEST_F(QueryServiceTest, WaiterPastItsDeadlineIsDeadlineExceededAndLeaves) {
  kiq::v1::GetRequest get;
  get.set_store(kStore);
  get.set_key("apple");
  *get.mutable_min_position() = Unreachable();
  kiq::v1::GetResponse response;
  // The server's deadline is the client's: ask with a longer client deadline than the wait.
  auto context = Context(absl::Milliseconds(300));
  const absl::Time start = absl::Now();
  grpc::Status s = query_->Get(context.get(), get, &response);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_LT(absl::Now() - start, kPrompt);
  const absl::Time deadline = absl::Now() + absl::Seconds(5);
  while (waiter_.waiting() > 0 && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(2));
  EXPECT_EQ(waiter_.waiting(), 0);
}

TEST_F(QueryServiceTest, CancelledWaiterLeavesTheWaiter) {
  kiq::v1::GetRequest get;
  get.set_store(kStore);
  get.set_key("apple");
  *get.mutable_min_position() = Unreachable();
  kiq::v1::GetResponse response;
  auto context = Context(absl::Seconds(20));
  absl::Notification finished;
  query_->async()->Get(context.get(), &get, &response,
                       [&finished](grpc::Status) { finished.Notify(); });
  ASSERT_TRUE(WaitForWaiting(1));
  context->TryCancel();
  ASSERT_TRUE(finished.WaitForNotificationWithTimeout(absl::Seconds(5)));
  const absl::Time deadline = absl::Now() + absl::Seconds(5);
  while (waiter_.waiting() > 0 && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(2));
  EXPECT_EQ(waiter_.waiting(), 0);
}

// --- GetDirect (the HTTP gateway's local point reads) ---

// GetDirect's answer, or "declined".
std::string Direct(const QueryServiceImpl& service, const kiq::v1::GetRequest& request,
                   const CallCredentials& credentials = {}) {
  kiq::v1::GetResponse response;
  std::optional<grpc::Status> status = service.GetDirect(request, credentials, &response);
  if (!status.has_value()) return "declined";
  return absl::StrCat(status->error_code(), " ", status->error_message(), " ",
                      response.ShortDebugString());
}

kiq::v1::GetRequest GetOf(const std::string& store, const std::string& key) {
  kiq::v1::GetRequest request;
  request.set_store(store);
  request.set_key(key);
  return request;
}

TEST_F(QueryServiceTest, GetDirectAnswersWhatGetAnswersForLocalPartitions) {
  const std::vector<kiq::v1::GetRequest> requests = {GetOf(kStore, "apple"),
                                                     GetOf(kStore, "banana"),
                                                     GetOf(kStore, "missing"),
                                                     GetOf("no-such-store", "apple"),
                                                     GetOf(std::string(100 * 1000, 's'), "apple"),
                                                     GetOf(kStore, "")};
  for (const kiq::v1::GetRequest& request : requests) {
    kiq::v1::GetResponse response;
    grpc::Status status = query_->Get(Context().get(), request, &response);
    EXPECT_EQ(Direct(query_service_, request),
              absl::StrCat(status.error_code(), " ", status.error_message(), " ",
                           response.ShortDebugString()))
        << request.store().substr(0, 20) << "/" << request.key();
  }
  EXPECT_THAT(Direct(query_service_, GetOf(kStore, "apple")), HasSubstr("value: \"1\""));
}

TEST_F(QueryServiceTest, GetDirectLeavesWaitsAndPartitionsNotReadableHereToGet) {
  kiq::v1::GetRequest waits = GetOf(kStore, "apple");
  *waits.mutable_min_position() = Unreachable();
  EXPECT_EQ(Direct(query_service_, waits), "declined");
  EXPECT_EQ(waiter_.waiting(), 0);  // declining does not wait
  // Whichever partition "apple" is in, its next check says it is moving: forward, not here.
  for (int32_t p = 0; p < kPartitions; ++p) stores_.RefuseAsNotOwner(p, 1);
  EXPECT_EQ(Direct(query_service_, GetOf(kStore, "apple")), "declined");
  EXPECT_EQ(stores_.refused(), 1);
}

TEST_F(QueryServiceTest, GetDirectChecksTokensAsGetDoes) {
  char tmpl[] = "/tmp/kiq-direct-test-XXXXXX";
  const std::string dir = mkdtemp(tmpl);
  const std::string path = dir + "/tokens.yaml";
  std::ofstream(path) << "tokens:\n  - {name: reader, token: reader-token, stores: [orders]}\n"
                      << "  - {name: other, token: other-token, stores: [customers]}\n";
  Security security;
  security.token_file = path;
  absl::StatusOr<security::ClusterSecret> secret =
      security::ClusterSecret::FromText("the-cluster-secret-1", "test");
  ASSERT_TRUE(secret.ok()) << secret.status();
  security.cluster_secret = *secret;
  security.token_file_poll = absl::Hours(1);
  absl::StatusOr<std::unique_ptr<Authorizer>> auth = Authorizer::Create(security, nullptr);
  std::remove(path.c_str());
  std::remove(dir.c_str());
  ASSERT_TRUE(auth.ok()) << auth.status();
  QueryServiceImpl guarded(router_, pool_, wait_pool_, waiter_, nullptr, {}, auth->get());
  auto as = [](absl::string_view header) {
    CallCredentials call;
    call.authorization = header;
    return call;
  };
  EXPECT_THAT(Direct(guarded, GetOf(kStore, "apple"), as("Bearer reader-token")),
              HasSubstr("value: \"1\""));
  EXPECT_THAT(Direct(guarded, GetOf(kStore, "apple")),
              ::testing::StartsWith(absl::StrCat(grpc::StatusCode::UNAUTHENTICATED, " ")));
  EXPECT_THAT(Direct(guarded, GetOf(kStore, "apple"), as("Bearer wrong")),
              ::testing::StartsWith(absl::StrCat(grpc::StatusCode::UNAUTHENTICATED, " ")));
  EXPECT_THAT(Direct(guarded, GetOf(kStore, "apple"), as("Bearer other-token")),
              ::testing::AllOf(
                  ::testing::StartsWith(absl::StrCat(grpc::StatusCode::PERMISSION_DENIED, " ")),
                  HasSubstr("orders")));
}

// --- GetMany: a batch of keys, one forward per owner ---

// Node a (owning the partitions in a_stores_.local, none by default) in front of node b, which
// the routing table says owns every partition; b counts its queries (metrics_).
class GetManyTest : public RemoteWaitTest {
 protected:
  // kiq_queries_total at b for `method` with `route` (any code unless given).
  double Queries(const std::string& method, const std::string& route,
                 const std::string& code = "") {
    double total = 0;
    for (const prometheus::MetricFamily& family : registry_.Collect()) {
      if (family.name != "kiq_queries_total") continue;
      for (const prometheus::ClientMetric& m : family.metric) {
        std::map<std::string, std::string> labels;
        for (const prometheus::ClientMetric::Label& l : m.label) labels[l.name] = l.value;
        if (labels["method"] == method && labels["route"] == route &&
            (code.empty() || labels["code"] == code)) {
          total += m.counter.value;
        }
      }
    }
    return total;
  }
  int32_t PartitionOf(const std::string& key) {
    return PartitionForKey(stores_.Describe(kStore)->partitioner, key, kPartitions);
  }
  static kiq::v1::GetManyRequest Request(const std::vector<std::string>& keys) {
    kiq::v1::GetManyRequest request;
    request.set_store(kStore);
    for (const std::string& k : keys) request.add_keys(k);
    return request;
  }
  // 64 keys over every partition: the two FakeStores holds (apple=1, banana=2), absent ones,
  // and duplicates.
  static std::vector<std::string> Keys() {
    std::vector<std::string> keys = {"apple", "banana", "apple"};
    for (int i = 0; keys.size() < 64; ++i) keys.push_back(absl::StrCat("absent-", i % 40));
    return keys;
  }
  // Every result answers its key, in order: found with FakeStores' value or not, its partition.
  void ExpectAnswers(const std::vector<std::string>& keys,
                     const kiq::v1::GetManyResponse& response) {
    const std::map<std::string, std::string> truth = {{"apple", "1"}, {"banana", "2"}};
    ASSERT_EQ(response.results_size(), static_cast<int>(keys.size()));
    for (size_t i = 0; i < keys.size(); ++i) {
      const kiq::v1::GetResponse& r = response.results(static_cast<int>(i));
      auto it = truth.find(keys[i]);
      EXPECT_EQ(r.found(), it != truth.end()) << keys[i];
      EXPECT_EQ(r.entry().key(), keys[i]);
      EXPECT_EQ(r.entry().value(), it == truth.end() ? "" : it->second) << keys[i];
      EXPECT_EQ(r.entry().partition(), PartitionOf(keys[i])) << keys[i];
      ASSERT_EQ(r.position().offsets_size(), 1) << keys[i];
      EXPECT_EQ(r.position().offsets(0).partition(), PartitionOf(keys[i]));
    }
  }
};

TEST_F(GetManyTest, ForwardsOnceToTheOwnerWithEveryKeyItOwns) {
  const std::vector<std::string> keys = Keys();
  std::set<int32_t> partitions;
  for (const std::string& k : keys) partitions.insert(PartitionOf(k));
  ASSERT_EQ(partitions.size(), static_cast<size_t>(kPartitions)) << "keys miss a partition";
  kiq::v1::GetManyResponse response;
  grpc::Status s = a_query_->GetMany(Context().get(), Request(keys), &response);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ExpectAnswers(keys, response);
  // One GetMany reached b (a forwarded one: answered there, route "local"), reading each key.
  EXPECT_EQ(Queries("GetMany", "local", "OK"), 1);
  EXPECT_EQ(Queries("Get", "local"), 0);
  EXPECT_EQ(stores_.gets(), static_cast<int>(keys.size()));
  EXPECT_EQ(a_stores_.gets(), 0);
}

TEST_F(GetManyTest, ReadsItsOwnPartitionsHereAndForwardsOnlyTheRest) {
  a_stores_.local = {0, 1};
  const std::vector<std::string> keys = Keys();
  int here = 0;
  for (const std::string& k : keys) here += PartitionOf(k) < 2;
  ASSERT_GT(here, 0);
  ASSERT_LT(here, static_cast<int>(keys.size()));
  kiq::v1::GetManyResponse response;
  grpc::Status s = a_query_->GetMany(Context().get(), Request(keys), &response);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ExpectAnswers(keys, response);
  EXPECT_EQ(a_stores_.gets(), here);
  EXPECT_EQ(stores_.gets(), static_cast<int>(keys.size()) - here);
  EXPECT_EQ(Queries("GetMany", "local", "OK"), 1);
}

TEST_F(GetManyTest, PartitionsOfARefusedForwardAreRetriedOneByOne) {
  // b refuses the first check of apple's partition (it is moving): the whole forward is
  // NOT_OWNER, and a retries each partition of it on its own, all of them answered.
  const std::vector<std::string> keys = Keys();
  stores_.RefuseAsNotOwner(PartitionOf("apple"), 1);
  kiq::v1::GetManyResponse response;
  grpc::Status s = a_query_->GetMany(Context().get(), Request(keys), &response);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ExpectAnswers(keys, response);
  EXPECT_EQ(stores_.refused(), 1);
  EXPECT_EQ(Queries("GetMany", "local", "FAILED_PRECONDITION"), 1);
  EXPECT_EQ(Queries("GetMany", "local", "OK"), kPartitions);
}

TEST_F(GetManyTest, OwnerThatNeverAnswersFailsTheCallByTheDeadlineNamingIt) {
  const std::vector<std::string> keys = Keys();
  const int32_t p = PartitionOf("banana");
  stores_.RefuseAsNotOwner(p, 1 << 30);
  const absl::Time start = absl::Now();
  absl::StatusOr<kiq::v1::GetManyResponse> r =
      a_router_.GetMany(Request(keys), start + absl::Milliseconds(500));
  ASSERT_FALSE(r.ok()) << "answered OK with partition " << p << " unread";
  EXPECT_TRUE(IsNotOwner(r.status())) << r.status();
  EXPECT_THAT(r.status().message(),
              HasSubstr(absl::StrCat("get-many store=", kStore, " partition=", p)));
  EXPECT_THAT(r.status().message(), HasSubstr("node b"));
  EXPECT_LT(absl::Now() - start, absl::Seconds(2));
}

TEST_F(GetManyTest, BadBatchesAreRefusedWithTheirReasonAndCounted) {
  kiq::v1::GetManyResponse response;
  grpc::Status s = query_->GetMany(Context().get(), Request({}), &response);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("keys is required"));
  s = query_->GetMany(Context().get(), Request(std::vector<std::string>(kMaxGetManyKeys + 1, "k")),
                      &response);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr(absl::StrCat("over the limit of ", kMaxGetManyKeys)));
  kiq::v1::GetManyRequest unknown = Request({"a"});
  unknown.set_store("nosuch");
  s = a_query_->GetMany(Context().get(), unknown, &response);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(Queries("GetMany", "batch", "INVALID_ARGUMENT"), 2);
  EXPECT_EQ(stores_.gets(), 0);
}

}  // namespace
// --- Forward coalescing: concurrent forwarded Gets share GetMany calls to the owner ---

class ForwardCoalescingTest : public GetManyTest {
 protected:
  struct Call {
    std::string key;
    std::unique_ptr<grpc::ClientContext> context;
    kiq::v1::GetRequest request;
    kiq::v1::GetResponse response;
    grpc::Status status;
  };
  // Sends a Get through a for each of `keys`, all at once, and waits for every answer;
  // `cancel(i)`: call i is cancelled right after it is sent.
  std::vector<std::unique_ptr<Call>> GetAllAtOnce(const std::vector<std::string>& keys,
                                                  const std::function<bool(int)>& cancel,
                                                  const std::function<void()>& after_sent = {}) {
    absl::Mutex mu;
    size_t done = 0;
    std::vector<std::unique_ptr<Call>> calls;
    for (size_t i = 0; i < keys.size(); ++i) {
      auto call = std::make_unique<Call>();
      call->key = keys[i];
      call->context = Context(absl::Seconds(10));
      call->request = GetOf(kStore, keys[i]);
      Call* c = call.get();
      a_query_->async()->Get(c->context.get(), &c->request, &c->response,
                             [&mu, &done, c](grpc::Status status) {
                               absl::MutexLock lock(&mu);
                               c->status = std::move(status);
                               ++done;
                             });
      if (cancel(static_cast<int>(i))) c->context->TryCancel();
      calls.push_back(std::move(call));
    }
    if (after_sent) after_sent();
    absl::MutexLock lock(&mu);
    auto all_done = [&] { return done == calls.size(); };
    EXPECT_TRUE(mu.AwaitWithTimeout(absl::Condition(&all_done), absl::Seconds(30)));
    return calls;
  }
  // What b answers a single forwarded Get of `key` with.
  std::string SingleForward(const std::string& key) {
    std::unique_ptr<grpc::ClientContext> context = Context();
    context->AddMetadata(kForwardedHeader, kToOwnerValue);
    kiq::v1::GetResponse response;
    grpc::Status s = query_->Get(context.get(), GetOf(kStore, key), &response);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return response.ShortDebugString();
  }
  static std::vector<std::string> ManyKeys(int n) {
    std::vector<std::string> keys;
    for (int i = 0; i < n; ++i) {
      keys.push_back(i % 3 == 0 ? "apple" : i % 3 == 1 ? "banana" : absl::StrCat("absent-", i));
    }
    return keys;
  }
  // Calls that reached b: forwarded Gets and GetManys.
  double CallsAtB() { return Queries("Get", "local") + Queries("GetMany", "local"); }
};

TEST_F(ForwardCoalescingTest, ConcurrentGetsShareCallsAndAreAnsweredAsSingleForwards) {
  const std::vector<std::string> keys = ManyKeys(200);
  // b holds its reads until a's first calls (the window) are in flight there: the Gets sent
  // meanwhile queue at a and leave together when those calls return.
  stores_.HoldGets(true);
  bool queued = false;
  int held_at_release = 0;
  std::vector<std::unique_ptr<Call>> calls = GetAllAtOnce(
      keys, [](int) { return false; },
      [&] {
        const absl::Time deadline = absl::Now() + absl::Seconds(10);
        while (stores_.held() < 2 && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(1));
        EXPECT_GE(stores_.held(), 2) << "a's first calls did not reach b";
        // ...and until a has some queued behind them. a and b share this process's gRPC
        // callback threads, which b's held reads occupy: on a loaded 2-core machine a may not
        // get a thread to take the other calls in while b holds, and then nothing can queue.
        const absl::Time queue_deadline = absl::Now() + absl::Seconds(3);
        while (!(queued = a_router_.ForwardsQueued() > 0) && absl::Now() < queue_deadline) {
          absl::SleepFor(absl::Milliseconds(1));
        }
        held_at_release = stores_.held();
        stores_.HoldGets(false);
      });
  if (queued) {
    EXPECT_LT(CallsAtB(), static_cast<double>(keys.size()));  // some rode together
    EXPECT_GE(Queries("GetMany", "local", "OK"), 1);
  } else {
    // Sharing unobservable here (see above; the GetMany integration test checks it across
    // processes); the answers below are checked all the same.
    std::printf("no Get queued at a while b held %d reads: sharing not checked\n", held_at_release);
  }
  std::map<std::string, std::string> single;
  for (const auto& c : calls) {
    ASSERT_TRUE(c->status.ok()) << c->key << ": " << c->status.error_message();
    auto [it, first] = single.try_emplace(c->key, "");
    if (first) it->second = SingleForward(c->key);
    EXPECT_EQ(c->response.ShortDebugString(), it->second) << c->key;
  }
  EXPECT_EQ(single.at("apple").find("found: true"), 0u) << single.at("apple");
  EXPECT_EQ(single.at("absent-2").find("entry"), std::string::npos) << single.at("absent-2");
}

TEST_F(ForwardCoalescingTest, KeysOfASharedCallThatWasRefusedAreForwardedAloneAndAnswered) {
  // b refuses apple's partition once (it is moving): the shared call carrying it is NOT_OWNER,
  // and each of its keys is forwarded on its own; all are answered.
  stores_.RefuseAsNotOwner(PartitionOf("apple"), 1);
  const std::vector<std::string> keys = ManyKeys(120);
  std::vector<std::unique_ptr<Call>> calls = GetAllAtOnce(keys, [](int) { return false; });
  EXPECT_EQ(stores_.refused(), 1);
  for (const auto& c : calls) {
    ASSERT_TRUE(c->status.ok()) << c->key << ": " << c->status.error_message();
    EXPECT_EQ(c->response.ShortDebugString(), SingleForward(c->key)) << c->key;
  }
}

TEST_F(ForwardCoalescingTest, ACancelledCallerDoesNotFailTheOthersKeys) {
  const std::vector<std::string> keys = ManyKeys(120);
  std::vector<std::unique_ptr<Call>> calls = GetAllAtOnce(keys, [](int i) { return i % 2 == 1; });
  for (size_t i = 0; i < calls.size(); ++i) {
    const Call& c = *calls[i];
    if (i % 2 == 1) {
      // Cancelled: whatever it got, the cancellation or an answer that beat it.
      EXPECT_TRUE(c.status.ok() || c.status.error_code() == grpc::StatusCode::CANCELLED)
          << c.status.error_message();
      continue;
    }
    ASSERT_TRUE(c.status.ok()) << c.key << ": " << c.status.error_message();
    EXPECT_EQ(c.response.ShortDebugString(), SingleForward(c.key)) << c.key;
  }
}

TEST_F(ForwardCoalescingTest, OneGetInFlightIsForwardedAsAGetAtOnce) {
  for (const std::string key : {"apple", "absent-1"}) {
    kiq::v1::GetResponse response;
    grpc::Status s = a_query_->Get(Context().get(), GetOf(kStore, key), &response);
    ASSERT_TRUE(s.ok()) << s.error_message();
    EXPECT_EQ(response.ShortDebugString(), SingleForward(key));
  }
  // Alone, each left at once as a plain forwarded Get (and SingleForward's own).
  EXPECT_EQ(Queries("GetMany", "local"), 0);
  EXPECT_EQ(Queries("Get", "local", "OK"), 4);
}

}  // namespace kiq::router
