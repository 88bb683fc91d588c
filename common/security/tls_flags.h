#pragma once

#include "absl/status/statusor.h"
#include "common/security/tls.h"

namespace kiq::security {

// kiq-node's and kiq-router's --tls-cert-file, --tls-key-file, --tls-client-ca-file and
// --tls-ca-file (defined in tls_flags.cc, linked into both binaries), read once
// absl::ParseCommandLine has run and checked with CheckTlsFiles for `role`.
absl::StatusOr<TlsFiles> TlsFromFlags(TlsRole role);

}  // namespace kiq::security
