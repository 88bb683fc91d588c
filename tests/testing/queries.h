#pragma once

#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "kiq/v1/membership.grpc.pb.h"
#include "kiq/v1/query.grpc.pb.h"

namespace kiq::testing {

using Entries = std::vector<std::pair<std::string, std::string>>;
// (topic, partition) → next offset: what was produced, or what an answer reflects.
using Positions = std::map<std::pair<std::string, int32_t>, int64_t>;

// Blocking calls to one node, each with its own deadline.
class NodeClient {
 public:
  // `token`: a bearer token sent with every call (empty: none).
  explicit NodeClient(const std::string& target, std::string token = "");
  // Over `credentials` (e.g. TLS).
  NodeClient(const std::string& target, std::shared_ptr<grpc::ChannelCredentials> credentials,
             std::string token = "");

  grpc::Status Get(const std::string& store, const std::string& key, kiq::v1::GetResponse* response,
                   int timeout_seconds = 5, bool forwarded = false);
  // Get with allow_stale: a standby replica answers when the owner cannot (max_lag_records 0:
  // any lag).
  grpc::Status GetStale(const std::string& store, const std::string& key,
                        kiq::v1::GetResponse* response, int timeout_seconds,
                        int64_t max_lag_records = 0);
  // One page (up to 5000 entries) of All with allow_stale.
  grpc::Status AllStale(const std::string& store, kiq::v1::ScanResponse* response,
                        int timeout_seconds);
  // Get with a minimum position (read your writes): the owner waits until it is reached.
  grpc::Status GetAtLeast(const std::string& store, const std::string& key,
                          const Positions& min_position, kiq::v1::GetResponse* response,
                          int timeout_seconds = 10);
  grpc::Status Count(const std::string& store, kiq::v1::CountResponse* response,
                     int timeout_seconds = 5);
  // Every entry of All (empty from/to) or Range, following page tokens. `status` gets the
  // first failure, if any.
  Entries Scan(const std::string& store, int page_size, const std::string& from = "",
               const std::string& to = "", int* pages = nullptr, grpc::Status* status = nullptr);
  grpc::Status NodeForKey(const std::string& store, const std::string& key,
                          kiq::v1::NodeForKeyResponse* response);
  grpc::Status AllNodes(kiq::v1::NodesResponse* response);

  // True once Count(store) succeeds and reflects every offset of `topic` in `produced`.
  bool CaughtUp(const std::string& store, const std::string& topic, const Positions& produced);
  // Node id → its partitions once exactly the nodes `ids` own all `partitions` partitions,
  // each node some, every partition once and ACTIVE (as this node's metadata says); nullopt
  // until then, `nodes` (if given) gets the last answer.
  std::optional<std::map<std::string, std::set<int32_t>>> SettledOwners(
      const std::set<std::string>& ids, int partitions, kiq::v1::NodesResponse* nodes = nullptr);

 private:
  void Prepare(grpc::ClientContext* context, int seconds) const;

  const std::string token_;
  std::unique_ptr<kiq::v1::QueryService::Stub> query_;
  std::unique_ptr<kiq::v1::MetadataService::Stub> metadata_;
};

}  // namespace kiq::testing
