#include "client/kiqctl.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <google/protobuf/util/json_util.h>

#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/client/fake_server.h"

// kiqctl end to end: RunKiqctl against a real gRPC server on 127.0.0.1 serving canned data.
namespace kiq::client {
namespace {

using ::testing::HasSubstr;
using ::testing::MatchesRegex;
using ::testing::StartsWith;

struct Result {
  int exit_code;
  std::string out;
  std::string err;
};

class KiqctlTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(server_.started()); }

  // Runs kiqctl with --target pointing at the fake server.
  Result Run(std::vector<std::string> args) {
    args.insert(args.begin(), {"--target", server_.target()});
    return RunRaw(args);
  }

  Result RunRaw(const std::vector<std::string>& args, std::string_view env_target = {}) {
    std::ostringstream out, err;
    const ClientFactory factory = [this](const std::string& target, ClientOptions options) {
      targets_.push_back(target);
      timeouts_.push_back(options.timeout);
      return Client::Connect(target, options);
    };
    const int exit_code =
        RunKiqctl(args, out, err, factory, env_target, &FakeMetadataService::FakeNow);
    return {exit_code, out.str(), err.str()};
  }

  FakeServer server_;
  std::vector<std::string> targets_;
  std::vector<absl::Duration> timeouts_;
};

TEST_F(KiqctlTest, GetPrintsATable) {
  const Result r = Run({"get", "orders", "a"});
  EXPECT_EQ(r.exit_code, kExitOk);
  EXPECT_EQ(r.out,
            "KEY  VALUE    PARTITION\n"
            "a    {\"n\":1}  0\n");
  EXPECT_EQ(r.err, "");
}

TEST_F(KiqctlTest, WindowFetchPrintsWindowsInIso8601Utc) {
  Result r = Run({"window-fetch", "views", "books"});
  EXPECT_EQ(r.exit_code, kExitOk);
  EXPECT_EQ(r.out,
            "KEY    WINDOW_START              WINDOW_END                VALUE  PARTITION\n"
            "books  2023-11-14T22:14:00.000Z  2023-11-14T22:14:30.000Z  3      2\n"
            "books  2023-11-14T22:14:30.000Z  2023-11-14T22:15:00.000Z  5      2\n");
  EXPECT_EQ(r.err, "");
  // Bounds as ms or ISO-8601, sent as time_from/time_to.
  r = Run({"window-fetch", "views", "books", "2023-11-14T22:14:10Z", "1700000070000"});
  EXPECT_EQ(r.exit_code, kExitOk);
  EXPECT_EQ(r.out,
            "KEY    WINDOW_START              WINDOW_END                VALUE  PARTITION\n"
            "books  2023-11-14T22:14:30.000Z  2023-11-14T22:15:00.000Z  5      2\n");
  const auto requests = server_.service().window_fetch_requests();
  ASSERT_EQ(requests.size(), 2u);
  EXPECT_EQ(requests[1].time_from(), 1700000050000);
  EXPECT_EQ(requests[1].time_to(), 1700000070000);
  r = Run({"window-fetch", "views", "music"});
  EXPECT_EQ(r.out, "no windows\n");
}

TEST_F(KiqctlTest, WindowFetchJsonAndErrors) {
  Result r = Run({"window-fetch", "views", "books", "1700000070000", "--json"});
  EXPECT_EQ(r.exit_code, kExitOk);
  EXPECT_THAT(r.out,
              HasSubstr("\"window\":{\"startMs\":\"1700000070000\",\"endMs\":\"1700000100000\"}"));
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1);
  r = Run({"window-fetch", "orders", "a"});
  EXPECT_EQ(r.exit_code, kExitError);
  EXPECT_EQ(r.err,
            "kiqctl: window-fetch store=orders key=\"a\": FAILED_PRECONDITION: store \"orders\" is "
            "not windowed: use Get\n");
  r = Run({"window-fetch", "views", "books", "yesterday"});
  EXPECT_EQ(r.exit_code, kExitUsage);
  EXPECT_THAT(r.err, HasSubstr("FROM wants ms since the epoch or an ISO-8601 time"));
}

