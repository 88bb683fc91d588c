#include "router/http_server.h"

#include <arpa/inet.h>
#include <httplib.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kiq::router {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

// A raw TCP connection to 127.0.0.1:port; closed by the destructor.
class RawConnection {
 public:
  explicit RawConnection(int port) : fd_(socket(AF_INET, SOCK_STREAM, 0)) {
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  }
  ~RawConnection() { close(fd_); }
  bool connected() const { return connected_; }

  // False once the peer has closed (or reset) the connection.
  bool Send(absl::string_view data) {
    while (!data.empty()) {
      ssize_t n = send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
      if (n <= 0) return false;
      data.remove_prefix(static_cast<size_t>(n));
    }
    return true;
  }

  // Everything the server sends until it closes the connection, or until `timeout`; `closed`
  // tells which.
  std::string ReadUntilClosed(absl::Duration timeout, bool* closed) {
    std::string out;
    *closed = false;
    const absl::Time deadline = absl::Now() + timeout;
    while (absl::Now() < deadline) {
      pollfd p{fd_, POLLIN, 0};
      const int wait_ms =
          static_cast<int>(std::max<int64_t>(1, absl::ToInt64Milliseconds(deadline - absl::Now())));
      if (poll(&p, 1, wait_ms) <= 0) continue;
      char buf[4096];
      ssize_t n = recv(fd_, buf, sizeof(buf), 0);
      if (n <= 0) {
        *closed = true;
        return out;
      }
      out.append(buf, static_cast<size_t>(n));
    }
    return out;
  }

  // One response (headers and a Content-Length body) or what came before `timeout`.
  std::string ReadResponse(absl::Duration timeout) {
    std::string out;
    const absl::Time deadline = absl::Now() + timeout;
    while (absl::Now() < deadline) {
      size_t end = out.find("\r\n\r\n");
      if (end != std::string::npos) {
        size_t length = 0;
        if (size_t at = out.find("Content-Length: "); at != std::string::npos && at < end) {
          length = std::stoul(out.substr(at + 16));
        }
        if (out.size() >= end + 4 + length) return out;
      }
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, 10) <= 0) continue;
      char buf[4096];
      ssize_t n = recv(fd_, buf, sizeof(buf), 0);
      if (n <= 0) return out;
      out.append(buf, static_cast<size_t>(n));
    }
    return out;
  }

 private:
  int fd_;
  bool connected_ = false;
};

class HttpServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_.Get("/healthz", [] { return HttpServer::Reply{200, "ok\n"}; });
    absl::StatusOr<int> port = server_.Start("127.0.0.1", 0);
    ASSERT_TRUE(port.ok()) << port.status();
    port_ = *port;
  }

  // A /healthz request on a new connection: its latency, or InfiniteDuration if unanswered
  // within `timeout`.
  absl::Duration Healthz(absl::Duration timeout) {
    const absl::Time start = absl::Now();
    RawConnection c(port_);
    if (!c.connected() || !c.Send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")) {
      return absl::InfiniteDuration();
    }
    std::string response = c.ReadResponse(timeout);
    if (!absl::StartsWith(response, "HTTP/1.1 200") || !absl::EndsWith(response, "ok\n")) {
      return absl::InfiniteDuration();
    }
    return absl::Now() - start;
  }

  HttpServer server_;
  int port_ = 0;
};

