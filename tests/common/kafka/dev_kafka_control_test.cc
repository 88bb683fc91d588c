#include "common/kafka/dev_kafka_control.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kiq {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

TEST(ParseControlCommandTest, ParsesEveryCommand) {
  auto down = ParseControlCommand("down 2");
  ASSERT_TRUE(down.ok()) << down.status();
  EXPECT_EQ(down->kind, ControlCommand::Kind::kDown);
  EXPECT_EQ(down->broker_id, 2);
  auto up = ParseControlCommand("  up   all\r");
  ASSERT_TRUE(up.ok()) << up.status();
  EXPECT_EQ(up->kind, ControlCommand::Kind::kUp);
  EXPECT_EQ(up->broker_id, DevKafka::kAllBrokers);
  auto rtt = ParseControlCommand("rtt all 250");
  ASSERT_TRUE(rtt.ok()) << rtt.status();
  EXPECT_EQ(rtt->kind, ControlCommand::Kind::kRtt);
  EXPECT_EQ(rtt->broker_id, DevKafka::kAllBrokers);
  EXPECT_EQ(rtt->rtt, absl::Milliseconds(250));
  auto create = ParseControlCommand("create app-changelog 6");
  ASSERT_TRUE(create.ok()) << create.status();
  EXPECT_EQ(create->kind, ControlCommand::Kind::kCreate);
  EXPECT_EQ(create->topic, "app-changelog");
  EXPECT_EQ(create->partitions, 6);
}

TEST(ParseControlCommandTest, RefusesWhatItDoesNotKnowSayingWhy) {
  struct Case {
    const char* line;
    const char* reason;
  };
  for (const Case& c :
       {Case{"", "empty command"}, Case{"reboot 1", "unknown command \"reboot\""},
        Case{"down", "takes 1 argument"}, Case{"down 1 2", "takes 1 argument"},
        Case{"rtt 1", "takes 2 argument"}, Case{"down one", "bad broker id"},
        Case{"up -3", "bad broker id"}, Case{"rtt all -1", "bad rtt"},
        Case{"rtt all fast", "bad rtt"}, Case{"create t", "takes 2 argument"},
        Case{"create t 0", "bad partition count"}, Case{"create t six", "bad partition count"}}) {
    auto command = ParseControlCommand(c.line);
    ASSERT_FALSE(command.ok()) << c.line;
    EXPECT_EQ(command.status().code(), absl::StatusCode::kInvalidArgument) << c.line;
    EXPECT_THAT(std::string(command.status().message()), HasSubstr(c.reason)) << c.line;
  }
}

TEST(HandleControlLineTest, RunsCommandsOnTheClusterAndAnswersOneLine) {
  auto kafka = DevKafka::Start(2);
  ASSERT_TRUE(kafka.ok()) << kafka.status();
  EXPECT_EQ(HandleControlLine(**kafka, "down all"), "ok");
  EXPECT_EQ(HandleControlLine(**kafka, "up all"), "ok");
  EXPECT_EQ(HandleControlLine(**kafka, "down 2"), "ok");
  EXPECT_EQ(HandleControlLine(**kafka, "up 2"), "ok");
  EXPECT_EQ(HandleControlLine(**kafka, "rtt 1 10"), "ok");
  EXPECT_EQ(HandleControlLine(**kafka, "rtt all 0"), "ok");
  EXPECT_EQ(HandleControlLine(**kafka, "create made-by-control 4"), "ok");
  EXPECT_THAT(HandleControlLine(**kafka, "down 3"), StartsWith("error no broker 3"));
  EXPECT_THAT(HandleControlLine(**kafka, "sleep"), StartsWith("error unknown command"));
}

// Connects to 127.0.0.1:port, sends `request`, reads until `lines` newlines came.
std::string Exchange(int port, const std::string& request, int lines) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = htons(static_cast<uint16_t>(port));
  std::string reply;
  if (connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0 &&
      send(fd, request.data(), request.size(), MSG_NOSIGNAL) ==
          static_cast<ssize_t>(request.size())) {
    char c;
    while (lines > 0 && recv(fd, &c, 1, 0) == 1) {
      reply.push_back(c);
      if (c == '\n') --lines;
    }
  }
  close(fd);
  return reply;
}

TEST(DevKafkaControlServerTest, AnswersEachLineOfEachConnection) {
  auto kafka = DevKafka::Start(1);
  ASSERT_TRUE(kafka.ok()) << kafka.status();
  auto server = DevKafkaControlServer::Start(**kafka, 0);
  ASSERT_TRUE(server.ok()) << server.status();
  ASSERT_GT((*server)->port(), 0);
  EXPECT_EQ(Exchange((*server)->port(), "down all\nup 1\n", 2), "ok\nok\n");
  const std::string reply = Exchange((*server)->port(), "rtt 1 5\r\nup 9\n", 2);
  EXPECT_THAT(reply, StartsWith("ok\nerror no broker 9"));
  // Stops promptly, also with a client connected and idle.
  const int idle = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = htons(static_cast<uint16_t>((*server)->port()));
  ASSERT_EQ(connect(idle, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
  const absl::Time start = absl::Now();
  server->reset();
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  close(idle);
}

}  // namespace
}  // namespace kiq