TEST_F(KiqctlTest, GetManySendsOneCallAndPrintsTheFoundKeysInOrderThenTheMissing) {
  Result r = Run({"get-many", "orders", "b", "zzz", "a", "b", "nope"});
  EXPECT_EQ(r.exit_code, kExitNotFound) << r.err;
  EXPECT_EQ(r.out,
            "KEY  VALUE       PARTITION\n"
            "b    plain text  1\n"
            "a    {\"n\":1}     0\n"
            "b    plain text  1\n"
            "not found: \"zzz\", \"nope\"\n");
  EXPECT_EQ(r.err, "");
  const auto requests = server_.service().get_many_requests();
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_THAT(requests[0].keys(), ::testing::ElementsAre("b", "zzz", "a", "b", "nope"));
  EXPECT_TRUE(server_.service().get_requests().empty());
  r = Run({"get-many", "orders", "a", "d", "--stale"});
  EXPECT_EQ(r.exit_code, kExitOk);
  EXPECT_TRUE(server_.service().get_many_requests().back().allow_stale());
}

TEST_F(KiqctlTest, GetManyJsonUsageAndErrors) {
  Result r = Run({"get-many", "orders", "a", "zzz", "--json"});
  EXPECT_EQ(r.exit_code, kExitNotFound);
  EXPECT_THAT(r.out,
              ::testing::StartsWith("{\"results\":[{\"found\":true,\"entry\":{\"key\":\"a\""));
  EXPECT_THAT(r.out, HasSubstr("{\"found\":false,\"entry\":{\"key\":\"zzz\""));
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1);
  r = Run({"get-many", "orders"});
  EXPECT_EQ(r.exit_code, kExitUsage);
  EXPECT_THAT(r.err, HasSubstr("get-many wants STORE KEY, got 1 argument"));
  r = Run({"get-many", "nope", "a", "b"});
  EXPECT_EQ(r.exit_code, kExitError);
  EXPECT_THAT(r.err, HasSubstr("kiqctl: get-many store=nope keys=2 (first \"a\"): NOT_FOUND"));
  r = Run({"get-many", "bin", "k", "\xff\x01"});
  EXPECT_EQ(r.exit_code, kExitError);
  EXPECT_THAT(r.err, HasSubstr("key 1 \"\\xff\\x01\" is not UTF-8 (read it with get)"));
}

TEST_F(KiqctlTest, GetOfAMissingKeyExitsOne) {
  const Result r = Run({"get", "orders", "zzz"});
  EXPECT_EQ(r.exit_code, kExitNotFound);
  EXPECT_EQ(r.out, "not found\n");
  EXPECT_EQ(r.err, "");
}

TEST_F(KiqctlTest, GetJson) {
  Result r = Run({"get", "orders", "b", "--json"});
  EXPECT_EQ(r.exit_code, kExitOk);
  EXPECT_EQ(
      r.out,
      "{\"found\":true,\"entry\":{\"key\":\"b\",\"keyBytes\":\"\",\"value\":\"cGxhaW4gdGV4dA==\","
      "\"partition\":1},\"position\":{\"offsets\":[{\"topic\":\"orders-source\","
      "\"partition\":0,\"offset\":\"10\"}]},\"standbyReads\":[]}\n");
  r = Run({"--json", "get", "orders", "zzz"});
  EXPECT_EQ(r.exit_code, kExitNotFound);
  EXPECT_EQ(r.out, "{\"found\":false,\"standbyReads\":[]}\n");
}

TEST_F(KiqctlTest, GetOfANonUtf8KeyUsesKeyBytes) {
  const Result r = Run({"get", "bin", "\xff\x01"});
  EXPECT_EQ(r.exit_code, kExitOk);
  EXPECT_EQ(r.out,
            "KEY       VALUE  PARTITION\n"
            "\\xff\\x01  v1     3\n");
  ASSERT_EQ(server_.service().get_requests().size(), 1u);
  EXPECT_EQ(server_.service().get_requests()[0].key_bytes(), "\xff\x01");
}

