#pragma once

#include "absl/status/statusor.h"
#include "common/security/tls.h"
#include "router/frontend.h"

namespace kiq::router {

// The flags kiq-node and kiq-router share for their HTTP side: --admin-port,
// --admin-max-connections, --http-max-connections, --http-max-streams, --http-idle-timeout, and
// --forward-coalescing-window for its gRPC side (defined in serving_flags.cc, linked into both
// binaries). Reads them once absl::ParseCommandLine has run; INVALID_ARGUMENT naming the flag and
// the reason for a bad value (the binaries then exit 2). Also the --tls-* flags
// (common/security/tls_flags.h), checked for `role`.
absl::StatusOr<HttpServing> ServingFromFlags(security::TlsRole role);

// --auth-token-file and --cluster-secret-file (else $KIQ_CLUSTER_SECRET), shared the same way:
// the secret is read here (INVALID_ARGUMENT naming its source if unreadable or too short), and
// the token file checked (INVALID_ARGUMENT naming the field path and the reason).
absl::StatusOr<Security> SecurityFromFlags();

}  // namespace kiq::router
