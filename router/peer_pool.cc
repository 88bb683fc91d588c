#include "router/peer_pool.h"

#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/client_interceptor.h>

#include "absl/time/clock.h"

namespace kiq::router {
namespace {

// Adds fresh peer credentials to the initial metadata of every call on a peer channel.
class PeerAuthInterceptor final : public grpc::experimental::Interceptor {
 public:
  explicit PeerAuthInterceptor(const security::ClusterSecret& secret) : secret_(secret) {}
  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(
            grpc::experimental::InterceptionHookPoints::PRE_SEND_INITIAL_METADATA)) {
      methods->GetSendInitialMetadata()->emplace(security::kPeerAuthHeader,
                                                 secret_.PeerToken(absl::Now()));
    }
    methods->Proceed();
  }

 private:
  const security::ClusterSecret& secret_;
};

class PeerAuthFactory final : public grpc::experimental::ClientInterceptorFactoryInterface {
 public:
  explicit PeerAuthFactory(security::ClusterSecret secret) : secret_(std::move(secret)) {}
  grpc::experimental::Interceptor* CreateClientInterceptor(
      grpc::experimental::ClientRpcInfo* info) override {
    (void)info;
    return new PeerAuthInterceptor(secret_);
  }

 private:
  // Channels keep their factories as long as they live.
  const security::ClusterSecret secret_;
};

}  // namespace

void PeerPool::Authenticate(const security::ClusterSecret& secret) {
  absl::MutexLock lock(&mu_);
  secret_ = secret;
}

PeerPool::Peer& PeerPool::Get(const std::string& endpoint) {
  absl::MutexLock lock(&mu_);
  std::unique_ptr<Peer>& peer = peers_[endpoint];
  if (!peer) {
    peer = std::make_unique<Peer>();
    grpc::ChannelArguments args;
    // Fail fast on a dead peer so the router can re-route within the caller's deadline.
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
    std::shared_ptr<grpc::ChannelCredentials> credentials =
        credentials_ ? credentials_ : grpc::InsecureChannelCredentials();
    if (secret_.has_value()) {
      std::vector<std::unique_ptr<grpc::experimental::ClientInterceptorFactoryInterface>> auth;
      auth.push_back(std::make_unique<PeerAuthFactory>(*secret_));
      peer->channel = grpc::experimental::CreateCustomChannelWithInterceptors(
          endpoint, credentials, args, std::move(auth));
    } else {
      peer->channel = grpc::CreateCustomChannel(endpoint, credentials, args);
    }
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
