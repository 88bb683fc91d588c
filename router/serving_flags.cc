#include "router/serving_flags.h"

#include <chrono>
#include <cstdlib>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/flags.h"
#include "common/security/tls_flags.h"

ABSL_FLAG(int, admin_port, 7072,
          "Admin HTTP port: /healthz, /readyz and /metrics on a listener of their own, so that "
          "probes answer whatever the HTTP port's clients do (0: pick a free one; -1: none).");
ABSL_FLAG(int, admin_max_connections, 16,
          "Connections the admin port serves at once (1-1024); past it 503.");
ABSL_FLAG(int, http_max_connections, 512,
          "Connections the HTTP port serves at once, open streams included (1-10000); past it "
          "a new connection is answered 503 and closed. One thread each.");
ABSL_FLAG(int, http_max_streams, 256,
          "HTTP/JSON server streams (Subscribe) open at once (0-10000); past it 429.");
ABSL_FLAG(int, forward_coalescing_window, 2,
          "Forward coalescing: concurrent forwarded Gets to one owner share a forwarded GetMany "
          "once this many such calls to it are in flight (0-64; 0: every Get forwarded on its "
          "own). See README, Routing.");
ABSL_FLAG(absl::Duration, http_idle_timeout, absl::Seconds(2),
          "An idle keep-alive connection of the HTTP and admin ports is closed after this "
          "(whole seconds, 1s-1h).");

ABSL_FLAG(std::string, auth_token_file, "",
          "YAML file of bearer tokens and the stores each may read (README \"Security\"); "
          "re-read when it changes. Unset: queries need no token. Needs a cluster secret.");
ABSL_FLAG(std::string, cluster_secret_file, "",
          "File holding the secret all nodes and routers of the application share (at least 16 "
          "bytes): members records are signed with it and PeerService answers only callers "
          "that prove they hold it. Wins over $KIQ_CLUSTER_SECRET. Unset: both open.");

namespace kiq::router {

absl::StatusOr<Security> SecurityFromFlags() {
  Security security;
  security.token_file = absl::GetFlag(FLAGS_auth_token_file);
  if (const std::string file = absl::GetFlag(FLAGS_cluster_secret_file); !file.empty()) {
    absl::StatusOr<std::string> text = ReadWholeFile(file);
    if (!text.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--cluster-secret-file: ", text.status().message()));
    }
    absl::StatusOr<security::ClusterSecret> secret =
        security::ClusterSecret::FromText(*text, absl::StrCat("--cluster-secret-file: ", file));
    if (!secret.ok()) return secret.status();
    security.cluster_secret = *std::move(secret);
  } else if (const char* env = std::getenv("KIQ_CLUSTER_SECRET"); env != nullptr && *env != 0) {
    absl::StatusOr<security::ClusterSecret> secret =
        security::ClusterSecret::FromText(env, "$KIQ_CLUSTER_SECRET");
    if (!secret.ok()) return secret.status();
    security.cluster_secret = *std::move(secret);
  }
  // Checked here too, so that a bad file stops the process before it does any work; the
  // Frontend reads it again (and from then on whenever it changes).
  if (!security.token_file.empty()) {
    absl::StatusOr<std::unique_ptr<Authorizer>> check = Authorizer::Create(security, nullptr);
    if (!check.ok()) return check.status();
  }
  return security;
}

absl::StatusOr<HttpServing> ServingFromFlags(security::TlsRole role) {
  HttpServing serving;
  absl::StatusOr<security::TlsFiles> tls = security::TlsFromFlags(role);
  if (!tls.ok()) return tls.status();
  serving.tls = *std::move(tls);
  serving.admin_port = absl::GetFlag(FLAGS_admin_port);
  if (serving.admin_port < -1 || serving.admin_port > 65535) {
    return absl::InvalidArgumentError("--admin-port: must be between 0 and 65535, or -1 for none");
  }
  serving.admin_max_connections = absl::GetFlag(FLAGS_admin_max_connections);
  if (absl::Status s = CheckFlagRange("--admin-max-connections", serving.admin_max_connections, 1,
                                      1024);
      !s.ok()) {
    return s;
  }
  serving.http_max_connections = absl::GetFlag(FLAGS_http_max_connections);
  if (absl::Status s =
          CheckFlagRange("--http-max-connections", serving.http_max_connections, 1, 10000);
      !s.ok()) {
    return s;
  }
  serving.http_max_streams = absl::GetFlag(FLAGS_http_max_streams);
  if (absl::Status s = CheckFlagRange("--http-max-streams", serving.http_max_streams, 0, 10000);
      !s.ok()) {
    return s;
  }
  const absl::Duration idle = absl::GetFlag(FLAGS_http_idle_timeout);
  if (idle < absl::Seconds(1) || idle > absl::Hours(1) ||
      absl::Trunc(idle, absl::Seconds(1)) != idle) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--http-idle-timeout: must be whole seconds between 1s and 1h (cpp-httplib counts "
        "seconds), not ",
        absl::FormatDuration(idle)));
  }
  serving.http_idle_timeout = std::chrono::seconds(absl::ToInt64Seconds(idle));
  serving.forward_coalescing_window = absl::GetFlag(FLAGS_forward_coalescing_window);
  if (absl::Status s =
          CheckFlagRange("--forward-coalescing-window", serving.forward_coalescing_window, 0, 64);
      !s.ok()) {
    return s;
  }
  return serving;
}

}  // namespace kiq::router
