#include "router/peer_pool.h"

#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>

namespace kiq::router {

PeerPool::Peer& PeerPool::Get(const std::string& endpoint) {
  absl::MutexLock lock(&mu_);
  std::unique_ptr<Peer>& peer = peers_[endpoint];
  if (!peer) {
    peer = std::make_unique<Peer>();
    grpc::ChannelArguments args;
    // Fail fast on a dead peer so the router can re-route within the caller's deadline.
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
    peer->channel = grpc::CreateCustomChannel(
        endpoint, credentials_ ? credentials_ : grpc::InsecureChannelCredentials(), args);
    peer->query = kiq::v1::QueryService::NewStub(peer->channel);
    peer->peer = kiq::v1::PeerService::NewStub(peer->channel);
  }
  return *peer;
}

void PeerPool::SetCredentials(std::shared_ptr<grpc::ChannelCredentials> credentials) {
  absl::MutexLock lock(&mu_);
  credentials_ = std::move(credentials);
}

}  // namespace kiq::router
