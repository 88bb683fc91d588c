#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/security/tls.h"

namespace httplib {
class Server;
}

namespace kiq::router {

// An HTTP port of a node or router (cpp-httplib, its own thread pool): the public port with the
// HTTP/JSON gateway (router/http_gateway.h) and the operations endpoints (/metrics, /healthz,
// /readyz), or the admin port with those alone. Handlers run on httplib's
// threads and must be thread-safe. Register handlers, then Start; Stop (or the destructor) stops
// serving.
//
// Request limits (Debian's cpp-httplib 0.11 is a compiled library: its CPPHTTPLIB_* bounds are
// fixed, and it has no header-count limit or whole-request deadline): a request line over 8 KiB
// is 414 and a header line over 8 KiB is 400 (httplib's own); more than kMaxHeaderCount headers
// or kMaxHeaderBytes of them is 431, and a request with a body is 413 as soon as its headers say
// so, without reading it, unless its route takes one (Options::takes_body; then up to
// kMaxBodyBytes) — both checked once httplib has read the
// headers, so the count bounds what a handler sees, not what httplib buffered. Every read waits
// at most kReadTimeout (httplib's timeout is per read, not per request: a client that stalls is
// dropped, without an answer; one that trickles a byte at a time within it keeps its worker);
// an idle keep-alive connection is closed after Options::idle_timeout. Error answers carry a
// JSON body {"code":..,"message":..,"details":[]} like the gateway's; a method other than GET
// (or HEAD) is 405 before anything else is read, unless its route takes a body.
//
// Connections: httplib holds one worker thread per open connection (keep-alive or streaming),
// so a connection past Options::max_connections would wait, unanswered, for a worker. Instead
// it is handed to one of kRefusalThreads spare workers that answer its request 503 with
// Connection: close. TCP_NODELAY is on (httplib's default is off): without it every keep-alive
// answer waited for the client's delayed ACK (~40 ms; wrk at one connection: 34 Gets/s).
class HttpServer {
 public:
  struct Options {
    // Which flag sets these, in refusals (e.g. "--http-max-connections").
    std::string max_connections_flag = "--http-max-connections";
    int max_connections = 512;
    // An idle keep-alive connection is closed after this (httplib counts whole seconds).
    std::chrono::seconds idle_timeout{2};
    // If set, the port serves HTTPS with this context's (reloaded) certificate.
    std::shared_ptr<security::ServerTlsContext> tls;
    // The requests (method, raw target) that take a body of up to kMaxBodyBytes: the
    // gateway's body "*" routes (GetMany). Every other request with a body is 413, and every
    // other method than GET/HEAD 405, before the body is read. Unset: none takes one.
    std::function<bool(absl::string_view method, absl::string_view target)> takes_body;
  };
  struct Reply {
    int status = 200;
    std::string body;
    std::string content_type = "text/plain; charset=utf-8";
  };
  using Handler = std::function<Reply()>;
  // Workers that answer the connections past Options::max_connections (503, then close).
  static constexpr int kRefusalThreads = 4;
  static constexpr size_t kMaxHeaderCount = 100;
  // Names and values of all headers together.
  static constexpr size_t kMaxHeaderBytes = 64 * 1024;
  // A request body, where one is taken (Options::takes_body): gRPC's default message size,
  // which the request must fit in anyway.
  static constexpr size_t kMaxBodyBytes = 4 * 1024 * 1024;
  static constexpr std::chrono::milliseconds kReadTimeout{500};
  // Connections the kernel queues for accept (capped by net.core.somaxconn).
  static constexpr int kListenBacklog = 1024;
  // Requests a keep-alive connection may carry before httplib closes it (its default is 5).
  static constexpr size_t kKeepAliveMaxRequests = 10000;

  HttpServer() : HttpServer(Options()) {}
  explicit HttpServer(Options options);
  ~HttpServer();

  void Get(const std::string& path, Handler handler);
  // For handlers that need the request or streamed responses (the HTTP/JSON gateway).
  httplib::Server& native() { return *server_; }
  // Binds (port 0: any free port) and starts serving; returns the bound port.
  absl::StatusOr<int> Start(const std::string& bind_address, int port);
  void Stop();

  // Open connections now (refused ones not counted), and connections refused since Start.
  int open_connections() const;
  // The listening socket's accept backlog as the kernel applies it (TCP_INFO), -1 if unknown.
  int listen_backlog() const;
  int64_t refused_connections() const;

 private:
  class ConnectionQueue;
  struct Counters;

  const Options options_;
  std::shared_ptr<Counters> counters_;
  std::unique_ptr<httplib::Server> server_;
  // The listening socket, noted while Start binds it (on the caller's thread).
  int listen_fd_ = -1;
  std::thread thread_;
};

}  // namespace kiq::router