// httplib alone listens with a backlog of 5: 64 clients connecting at once overflowed it and
// waited ~1 s for their SYNs to be sent again. The port listens with kListenBacklog (or the
// kernel's cap), and 200 connections opened at once are all answered.
TEST_F(HttpServerTest, ListensWithABacklogForManyClientsConnectingAtOnce) {
  int somaxconn = HttpServer::kListenBacklog;
  std::ifstream("/proc/sys/net/core/somaxconn") >> somaxconn;
  EXPECT_EQ(server_.listen_backlog(), std::min(HttpServer::kListenBacklog, somaxconn));
  EXPECT_GT(server_.listen_backlog(), 5);
  std::vector<std::unique_ptr<RawConnection>> clients;
  for (int i = 0; i < 200; ++i) clients.push_back(std::make_unique<RawConnection>(port_));
  for (auto& c : clients) {
    ASSERT_TRUE(c->connected());
    ASSERT_TRUE(c->Send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"));
  }
  for (auto& c : clients) EXPECT_TRUE(absl::EndsWith(c->ReadResponse(absl::Seconds(20)), "ok\n"));
}

TEST_F(HttpServerTest, TooManyHeadersIs431WithJson) {
  RawConnection c(port_);
  std::string request = "GET /healthz HTTP/1.1\r\nHost: x\r\n";
  for (size_t i = 0; i < HttpServer::kMaxHeaderCount + 1; ++i) {
    absl::StrAppend(&request, "X-H", i, ": v\r\n");
  }
  request += "\r\n";
  ASSERT_TRUE(c.Send(request));
  std::string response = c.ReadResponse(absl::Seconds(5));
  EXPECT_THAT(response, StartsWith("HTTP/1.1 431"));
  EXPECT_THAT(response, HasSubstr("Content-Type: application/json"));
  EXPECT_THAT(response, HasSubstr("{\"code\":3,\"message\":\"the request has 102 headers"));
}

TEST_F(HttpServerTest, HeadersOverTheirTotalSizeAre431) {
  RawConnection c(port_);
  std::string request = "GET /healthz HTTP/1.1\r\nHost: x\r\n";
  const std::string value(8000, 'v');  // under httplib's 8 KiB per line
  for (int i = 0; i < 9; ++i) absl::StrAppend(&request, "X-H", i, ": ", value, "\r\n");
  request += "\r\n";
  ASSERT_TRUE(c.Send(request));
  std::string response = c.ReadResponse(absl::Seconds(5));
  EXPECT_THAT(response, StartsWith("HTTP/1.1 431"));
  EXPECT_THAT(response, HasSubstr("over the limit of 65536"));
}

// A GET that announces 256 MiB of body is refused from its headers: the server neither waits
// for the body nor reads it.
TEST_F(HttpServerTest, BodyOnAGetRouteIs413BeforeItIsRead) {
  RawConnection c(port_);
  ASSERT_TRUE(c.Send("GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 268435456\r\n\r\n"));
  const absl::Time start = absl::Now();
  std::string response = c.ReadResponse(absl::Seconds(5));
  EXPECT_LT(absl::Now() - start, absl::Seconds(1));
  EXPECT_THAT(response, StartsWith("HTTP/1.1 413"));
  EXPECT_THAT(response, HasSubstr("Connection: close"));
  EXPECT_THAT(response, HasSubstr("\"message\":\"no route takes a request body"));
  // Chunked bodies too.
  RawConnection chunked(port_);
  ASSERT_TRUE(
      chunked.Send("GET /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"));
  EXPECT_THAT(chunked.ReadResponse(absl::Seconds(5)), StartsWith("HTTP/1.1 413"));
}

TEST_F(HttpServerTest, OverlongUrlIs414WithJson) {
  RawConnection c(port_);
  ASSERT_TRUE(
      c.Send(absl::StrCat("GET /", std::string(10000, 'u'), " HTTP/1.1\r\nHost: x\r\n\r\n")));
  std::string response = c.ReadResponse(absl::Seconds(5));
  EXPECT_THAT(response, StartsWith("HTTP/1.1 414"));
  EXPECT_THAT(response, HasSubstr("{\"code\":3,\"message\":\"request line over 8 KiB\",\"details\":[]}"));
}

// A client that stalls inside its headers is answered 400 once a read waits kReadTimeout
// (httplib has no 408 for it), and the connection is closed after the keep-alive timeout.
TEST_F(HttpServerTest, StalledClientIsAnsweredAndDropped) {
  RawConnection c(port_);
  ASSERT_TRUE(c.Send("GET /healthz HTTP/1.1\r\nHo"));
  const absl::Time start = absl::Now();
  std::string response = c.ReadResponse(absl::Seconds(5));
  EXPECT_LT(absl::Now() - start, absl::Milliseconds(1500));
  EXPECT_THAT(response, StartsWith("HTTP/1.1 400"));
  EXPECT_THAT(response, HasSubstr("{\"code\":3,\"message\":\"malformed request"));
  bool closed = false;
  c.ReadUntilClosed(absl::Seconds(5), &closed);
  EXPECT_TRUE(closed);
  EXPECT_LT(absl::Now() - start, absl::Seconds(4));
}

// Slowloris: 80 connections each sending their request a byte a second do not keep /healthz
// from answering.
TEST_F(HttpServerTest, SlowClientsDoNotStarveHealthz) {
  constexpr int kSlow = 80;
  std::atomic<bool> stop{false};
  std::atomic<int> bytes_sent{0};
  std::thread slow([&] {
    const std::string request =
        "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + std::string(64, 's');
    std::vector<std::unique_ptr<RawConnection>> conns;
    std::vector<size_t> sent;
    for (int i = 0; i < kSlow; ++i) {
      conns.push_back(std::make_unique<RawConnection>(port_));
      sent.push_back(0);
    }
    while (!stop) {
      for (int i = 0; i < kSlow; ++i) {
        // A dropped connection comes back, as an attacker's would.
        if (!conns[i]->Send(request.substr(sent[i] % request.size(), 1))) {
          conns[i] = std::make_unique<RawConnection>(port_);
          sent[i] = 0;
          continue;
        }
        ++sent[i];
        ++bytes_sent;
      }
      for (int t = 0; t < 100 && !stop; ++t) absl::SleepFor(absl::Milliseconds(10));
    }
  });
  // Let the slow connections take their workers.
  while (bytes_sent < 2 * kSlow) absl::SleepFor(absl::Milliseconds(10));
  absl::Duration worst = absl::ZeroDuration();
  for (int i = 0; i < 10; ++i) {
    worst = std::max(worst, Healthz(absl::Seconds(5)));
    absl::SleepFor(absl::Milliseconds(300));
  }
  stop = true;
  slow.join();
  std::cerr << "/healthz worst latency with " << kSlow << " slow connections: " << worst << "\n";
  EXPECT_LT(worst, absl::Seconds(2));
}

TEST(HttpServerLimitsTest, ConnectionsPastTheLimitAre503WithJsonAndClosed) {
  HttpServer::Options options;
  options.max_connections = 2;
  options.idle_timeout = std::chrono::seconds(30);
  HttpServer server(options);
  server.Get("/healthz", [] { return HttpServer::Reply{200, "ok\n"}; });
  absl::StatusOr<int> port = server.Start("127.0.0.1", 0);
  ASSERT_TRUE(port.ok()) << port.status();
  // Two keep-alive connections, each answered once, then idle: they hold both workers.
  auto a = std::make_unique<RawConnection>(*port);
  RawConnection b(*port);
  for (RawConnection* c : {a.get(), &b}) {
    ASSERT_TRUE(c->Send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"));
    EXPECT_THAT(c->ReadResponse(absl::Seconds(10)), StartsWith("HTTP/1.1 200"));
  }
  EXPECT_EQ(server.open_connections(), 2);
  // The third: 503 at once (not a wait for a worker), a JSON body, then closed.
  RawConnection third(*port);
  const absl::Time start = absl::Now();
  ASSERT_TRUE(third.Send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"));
  bool closed = false;
  const std::string response = third.ReadUntilClosed(absl::Seconds(10), &closed);
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  EXPECT_THAT(response, StartsWith("HTTP/1.1 503"));
  EXPECT_THAT(response, HasSubstr("Connection: close"));
  EXPECT_THAT(response, HasSubstr("{\"code\":14,\"message\":\"too many connections: this port "
                                  "serves 2 at once (--http-max-connections); retry later\""));
  EXPECT_TRUE(closed);
  EXPECT_EQ(server.refused_connections(), 1);
  // A connection that goes away frees its worker for the next one.
  a.reset();
  const absl::Time give_up = absl::Now() + absl::Seconds(10);
  while (server.open_connections() > 1 && absl::Now() < give_up) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  RawConnection next(*port);
  ASSERT_TRUE(next.Send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"));
  EXPECT_THAT(next.ReadResponse(absl::Seconds(10)), StartsWith("HTTP/1.1 200"));
  server.Stop();
}

TEST(HttpServerLimitsTest, AnIdleKeepAliveConnectionIsClosedAfterTheIdleTimeout) {
  HttpServer::Options options;
  options.idle_timeout = std::chrono::seconds(1);
  HttpServer server(options);
  server.Get("/healthz", [] { return HttpServer::Reply{200, "ok\n"}; });
  absl::StatusOr<int> port = server.Start("127.0.0.1", 0);
  ASSERT_TRUE(port.ok()) << port.status();
  RawConnection c(*port);
  ASSERT_TRUE(c.Send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"));
  EXPECT_THAT(c.ReadResponse(absl::Seconds(10)), StartsWith("HTTP/1.1 200"));
  const absl::Time idle_since = absl::Now();
  bool closed = false;
  c.ReadUntilClosed(absl::Seconds(10), &closed);
  EXPECT_TRUE(closed);
  const absl::Duration idle = absl::Now() - idle_since;
  EXPECT_GE(idle, absl::Milliseconds(900));
  EXPECT_LT(idle, absl::Seconds(5));
  // The worker gives its slot back just after it closed the socket.
  const absl::Time give_up = absl::Now() + absl::Seconds(5);
  while (server.open_connections() > 0 && absl::Now() < give_up) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  EXPECT_EQ(server.open_connections(), 0);
}

TEST_F(HttpServerTest, AnyMethodButGetIs405WithJson) {
  RawConnection c(port_);
  ASSERT_TRUE(c.Send("POST /healthz HTTP/1.1\r\nHost: x\r\n\r\n"));
  const std::string response = c.ReadResponse(absl::Seconds(10));
  EXPECT_THAT(response, StartsWith("HTTP/1.1 405"));
  EXPECT_THAT(response, HasSubstr("Allow: GET"));
  EXPECT_THAT(response, HasSubstr("{\"code\":12,\"message\":\"method POST not allowed (only GET)\""));
}

// Options::takes_body (the gateway's GetMany route): a POST there is read with its body, up to
// kMaxBodyBytes; a longer one is refused from its headers; POSTs elsewhere stay 405.
TEST(HttpServerBodyTest, OnlyRoutesThatTakeABodyGetOneWithinTheLimit) {
  HttpServer::Options options;
  options.takes_body = [](absl::string_view method, absl::string_view target) {
    return method == "POST" && target == "/echo";
  };
  HttpServer server(options);
  server.native().Post("/echo", [](const httplib::Request& req, httplib::Response& res) {
    res.set_content(absl::StrCat("got ", req.body.size(), " bytes"), "text/plain");
  });
  server.Get("/healthz", [] { return HttpServer::Reply{200, "ok\n"}; });
  absl::StatusOr<int> port = server.Start("127.0.0.1", 0);
  ASSERT_TRUE(port.ok()) << port.status();
  const std::string body(100000, 'b');  // over kMaxHeaderBytes, the limit elsewhere
  {
    RawConnection c(*port);
    ASSERT_TRUE(c.Send(absl::StrCat(
        "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: ", body.size(), "\r\n\r\n", body)));
    const std::string response = c.ReadResponse(absl::Seconds(5));
    EXPECT_THAT(response, StartsWith("HTTP/1.1 200"));
    EXPECT_THAT(response, HasSubstr("got 100000 bytes"));
  }
  {
    RawConnection c(*port);
    ASSERT_TRUE(c.Send(absl::StrCat("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: ",
                                    HttpServer::kMaxBodyBytes + 1, "\r\n\r\n")));
    const std::string response = c.ReadResponse(absl::Seconds(5));
    EXPECT_THAT(response, StartsWith("HTTP/1.1 413"));
    EXPECT_THAT(response, HasSubstr("over the limit of 4194304"));
  }
  {
    RawConnection c(*port);
    ASSERT_TRUE(c.Send("POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}"));
    EXPECT_THAT(c.ReadResponse(absl::Seconds(5)), StartsWith("HTTP/1.1 405"));
  }
  {
    RawConnection c(*port);
    ASSERT_TRUE(c.Send("GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}"));
    EXPECT_THAT(c.ReadResponse(absl::Seconds(5)), StartsWith("HTTP/1.1 413"));
  }
  server.Stop();
}

}  // namespace
}  // namespace kiq::router
