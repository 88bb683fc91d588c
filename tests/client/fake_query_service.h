#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include <grpcpp/server_context.h>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "kiq/v1/query.grpc.pb.h"
#include "kiq/v1/query.pb.h"

// Header-only (the test build compiles only *_test.cc): a kiq.v1.QueryService with canned
// stores, for the client and kiqctl tests (served by FakeServer, fake_server.h).
namespace kiq::client {

// Canned stores:
//   "orders": a → {"n":1} (json), b → "plain text", c → bytes ff fe, d → 42 (json),
//             e → "line\nbreak", on partitions 0,1,2,0,1;
//   "bin":    keys "\xff\x01" → "v1" and "k" → "v2";
//   "empty":  no entries;
//   "slow":   every call waits until the client gives up (deadline);
//   "loop":   scans answer any token with the same token (a broken server).
// Any other store is NOT_FOUND `unknown store "<name>"`. Scans default to 2 entries per page
// and reject page_size > 5000 like the router. Thread-safe: records requests under a mutex.
class FakeQueryService final : public kiq::v1::QueryService::Service {
 public:
  static constexpr int32_t kDefaultPageSize = 2;
  static constexpr int32_t kMaxPageSize = 5000;

  FakeQueryService() {
    Add("orders", "a", "{\"n\":1}", 0, [](google::protobuf::Value* v) {
      (*v->mutable_struct_value()->mutable_fields())["n"].set_number_value(1);
    });
    Add("orders", "b", "plain text", 1);
    Add("orders", "c", "\xff\xfe", 2);
    Add("orders", "d", "42", 0, [](google::protobuf::Value* v) { v->set_number_value(42); });
    Add("orders", "e", "line\nbreak", 1);
    Add("bin", "\xff\x01", "v1", 3);
    Add("bin", "k", "v2", 0);
    stores_["empty"];
    stores_["slow"];
    stores_["loop"];
  }

  // Each key as Get answers it (missing: found=false with the key), in order.
  grpc::Status GetMany(grpc::ServerContext* context, const kiq::v1::GetManyRequest* request,
                       kiq::v1::GetManyResponse* response) override {
    Record(&get_many_requests_, *request);
    const Store* store = nullptr;
    if (grpc::Status s = Find(context, request->store(), &store); !s.ok()) return s;
    for (const std::string& key : request->keys()) {
      kiq::v1::GetResponse* result = response->add_results();
      SetPosition(result->mutable_position());
      auto it = store->find(key);
      if (it == store->end()) {
        result->mutable_entry()->set_key(key);
        continue;
      }
      result->set_found(true);
      *result->mutable_entry() = it->second;
    }
    return grpc::Status::OK;
  }

  grpc::Status Get(grpc::ServerContext* context, const kiq::v1::GetRequest* request,
                   kiq::v1::GetResponse* response) override {
    Record(&get_requests_, *request);
    const Store* store = nullptr;
    if (grpc::Status s = Find(context, request->store(), &store); !s.ok()) return s;
    std::string key;
    switch (request->key_kind_case()) {
      case kiq::v1::GetRequest::kKey:
        key = request->key();
        break;
      case kiq::v1::GetRequest::kKeyBytes:
        key = request->key_bytes();
        break;
      default:
        return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "key is required");
    }
    auto it = store->find(key);
    if (it == store->end()) return grpc::Status::OK;
    response->set_found(true);
    *response->mutable_entry() = it->second;
    SetPosition(response->mutable_position());
    return grpc::Status::OK;
  }

  grpc::Status Range(grpc::ServerContext* context, const kiq::v1::RangeRequest* request,
                     kiq::v1::ScanResponse* response) override {
    Record(&range_requests_, *request);
    const std::string& from =
        request->from_bytes().empty() ? request->from() : request->from_bytes();
    const std::string& to = request->to_bytes().empty() ? request->to() : request->to_bytes();
    return Scan(context, request->store(), from, to, request->page_size(), request->page_token(),
                response);
  }

  grpc::Status All(grpc::ServerContext* context, const kiq::v1::AllRequest* request,
                   kiq::v1::ScanResponse* response) override {
    Record(&all_requests_, *request);
    return Scan(context, request->store(), "", "", request->page_size(), request->page_token(),
                response);
  }

  grpc::Status Count(grpc::ServerContext* context, const kiq::v1::CountRequest* request,
                     kiq::v1::CountResponse* response) override {
    const Store* store = nullptr;
    if (grpc::Status s = Find(context, request->store(), &store); !s.ok()) return s;
    response->set_count(static_cast<int64_t>(store->size()));
    SetPosition(response->mutable_position());
    return grpc::Status::OK;
  }

