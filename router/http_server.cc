#include "router/http_server.h"

#include <httplib.h>

#include <chrono>

#include "absl/strings/str_cat.h"

namespace kiq::router {

HttpServer::HttpServer() : server_(std::make_unique<httplib::Server>()) {
  // Each open HTTP/JSON stream (Subscribe) holds one of httplib's worker threads until the
  // client leaves; the default pool (8 on small machines) would let a few subscribers starve
  // /healthz and /metrics.
  server_->new_task_queue = [] { return new httplib::ThreadPool(kWorkerThreads); };
}

HttpServer::~HttpServer() { Stop(); }

void HttpServer::Get(const std::string& path, Handler handler) {
  server_->Get(path, [handler](const httplib::Request&, httplib::Response& res) {
    Reply reply = handler();
    res.status = reply.status;
    res.set_content(reply.body, reply.content_type.c_str());
  });
}

absl::StatusOr<int> HttpServer::Start(const std::string& bind_address, int port) {
  int bound = port;
  if (port == 0) {
    bound = server_->bind_to_any_port(bind_address);
  } else if (!server_->bind_to_port(bind_address, port)) {
    bound = -1;
  }
  if (bound <= 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", bind_address, ":", port));
  }
  thread_ = std::thread([this] { server_->listen_after_bind(); });
  // httplib's stop() is lost if it comes before the listening loop starts (Stop would then
  // join forever), so Start returns only once the server runs.
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!server_->is_running() && std::chrono::steady_clock::now() < give_up) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return bound;
}

void HttpServer::Stop() {
  if (thread_.joinable()) {
    server_->stop();
    thread_.join();
  }
}

}  // namespace kiq::router
