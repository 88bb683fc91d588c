#pragma once

#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"

namespace httplib {
class Server;
}

namespace kiq::router {

// The node's HTTP port (cpp-httplib, its own thread pool): operations endpoints (/metrics,
// /healthz, /readyz) and the HTTP/JSON gateway (router/http_gateway.h). Handlers run on httplib's
// threads and must be thread-safe. Register handlers, then Start; Stop (or the destructor) stops
// serving.
class HttpServer {
 public:
  struct Reply {
    int status = 200;
    std::string body;
    std::string content_type = "text/plain; charset=utf-8";
  };
  using Handler = std::function<Reply()>;
  // Concurrent HTTP connections served (open streams included).
  static constexpr int kWorkerThreads = 64;

  HttpServer();
  ~HttpServer();

  void Get(const std::string& path, Handler handler);
  // For handlers that need the request or streamed responses (the HTTP/JSON gateway).
  httplib::Server& native() { return *server_; }
  // Binds (port 0: any free port) and starts serving; returns the bound port.
  absl::StatusOr<int> Start(const std::string& bind_address, int port);
  void Stop();

 private:
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
};

}  // namespace kiq::router
