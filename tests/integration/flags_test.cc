// The real binaries refuse a bad command line with exit code 2 and a line naming the flag and
// the reason, before they touch Kafka or the disk.
#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/kiq_processes.h"
#include "tests/testing/process.h"

namespace kiq::testing {
namespace {

using ::testing::HasSubstr;

struct BadFlagCase {
  std::string binary;
  std::vector<std::string> flags;
  std::string message;
};

void PrintTo(const BadFlagCase& c, std::ostream* os) {
  *os << c.binary.substr(c.binary.rfind('/') + 1);
  for (const std::string& f : c.flags) *os << " " << f;
}

class BadFlagTest : public ::testing::TestWithParam<BadFlagCase> {};

TEST_P(BadFlagTest, ExitsTwoNamingTheFlagAndTheReason) {
  const BadFlagCase& c = GetParam();
  const std::string dir = MakeTempDir("flags");
  // Everything else valid: without the check, the process would start (and wait for Kafka).
  std::vector<std::string> argv = {c.binary};
  if (c.binary != kCtlBin) {
    argv.push_back(absl::StrCat("--config=", kSourceDir, "/examples/orders/topology.yaml"));
    argv.push_back("--bootstrap-servers=127.0.0.1:1");
    argv.push_back("--grpc-port=0");
  }
  if (c.binary == kNodeBin) {
    argv.push_back(absl::StrCat("--data-dir=", dir, "/data"));
    argv.push_back("--http-port=-1");
    argv.push_back("--admin-port=-1");
  }
  argv.insert(argv.end(), c.flags.begin(), c.flags.end());
  auto process = Process::Start(argv, dir + "/log");
  ASSERT_TRUE(process.ok()) << process.status();
  absl::StatusOr<int> code = (*process)->Wait(absl::Seconds(10));
  ASSERT_TRUE(code.ok()) << "still running: " << (*process)->ReadLog();
  EXPECT_EQ(*code, 2) << (*process)->ReadLog();
  EXPECT_THAT((*process)->ReadLog(), HasSubstr(c.message));
  std::filesystem::remove_all(dir);
}

INSTANTIATE_TEST_SUITE_P(
    Binaries, BadFlagTest,
    ::testing::Values(
        BadFlagCase{kNodeBin, {"--grpc-port=abc"}, "--grpc-port: \"abc\" is not an integer"},
        BadFlagCase{kNodeBin, {"--no-such-flag=1"}, "unknown flag --no-such-flag"},
        BadFlagCase{kNodeBin,
                    {"--subscribe-replay-window=forever"},
                    "--subscribe-replay-window: \"forever\" is not a duration"},
        BadFlagCase{kNodeBin, {"--log-level=loud"}, "--log-level: unknown level \"loud\"; one of"},
        BadFlagCase{kNodeBin,
                    {"--node-id=" + std::string(300, 'n')},
                    "--node-id: 300 characters, over Kafka's limit of 249"},
        BadFlagCase{kNodeBin, {"--node-id=a b/c"}, "Kafka allows only [a-zA-Z0-9._-]"},
        BadFlagCase{kNodeBin,
                    {"--max-json-depth=0"},
                    "--max-json-depth: must be between 1 and 1000, got 0"},
        BadFlagCase{
            kNodeBin, {"--max-json-depth=deep"}, "--max-json-depth: \"deep\" is not an integer"},
        BadFlagCase{kNodeBin,
                    {"--max-value-bytes=-1"},
                    "--max-value-bytes: must be between 1 and 67108864, got -1"},
        BadFlagCase{
            kNodeBin, {"--max-value-bytes=1GiB"}, "--max-value-bytes: \"1GiB\" is not an integer"},
        BadFlagCase{kNodeBin,
                    {"--ingest-cache-bytes=-1"},
                    "--ingest-cache-bytes: must be between 0 and 68719476736, got -1"},
        BadFlagCase{kNodeBin,
                    {"--ingest-cache-bytes=4MiB"},
                    "--ingest-cache-bytes: \"4MiB\" is not an integer"},
        BadFlagCase{kNodeBin,
                    {"--http-max-connections=0"},
                    "--http-max-connections: must be between 1 and 10000, got 0"},
        BadFlagCase{kNodeBin,
                    {"--http-max-streams=-1"},
                    "--http-max-streams: must be between 0 and 10000, got -1"},
        BadFlagCase{kNodeBin,
                    {"--http-idle-timeout=500ms"},
                    "--http-idle-timeout: must be whole seconds between 1s and 1h"},
        BadFlagCase{kNodeBin, {"--admin-port=70000"}, "--admin-port: must be between 0 and 65535"},
        BadFlagCase{kNodeBin,
                    {"--admin-max-connections=0"},
                    "--admin-max-connections: must be between 1 and 1024, got 0"},
        BadFlagCase{kRouterBin,
                    {"--http-max-connections=abc"},
                    "--http-max-connections: \"abc\" is not an integer"},
        BadFlagCase{kRouterBin, {"--admin-port=-2"}, "--admin-port: must be between 0 and 65535"},
        BadFlagCase{kRouterBin, {"--grpc-port=abc"}, "--grpc-port: \"abc\" is not an integer"},
        BadFlagCase{kRouterBin, {"--no-such-flag=1"}, "unknown flag --no-such-flag"},
        BadFlagCase{kRouterBin, {"--log-level=loud"}, "--log-level: unknown level \"loud\""},
        BadFlagCase{kRouterBin, {"--grpc-port=70000"}, "--grpc-port: must be between 0 and 65535"},
        BadFlagCase{kCtlBin, {"get", "s", "k", "--no-such-flag=1"}, "unknown flag"},
        BadFlagCase{kCtlBin, {"get", "s", "k", "--timeout=forever"}, "--timeout wants"},
        BadFlagCase{
            kNodeBin, {"--tls-key-file=/tmp/k.pem"}, "--tls-key-file: needs --tls-cert-file"},
        BadFlagCase{kNodeBin,
                    {"--tls-cert-file=/nonexistent/tls.crt", "--tls-key-file=/nonexistent/tls.key",
                     "--tls-ca-file=/nonexistent/ca.crt"},
                    "--tls-cert-file: cannot read /nonexistent/tls.crt: No such file or directory"},
        BadFlagCase{kRouterBin,
                    {"--tls-client-ca-file=/tmp/ca.pem"},
                    "--tls-client-ca-file: mTLS needs TLS"},
        BadFlagCase{kCtlBin,
                    {"get", "s", "k", "--tls-key-file=/tmp/k.pem"},
                    "--tls-key-file needs --tls-cert-file"}));

}  // namespace
}  // namespace kiq::testing