TEST_F(KiqctlTest, UnknownStoreExitsThreeWithOneLine) {
  const Result r = Run({"get", "nope", "a"});
  EXPECT_EQ(r.exit_code, kExitError);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err, "kiqctl: get store=nope key=\"a\": NOT_FOUND: unknown store \"nope\"\n");

  EXPECT_EQ(Run({"all", "nope"}).err,
            "kiqctl: all store=nope: NOT_FOUND: unknown store \"nope\"\n");
  EXPECT_EQ(Run({"range", "nope", "a", "b"}).err,
            "kiqctl: range store=nope from=\"a\" to=\"b\": NOT_FOUND: unknown store \"nope\"\n");
  EXPECT_EQ(Run({"count", "nope"}).err,
            "kiqctl: count store=nope: NOT_FOUND: unknown store \"nope\"\n");
}

TEST_F(KiqctlTest, AllFollowsEveryPage) {
  const Result r = Run({"all", "orders"});
  EXPECT_EQ(r.exit_code, kExitOk);
  EXPECT_EQ(r.out,
            "KEY  VALUE        PARTITION\n"
            "a    {\"n\":1}      0\n"
            "b    plain text   1\n"
            "c    \\xff\\xfe     2\n"
            "d    42           0\n"
            "e    line\\nbreak  1\n");
  EXPECT_EQ(r.err, "");
  EXPECT_EQ(server_.service().all_requests().size(), 3u);  // Pages of 2, 2 and 1.
}

TEST_F(KiqctlTest, AllWithALimitPrintsTheNextPageTokenAndResumesFromIt) {
  Result r = Run({"all", "orders", "--limit", "3"});
  EXPECT_EQ(r.exit_code, kExitOk);
  EXPECT_EQ(r.out,
            "KEY  VALUE       PARTITION\n"
            "a    {\"n\":1}     0\n"
            "b    plain text  1\n"
            "c    \\xff\\xfe    2\n");
  ASSERT_THAT(r.err, MatchesRegex("next page token: [^\n]+\n"));
  const std::string token = r.err.substr(r.err.find(": ") + 2, r.err.size() - 18);

  r = Run({"all", "orders", "--page-token", token});
  EXPECT_EQ(r.exit_code, kExitOk);
  EXPECT_EQ(r.out,
            "KEY  VALUE        PARTITION\n"
            "d    42           0\n"
            "e    line\\nbreak  1\n");
  EXPECT_EQ(r.err, "");
}

TEST_F(KiqctlTest, AllJsonIsOneDocumentWithTheNextPageToken) {
  Result r = Run({"all", "orders", "--json", "--limit", "1"});
  EXPECT_EQ(r.exit_code, kExitOk);
  EXPECT_EQ(r.err, "");
  EXPECT_THAT(r.out, StartsWith("{\"entries\":[{\"key\":\"a\","));
  EXPECT_THAT(r.out, HasSubstr("\"nextPageToken\":\"after:61\""));
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1);

  r = Run({"all", "orders", "--json"});
  EXPECT_EQ(r.exit_code, kExitOk);
  EXPECT_THAT(r.out, HasSubstr("\"nextPageToken\":\"\""));
  // The document is a ScanResponse holding the entries of all three pages.
  kiq::v1::ScanResponse parsed;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(r.out, &parsed).ok()) << r.out;
  ASSERT_EQ(parsed.entries_size(), 5);
  EXPECT_EQ(parsed.entries(2).value(), "\xff\xfe");
  EXPECT_EQ(parsed.entries(3).json().number_value(), 42);
  EXPECT_EQ(parsed.next_page_token(), "");
}

