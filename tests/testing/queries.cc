#include "tests/testing/queries.h"

#include <chrono>

namespace kiq::testing {
void NodeClient::Prepare(grpc::ClientContext* context, int seconds) const {
  context->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(seconds));
  if (!token_.empty()) context->AddMetadata("authorization", "Bearer " + token_);
}

NodeClient::NodeClient(const std::string& target, std::string token)
    : NodeClient(target, grpc::InsecureChannelCredentials(), std::move(token)) {}

NodeClient::NodeClient(const std::string& target,
                       std::shared_ptr<grpc::ChannelCredentials> credentials, std::string token)
    : token_(std::move(token)) {
  auto channel = grpc::CreateChannel(target, std::move(credentials));
  query_ = kiq::v1::QueryService::NewStub(channel);
  metadata_ = kiq::v1::MetadataService::NewStub(channel);
}

grpc::Status NodeClient::Get(const std::string& store, const std::string& key,
                             kiq::v1::GetResponse* response, int timeout_seconds, bool forwarded) {
  grpc::ClientContext context;
  Prepare(&context, timeout_seconds);
  if (forwarded) context.AddMetadata("kiq-forwarded", "1");
  kiq::v1::GetRequest request;
  request.set_store(store);
  request.set_key(key);
  return query_->Get(&context, request, response);
}

grpc::Status NodeClient::GetStale(const std::string& store, const std::string& key,
                                  kiq::v1::GetResponse* response, int timeout_seconds,
                                  int64_t max_lag_records) {
  grpc::ClientContext context;
  Prepare(&context, timeout_seconds);
  kiq::v1::GetRequest request;
  request.set_store(store);
  request.set_key(key);
  request.set_allow_stale(true);
  request.set_max_lag_records(max_lag_records);
  return query_->Get(&context, request, response);
}

grpc::Status NodeClient::AllStale(const std::string& store, kiq::v1::ScanResponse* response,
                                  int timeout_seconds) {
  grpc::ClientContext context;
  Prepare(&context, timeout_seconds);
  kiq::v1::AllRequest request;
  request.set_store(store);
  request.set_page_size(5000);
  request.set_allow_stale(true);
  return query_->All(&context, request, response);
}

grpc::Status NodeClient::GetAtLeast(const std::string& store, const std::string& key,
                                    const Positions& min_position, kiq::v1::GetResponse* response,
                                    int timeout_seconds) {
  grpc::ClientContext context;
  Prepare(&context, timeout_seconds);
  kiq::v1::GetRequest request;
  request.set_store(store);
  request.set_key(key);
  for (const auto& [tp, offset] : min_position) {
    kiq::v1::PartitionOffset* po = request.mutable_min_position()->add_offsets();
    po->set_topic(tp.first);
    po->set_partition(tp.second);
    po->set_offset(offset);
  }
  return query_->Get(&context, request, response);
}

grpc::Status NodeClient::Count(const std::string& store, kiq::v1::CountResponse* response,
                               int timeout_seconds) {
  grpc::ClientContext context;
  Prepare(&context, timeout_seconds);
  kiq::v1::CountRequest request;
  request.set_store(store);
  return query_->Count(&context, request, response);
}

Entries NodeClient::Scan(const std::string& store, int page_size, const std::string& from,
                         const std::string& to, int* pages, grpc::Status* status_out) {
  Entries out;
  std::string token;
  int n = 0;
  grpc::Status status;
  do {
    grpc::ClientContext context;
    Prepare(&context, 10);
    kiq::v1::ScanResponse response;
    if (from.empty() && to.empty()) {
      kiq::v1::AllRequest request;
      request.set_store(store);
      request.set_page_size(page_size);
      request.set_page_token(token);
      status = query_->All(&context, request, &response);
    } else {
      kiq::v1::RangeRequest request;
      request.set_store(store);
      request.set_from(from);
      request.set_to(to);
      request.set_page_size(page_size);
      request.set_page_token(token);
      status = query_->Range(&context, request, &response);
    }
    if (!status.ok()) break;
    if (response.entries_size() > page_size) {
      status = grpc::Status(grpc::StatusCode::INTERNAL, "a page is larger than page_size");
      break;
    }
    for (const auto& e : response.entries()) out.emplace_back(e.key(), e.value());
    token = response.next_page_token();
    ++n;
  } while (!token.empty());
  if (pages != nullptr) *pages = n;
  if (status_out != nullptr) *status_out = status;
  return out;
}

grpc::Status NodeClient::NodeForKey(const std::string& store, const std::string& key,
                                    kiq::v1::NodeForKeyResponse* response) {
  grpc::ClientContext context;
  Prepare(&context, 5);
  kiq::v1::NodeForKeyRequest request;
  request.set_store(store);
  request.set_key(key);
  return metadata_->NodeForKey(&context, request, response);
}

grpc::Status NodeClient::AllNodes(kiq::v1::NodesResponse* response) {
  grpc::ClientContext context;
  Prepare(&context, 5);
  return metadata_->AllNodes(&context, kiq::v1::AllNodesRequest(), response);
}

bool NodeClient::CaughtUp(const std::string& store, const std::string& topic,
                          const Positions& produced) {
  kiq::v1::CountResponse response;
  if (!Count(store, &response, 2).ok()) return false;
  std::map<int32_t, int64_t> at;
  for (const auto& po : response.position().offsets()) {
    if (po.topic() == topic) at[po.partition()] = po.offset();
  }
  for (const auto& [tp, next] : produced) {
    if (tp.first == topic && at[tp.second] < next) return false;
  }
  return true;
}

std::optional<std::map<std::string, std::set<int32_t>>> NodeClient::SettledOwners(
    const std::set<std::string>& ids, int partitions, kiq::v1::NodesResponse* nodes) {
  kiq::v1::NodesResponse answer;
  if (!AllNodes(&answer).ok()) return std::nullopt;
  std::map<std::string, std::set<int32_t>> owners;
  std::set<int32_t> seen;
  bool settled = true;
  for (const auto& node : answer.nodes()) {
    for (const auto& p : node.partitions()) {
      if (p.state() == kiq::v1::PARTITION_STATE_STANDBY) continue;  // a replica owns nothing
      if (ids.count(node.node_id()) == 0 || p.state() != kiq::v1::PARTITION_STATE_ACTIVE ||
          !seen.insert(p.partition()).second) {
        settled = false;
      }
      owners[node.node_id()].insert(p.partition());
    }
  }
  if (nodes != nullptr) *nodes = std::move(answer);
  if (!settled || seen.size() != static_cast<size_t>(partitions) || owners.size() != ids.size()) {
    return std::nullopt;
  }
  return owners;
}

}  // namespace kiq::testing
