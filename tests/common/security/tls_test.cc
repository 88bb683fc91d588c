#include "common/security/tls.h"

#include <httplib.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>

#include <grpcpp/create_channel.h>
#include <grpcpp/generic/async_generic_service.h>
#include <grpcpp/server.h>
#include <grpcpp/server_builder.h>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/process.h"
#include "tests/testing/test_certs.h"

namespace kiq::security {
namespace {

using ::kiq::testing::MakeTempDir;
using ::kiq::testing::MakeTestPki;
using ::kiq::testing::ReplaceFile;
using ::kiq::testing::TestPki;
using ::testing::HasSubstr;

class TlsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(MakeTempDir("tls_test"));
    absl::StatusOr<TestPki> pki = MakeTestPki(*dir_);
    ASSERT_TRUE(pki.ok()) << pki.status();
    pki_ = new TestPki(*std::move(pki));
  }
  static void TearDownTestSuite() {
    std::filesystem::remove_all(*dir_);
    delete pki_;
    delete dir_;
  }

  // Server files of CA 1 (mTLS with `client_ca`), peers trusted through CA 1.
  static TlsFiles ServerFiles(bool client_ca) {
    TlsFiles files;
    files.cert_file = pki_->server_cert;
    files.key_file = pki_->server_key;
    if (client_ca) files.client_ca_file = pki_->ca_cert;
    files.ca_file = pki_->ca_cert;
    return files;
  }

  // A gRPC server on 127.0.0.1 with `credentials` and a generic service that answers nothing
  // (the handshake is the test; gRPC refuses to build a server without a service).
  std::unique_ptr<grpc::Server> StartGrpc(std::shared_ptr<grpc::ServerCredentials> credentials,
                                          int* port) {
    grpc::ServerBuilder builder;
    builder.RegisterCallbackGenericService(&generic_);
    builder.AddListeningPort("127.0.0.1:0", std::move(credentials), port);
    return builder.BuildAndStart();
  }

  // Whether a channel with `credentials` to `target` completes its (TLS) handshake.
  static bool Connects(const std::string& target,
                       std::shared_ptr<grpc::ChannelCredentials> credentials) {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);  // no connection shared between tests
    std::shared_ptr<grpc::Channel> channel =
        grpc::CreateCustomChannel(target, std::move(credentials), args);
    return channel->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(3));
  }

  static std::shared_ptr<grpc::ChannelCredentials> Client(const std::string& ca,
                                                          const std::string& cert = "",
                                                          const std::string& key = "") {
    ClientTls tls;
    tls.enabled = true;
    tls.ca_file = ca;
    tls.cert_file = cert;
    tls.key_file = key;
    absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> credentials =
        GrpcClientCredentials(tls);
    EXPECT_TRUE(credentials.ok()) << credentials.status();
    return credentials.ok() ? *credentials : nullptr;
  }

  static std::string Write(const std::string& name, const std::string& text) {
    const std::string path = absl::StrCat(*dir_, "/", name);
    std::ofstream(path) << text;
    return path;
  }

  grpc::CallbackGenericService generic_;
  static std::string* dir_;
  static TestPki* pki_;
};

std::string* TlsTest::dir_ = nullptr;
TestPki* TlsTest::pki_ = nullptr;

TEST_F(TlsTest, NoFilesIsPlaintextForEveryRole) {
  EXPECT_TRUE(CheckTlsFiles({}, TlsRole::kNode).ok());
  EXPECT_TRUE(CheckTlsFiles({}, TlsRole::kRouter).ok());
  EXPECT_FALSE(TlsFiles().serves_tls());
  EXPECT_FALSE(TlsFiles().dials_tls());
}

TEST_F(TlsTest, CompleteFilesAreAccepted) {
  EXPECT_TRUE(CheckTlsFiles(ServerFiles(/*client_ca=*/true), TlsRole::kNode).ok());
  EXPECT_TRUE(CheckTlsFiles(ServerFiles(/*client_ca=*/false), TlsRole::kRouter).ok());
  // A router may serve plaintext and dial TLS nodes.
  TlsFiles dial_only;
  dial_only.ca_file = pki_->ca_cert;
  EXPECT_TRUE(CheckTlsFiles(dial_only, TlsRole::kRouter).ok());
}

