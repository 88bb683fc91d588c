#include "common/security/tls.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <utility>
#include <vector>

#include <grpcpp/security/tls_certificate_provider.h>
#include <grpcpp/security/tls_certificate_verifier.h>
#include <grpcpp/security/tls_credentials_options.h>

#include "absl/strings/str_cat.h"
#include "common/logging.h"

namespace kiq::security {
namespace {

struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
struct KeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
struct StoreFree {
  void operator()(X509_STORE* s) const { X509_STORE_free(s); }
};
struct ChainFree {
  void operator()(STACK_OF(X509) * s) const { sk_X509_pop_free(s, X509_free); }
};
struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
using X509Ptr = std::unique_ptr<X509, X509Free>;
using KeyPtr = std::unique_ptr<EVP_PKEY, KeyFree>;
using StorePtr = std::unique_ptr<X509_STORE, StoreFree>;
using ChainPtr = std::unique_ptr<STACK_OF(X509), ChainFree>;

// OpenSSL keeps its errors in a per-thread queue: the oldest says what went wrong; the queue is
// emptied so that a later call does not report this one.
std::string OpenSslError() {
  const unsigned long code = ERR_get_error();
  ERR_clear_error();
  if (code == 0) return "no PEM data";
  char text[256];
  ERR_error_string_n(code, text, sizeof(text));
  return text;
}

absl::StatusOr<std::string> ReadFile(const std::string& flag, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, ": cannot read ", path, ": ", std::strerror(errno)));
  }
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) {
    return absl::InvalidArgumentError(absl::StrCat(flag, ": cannot read ", path));
  }
  return text.str();
}

// Every certificate of a PEM bundle, in file order; at least one.
absl::StatusOr<std::vector<X509Ptr>> ParseCertificates(const std::string& flag,
                                                       const std::string& path,
                                                       const std::string& pem) {
  std::unique_ptr<BIO, BioFree> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  std::vector<X509Ptr> certs;
  while (X509* cert = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) {
    certs.emplace_back(cert);
  }
  // The loop ends on "no start line" at the end of the data: not an error once one was read.
  const std::string error = OpenSslError();
  if (certs.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, ": no PEM certificate in ", path, " (", error, ")"));
  }
  return certs;
}

absl::StatusOr<KeyPtr> ParseKey(const std::string& path, const std::string& pem) {
  std::unique_ptr<BIO, BioFree> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  KeyPtr key(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
  if (!key) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--tls-key-file: no unencrypted PEM private key in ", path, " (", OpenSslError(), ")"));
  }
  return key;
}

absl::Status CheckCaFile(const std::string& flag, const std::string& path) {
  absl::StatusOr<std::string> pem = ReadFile(flag, path);
  if (!pem.ok()) return pem.status();
  return ParseCertificates(flag, path, *pem).status();
}

}  // namespace

// One parsed set of files; immutable once built.
struct ServerTlsContext::Material {
  std::string cert_pem, key_pem, client_ca_pem;  // to tell whether the files changed
  X509Ptr leaf;
  ChainPtr chain;  // the intermediates after the leaf (may be empty)
  KeyPtr key;
  StorePtr client_ca;  // null without mTLS
};

namespace {

absl::StatusOr<std::shared_ptr<const ServerTlsContext::Material>> LoadMaterial(
    const TlsFiles& files) {
  auto m = std::make_shared<ServerTlsContext::Material>();
  absl::StatusOr<std::string> cert_pem = ReadFile("--tls-cert-file", files.cert_file);
  if (!cert_pem.ok()) return cert_pem.status();
  absl::StatusOr<std::string> key_pem = ReadFile("--tls-key-file", files.key_file);
  if (!key_pem.ok()) return key_pem.status();
  m->cert_pem = *std::move(cert_pem);
  m->key_pem = *std::move(key_pem);
  absl::StatusOr<std::vector<X509Ptr>> certs =
      ParseCertificates("--tls-cert-file", files.cert_file, m->cert_pem);
  if (!certs.ok()) return certs.status();
  absl::StatusOr<KeyPtr> key = ParseKey(files.key_file, m->key_pem);
  if (!key.ok()) return key.status();
  m->key = *std::move(key);
  m->leaf = std::move(certs->front());
  if (X509_check_private_key(m->leaf.get(), m->key.get()) != 1) {
    ERR_clear_error();
    return absl::InvalidArgumentError(
        absl::StrCat("--tls-key-file: ", files.key_file,
                     " is not the private key of the certificate in --tls-cert-file ",
                     files.cert_file));
  }
  m->chain.reset(sk_X509_new_null());
  for (size_t i = 1; i < certs->size(); ++i) sk_X509_push(m->chain.get(), (*certs)[i].release());
  if (!files.client_ca_file.empty()) {
    absl::StatusOr<std::string> ca_pem = ReadFile("--tls-client-ca-file", files.client_ca_file);
    if (!ca_pem.ok()) return ca_pem.status();
    m->client_ca_pem = *std::move(ca_pem);
    absl::StatusOr<std::vector<X509Ptr>> cas =
        ParseCertificates("--tls-client-ca-file", files.client_ca_file, m->client_ca_pem);
    if (!cas.ok()) return cas.status();
    m->client_ca.reset(X509_STORE_new());
    for (const X509Ptr& ca : *cas) X509_STORE_add_cert(m->client_ca.get(), ca.get());
  }
  return std::shared_ptr<const ServerTlsContext::Material>(std::move(m));
}

}  // namespace

