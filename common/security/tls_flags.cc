#include "common/security/tls_flags.h"

#include <string>

#include "absl/flags/flag.h"

ABSL_FLAG(std::string, tls_cert_file, "",
          "PEM certificate chain (leaf first) of the gRPC and HTTP ports: they serve TLS "
          "(default: plaintext). Also the identity presented to peers. Re-read when rewritten "
          "(every 5s); the admin port stays plaintext.");
ABSL_FLAG(std::string, tls_key_file, "",
          "PEM private key (unencrypted) of --tls-cert-file; re-read with it.");
ABSL_FLAG(std::string, tls_client_ca_file, "",
          "mTLS: clients of the gRPC and HTTP ports must present a certificate signed by a CA "
          "in this PEM bundle (needs --tls-cert-file).");
ABSL_FLAG(std::string, tls_ca_file, "",
          "PEM bundle of the CA(s) that sign the peers' certificates: channels to other nodes "
          "use TLS and check that the peer's certificate names its advertised host. Required "
          "on a node with --tls-cert-file.");

namespace kiq::security {

absl::StatusOr<TlsFiles> TlsFromFlags(TlsRole role) {
  TlsFiles files;
  files.cert_file = absl::GetFlag(FLAGS_tls_cert_file);
  files.key_file = absl::GetFlag(FLAGS_tls_key_file);
  files.client_ca_file = absl::GetFlag(FLAGS_tls_client_ca_file);
  files.ca_file = absl::GetFlag(FLAGS_tls_ca_file);
  if (absl::Status s = CheckTlsFiles(files, role); !s.ok()) return s;
  return files;
}

}  // namespace kiq::security