TEST_F(KiqctlTest, RangeIsInclusive) {
  const Result r = Run({"range", "orders", "b", "d", "--page-size", "1"});
  EXPECT_EQ(r.exit_code, kExitOk);
  EXPECT_EQ(r.out,
            "KEY  VALUE       PARTITION\n"
            "b    plain text  1\n"
            "c    \\xff\\xfe    2\n"
            "d    42          0\n");
  EXPECT_EQ(server_.service().range_requests().size(), 3u);
}

TEST_F(KiqctlTest, EmptyScanSaysSo) {
  const Result r = Run({"all", "empty"});
  EXPECT_EQ(r.exit_code, kExitOk);
  EXPECT_EQ(r.out, "no entries\n");
}

TEST_F(KiqctlTest, Count) {
  Result r = Run({"count", "orders"});
  EXPECT_EQ(r.exit_code, kExitOk);
  EXPECT_EQ(r.out, "count: 5\n");
  r = Run({"count", "orders", "--json"});
  EXPECT_EQ(r.exit_code, kExitOk);
  EXPECT_EQ(r.out,
            "{\"count\":\"5\",\"position\":{\"offsets\":[{\"topic\":\"orders-source\","
            "\"partition\":0,\"offset\":\"10\"}]},\"missingPartitions\":[],\"standbyReads\":[]}\n");
}

TEST_F(KiqctlTest, BadPageTokenIsAServerError) {
  const Result r = Run({"all", "orders", "--page-token", "garbage"});
  EXPECT_EQ(r.exit_code, kExitError);
  EXPECT_EQ(r.err, "kiqctl: all store=orders: INVALID_ARGUMENT: malformed page token\n");
}

TEST_F(KiqctlTest, AServerThatRepeatsItsPageTokenIsAnErrorNotAnEndlessLoop) {
  const Result r = Run({"all", "loop"});
  EXPECT_EQ(r.exit_code, kExitError);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err,
            "kiqctl: all store=loop: INTERNAL: the server answered page token \"loop-token\" with "
            "the same next_page_token\n");
}

TEST_F(KiqctlTest, TimeoutFlagSetsTheDeadline) {
  const Result r = Run({"get", "slow", "a", "--timeout", "100ms"});
  EXPECT_EQ(r.exit_code, kExitError);
  EXPECT_THAT(r.err, StartsWith("kiqctl: get store=slow key=\"a\": DEADLINE_EXCEEDED"));
  EXPECT_THAT(timeouts_, ::testing::ElementsAre(absl::Milliseconds(100)));
}

// A loopback port whose connections the kernel accepts (the listen backlog) and nobody ever
// answers: gRPC's handshake waits for the server's HTTP/2 settings forever. Closed by the
// destructor.
class SilentListener {
 public:
  SilentListener() {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    if (bind(fd_, reinterpret_cast<sockaddr*>(&addr), len) != 0 || listen(fd_, 16) != 0 ||
        getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      port_ = 0;
      return;
    }
    port_ = ntohs(addr.sin_port);
  }
  ~SilentListener() { close(fd_); }
  std::string target() const { return "127.0.0.1:" + std::to_string(port_); }
  int port() const { return port_; }

 private:
  int fd_ = -1;
  int port_ = 0;
};

TEST_F(KiqctlTest, TimeoutCoversConnectingForEveryCommand) {
  SilentListener silent;
  ASSERT_GT(silent.port(), 0);
  const std::vector<std::vector<std::string>> commands = {
      {"subscribe", "orders"}, {"get", "orders", "a"}, {"count", "orders"}, {"metadata"}};
  for (const std::vector<std::string>& command : commands) {
    SCOPED_TRACE(command.front());
    std::vector<std::string> args = {"--target", silent.target(), "--timeout", "1s"};
    args.insert(args.end(), command.begin(), command.end());
    const absl::Time start = absl::Now();
    const Result r = RunRaw(args);
    const absl::Duration took = absl::Now() - start;
    EXPECT_EQ(r.exit_code, kExitError) << r.out;
    EXPECT_THAT(r.err, HasSubstr("DEADLINE_EXCEEDED"));
    // gRPC's own connect deadline is 20 s; the timeout is 1 s.
    EXPECT_LT(took, absl::Seconds(6)) << r.err;
  }
}

