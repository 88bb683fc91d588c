#include "common/kafka/dev_kafka_control.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/logging.h"

namespace kiq {
namespace {

constexpr char kUsage[] =
    "expected: down <broker_id>|all, up <broker_id>|all, rtt <broker_id>|all <ms>, "
    "create <topic> <partitions>";
// A request longer than this is not one of ours.
constexpr size_t kMaxLineLength = 1024;
constexpr int kIdleTimeoutMs = 10'000;

absl::StatusOr<int32_t> ParseBrokerId(absl::string_view token) {
  if (token == "all") return DevKafka::kAllBrokers;
  int32_t id = 0;
  if (!absl::SimpleAtoi(token, &id) || id < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("bad broker id \"", absl::CHexEscape(token), "\" (a number or all)"));
  }
  return id;
}

absl::Status SystemError(absl::string_view doing) {
  return absl::InternalError(absl::StrCat(doing, ": ", std::strerror(errno)));
}

// Sends all of `data`; false if the peer is gone.
bool SendAll(int fd, absl::string_view data) {
  while (!data.empty()) {
    const ssize_t n = send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

}  // namespace

absl::StatusOr<ControlCommand> ParseControlCommand(absl::string_view line) {
  std::vector<absl::string_view> words =
      absl::StrSplit(line, absl::ByAnyChar(" \t\r"), absl::SkipEmpty());
  if (words.empty()) return absl::InvalidArgumentError(absl::StrCat("empty command; ", kUsage));
  ControlCommand command;
  size_t arity = 2;
  if (words[0] == "down") {
    command.kind = ControlCommand::Kind::kDown;
  } else if (words[0] == "up") {
    command.kind = ControlCommand::Kind::kUp;
  } else if (words[0] == "rtt") {
    command.kind = ControlCommand::Kind::kRtt;
    arity = 3;
  } else if (words[0] == "create") {
    command.kind = ControlCommand::Kind::kCreate;
    arity = 3;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown command \"", absl::CHexEscape(words[0]), "\"; ", kUsage));
  }
  if (words.size() != arity) {
    return absl::InvalidArgumentError(
        absl::StrCat(words[0], " takes ", arity - 1, " argument(s); ", kUsage));
  }
  if (command.kind == ControlCommand::Kind::kCreate) {
    command.topic = std::string(words[1]);
    if (!absl::SimpleAtoi(words[2], &command.partitions) || command.partitions < 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("bad partition count \"", absl::CHexEscape(words[2]), "\" (a number >= 1)"));
    }
    return command;
  }
  absl::StatusOr<int32_t> id = ParseBrokerId(words[1]);
  if (!id.ok()) return id.status();
  command.broker_id = *id;
  if (command.kind == ControlCommand::Kind::kRtt) {
    int64_t ms = 0;
    if (!absl::SimpleAtoi(words[2], &ms) || ms < 0) {
      return absl::InvalidArgumentError(absl::StrCat("bad rtt \"", absl::CHexEscape(words[2]),
                                                     "\" (milliseconds, a number >= 0)"));
    }
    command.rtt = absl::Milliseconds(ms);
  }
  return command;
}

std::string HandleControlLine(DevKafka& kafka, absl::string_view line) {
  absl::StatusOr<ControlCommand> command = ParseControlCommand(line);
  absl::Status status = command.status();
  if (command.ok()) {
    switch (command->kind) {
      case ControlCommand::Kind::kDown:
        status = kafka.SetBrokerDown(command->broker_id);
        break;
      case ControlCommand::Kind::kUp:
        status = kafka.SetBrokerUp(command->broker_id);
        break;
      case ControlCommand::Kind::kRtt:
        status = kafka.SetBrokerRtt(command->broker_id, command->rtt);
        break;
      case ControlCommand::Kind::kCreate:
        status = kafka.CreateTopic(command->topic, command->partitions);
        break;
    }
  }
  if (status.ok()) {
    spdlog::info("dev kafka control: {}", absl::StripAsciiWhitespace(line));
    return "ok";
  }
  // One line, whatever the message holds.
  std::string reason(status.message());
  for (char& c : reason) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  return absl::StrCat("error ", reason);
}

absl::StatusOr<std::unique_ptr<DevKafkaControlServer>> DevKafkaControlServer::Start(DevKafka& kafka,
                                                                                    int port) {
  if (port < 0 || port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("control port ", port, " out of range"));
  }
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return SystemError("control channel: socket");
  const int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = htons(static_cast<uint16_t>(port));
  socklen_t length = sizeof(address);
  if (bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0 || listen(fd, 8) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    absl::Status status = SystemError(absl::StrCat("control channel: listen on 127.0.0.1:", port));
    close(fd);
    return status;
  }
  int stop[2];
  if (pipe2(stop, O_CLOEXEC) != 0) {
    absl::Status status = SystemError("control channel: pipe");
    close(fd);
    return status;
  }
  std::unique_ptr<DevKafkaControlServer> server(
      new DevKafkaControlServer(kafka, fd, stop[0], stop[1], ntohs(address.sin_port)));
  server->thread_ = std::thread(&DevKafkaControlServer::Run, server.get());
  return server;
}

DevKafkaControlServer::~DevKafkaControlServer() {
  const char byte = 0;
  while (write(stop_write_fd_, &byte, 1) < 0 && errno == EINTR) {
  }
  if (thread_.joinable()) thread_.join();
  close(listen_fd_);
  close(stop_read_fd_);
  close(stop_write_fd_);
}

void DevKafkaControlServer::Run() {
  while (true) {
    pollfd fds[2] = {{stop_read_fd_, POLLIN, 0}, {listen_fd_, POLLIN, 0}};
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      spdlog::error("dev kafka control: poll: {}", std::strerror(errno));
      return;
    }
    if (fds[0].revents != 0) return;
    if ((fds[1].revents & POLLIN) == 0) continue;
    const int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;  // the client gave up already, or a transient error
    Serve(fd);
    close(fd);
  }
}

void DevKafkaControlServer::Serve(int fd) {
  std::string buffer;
  char chunk[512];
  while (true) {
    size_t newline;
    while ((newline = buffer.find('\n')) != std::string::npos) {
      const std::string reply =
          HandleControlLine(kafka_, absl::string_view(buffer).substr(0, newline));
      buffer.erase(0, newline + 1);
      if (!SendAll(fd, reply + "\n")) return;
    }
    if (buffer.size() > kMaxLineLength) {
      SendAll(fd, "error line too long\n");
      return;
    }
    pollfd fds[2] = {{stop_read_fd_, POLLIN, 0}, {fd, POLLIN, 0}};
    const int ready = poll(fds, 2, kIdleTimeoutMs);
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0 || fds[0].revents != 0) return;  // idle, failed, or stopping
    const ssize_t n = recv(fd, chunk, sizeof(chunk), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // closed by the client
    buffer.append(chunk, static_cast<size_t>(n));
  }
}

}  // namespace kiq
