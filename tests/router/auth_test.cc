// The Authorizer's decisions, one test per class of call: open without configuration; bearer
// tokens (missing, malformed, unknown, forbidden store, allowed, "*"); peer credentials (valid,
// expired, another secret, a forwarded call without them); denials counted by reason; the
// token file re-read when it changes, an invalid new file keeping the old tokens; bad
// configuration refused with the flag and the field path.
#include <cstdio>
#include <fstream>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <prometheus/registry.h>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/security/crypto.h"
#include "router/auth.h"
#include "tests/testing/status_matchers.h"

namespace kiq::router {
namespace {

using ::kiq::testing::StatusIs;
using ::testing::HasSubstr;

security::ClusterSecret Secret(absl::string_view text) {
  absl::StatusOr<security::ClusterSecret> secret = security::ClusterSecret::FromText(text, "test");
  EXPECT_TRUE(secret.ok()) << secret.status();
  return *secret;
}

double Denied(prometheus::Registry& registry, const std::string& reason) {
  for (const prometheus::MetricFamily& family : registry.Collect()) {
    if (family.name != "kiq_auth_denied_total") continue;
    for (const prometheus::ClientMetric& metric : family.metric) {
      for (const prometheus::ClientMetric::Label& label : metric.label) {
        if (label.name == "reason" && label.value == reason) return metric.counter.value;
      }
    }
  }
  return -1;
}

CallCredentials Bearer(absl::string_view header) {
  CallCredentials call;
  call.authorization = header;
  return call;
}

class AuthorizerTest : public ::testing::Test {
 protected:
  AuthorizerTest() {
    char tmpl[] = "/tmp/kiq-auth-test-XXXXXX";
    dir_ = mkdtemp(tmpl);
    path_ = dir_ + "/tokens.yaml";
  }
  ~AuthorizerTest() override {
    std::remove(path_.c_str());
    std::remove(dir_.c_str());
  }
  void WriteTokens(const std::string& text) {
    std::ofstream(path_, std::ios::trunc) << text;
  }
  std::unique_ptr<Authorizer> Make() {
    Security security;
    security.token_file = path_;
    security.cluster_secret = Secret("the-cluster-secret-1");
    // Reloads are driven by the test (Reload), not the poll thread.
    security.token_file_poll = absl::Hours(1);
    absl::StatusOr<std::unique_ptr<Authorizer>> auth = Authorizer::Create(security, &registry_);
    EXPECT_TRUE(auth.ok()) << auth.status();
    return auth.ok() ? *std::move(auth) : nullptr;
  }