  // "views" is windowed: key "books" has windows starting at 1700000040000 (count 3) and
  // 1700000070000 (count 5), 30 s long, on partition 2. Other known stores are not windowed.
  grpc::Status WindowFetch(grpc::ServerContext* context, const kiq::v1::WindowFetchRequest* request,
                           kiq::v1::WindowFetchResponse* response) override {
    Record(&window_fetch_requests_, *request);
    if (request->store() != "views") {
      const Store* store = nullptr;
      if (grpc::Status s = Find(context, request->store(), &store); !s.ok()) return s;
      return grpc::Status(
          grpc::StatusCode::FAILED_PRECONDITION,
          absl::StrCat("store \"", request->store(), "\" is not windowed: use Get"));
    }
    if (request->key() != "books") return grpc::Status::OK;
    for (const auto& [start, n] : {std::pair<int64_t, int>{1700000040000, 3}, {1700000070000, 5}}) {
      if (start < request->time_from() || (request->time_to() != 0 && start > request->time_to())) {
        continue;
      }
      kiq::v1::Entry* e = response->add_entries();
      e->set_key("books");
      e->set_value(absl::StrCat(n));
      e->mutable_json()->set_number_value(n);
      e->set_partition(2);
      e->mutable_window()->set_start_ms(start);
      e->mutable_window()->set_end_ms(start + 30000);
    }
    SetPosition(response->mutable_position());
    return grpc::Status::OK;
  }

  std::vector<kiq::v1::WindowFetchRequest> window_fetch_requests() const {
    return Copy(window_fetch_requests_);
  }

