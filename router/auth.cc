#include "router/auth.h"

#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/logging.h"
#include "common/status.h"
#include "common/thread_name.h"
#include "router/peer_pool.h"

namespace kiq::router {
namespace {

constexpr char kAuthorizationHeader[] = "authorization";

std::optional<absl::string_view> Metadata(const grpc::ServerContextBase& context,
                                          absl::string_view name) {
  const auto& metadata = context.client_metadata();
  auto it = metadata.find(grpc::string_ref(name.data(), name.size()));
  if (it == metadata.end()) return std::nullopt;
  return absl::string_view(it->second.data(), it->second.size());
}

}  // namespace

CallCredentials CredentialsOf(const grpc::ServerContextBase& context) {
  CallCredentials call;
  call.authorization = Metadata(context, kAuthorizationHeader);
  call.peer_auth = Metadata(context, security::kPeerAuthHeader);
  call.forwarded = Metadata(context, kForwardedHeader).has_value();
  return call;
}

absl::StatusOr<std::string> ReadWholeFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::UnavailableError(absl::StrCat("cannot read ", path));
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return absl::UnavailableError(absl::StrCat("cannot read ", path));
  return text.str();
}

absl::StatusOr<std::unique_ptr<Authorizer>> Authorizer::Create(Security security,
                                                               prometheus::Registry* registry) {
  if (!security.token_file.empty() && !security.cluster_secret.has_value()) {
    return absl::InvalidArgumentError(
        "--auth-token-file: needs a cluster secret too (--cluster-secret-file or "
        "$KIQ_CLUSTER_SECRET): without it a node cannot prove to the owner of a key that it "
        "checked the token of a query it forwards, and PeerService would stay open");
  }
  std::unique_ptr<Authorizer> auth(new Authorizer(std::move(security), registry));
  if (auth->tokens_enabled()) {
    const std::string& path = auth->security_.token_file;
    absl::StatusOr<std::string> text = ReadWholeFile(path);
    if (!text.ok()) return absl::InvalidArgumentError(absl::StrCat("--auth-token-file: ", text.status().message()));
    absl::StatusOr<security::TokenSet> tokens =
        security::TokenSet::Parse(*text, absl::StrCat("--auth-token-file: ", path));
    if (!tokens.ok()) return tokens.status();
    spdlog::info("auth: {} bearer tokens from {}", tokens->grants().size(), path);
    {
      absl::MutexLock lock(&auth->mu_);
      auth->tokens_ = std::make_shared<const security::TokenSet>(*std::move(tokens));
      auth->last_text_ = *std::move(text);
    }
    Authorizer* raw = auth.get();
    auth->poller_ = std::thread([raw] {
      NameThisThread("kiq-auth");
      while (!raw->stop_.WaitForNotificationWithTimeout(raw->security_.token_file_poll)) {
        raw->Reload();
      }
    });
  }
  return auth;
}

Authorizer::Authorizer(Security security, prometheus::Registry* registry)
    : security_(std::move(security)) {
  if (registry == nullptr) return;
  denied_ = &prometheus::BuildCounter()
                 .Name("kiq_auth_denied_total")
                 .Help("Calls refused by authentication or authorization, by reason: missing "
                       "(no bearer token), unknown (not a configured token), forbidden (the "
                       "token may not read the store), peer (no valid peer credentials)")
                 .Register(*registry);
  denied_missing_ = &denied_->Add({{"reason", "missing"}});
  denied_unknown_ = &denied_->Add({{"reason", "unknown"}});
  denied_forbidden_ = &denied_->Add({{"reason", "forbidden"}});
  denied_peer_ = &denied_->Add({{"reason", "peer"}});
}

Authorizer::~Authorizer() {
  stop_.Notify();
  if (poller_.joinable()) poller_.join();
}

bool Authorizer::Reload() {
  const std::string& path = security_.token_file;
  absl::StatusOr<std::string> text = ReadWholeFile(path);
  absl::MutexLock lock(&mu_);
  if (!text.ok()) {
    // Kubernetes swaps a Secret's files through a symlink: a missing file may be a moment of
    // the swap. Keep the tokens; say so once.
    if (!last_text_.empty()) {
      spdlog::warn("auth: {}; keeping the {} tokens read before", text.status().message(),
                   tokens_->grants().size());
      last_text_.clear();
    }
    return false;
  }
  if (*text == last_text_) return true;
  last_text_ = *text;
  absl::StatusOr<security::TokenSet> tokens =
      security::TokenSet::Parse(*text, absl::StrCat("--auth-token-file: ", path));
  if (!tokens.ok()) {
    spdlog::error("auth: token file changed but is invalid, keeping the {} tokens read before: {}",
                  tokens_->grants().size(), tokens.status().message());
    return false;
  }
  spdlog::info("auth: token file {} changed: {} bearer tokens", path, tokens->grants().size());
  tokens_ = std::make_shared<const security::TokenSet>(*std::move(tokens));
  return true;
}

void Authorizer::Deny(absl::string_view reason) const {
  if (denied_ == nullptr) return;
  if (reason == "missing") denied_missing_->Increment();
  if (reason == "unknown") denied_unknown_->Increment();
  if (reason == "forbidden") denied_forbidden_->Increment();
  if (reason == "peer") denied_peer_->Increment();
}

bool Authorizer::PeerAuthenticated(const CallCredentials& call) const {
  return security_.cluster_secret.has_value() && call.peer_auth.has_value() &&
         security_.cluster_secret->CheckPeerToken(*call.peer_auth, absl::Now());
}

grpc::Status Authorizer::CheckPeer(const CallCredentials& call) const {
  if (!security_.cluster_secret.has_value()) return grpc::Status::OK;
  if (PeerAuthenticated(call)) return grpc::Status::OK;
  Deny("peer");
  return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                      call.peer_auth.has_value() ? "kiq.v1.PeerService: peer credentials are invalid or expired "
                                  "(is the cluster secret the same on every node, and clocks "
                                  "within a minute?)"
                                : "kiq.v1.PeerService answers only the nodes and routers of the "
                                  "cluster (peer credentials required)");
}

grpc::Status Authorizer::Check(const CallCredentials& call, absl::string_view store) const {
  if (security_.cluster_secret.has_value()) {
    if (PeerAuthenticated(call)) return grpc::Status::OK;
    if (call.peer_auth.has_value() || call.forwarded) {
      Deny("peer");
      return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                          "a forwarded call needs valid peer credentials");
    }
  }
  if (!tokens_enabled()) return grpc::Status::OK;
  const std::optional<absl::string_view>& header = call.authorization;
  if (!header.has_value()) {
    Deny("missing");
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                        "a bearer token is required (authorization: Bearer <token>)");
  }
  absl::string_view value = absl::StripAsciiWhitespace(*header);
  if (!absl::StartsWithIgnoreCase(value, "bearer ")) {
    Deny("missing");
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                        "the authorization header must be 'Bearer <token>'");
  }
  value = absl::StripLeadingAsciiWhitespace(value.substr(7));
  std::shared_ptr<const security::TokenSet> tokens;
  {
    absl::MutexLock lock(&mu_);
    tokens = tokens_;
  }
  const security::TokenGrant* grant = tokens->Find(value);
  if (grant == nullptr) {
    Deny("unknown");
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "unknown bearer token");
  }
  if (!store.empty() && !grant->AllowsStore(store)) {
    Deny("forbidden");
    return grpc::Status(grpc::StatusCode::PERMISSION_DENIED,
                        absl::StrCat("token '", grant->name, "' may not read store ", ClipKey(store)));
  }
  return grpc::Status::OK;
}

}  // namespace kiq::router
