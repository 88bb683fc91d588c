#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/kafka/dev_kafka.h"

namespace kiq {

// One request of kiq-dev-kafka's control protocol, a line of text:
//   down <broker_id>|all        the broker(s) close their connections and refuse new ones
//   up <broker_id>|all          they accept connections again
//   rtt <broker_id>|all <ms>    every response is delayed by <ms> milliseconds (0: none)
//   create <topic> <partitions> creates a topic, as a broker's CreateTopics would (the mock
//                               cluster does not implement that request)
// Each line is answered by one line: `ok`, or `error <reason>`.
struct ControlCommand {
  enum class Kind { kDown, kUp, kRtt, kCreate };
  Kind kind = Kind::kDown;
  int32_t broker_id = DevKafka::kAllBrokers;  // kDown, kUp, kRtt
  absl::Duration rtt;                         // kRtt only
  std::string topic;                          // kCreate only
  int partitions = 0;                         // kCreate only
};

// INVALID_ARGUMENT saying what is wrong with `line` and what is expected.
absl::StatusOr<ControlCommand> ParseControlCommand(absl::string_view line);

// Parses and runs one request line against `kafka`; the reply line, without its newline.
std::string HandleControlLine(DevKafka& kafka, absl::string_view line);

// Serves the control protocol on 127.0.0.1 over TCP, for tests that inject faults into a
// kiq-dev-kafka process (the process boundary is why it is a socket, not a function call).
// Connections are served one at a time on the server's own thread, each for as many lines as
// the client sends; an idle connection is closed after 10 s. Loopback only: anyone on the
// machine who can connect can take the brokers down, which is the point in a test.
//
// Thread-compatible; the destructor stops the thread. `kafka` must outlive the server.
class DevKafkaControlServer {
 public:
  // `port` 0 picks a free one (see port()).
  static absl::StatusOr<std::unique_ptr<DevKafkaControlServer>> Start(DevKafka& kafka, int port);
  ~DevKafkaControlServer();
  DevKafkaControlServer(const DevKafkaControlServer&) = delete;
  DevKafkaControlServer& operator=(const DevKafkaControlServer&) = delete;

  int port() const { return port_; }

 private:
  DevKafkaControlServer(DevKafka& kafka, int listen_fd, int stop_read_fd, int stop_write_fd,
                        int port)
      : kafka_(kafka),
        listen_fd_(listen_fd),
        stop_read_fd_(stop_read_fd),
        stop_write_fd_(stop_write_fd),
        port_(port) {}

  void Run();
  // Answers the lines of one connection until it closes, idles, errs, or the server stops.
  void Serve(int fd);

  DevKafka& kafka_;
  const int listen_fd_;      // owned
  const int stop_read_fd_;   // owned; readable once the destructor asks to stop
  const int stop_write_fd_;  // owned
  const int port_;
  std::thread thread_;
};

}  // namespace kiq