absl::Status CheckTlsFiles(const TlsFiles& files, TlsRole role) {
  if (!files.key_file.empty() && files.cert_file.empty()) {
    return absl::InvalidArgumentError("--tls-key-file: needs --tls-cert-file (its certificate)");
  }
  if (!files.cert_file.empty() && files.key_file.empty()) {
    return absl::InvalidArgumentError("--tls-cert-file: needs --tls-key-file (its private key)");
  }
  if (!files.client_ca_file.empty() && files.cert_file.empty()) {
    return absl::InvalidArgumentError(
        "--tls-client-ca-file: mTLS needs TLS: give --tls-cert-file and --tls-key-file too");
  }
  if (role == TlsRole::kNode && files.serves_tls() != files.dials_tls()) {
    // Peers dial each other as they are served: a node serving TLS that dialed its peers in
    // plaintext (or the reverse) could not forward a single call.
    return absl::InvalidArgumentError(
        files.serves_tls()
            ? "--tls-ca-file: required with --tls-cert-file on a node (the CA that signs the "
              "peers' certificates: nodes dial each other over TLS)"
            : "--tls-ca-file: a node that dials its peers over TLS must serve TLS too: give "
              "--tls-cert-file and --tls-key-file");
  }
  if (files.serves_tls()) {
    if (absl::StatusOr<std::shared_ptr<const ServerTlsContext::Material>> m = LoadMaterial(files);
        !m.ok()) {
      return m.status();
    }
  }
  if (files.dials_tls()) {
    if (absl::Status s = CheckCaFile("--tls-ca-file", files.ca_file); !s.ok()) return s;
  }
  return absl::OkStatus();
}

std::shared_ptr<grpc::ServerCredentials> GrpcServerCredentials(const TlsFiles& files) {
  const auto refresh = static_cast<unsigned int>(absl::ToInt64Seconds(kTlsRefreshInterval));
  auto provider = std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
      files.key_file, files.cert_file, files.client_ca_file, refresh);
  grpc::experimental::TlsServerCredentialsOptions options(provider);
  options.watch_identity_key_cert_pairs();
  if (!files.client_ca_file.empty()) {
    options.watch_root_certs();
    options.set_cert_request_type(GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  }
  return grpc::experimental::TlsServerCredentials(options);
}