  std::string dir_;
  std::string path_;
  prometheus::Registry registry_;
};

constexpr char kTwoTokens[] =
    "tokens:\n"
    "  - {name: dashboards, token: dash-token, stores: [order_count]}\n"
    "  - {name: ops, token: ops-token, stores: ['*']}\n";

TEST(AuthorizerOpenTest, UnconfiguredAdmitsEveryCall) {
  auto auth = Authorizer::Create(Security{}, nullptr);
  ASSERT_OK(auth);
  EXPECT_TRUE((*auth)->Check(CallCredentials{}, "order_count").ok());
  CallCredentials forwarded;
  forwarded.forwarded = true;
  EXPECT_TRUE((*auth)->Check(forwarded, "order_count").ok());
  EXPECT_TRUE((*auth)->CheckPeer(CallCredentials{}).ok());
}

TEST_F(AuthorizerTest, TokensDecideByStore) {
  WriteTokens(kTwoTokens);
  auto auth = Make();
  ASSERT_NE(auth, nullptr);
  EXPECT_TRUE(auth->Check(Bearer("Bearer dash-token"), "order_count").ok());
  EXPECT_TRUE(auth->Check(Bearer("bearer  dash-token "), "order_count").ok());
  EXPECT_TRUE(auth->Check(Bearer("Bearer ops-token"), "customers").ok());
  EXPECT_TRUE(auth->Check(Bearer("Bearer dash-token"), "").ok());  // AllNodes

  grpc::Status s = auth->Check(Bearer("Bearer dash-token"), "customers");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(s.error_message(), HasSubstr("token 'dashboards' may not read store \"customers\""));
  EXPECT_EQ(Denied(registry_, "forbidden"), 1);

  s = auth->Check(CallCredentials{}, "order_count");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_THAT(s.error_message(), HasSubstr("bearer token is required"));
  EXPECT_EQ(auth->Check(Bearer("Basic abc"), "order_count").error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(Denied(registry_, "missing"), 2);

  s = auth->Check(Bearer("Bearer dash-tokem"), "order_count");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_THAT(s.error_message(), HasSubstr("unknown bearer token"));
  EXPECT_THAT(s.error_message(), ::testing::Not(HasSubstr("dash-tokem")));
  EXPECT_EQ(Denied(registry_, "unknown"), 1);
}

TEST_F(AuthorizerTest, PeersNeedFreshCredentialsFromTheSameSecret) {
  WriteTokens(kTwoTokens);
  auto auth = Make();
  ASSERT_NE(auth, nullptr);
  const std::string good = Secret("the-cluster-secret-1").PeerToken(absl::Now());
  const std::string expired =
      Secret("the-cluster-secret-1").PeerToken(absl::Now() - absl::Minutes(5));
  const std::string other = Secret("another-secret-of-16").PeerToken(absl::Now());

  CallCredentials peer;
  peer.peer_auth = good;
  peer.forwarded = true;
  EXPECT_TRUE(auth->CheckPeer(peer).ok());
  // A forwarded query needs no user token: the entry node checked it.
  EXPECT_TRUE(auth->Check(peer, "customers").ok());

  EXPECT_EQ(auth->CheckPeer(CallCredentials{}).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  for (const std::string& bad : {expired, other, std::string("garbage")}) {
    CallCredentials call;
    call.peer_auth = bad;
    EXPECT_EQ(auth->CheckPeer(call).error_code(), grpc::StatusCode::UNAUTHENTICATED) << bad;
    // Even with a good user token: bad peer credentials are not ignored.
    call.authorization = "Bearer ops-token";
    EXPECT_EQ(auth->Check(call, "customers").error_code(), grpc::StatusCode::UNAUTHENTICATED);
  }
  // Claiming to be forwarded without peer credentials: refused, whatever the token.
  CallCredentials claim = Bearer("Bearer ops-token");
  claim.forwarded = true;
  grpc::Status s = auth->Check(claim, "customers");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_THAT(s.error_message(), HasSubstr("forwarded call needs valid peer credentials"));
  EXPECT_EQ(Denied(registry_, "peer"), 8);
}

TEST_F(AuthorizerTest, ChangedFileIsReloadedAndAnInvalidOneKeepsTheOldTokens) {
  WriteTokens(kTwoTokens);
  auto auth = Make();
  ASSERT_NE(auth, nullptr);
  EXPECT_TRUE(auth->Check(Bearer("Bearer ops-token"), "customers").ok());

  WriteTokens("tokens:\n  - {name: dashboards, token: dash-token, stores: [order_count]}\n");
  EXPECT_TRUE(auth->Reload());
  EXPECT_EQ(auth->Check(Bearer("Bearer ops-token"), "customers").error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_TRUE(auth->Check(Bearer("Bearer dash-token"), "order_count").ok());

  WriteTokens("tokens: [{name: x}]\n");
  EXPECT_FALSE(auth->Reload());
  EXPECT_TRUE(auth->Check(Bearer("Bearer dash-token"), "order_count").ok());
  std::remove(path_.c_str());
  EXPECT_FALSE(auth->Reload());
  EXPECT_TRUE(auth->Check(Bearer("Bearer dash-token"), "order_count").ok());

  WriteTokens("tokens:\n  - {name: new, token: new-token, stores: [customers]}\n");
  EXPECT_TRUE(auth->Reload());
  EXPECT_TRUE(auth->Check(Bearer("Bearer new-token"), "customers").ok());
  EXPECT_EQ(auth->Check(Bearer("Bearer dash-token"), "order_count").error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
}

TEST_F(AuthorizerTest, ThePollThreadPicksUpAChange) {
  WriteTokens(kTwoTokens);
  Security security;
  security.token_file = path_;
  security.cluster_secret = Secret("the-cluster-secret-1");
  security.token_file_poll = absl::Milliseconds(20);
  auto auth = Authorizer::Create(security, nullptr);
  ASSERT_OK(auth);
  WriteTokens("tokens: []\n");
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while ((*auth)->Check(Bearer("Bearer ops-token"), "customers").ok() && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_EQ((*auth)->Check(Bearer("Bearer ops-token"), "customers").error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
}

TEST_F(AuthorizerTest, BadConfigurationIsRefusedWithTheFlagAndTheFieldPath) {
  WriteTokens("tokens: [{name: a, sha256: abc, stores: [s]}]\n");
  Security security;
  security.token_file = path_;
  security.cluster_secret = Secret("the-cluster-secret-1");
  EXPECT_THAT(Authorizer::Create(security, nullptr),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       absl::StrCat("--auth-token-file: ", path_, ": tokens[0].sha256: must be 64 hex")));
  security.token_file = dir_ + "/missing.yaml";
  EXPECT_THAT(Authorizer::Create(security, nullptr),
              StatusIs(absl::StatusCode::kInvalidArgument, "--auth-token-file: cannot read"));
  WriteTokens(kTwoTokens);
  security.token_file = path_;
  security.cluster_secret.reset();
  EXPECT_THAT(Authorizer::Create(security, nullptr),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "--auth-token-file: needs a cluster secret too"));
}

}  // namespace
}  // namespace kiq::router