TEST_F(KiqctlTest, TargetComesFromTheEnvironmentWhenNotGiven) {
  const Result r = RunRaw({"count", "orders"}, server_.target());
  EXPECT_EQ(r.exit_code, kExitOk);
  EXPECT_THAT(targets_, ::testing::ElementsAre(server_.target()));
}

TEST_F(KiqctlTest, UnreachableServerExitsThree) {
  const std::string target = server_.target();
  server_.Shutdown();
  const Result r = RunRaw({"--target", target, "count", "orders"});
  EXPECT_EQ(r.exit_code, kExitError);
  EXPECT_THAT(r.err, StartsWith("kiqctl: count store=orders: UNAVAILABLE"));
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1);
}

TEST_F(KiqctlTest, MetadataPrintsEveryNode) {
  const Result r = Run({"metadata"});
  EXPECT_EQ(r.exit_code, kExitOk);
  EXPECT_EQ(r.out,
            "NODE  ENDPOINT        STORES                 PARTITIONS  LEASE\n"
            "n1    10.0.0.1:7070   order_count,customers  0,1,4R      30s\n"
            "n2    kiq-1.kiq:7070  order_count            2,3,5F      5s\n"
            "n3    [::1]:7071      customers              -           expired\n");
  EXPECT_EQ(r.err, "");
}

TEST_F(KiqctlTest, MetadataOfAStorePrintsTheNodesHostingIt) {
  Result r = Run({"metadata", "order_count"});
  EXPECT_EQ(r.exit_code, kExitOk);
  EXPECT_EQ(r.out,
            "NODE  ENDPOINT        STORES                 PARTITIONS  LEASE\n"
            "n1    10.0.0.1:7070   order_count,customers  0,1,4R      30s\n"
            "n2    kiq-1.kiq:7070  order_count            2,3,5F      5s\n");
  EXPECT_EQ(r.err, "");

  r = Run({"metadata", "lonely"});
  EXPECT_EQ(r.exit_code, kExitOk);
  EXPECT_EQ(r.out, "no nodes\n");
  EXPECT_EQ(r.err, "");
}

TEST_F(KiqctlTest, MetadataOfAKeyPrintsItsPartitionAndOwner) {
  Result r = Run({"metadata", "order_count", "alice"});
  EXPECT_EQ(r.exit_code, kExitOk);
  EXPECT_EQ(r.out,
            "key \"alice\" of store order_count → partition 3 → node n2 at kiq-1.kiq:7070 "
            "(ACTIVE)\n");
  EXPECT_EQ(r.err, "");

  r = Run({"metadata", "order_count", "bob"});
  EXPECT_EQ(r.exit_code, kExitOk);
  EXPECT_EQ(r.out,
            "key \"bob\" of store order_count → partition 4 → node n1 at 10.0.0.1:7070 "
            "(RESTORING)\n");
}

TEST_F(KiqctlTest, MetadataOfANonUtf8KeyUsesKeyBytes) {
  const Result r = Run({"metadata", "order_count", "\xff\x01"});
  EXPECT_EQ(r.exit_code, kExitOk);
  EXPECT_EQ(r.out,
            "key \"\\xff\\x01\" of store order_count → partition 5 → node n2 at kiq-1.kiq:7070 "
            "(FAILED)\n");
  ASSERT_EQ(server_.metadata_service().node_for_key_requests().size(), 1u);
  EXPECT_EQ(server_.metadata_service().node_for_key_requests()[0].key_bytes(), "\xff\x01");
}

