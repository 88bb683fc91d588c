#include <sstream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "client/kiqctl.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace kiq::client {
namespace {

using ::kiq::testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::StartsWith;

// Fails the test if kiqctl tries to reach a server: parsing errors must stop before that.
absl::StatusOr<std::unique_ptr<Client>> NoClient(const std::string& target, ClientOptions) {
  ADD_FAILURE() << "unexpected connect to " << target;
  return absl::InternalError("no client in this test");
}

TEST(ParseKiqctlArgsTest, GetWithDefaults) {
  absl::StatusOr<KiqctlArgs> args = ParseKiqctlArgs({"get", "orders", "a"}, "");
  ASSERT_OK(args);
  EXPECT_EQ(args->command, KiqctlCommand::kGet);
  EXPECT_EQ(args->target, "localhost:7070");
  EXPECT_FALSE(args->json);
  EXPECT_EQ(args->timeout, absl::Seconds(10));
  EXPECT_EQ(args->store, "orders");
  EXPECT_EQ(args->key, "a");
}

TEST(ParseKiqctlArgsTest, TlsFlagsTurnTlsOnForEveryCommand) {
  absl::StatusOr<KiqctlArgs> plain = ParseKiqctlArgs({"get", "orders", "a"}, "");
  ASSERT_OK(plain);
  EXPECT_FALSE(plain->tls.enabled);

  absl::StatusOr<KiqctlArgs> system_roots = ParseKiqctlArgs({"--tls", "count", "orders"}, "");
  ASSERT_OK(system_roots);
  EXPECT_TRUE(system_roots->tls.enabled);
  EXPECT_EQ(system_roots->tls.ca_file, "");

  absl::StatusOr<KiqctlArgs> mtls = ParseKiqctlArgs(
      {"subscribe", "orders", "--tls-ca-file=ca.crt", "--tls-cert-file", "c.crt",
       "--tls-key-file", "c.key"},
      "");
  ASSERT_OK(mtls);
  EXPECT_EQ(mtls->command, KiqctlCommand::kSubscribe);
  EXPECT_TRUE(mtls->tls.enabled);
  EXPECT_EQ(mtls->tls.ca_file, "ca.crt");
  EXPECT_EQ(mtls->tls.cert_file, "c.crt");
  EXPECT_EQ(mtls->tls.key_file, "c.key");
}

TEST(ParseKiqctlArgsTest, IncompleteTlsFlagsAreUsageErrors) {
  EXPECT_THAT(ParseKiqctlArgs({"get", "s", "k", "--tls-cert-file=c.crt"}, "").status().message(),
              HasSubstr("--tls-cert-file needs --tls-key-file"));
  EXPECT_THAT(ParseKiqctlArgs({"get", "s", "k", "--tls-key-file=c.key"}, "").status().message(),
              HasSubstr("--tls-key-file needs --tls-cert-file"));
  EXPECT_THAT(ParseKiqctlArgs({"get", "s", "k", "--tls-ca-file="}, "").status().message(),
              HasSubstr("--tls-ca-file must not be empty"));
  EXPECT_THAT(ParseKiqctlArgs({"get", "s", "k", "--tls=yes"}, "").status().message(),
              HasSubstr("--tls takes no value"));
}

TEST(ParseKiqctlArgsTest, TokenFileIsTakenAndMustNotBeEmpty) {
  absl::StatusOr<KiqctlArgs> args = ParseKiqctlArgs({"count", "orders", "--token-file", "/t"}, "");
  ASSERT_TRUE(args.ok()) << args.status();
  EXPECT_EQ(args->token_file, "/t");
  EXPECT_THAT(ParseKiqctlArgs({"count", "orders", "--token-file="}, ""),
              StatusIs(absl::StatusCode::kInvalidArgument, "--token-file must not be empty"));
}

TEST(ParseKiqctlArgsTest, StaleReadsWithAnOptionalBound) {
  absl::StatusOr<KiqctlArgs> args = ParseKiqctlArgs({"get", "orders", "a", "--stale"}, "");
  ASSERT_OK(args);
  EXPECT_TRUE(args->allow_stale);
  EXPECT_EQ(args->max_lag_records, 0);
  args = ParseKiqctlArgs({"--stale", "--max-lag=100", "window-fetch", "w", "k"}, "");
  ASSERT_OK(args);
  EXPECT_TRUE(args->allow_stale);
  EXPECT_EQ(args->max_lag_records, 100);
  EXPECT_FALSE(ParseKiqctlArgs({"get", "orders", "a"}, "")->allow_stale);
}

TEST(ParseKiqctlArgsTest, FlagsWorkBeforeAndAfterTheCommand) {
  absl::StatusOr<KiqctlArgs> args = ParseKiqctlArgs(
      {"--target", "node-1:7070", "--json", "range", "orders", "a", "z", "--page-size", "50",
       "--timeout", "500ms", "--limit", "7", "--page-token", "--tok"},
      "");
  ASSERT_OK(args);
  EXPECT_EQ(args->command, KiqctlCommand::kRange);
  EXPECT_EQ(args->target, "node-1:7070");
  EXPECT_TRUE(args->json);
  EXPECT_EQ(args->timeout, absl::Milliseconds(500));
  EXPECT_EQ(args->from, "a");
  EXPECT_EQ(args->to, "z");
  EXPECT_EQ(args->scan.page_size, 50);
  EXPECT_EQ(args->scan.limit, 7);
  EXPECT_EQ(args->scan.page_token, "--tok");  // Page tokens may start with '-'.
}

TEST(ParseKiqctlArgsTest, FlagsTakeValuesAfterEquals) {
  absl::StatusOr<KiqctlArgs> args =
      ParseKiqctlArgs({"all", "orders", "--target=h:1", "--timeout=2s", "--page-token="}, "");
  ASSERT_OK(args);
  EXPECT_EQ(args->command, KiqctlCommand::kAll);
  EXPECT_EQ(args->target, "h:1");
  EXPECT_EQ(args->timeout, absl::Seconds(2));
  EXPECT_EQ(args->scan.page_token, "");
}

TEST(ParseKiqctlArgsTest, TargetFlagBeatsEnvironmentBeatsDefault) {
  EXPECT_EQ(ParseKiqctlArgs({"count", "s"}, "env:1")->target, "env:1");
  EXPECT_EQ(ParseKiqctlArgs({"count", "s", "--target", "flag:2"}, "env:1")->target, "flag:2");
  EXPECT_EQ(ParseKiqctlArgs({"count", "s"}, "")->target, "localhost:7070");
}

TEST(ParseKiqctlArgsTest, DoubleDashEndsFlags) {
  absl::StatusOr<KiqctlArgs> args = ParseKiqctlArgs({"get", "orders", "--", "--json"}, "");
  ASSERT_OK(args);
  EXPECT_EQ(args->key, "--json");
  EXPECT_FALSE(args->json);
}

TEST(ParseKiqctlArgsTest, SingleDashArgumentsAreOperands) {
  absl::StatusOr<KiqctlArgs> args = ParseKiqctlArgs({"range", "scores", "-10", "-"}, "");
  ASSERT_OK(args);
  EXPECT_EQ(args->from, "-10");
  EXPECT_EQ(args->to, "-");
}

TEST(ParseKiqctlArgsTest, MetadataTakesNoStoreAStoreOrAStoreAndKey) {
  absl::StatusOr<KiqctlArgs> args = ParseKiqctlArgs({"metadata"}, "");
  ASSERT_OK(args);
  EXPECT_EQ(args->command, KiqctlCommand::kNodes);
  EXPECT_EQ(args->store, "");

  args = ParseKiqctlArgs({"--json", "metadata", "orders"}, "");
  ASSERT_OK(args);
  EXPECT_EQ(args->command, KiqctlCommand::kNodesForStore);
  EXPECT_EQ(args->store, "orders");
  EXPECT_TRUE(args->json);

  args = ParseKiqctlArgs({"metadata", "orders", "alice", "--timeout", "2s"}, "");
  ASSERT_OK(args);
  EXPECT_EQ(args->command, KiqctlCommand::kNodeForKey);
  EXPECT_EQ(args->store, "orders");
  EXPECT_EQ(args->key, "alice");
  EXPECT_EQ(args->timeout, absl::Seconds(2));

  // An empty key is a key (Kafka allows it); only the store must not be empty.
  args = ParseKiqctlArgs({"metadata", "orders", ""}, "");
  ASSERT_OK(args);
  EXPECT_EQ(args->command, KiqctlCommand::kNodeForKey);
  EXPECT_EQ(args->key, "");
}

TEST(ParseKiqctlArgsTest, HelpInEveryForm) {
  for (const std::vector<std::string>& argv :
       std::vector<std::vector<std::string>>{{"--help"},
                                             {"-h"},
                                             {"help"},
                                             {"help", "get"},
                                             {"get", "--help"},
                                             {"range", "s", "-h", "--limit", "x"}}) {
    SCOPED_TRACE(argv[0]);
    absl::StatusOr<KiqctlArgs> args = ParseKiqctlArgs(argv, "");
    ASSERT_OK(args);
    EXPECT_EQ(args->command, KiqctlCommand::kHelp);
  }
}

struct UsageErrorCase {
  std::vector<std::string> args;
  std::string message;
};

// Names the case by its arguments in test listings (ctest shows it).
void PrintTo(const UsageErrorCase& c, std::ostream* os) {
  *os << "args:";
  for (const std::string& a : c.args) *os << "_" << (a.empty() ? "EMPTY" : a);
}

class UsageErrorTest : public ::testing::TestWithParam<UsageErrorCase> {};

TEST_P(UsageErrorTest, ExitsTwoWithOneLineOnStderr) {
  const UsageErrorCase& c = GetParam();
  EXPECT_THAT(ParseKiqctlArgs(c.args, ""), StatusIs(absl::StatusCode::kInvalidArgument, c.message));
  std::ostringstream out, err;
  EXPECT_EQ(RunKiqctl(c.args, out, err, NoClient), kExitUsage);
  EXPECT_EQ(out.str(), "");
  EXPECT_EQ(err.str(), "kiqctl: " + c.message + " (see kiqctl --help)\n");
}

INSTANTIATE_TEST_SUITE_P(
    Kiqctl, UsageErrorTest,
    ::testing::Values(
        UsageErrorCase{{},
                       "missing command (get, get-many, range, all, count, window-fetch, subscribe "
                       "or metadata)"},
        UsageErrorCase{{"--json"},
                       "missing command (get, get-many, range, all, count, window-fetch, subscribe "
                       "or metadata)"},
        UsageErrorCase{{"fetch", "s"}, "unknown command \"fetch\""},
        UsageErrorCase{{"get", "s"}, "get wants STORE KEY, got 1 argument"},
        UsageErrorCase{{"get", "s", "a", "b"}, "get wants STORE KEY, got 3 arguments"},
        UsageErrorCase{{"range", "s", "a"}, "range wants STORE FROM TO, got 2 arguments"},
        UsageErrorCase{{"all"}, "all wants STORE, got 0 arguments"},
        UsageErrorCase{{"count", "a", "b"}, "count wants STORE, got 2 arguments"},
        UsageErrorCase{{"count", ""}, "count: STORE is empty"},
        UsageErrorCase{{"metadata", "s", "k", "x"},
                       "metadata wants [STORE [KEY]], got 3 arguments"},
        UsageErrorCase{{"metadata", ""}, "metadata: STORE is empty"},
        UsageErrorCase{{"metadata", "", "k"}, "metadata: STORE is empty"},
        UsageErrorCase{{"metadata", "--limit", "3"},
                       "--limit applies only to range and all, not metadata"},
        UsageErrorCase{{"metadata", "s", "--page-size", "3"},
                       "--page-size applies only to range and all, not metadata"},
        UsageErrorCase{{"get", "s", "a", "--verbose"}, "unknown flag \"--verbose\""},
        UsageErrorCase{{"get", "s", "a", "--target"}, "--target needs a value"},
        UsageErrorCase{{"get", "s", "a", "--target="}, "--target must not be empty"},
        UsageErrorCase{{"get", "s", "a", "--json=yes"}, "--json takes no value"},
        UsageErrorCase{{"get", "s", "a", "--timeout", "5"},
                       "--timeout wants a positive duration such as 500ms, 5s or 1m, got \"5\""},
        UsageErrorCase{{"get", "s", "a", "--timeout", "-1s"},
                       "--timeout wants a positive duration such as 500ms, 5s or 1m, got \"-1s\""},
        UsageErrorCase{{"all", "s", "--page-size", "0"},
                       "--page-size wants a positive integer, got \"0\""},
        UsageErrorCase{{"all", "s", "--page-size", "9999999999"},
                       "--page-size wants a positive integer, got \"9999999999\""},
        UsageErrorCase{{"all", "s", "--limit", "ten"},
                       "--limit wants a positive integer, got \"ten\""},
        UsageErrorCase{{"get", "s", "a", "--limit", "3"},
                       "--limit applies only to range and all, not get"},
        UsageErrorCase{{"--page-token", "t", "count", "s"},
                       "--page-token applies only to range and all, not count"},
        UsageErrorCase{{"get", "s", "a", "--max-lag", "5"}, "--max-lag needs --stale"},
        UsageErrorCase{{"get", "s", "a", "--stale", "--max-lag", "0"},
                       "--max-lag wants a positive number of records, got \"0\""},
        UsageErrorCase{
            {"metadata", "--stale"},
            "--stale applies only to get, get-many, window-fetch, range, all and count, not "
            "metadata"}));

TEST(KiqctlHelpTest, PrintsUsageToStdoutAndExitsZero) {
  for (const std::vector<std::string>& argv :
       std::vector<std::vector<std::string>>{{"--help"}, {"help"}, {"-h"}}) {
    std::ostringstream out, err;
    EXPECT_EQ(RunKiqctl(argv, out, err, NoClient), kExitOk);
    EXPECT_EQ(out.str(), KiqctlUsage());
    EXPECT_EQ(err.str(), "");
  }
}

TEST(KiqctlHelpTest, UsageNamesEveryCommandFlagAndExitCode) {
  const std::string usage = KiqctlUsage();
  EXPECT_THAT(usage, StartsWith("Usage: kiqctl"));
  for (const char* text : {"get STORE KEY",
                           "range STORE FROM TO",
                           "all STORE",
                           "count STORE",
                           "metadata  ",
                           "metadata STORE  ",
                           "metadata STORE KEY",
                           "MetadataService",
                           "NODE, ENDPOINT, STORES, PARTITIONS, LEASE",
                           "R restoring",
                           "F failed",
                           "\"expired\"",
                           "no live owner",
                           "help",
                           "--target HOST:PORT",
                           "KIQ_TARGET",
                           "localhost:7070",
                           "--json",
                           "--timeout DURATION",
                           "--page-size N",
                           "--page-token TOKEN",
                           "--limit N",
                           "-h, --help",
                           "--  ",
                           "0  success",
                           "1  get: the key was not found",
                           "metadata STORE KEY: no live node owns its partition",
                           "2  usage error",
                           "3  RPC or server error",
                           "next page token",
                           "nextPageToken"}) {
    EXPECT_THAT(usage, HasSubstr(text));
  }
}

}  // namespace
}  // namespace kiq::client