  // Subscribe: on "orders", the snapshot (FROM_SNAPSHOT) of the matching entries and
  // SNAPSHOT_END, then two changes (a → {"n":2} was {"n":1} at orders@7; b deleted, was
  // "plain text", at orders@8) filtered by the request, then RESOURCE_EXHAUSTED.
  grpc::Status Subscribe(grpc::ServerContext* context, const kiq::v1::SubscribeRequest* request,
                         grpc::ServerWriter<kiq::v1::SubscribeResponse>* writer) override {
    Record(&subscribe_requests_, *request);
    const Store* store = nullptr;
    if (grpc::Status s = Find(context, request->store(), &store); !s.ok()) return s;
    auto matches = [&](const std::string& key) {
      switch (request->match_case()) {
        case kiq::v1::SubscribeRequest::kKey:
          return key == request->key();
        case kiq::v1::SubscribeRequest::kKeyPrefix:
          return absl::StartsWith(key, request->key_prefix());
        default:
          return true;
      }
    };
    kiq::v1::SubscribeResponse event;
    if (request->from() == kiq::v1::SubscribeRequest::FROM_SNAPSHOT) {
      for (const auto& [key, entry] : *store) {
        if (!matches(key)) continue;
        event.Clear();
        event.set_type(kiq::v1::SubscribeResponse::SNAPSHOT);
        *event.mutable_entry() = entry;
        writer->Write(event);
      }
      event.Clear();
      event.set_type(kiq::v1::SubscribeResponse::SNAPSHOT_END);
      writer->Write(event);
    }
    if (request->store() == "orders") {
      if (matches("a")) {
        event.Clear();
        event.set_type(kiq::v1::SubscribeResponse::CHANGE);
        *event.mutable_entry() = store->at("a");
        event.mutable_entry()->set_value("{\"n\":2}");
        (*event.mutable_entry()->mutable_json()->mutable_struct_value()->mutable_fields())["n"]
            .set_number_value(2);
        event.set_has_old_value(true);
        event.set_old_value("{\"n\":1}");
        (*event.mutable_old_json()->mutable_struct_value()->mutable_fields())["n"].set_number_value(
            1);
        event.set_topic("orders");
        event.set_offset(7);
        writer->Write(event);
      }
      if (matches("b")) {
        event.Clear();
        event.set_type(kiq::v1::SubscribeResponse::CHANGE);
        event.mutable_entry()->set_key("b");
        event.mutable_entry()->set_partition(1);
        event.set_deleted(true);
        event.set_has_old_value(true);
        event.set_old_value("plain text");
        event.set_topic("orders");
        event.set_offset(8);
        writer->Write(event);
      }
    }
    return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, "subscriber too slow");
  }

  std::vector<kiq::v1::SubscribeRequest> subscribe_requests() const {
    return Copy(subscribe_requests_);
  }
  std::vector<kiq::v1::GetRequest> get_requests() const { return Copy(get_requests_); }
  std::vector<kiq::v1::GetManyRequest> get_many_requests() const {
    return Copy(get_many_requests_);
  }
  std::vector<kiq::v1::RangeRequest> range_requests() const { return Copy(range_requests_); }
  std::vector<kiq::v1::AllRequest> all_requests() const { return Copy(all_requests_); }

 private:
  using Store = std::map<std::string, kiq::v1::Entry>;

  template <typename SetJson = std::nullptr_t>
  void Add(const std::string& store, const std::string& key, const std::string& value,
           int32_t partition, SetJson set_json = nullptr) {
    kiq::v1::Entry entry;
    if (key == "\xff\x01") {
      entry.set_key_bytes(key);
    } else {
      entry.set_key(key);
    }
    entry.set_value(value);
    entry.set_partition(partition);
    if constexpr (!std::is_same_v<SetJson, std::nullptr_t>) set_json(entry.mutable_json());
    stores_[store][key] = entry;
  }

  static void SetPosition(kiq::v1::Position* position) {
    kiq::v1::PartitionOffset* offset = position->add_offsets();
    offset->set_topic("orders-source");
    offset->set_partition(0);
    offset->set_offset(10);
  }

  grpc::Status Find(grpc::ServerContext* context, const std::string& name,
                    const Store** store) const {
    if (name == "slow") {
      // Wait for the client's deadline rather than sleeping a fixed time: fast and not flaky.
      while (!context->IsCancelled()) std::this_thread::sleep_for(std::chrono::milliseconds(5));
      return grpc::Status(grpc::StatusCode::CANCELLED, "cancelled");
    }
    auto it = stores_.find(name);
    if (it == stores_.end()) {
      return grpc::Status(grpc::StatusCode::NOT_FOUND,
                          absl::StrCat("unknown store \"", name, "\""));
    }
    *store = &it->second;
    return grpc::Status::OK;
  }

  // Page tokens are "after:" + hex of the last key returned.
  grpc::Status Scan(grpc::ServerContext* context, const std::string& name, const std::string& from,
                    const std::string& to, int32_t page_size, const std::string& page_token,
                    kiq::v1::ScanResponse* response) const {
    const Store* store = nullptr;
    if (grpc::Status s = Find(context, name, &store); !s.ok()) return s;
    if (name == "loop") {
      response->set_next_page_token(page_token.empty() ? "loop-token" : page_token);
      return grpc::Status::OK;
    }
    if (page_size < 0 || page_size > kMaxPageSize) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          absl::StrCat("page_size must be between 0 and ", kMaxPageSize));
    }
    if (page_size == 0) page_size = kDefaultPageSize;
    std::optional<std::string> after;
    if (!page_token.empty()) {
      absl::string_view hex = page_token;
      if (!absl::ConsumePrefix(&hex, "after:")) {
        return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "malformed page token");
      }
      after = absl::HexStringToBytes(hex);
    }
    auto it = after ? store->upper_bound(*after) : store->lower_bound(from);
    if (it != store->end() && it->first < from) it = store->lower_bound(from);
    std::string last_key;
    for (; it != store->end() && (to.empty() || it->first <= to); ++it) {
      if (response->entries_size() == page_size) {
        response->set_next_page_token(absl::StrCat("after:", absl::BytesToHexString(last_key)));
        break;
      }
      *response->add_entries() = it->second;
      last_key = it->first;
    }
    SetPosition(response->mutable_position());
    return grpc::Status::OK;
  }

  template <typename T>
  void Record(std::vector<T>* requests, const T& request) {
    std::lock_guard<std::mutex> lock(mu_);
    requests->push_back(request);
  }

  template <typename T>
  std::vector<T> Copy(const std::vector<T>& requests) const {
    std::lock_guard<std::mutex> lock(mu_);
    return requests;
  }

  std::map<std::string, Store> stores_;  // Constant after construction.
  mutable std::mutex mu_;
  std::vector<kiq::v1::GetRequest> get_requests_;                   // Guarded by mu_.
  std::vector<kiq::v1::GetManyRequest> get_many_requests_;          // Guarded by mu_.
  std::vector<kiq::v1::WindowFetchRequest> window_fetch_requests_;  // Guarded by mu_.
  std::vector<kiq::v1::SubscribeRequest> subscribe_requests_;       // Guarded by mu_.
  std::vector<kiq::v1::RangeRequest> range_requests_;               // Guarded by mu_.
  std::vector<kiq::v1::AllRequest> all_requests_;                   // Guarded by mu_.
};

}  // namespace kiq::client