TEST_F(KiqctlTest, MetadataOfAKeyWithNoLiveOwnerExitsOne) {
  Result r = Run({"metadata", "order_count", "carol"});
  EXPECT_EQ(r.exit_code, kExitNotFound);
  EXPECT_EQ(r.out, "key \"carol\" of store order_count → partition 6 → no live owner\n");
  EXPECT_EQ(r.err, "");

  r = Run({"--json", "metadata", "order_count", "carol"});
  EXPECT_EQ(r.exit_code, kExitNotFound);
  kiq::v1::NodeForKeyResponse parsed;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(r.out, &parsed).ok()) << r.out;
  EXPECT_EQ(parsed.partition(), 6);
  EXPECT_EQ(parsed.owner().node_id(), "");
}

TEST_F(KiqctlTest, MetadataJsonIsTheResponse) {
  Result r = Run({"metadata", "--json"});
  EXPECT_EQ(r.exit_code, kExitOk);
  EXPECT_EQ(r.err, "");
  EXPECT_THAT(r.out, StartsWith("{\"nodes\":[{\"nodeId\":\"n1\",\"host\":\"10.0.0.1\","));
  EXPECT_THAT(r.out, HasSubstr("\"state\":\"PARTITION_STATE_RESTORING\""));
  EXPECT_THAT(r.out, HasSubstr("\"leaseExpiryMs\":\"1800000030000\""));
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1);
  kiq::v1::NodesResponse nodes;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(r.out, &nodes).ok()) << r.out;
  EXPECT_EQ(nodes.nodes_size(), 3);

  r = Run({"metadata", "customers", "--json"});
  EXPECT_EQ(r.exit_code, kExitOk);
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(r.out, &nodes).ok()) << r.out;
  ASSERT_EQ(nodes.nodes_size(), 2);
  EXPECT_EQ(nodes.nodes(1).node_id(), "n3");

  r = Run({"metadata", "order_count", "alice", "--json"});
  EXPECT_EQ(r.exit_code, kExitOk);
  EXPECT_THAT(r.out, StartsWith("{\"partition\":3,\"owner\":{\"nodeId\":\"n2\","));
  EXPECT_THAT(r.out, HasSubstr("\"state\":\"PARTITION_STATE_ACTIVE\"}\n"));
}

TEST_F(KiqctlTest, MetadataOfAnUnknownStoreExitsThreeWithOneLine) {
  Result r = Run({"metadata", "nope"});
  EXPECT_EQ(r.exit_code, kExitError);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err, "kiqctl: metadata store=nope: NOT_FOUND: unknown store \"nope\"\n");

  r = Run({"metadata", "nope", "alice", "--json"});
  EXPECT_EQ(r.exit_code, kExitError);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err,
            "kiqctl: metadata store=nope key=\"alice\": NOT_FOUND: unknown store \"nope\"\n");
}

TEST_F(KiqctlTest, MetadataTimeoutIsDeadlineExceeded) {
  const Result r = Run({"metadata", "slow", "a", "--timeout", "100ms"});
  EXPECT_EQ(r.exit_code, kExitError);
  EXPECT_THAT(r.err, StartsWith("kiqctl: metadata store=slow key=\"a\": DEADLINE_EXCEEDED"));
  EXPECT_THAT(timeouts_, ::testing::ElementsAre(absl::Milliseconds(100)));
}

TEST(KiqctlWithoutMetadataServiceTest, MetadataIsUnimplementedAndExitsThree) {
  FakeServer server(FakeServer::Services::kQueryOnly);
  ASSERT_TRUE(server.started());
  std::ostringstream out, err;
  const int exit_code = RunKiqctl({"--target", server.target(), "metadata"}, out, err);
  EXPECT_EQ(exit_code, kExitError);
  EXPECT_EQ(out.str(), "");
  const std::string error = err.str();
  EXPECT_THAT(error, StartsWith("kiqctl: metadata: UNIMPLEMENTED"));
  EXPECT_EQ(std::count(error.begin(), error.end(), '\n'), 1);
}

