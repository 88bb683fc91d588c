#pragma once

#include <memory>
#include <optional>
#include <string>
#include <thread>

#include <grpcpp/server_context.h>
#include <grpcpp/support/status.h>
#include <prometheus/counter.h>
#include <prometheus/registry.h>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "common/security/cluster_secret.h"
#include "common/security/token_file.h"

namespace kiq::router {

// What protects a process's gRPC and HTTP API (--auth-token-file, --cluster-secret-file /
// $KIQ_CLUSTER_SECRET; router/serving_flags.h reads them). Both empty: everything is open, as
// in development.
struct Security {
  // Bearer tokens and the stores each may read; empty: QueryService and MetadataService open.
  std::string token_file;
  // Authenticates members records and peer calls; unset: both unauthenticated.
  std::optional<security::ClusterSecret> cluster_secret;
  // How often the token file is looked at for changes (Kubernetes updates a mounted Secret in
  // place).
  absl::Duration token_file_poll = absl::Seconds(2);
};

// What a call presents, from its metadata (nullopt: absent).
struct CallCredentials {
  std::optional<absl::string_view> authorization;  // "Bearer <token>"
  std::optional<absl::string_view> peer_auth;      // security::kPeerAuthHeader
  bool forwarded = false;                          // kForwardedHeader present
};
// The credentials of a server call; the views point into `context`'s metadata.
CallCredentials CredentialsOf(const grpc::ServerContextBase& context);

// Decides whether a gRPC call may run. Every QueryService and MetadataService handler asks
// AuthorizeClient with the store it reads; every PeerService handler asks AuthorizePeer.
//
//  - A call carrying valid peer credentials (kPeerAuthHeader, made from the cluster secret) is
//    a peer's, e.g. a query forwarded by the node that checked the user's token: allowed.
//  - With a cluster secret, a call that says it was forwarded (kForwardedHeader) without valid
//    peer credentials is refused UNAUTHENTICATED: nobody else may skip the token check or ask
//    a node for NOT_OWNER-or-local answers.
//  - With a token file, a client call needs "authorization: Bearer <token>": none or an
//    unknown token → UNAUTHENTICATED; a token that may not read the store → PERMISSION_DENIED
//    naming the store.
//
// Denials are counted in kiq_auth_denied_total{reason="missing|unknown|forbidden|peer"}; a
// token is never logged (its name may be). The token file is re-read when it changes; an
// invalid new file is logged and the previous tokens stay in force.
//
// Thread-safe. The reload thread is stopped by the destructor.
class Authorizer {
 public:
  // Reads the token file (INVALID_ARGUMENT "--auth-token-file: <path>: <field path>: <why>" if
  // it is bad). Tokens without a cluster secret are refused: a node could then not prove to
  // its peers that it checked a forwarded call's token. `registry` is optional.
  static absl::StatusOr<std::unique_ptr<Authorizer>> Create(Security security,
                                                            prometheus::Registry* registry);
  ~Authorizer();
  Authorizer(const Authorizer&) = delete;
  Authorizer& operator=(const Authorizer&) = delete;

  // `store` is empty for calls about no store in particular (MetadataService.AllNodes): any
  // valid token may make them.
  grpc::Status AuthorizeClient(const grpc::ServerContextBase& context,
                               absl::string_view store) const ABSL_LOCKS_EXCLUDED(mu_) {
    return Check(CredentialsOf(context), store);
  }
  grpc::Status AuthorizePeer(const grpc::ServerContextBase& context) const {
    return CheckPeer(CredentialsOf(context));
  }
  // The decisions themselves, on credentials (AuthorizeClient and AuthorizePeer wrap these).
  grpc::Status Check(const CallCredentials& call, absl::string_view store) const
      ABSL_LOCKS_EXCLUDED(mu_);
  grpc::Status CheckPeer(const CallCredentials& call) const;

  const std::optional<security::ClusterSecret>& cluster_secret() const {
    return security_.cluster_secret;
  }
  bool tokens_enabled() const { return !security_.token_file.empty(); }

  // Re-reads the token file now (the poll thread calls it); false if it is unreadable or
  // invalid (the previous tokens stay).
  bool Reload() ABSL_LOCKS_EXCLUDED(mu_);

 private:
  Authorizer(Security security, prometheus::Registry* registry);
  bool PeerAuthenticated(const CallCredentials& call) const;
  void Deny(absl::string_view reason) const;

  // Constant after construction.
  const Security security_;
  prometheus::Family<prometheus::Counter>* denied_ = nullptr;  // null without a registry
  prometheus::Counter* denied_missing_ = nullptr;
  prometheus::Counter* denied_unknown_ = nullptr;
  prometheus::Counter* denied_forbidden_ = nullptr;
  prometheus::Counter* denied_peer_ = nullptr;

  mutable absl::Mutex mu_;
  std::shared_ptr<const security::TokenSet> tokens_ ABSL_GUARDED_BY(mu_);
  // The file's last text we looked at (valid or not), so that an unchanged file is not parsed
  // or complained about again.
  std::string last_text_ ABSL_GUARDED_BY(mu_);

  absl::Notification stop_;
  std::thread poller_;
};

// Reads a file whole (for the token and secret files); UNAVAILABLE naming it if it cannot.
absl::StatusOr<std::string> ReadWholeFile(const std::string& path);

}  // namespace kiq::router