std::shared_ptr<grpc::ChannelCredentials> GrpcPeerCredentials(const TlsFiles& files) {
  const auto refresh = static_cast<unsigned int>(absl::ToInt64Seconds(kTlsRefreshInterval));
  auto provider = std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
      files.key_file, files.cert_file, files.ca_file, refresh);
  grpc::experimental::TlsChannelCredentialsOptions options;
  options.set_certificate_provider(provider);
  options.watch_root_certs();
  if (files.serves_tls()) options.watch_identity_key_cert_pairs();
  options.set_verify_server_certs(true);
  // The peer's certificate must name the host it is dialed by (its advertised host).
  options.set_certificate_verifier(
      std::make_shared<grpc::experimental::HostNameCertificateVerifier>());
  return grpc::experimental::TlsCredentials(options);
}

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> GrpcClientCredentials(
    const ClientTls& tls) {
  if (!tls.enabled) return grpc::InsecureChannelCredentials();
  if (tls.cert_file.empty() != tls.key_file.empty()) {
    return absl::InvalidArgumentError(
        tls.cert_file.empty() ? "--tls-key-file: needs --tls-cert-file (its certificate)"
                              : "--tls-cert-file: needs --tls-key-file (its private key)");
  }
  grpc::SslCredentialsOptions options;
  if (!tls.ca_file.empty()) {
    absl::StatusOr<std::string> ca = ReadFile("--tls-ca-file", tls.ca_file);
    if (!ca.ok()) return ca.status();
    if (absl::Status s = ParseCertificates("--tls-ca-file", tls.ca_file, *ca).status(); !s.ok()) {
      return s;
    }
    options.pem_root_certs = *std::move(ca);
  }
  if (!tls.cert_file.empty()) {
    TlsFiles files;
    files.cert_file = tls.cert_file;
    files.key_file = tls.key_file;
    absl::StatusOr<std::shared_ptr<const ServerTlsContext::Material>> m = LoadMaterial(files);
    if (!m.ok()) return m.status();
    options.pem_cert_chain = (*m)->cert_pem;
    options.pem_private_key = (*m)->key_pem;
  }
  return grpc::SslCredentials(options);
}

absl::StatusOr<std::shared_ptr<ServerTlsContext>> ServerTlsContext::Open(const TlsFiles& files,
                                                                        absl::Duration refresh) {
  absl::StatusOr<std::shared_ptr<const Material>> m = LoadMaterial(files);
  if (!m.ok()) return m.status();
  return std::shared_ptr<ServerTlsContext>(new ServerTlsContext(files, refresh, *std::move(m)));
}

ServerTlsContext::ServerTlsContext(TlsFiles files, absl::Duration refresh,
                                   std::shared_ptr<const Material> m)
    : files_(std::move(files)),
      refresh_(refresh),
      current_(std::move(m)),
      next_check_(absl::Now() + refresh) {}

ServerTlsContext::~ServerTlsContext() = default;

bool ServerTlsContext::Configure(SSL_CTX& ctx) {
  if (SSL_CTX_set_min_proto_version(&ctx, TLS1_2_VERSION) != 1) return false;
  SSL_CTX_set_options(&ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
  SSL_CTX_set_cert_cb(&ctx, &ServerTlsContext::OnCertificate, this);
  return true;
}

int64_t ServerTlsContext::reloads() const {
  absl::MutexLock lock(&mu_);
  return reloads_;
}

std::shared_ptr<const ServerTlsContext::Material> ServerTlsContext::Current() {
  std::shared_ptr<const Material> current;
  {
    absl::MutexLock lock(&mu_);
    if (absl::Now() < next_check_) return current_;
    // This thread looks at the files; handshakes meanwhile use the current set.
    next_check_ = absl::Now() + refresh_;
    current = current_;
  }
  absl::StatusOr<std::shared_ptr<const Material>> fresh = LoadMaterial(files_);
  if (!fresh.ok()) {
    // Mid-rotation (certificate written, key not yet) or a broken update: keep serving the
    // last good set and look again after the interval.
    spdlog::warn("HTTP TLS: keeping the current certificate: {}", fresh.status().message());
    return current;
  }
  if ((*fresh)->cert_pem == current->cert_pem && (*fresh)->key_pem == current->key_pem &&
      (*fresh)->client_ca_pem == current->client_ca_pem) {
    return current;
  }
  spdlog::info("HTTP TLS: certificate files changed; serving the new certificate {}",
               files_.cert_file);
  absl::MutexLock lock(&mu_);
  current_ = *fresh;
  ++reloads_;
  return current_;
}

int ServerTlsContext::OnCertificate(SSL* ssl, void* self) {
  const std::shared_ptr<const Material> m = static_cast<ServerTlsContext*>(self)->Current();
  // Each call takes its own reference: the SSL keeps what it uses after a swap.
  if (SSL_use_certificate(ssl, m->leaf.get()) != 1 || SSL_use_PrivateKey(ssl, m->key.get()) != 1 ||
      SSL_set1_chain(ssl, m->chain.get()) != 1) {
    ERR_clear_error();
    return 0;
  }
  if (m->client_ca) {
    if (SSL_set1_verify_cert_store(ssl, m->client_ca.get()) != 1) {
      ERR_clear_error();
      return 0;
    }
    SSL_set_verify(ssl, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
  }
  return 1;
}

}  // namespace kiq::security
