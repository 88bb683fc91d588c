#pragma once

#include <memory>
#include <string>

#include <grpcpp/channel.h>
#include <grpcpp/security/credentials.h>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/security/cluster_secret.h"
#include "kiq/v1/membership.pb.h"
#include "kiq/v1/peer.grpc.pb.h"
#include "kiq/v1/query.grpc.pb.h"

namespace kiq::router {

// Header that marks a call forwarded by a router: the receiving node answers from its own
// partitions or with NOT_OWNER, and never forwards it again (no loops).
inline constexpr char kForwardedHeader[] = "kiq-forwarded";
// How a call was forwarded (router/query_router.h, Hop): kForwardedHeader set to one of these.
inline constexpr char kToOwnerValue[] = "1";
inline constexpr char kToStandbyValue[] = "standby";

// The gRPC endpoint ("host:port") of a node as the membership topic advertises it.
inline std::string Endpoint(const kiq::v1::NodeInfo& node) {
  return absl::StrCat(node.host(), ":", node.port());
}

// One gRPC channel per peer endpoint ("host:port"), created on first use and kept (a cluster
// has few nodes; gRPC reconnects a channel by itself). With a cluster secret, every call on
// these channels carries fresh peer credentials (security::kPeerAuthHeader, added by a client
// interceptor, so that no call site can forget them). Thread-safe; stubs are thread-safe.
class PeerPool {
 public:
  // Before the first Get: channels made later authenticate their calls with `secret`.
  void Authenticate(const security::ClusterSecret& secret) ABSL_LOCKS_EXCLUDED(mu_);
  struct Peer {
    std::shared_ptr<grpc::Channel> channel;
    std::unique_ptr<kiq::v1::QueryService::Stub> query;
    std::unique_ptr<kiq::v1::PeerService::Stub> peer;
  };
  // The peer's stubs; the reference stays valid for the pool's lifetime.
  Peer& Get(const std::string& endpoint) ABSL_LOCKS_EXCLUDED(mu_);
  // Channels created from now on use these (TLS to peers); the default is plaintext.
  void SetCredentials(std::shared_ptr<grpc::ChannelCredentials> credentials)
      ABSL_LOCKS_EXCLUDED(mu_);

 private:
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::unique_ptr<Peer>> peers_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<grpc::ChannelCredentials> credentials_ ABSL_GUARDED_BY(mu_);
  std::optional<security::ClusterSecret> secret_ ABSL_GUARDED_BY(mu_);
};

}  // namespace kiq::router