TEST_F(TlsTest, InconsistentFlagsAreRefusedNamingTheFlag) {
  TlsFiles key_only;
  key_only.key_file = pki_->server_key;
  absl::Status s = CheckTlsFiles(key_only, TlsRole::kRouter);
  EXPECT_TRUE(absl::IsInvalidArgument(s));
  EXPECT_THAT(s.message(), HasSubstr("--tls-key-file: needs --tls-cert-file"));

  TlsFiles cert_only;
  cert_only.cert_file = pki_->server_cert;
  EXPECT_THAT(CheckTlsFiles(cert_only, TlsRole::kRouter).message(),
              HasSubstr("--tls-cert-file: needs --tls-key-file"));

  TlsFiles client_ca_only;
  client_ca_only.client_ca_file = pki_->ca_cert;
  EXPECT_THAT(CheckTlsFiles(client_ca_only, TlsRole::kRouter).message(),
              HasSubstr("--tls-client-ca-file: mTLS needs TLS"));

  TlsFiles node_without_ca = ServerFiles(false);
  node_without_ca.ca_file.clear();
  EXPECT_THAT(CheckTlsFiles(node_without_ca, TlsRole::kNode).message(),
              HasSubstr("--tls-ca-file: required with --tls-cert-file on a node"));
  // ... which a router (serving TLS, dialing plaintext nodes) may do.
  EXPECT_TRUE(CheckTlsFiles(node_without_ca, TlsRole::kRouter).ok());

  TlsFiles node_dial_only;
  node_dial_only.ca_file = pki_->ca_cert;
  EXPECT_THAT(CheckTlsFiles(node_dial_only, TlsRole::kNode).message(),
              HasSubstr("--tls-ca-file: a node that dials its peers over TLS must serve TLS"));
}

TEST_F(TlsTest, UnusableFilesAreRefusedNamingTheFlagAndTheReason) {
  TlsFiles missing = ServerFiles(true);
  missing.cert_file = *dir_ + "/no-such.crt";
  absl::Status s = CheckTlsFiles(missing, TlsRole::kNode);
  EXPECT_TRUE(absl::IsInvalidArgument(s));
  EXPECT_THAT(s.message(), HasSubstr("--tls-cert-file: cannot read " + missing.cert_file +
                                     ": No such file or directory"));

  TlsFiles garbage_ca = ServerFiles(true);
  garbage_ca.client_ca_file = Write("garbage.pem", "not a certificate\n");
  EXPECT_THAT(CheckTlsFiles(garbage_ca, TlsRole::kNode).message(),
              HasSubstr("--tls-client-ca-file: no PEM certificate in " + garbage_ca.client_ca_file));

  TlsFiles garbage_peer_ca = ServerFiles(false);
  garbage_peer_ca.ca_file = garbage_ca.client_ca_file;
  EXPECT_THAT(CheckTlsFiles(garbage_peer_ca, TlsRole::kNode).message(),
              HasSubstr("--tls-ca-file: no PEM certificate"));

  TlsFiles cert_as_key = ServerFiles(false);
  cert_as_key.key_file = pki_->server_cert;
  EXPECT_THAT(CheckTlsFiles(cert_as_key, TlsRole::kNode).message(),
              HasSubstr("--tls-key-file: no unencrypted PEM private key in " + pki_->server_cert));

  TlsFiles other_key = ServerFiles(false);
  other_key.key_file = pki_->server2_key;
  EXPECT_THAT(CheckTlsFiles(other_key, TlsRole::kNode).message(),
              HasSubstr("is not the private key of the certificate in --tls-cert-file"));
}

TEST_F(TlsTest, ClientCredentialsRefuseUnusableFiles) {
  ClientTls tls;
  tls.enabled = true;
  tls.ca_file = *dir_ + "/missing-ca.crt";
  EXPECT_THAT(GrpcClientCredentials(tls).status().message(),
              HasSubstr("--tls-ca-file: cannot read"));
  tls.ca_file = pki_->ca_cert;
  tls.cert_file = pki_->client_cert;
  EXPECT_THAT(GrpcClientCredentials(tls).status().message(),
              HasSubstr("--tls-cert-file: needs --tls-key-file"));
  tls.key_file = pki_->client2_key;
  EXPECT_THAT(GrpcClientCredentials(tls).status().message(),
              HasSubstr("is not the private key"));
}

TEST_F(TlsTest, GrpcServerServesTlsToClientsThatTrustItsCa) {
  int port = 0;
  std::unique_ptr<grpc::Server> server =
      StartGrpc(GrpcServerCredentials(ServerFiles(/*client_ca=*/false)), &port);
  ASSERT_NE(server, nullptr);
  ASSERT_GT(port, 0);
  const std::string ip = absl::StrCat("127.0.0.1:", port);
  EXPECT_TRUE(Connects(ip, Client(pki_->ca_cert)));
  EXPECT_TRUE(Connects(absl::StrCat("localhost:", port), Client(pki_->ca_cert)));
  EXPECT_FALSE(Connects(ip, Client(pki_->ca2_cert)));  // another CA
  EXPECT_FALSE(Connects(ip, grpc::InsecureChannelCredentials()));
  server->Shutdown();
}

TEST_F(TlsTest, GrpcMtlsRequiresAClientCertificateOfTheClientCa) {
  int port = 0;
  std::unique_ptr<grpc::Server> server =
      StartGrpc(GrpcServerCredentials(ServerFiles(/*client_ca=*/true)), &port);
  ASSERT_NE(server, nullptr);
  const std::string target = absl::StrCat("127.0.0.1:", port);
  EXPECT_TRUE(Connects(target, Client(pki_->ca_cert, pki_->client_cert, pki_->client_key)));
  EXPECT_FALSE(Connects(target, Client(pki_->ca_cert)));
  EXPECT_FALSE(Connects(target, Client(pki_->ca_cert, pki_->client2_cert, pki_->client2_key)));
  // A peer presents its own server certificate as its client identity.
  EXPECT_TRUE(Connects(target, GrpcPeerCredentials(ServerFiles(/*client_ca=*/true))));
  server->Shutdown();
}