TEST_F(KiqctlTest, ClientFactoryErrorsExitThree) {
  std::ostringstream out, err;
  const int exit_code =
      RunKiqctl({"count", "orders"}, out, err,
                [](const std::string&, ClientOptions) -> absl::StatusOr<std::unique_ptr<Client>> {
                  return absl::InvalidArgumentError("connect: bad target");
                });
  EXPECT_EQ(exit_code, kExitError);
  EXPECT_EQ(err.str(), "kiqctl: INVALID_ARGUMENT: connect: bad target\n");
}

}  // namespace
}  // namespace kiq::client

namespace kiq::client {
namespace {

class KiqctlSubscribeTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(server_.started()); }
  Result Run(std::vector<std::string> args) {
    args.insert(args.begin(), {"--target", server_.target()});
    std::ostringstream out, err;
    const int exit_code = RunKiqctl(args, out, err);
    return {exit_code, out.str(), err.str()};
  }
  FakeServer server_;
};

TEST_F(KiqctlSubscribeTest, SnapshotThenChangesOneLineEachAndTheEndStatus) {
  const Result r = Run({"subscribe", "orders", "--snapshot", "--prefix", "a"});
  EXPECT_EQ(r.out,
            "SNAPSHOT a {\"n\":1} partition=0\n"
            "SNAPSHOT_END\n"
            "CHANGE a {\"n\":2} (was {\"n\":1}) partition=0 orders@7\n");
  EXPECT_EQ(r.exit_code, kExitError);
  EXPECT_EQ(r.err, "kiqctl: subscribe store=orders: RESOURCE_EXHAUSTED: subscriber too slow\n");
  const auto requests = server_.service().subscribe_requests();
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_EQ(requests[0].key_prefix(), "a");
  EXPECT_EQ(requests[0].from(), kiq::v1::SubscribeRequest::FROM_SNAPSHOT);
  EXPECT_EQ(requests[0].on_overflow(), kiq::v1::SubscribeRequest::OVERFLOW_FAIL);
}

TEST_F(KiqctlSubscribeTest, KeyCoalesceAndDeletes) {
  const Result r = Run({"subscribe", "orders", "--key=b", "--coalesce"});
  EXPECT_EQ(r.out, "DELETE b (was plain text) partition=1 orders@8\n");
  const auto requests = server_.service().subscribe_requests();
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_EQ(requests[0].key(), "b");
  EXPECT_EQ(requests[0].from(), kiq::v1::SubscribeRequest::FROM_NOW);
  EXPECT_EQ(requests[0].on_overflow(), kiq::v1::SubscribeRequest::OVERFLOW_COALESCE);
}

TEST_F(KiqctlSubscribeTest, JsonPrintsOneObjectPerLine) {
  const Result r = Run({"subscribe", "orders", "--json"});
  std::vector<std::string> lines = absl::StrSplit(r.out, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 2u) << r.out;
  kiq::v1::SubscribeResponse first;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(lines[0], &first).ok()) << lines[0];
  EXPECT_EQ(first.type(), kiq::v1::SubscribeResponse::CHANGE);
  EXPECT_EQ(first.offset(), 7);
  EXPECT_EQ(first.entry().key(), "a");
  EXPECT_THAT(lines[1], HasSubstr("\"deleted\":true"));
  EXPECT_EQ(r.exit_code, kExitError);
}

TEST_F(KiqctlSubscribeTest, UnknownStoreAndUsageErrors) {
  Result r = Run({"subscribe", "nope"});
  EXPECT_EQ(r.exit_code, kExitError);
  EXPECT_THAT(r.err, HasSubstr("NOT_FOUND"));
  EXPECT_THAT(r.err, HasSubstr("nope"));
  r = Run({"subscribe", "orders", "--key", "a", "--prefix", "b"});
  EXPECT_EQ(r.exit_code, kExitUsage);
  EXPECT_THAT(r.err, HasSubstr("not both"));
  r = Run({"get", "orders", "a", "--snapshot"});
  EXPECT_EQ(r.exit_code, kExitUsage);
  EXPECT_THAT(r.err, HasSubstr("--snapshot applies only to subscribe"));
}

}  // namespace
}  // namespace kiq::client
