#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include <grpcpp/security/credentials.h>
#include <grpcpp/security/server_credentials.h>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

// OpenSSL's types, without its headers in ours.
typedef struct ssl_ctx_st SSL_CTX;
typedef struct ssl_st SSL;

namespace kiq::security {

// How often rewritten certificate, key and CA files are looked at again (gRPC's file watcher
// and the HTTP port's context alike): a certificate rotated in place (cert-manager, a
// Kubernetes Secret update) is served within about this long, without a restart.
inline constexpr absl::Duration kTlsRefreshInterval = absl::Seconds(5);

// The PEM files of a process's TLS side, as kiq-node's and kiq-router's --tls-* flags name
// them. All empty: plaintext everywhere (the default).
struct TlsFiles {
  // The gRPC and HTTP ports' certificate chain (leaf first) and its private key. Also the
  // identity the process presents when it dials a peer (mTLS between nodes).
  std::string cert_file;
  std::string key_file;
  // mTLS: clients of the gRPC and HTTP ports must present a certificate signed by this CA.
  std::string client_ca_file;
  // The CA that signs the peers' server certificates: channels to peers (forwarding,
  // scatter-gather, remote position waits, fan-in) use TLS and verify the peer's host.
  std::string ca_file;

  bool serves_tls() const { return !cert_file.empty(); }
  bool dials_tls() const { return !ca_file.empty(); }
};

// Which process the files configure: a kiq-node serves peers as well as dials them, so it
// needs both halves or neither; kiq-router only dials them.
enum class TlsRole { kNode, kRouter };

// Checks the combination of files and their contents: a key without its certificate (or the
// reverse), a client CA without a certificate, a node with only one half; every file readable
// PEM, the key the certificate's. INVALID_ARGUMENT naming the flag and the reason.
absl::Status CheckTlsFiles(const TlsFiles& files, TlsRole role);

// TLS credentials for the gRPC port (`files.serves_tls()` must hold), reloaded from the files
// every kTlsRefreshInterval; with a client CA, client certificates are required and verified.
std::shared_ptr<grpc::ServerCredentials> GrpcServerCredentials(const TlsFiles& files);

// Credentials for channels to peers (`files.dials_tls()` must hold): the peer's certificate
// is verified against ca_file and its host name (the advertised host must be in its SAN);
// with a certificate, it is presented as the client identity. Files are watched as above.
std::shared_ptr<grpc::ChannelCredentials> GrpcPeerCredentials(const TlsFiles& files);

// What a client (kiqctl, the C++ client, kiq-bench-load) uses to dial over TLS.
struct ClientTls {
  bool enabled = false;
  // Empty: the system's roots (gRPC's default).
  std::string ca_file;
  // mTLS: both or neither.
  std::string cert_file;
  std::string key_file;
};

// Credentials for a client, the files read once. INVALID_ARGUMENT naming the file and the
// reason (unreadable, not PEM, key without certificate).
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> GrpcClientCredentials(
    const ClientTls& tls);

// The HTTP port's TLS: the certificate, key and client CA that the next handshake uses,
// re-read from the files when kTlsRefreshInterval (or the interval given) has passed since the
// last look; a new set is used only if it parses and the key matches the certificate (a
// rotation that has written the certificate but not yet the key keeps the old pair). Handshakes
// read it through an OpenSSL certificate callback installed by Configure.
//
// Thread-safe: handshakes run concurrently on the HTTP port's workers; the current set is an
// immutable snapshot swapped under mu_, and files are read without holding it.
class ServerTlsContext {
 public:
  // INVALID_ARGUMENT as CheckTlsFiles if the files cannot be used now.
  static absl::StatusOr<std::shared_ptr<ServerTlsContext>> Open(
      const TlsFiles& files, absl::Duration refresh = kTlsRefreshInterval);
  ~ServerTlsContext();

  // Sets up an SSL_CTX (httplib's SSLServer callback): TLS 1.2 or later, the certificate
  // callback. The context must not outlive this object. Returns false if OpenSSL refuses.
  bool Configure(SSL_CTX& ctx);

  // How many times a changed set of files has been taken up since Open.
  int64_t reloads() const ABSL_LOCKS_EXCLUDED(mu_);

  struct Material;

 private:
  ServerTlsContext(TlsFiles files, absl::Duration refresh, std::shared_ptr<const Material> m);
  static int OnCertificate(SSL* ssl, void* self);
  // The set to use now, re-read first if it is time.
  std::shared_ptr<const Material> Current() ABSL_LOCKS_EXCLUDED(mu_);

  const TlsFiles files_;
  const absl::Duration refresh_;
  mutable absl::Mutex mu_;
  std::shared_ptr<const Material> current_ ABSL_GUARDED_BY(mu_);
  absl::Time next_check_ ABSL_GUARDED_BY(mu_);
  int64_t reloads_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace kiq::security