TEST_F(TlsTest, PeerCredentialsCheckThePeersHostName) {
  TlsFiles wrong = ServerFiles(false);
  wrong.cert_file = pki_->wrong_host_cert;
  wrong.key_file = pki_->wrong_host_key;
  int port = 0;
  std::unique_ptr<grpc::Server> server = StartGrpc(GrpcServerCredentials(wrong), &port);
  ASSERT_NE(server, nullptr);
  const std::string target = absl::StrCat("127.0.0.1:", port);
  // Signed by the trusted CA, but for another host.
  EXPECT_FALSE(Connects(target, GrpcPeerCredentials(ServerFiles(false))));
  EXPECT_FALSE(Connects(target, Client(pki_->ca_cert)));
  server->Shutdown();
}

// An HTTPS server with a ServerTlsContext, as router/http_server.cc builds it.
class HttpsServer {
 public:
  explicit HttpsServer(std::shared_ptr<ServerTlsContext> context)
      : context_(std::move(context)),
        server_([this](SSL_CTX& ctx) { return context_->Configure(ctx); }) {
    server_.Get("/ping", [](const httplib::Request&, httplib::Response& res) {
      res.set_content("pong", "text/plain");
    });
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    while (!server_.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ~HttpsServer() {
    server_.stop();
    thread_.join();
  }
  int port() const { return port_; }

 private:
  std::shared_ptr<ServerTlsContext> context_;
  httplib::SSLServer server_;
  int port_ = 0;
  std::thread thread_;
};

// The body of GET /ping over HTTPS trusting `ca` (with a client certificate if given), or
// "error" if the request failed.
std::string Ping(int port, const std::string& ca, const std::string& cert = "",
                 const std::string& key = "") {
  std::unique_ptr<httplib::SSLClient> client =
      cert.empty() ? std::make_unique<httplib::SSLClient>("127.0.0.1", port)
                   : std::make_unique<httplib::SSLClient>("127.0.0.1", port, cert, key);
  client->set_ca_cert_path(ca.c_str());
  client->enable_server_certificate_verification(true);
  client->set_connection_timeout(3);
  httplib::Result result = client->Get("/ping");
  return result ? result->body : "error";
}

TEST_F(TlsTest, HttpsServesTheCertificateAndRequiresClientCertificates) {
  absl::StatusOr<std::shared_ptr<ServerTlsContext>> context =
      ServerTlsContext::Open(ServerFiles(/*client_ca=*/true));
  ASSERT_TRUE(context.ok()) << context.status();
  HttpsServer server(*context);
  EXPECT_EQ(Ping(server.port(), pki_->ca_cert, pki_->client_cert, pki_->client_key), "pong");
  EXPECT_EQ(Ping(server.port(), pki_->ca_cert), "error");  // no client certificate
  EXPECT_EQ(Ping(server.port(), pki_->ca_cert, pki_->client2_cert, pki_->client2_key), "error");
  EXPECT_EQ(Ping(server.port(), pki_->ca2_cert, pki_->client_cert, pki_->client_key), "error");
  httplib::Client plain("127.0.0.1", server.port());
  plain.set_connection_timeout(3);
  EXPECT_FALSE(plain.Get("/ping"));
}

TEST_F(TlsTest, HttpsTakesUpRewrittenFilesAndKeepsTheOldPairUntilTheyMatch) {
  const std::string dir = MakeTempDir("tls_reload");
  TlsFiles files;
  files.cert_file = dir + "/tls.crt";
  files.key_file = dir + "/tls.key";
  ASSERT_TRUE(ReplaceFile(pki_->server_cert, files.cert_file).ok());
  ASSERT_TRUE(ReplaceFile(pki_->server_key, files.key_file).ok());
  absl::StatusOr<std::shared_ptr<ServerTlsContext>> context =
      ServerTlsContext::Open(files, /*refresh=*/absl::ZeroDuration());
  ASSERT_TRUE(context.ok()) << context.status();
  HttpsServer server(*context);
  EXPECT_EQ(Ping(server.port(), pki_->ca_cert), "pong");

  // Half a rotation: CA 2's certificate with CA 1's key. The old pair keeps serving.
  ASSERT_TRUE(ReplaceFile(pki_->server2_cert, files.cert_file).ok());
  EXPECT_EQ(Ping(server.port(), pki_->ca_cert), "pong");
  EXPECT_EQ(Ping(server.port(), pki_->ca2_cert), "error");
  EXPECT_EQ((*context)->reloads(), 0);

  ASSERT_TRUE(ReplaceFile(pki_->server2_key, files.key_file).ok());
  EXPECT_EQ(Ping(server.port(), pki_->ca2_cert), "pong");
  EXPECT_EQ(Ping(server.port(), pki_->ca_cert), "error");
  EXPECT_EQ((*context)->reloads(), 1);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace kiq::security
