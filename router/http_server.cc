#include "router/http_server.h"

#include <httplib.h>

#include <algorithm>
#include <chrono>
#include <iterator>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace kiq::router {

namespace {

// gRPC codes in the JSON bodies, as the gateway's errors carry them.
constexpr int kInvalidArgument = 3;
constexpr int kDeadlineExceeded = 4;
constexpr int kNotFound = 5;
constexpr int kUnimplemented = 12;

// The messages are ours, never user input: no escaping needed.
void Refuse(httplib::Response& res, int http_status, int code, absl::string_view message) {
  res.status = http_status;
  res.set_header("Connection", "close");
  res.set_content(absl::StrCat("{\"code\":", code, ",\"message\":\"", message, "\"}"),
                  "application/json");
}

// Checks a request whose headers httplib has read, before routing reads its body.
httplib::Server::HandlerResponse CheckLimits(const httplib::Request& req, httplib::Response& res) {
  // httplib adds the connection's addresses as headers of its own.
  static constexpr absl::string_view kAdded[] = {"REMOTE_ADDR", "REMOTE_PORT", "LOCAL_ADDR",
                                                 "LOCAL_PORT"};
  size_t count = 0;
  size_t bytes = 0;
  for (const auto& [name, value] : req.headers) {
    if (std::find(std::begin(kAdded), std::end(kAdded), name) != std::end(kAdded)) continue;
    ++count;
    bytes += name.size() + value.size();
  }
  if (count > HttpServer::kMaxHeaderCount) {
    Refuse(res, 431, kInvalidArgument,
           absl::StrCat("the request has ", count, " headers, over the limit of ",
                        HttpServer::kMaxHeaderCount));
    return httplib::Server::HandlerResponse::Handled;
  }
  if (bytes > HttpServer::kMaxHeaderBytes) {
    Refuse(res, 431, kInvalidArgument,
           absl::StrCat("the request's headers are ", bytes, " bytes, over the limit of ",
                        HttpServer::kMaxHeaderBytes));
    return httplib::Server::HandlerResponse::Handled;
  }
  const std::string length = req.get_header_value("Content-Length");
  if (req.has_header("Transfer-Encoding") || (!length.empty() && length != "0")) {
    Refuse(res, 413, kInvalidArgument,
           absl::StrCat("no route takes a request body (", req.method, " with ",
                        length.empty() ? std::string("a chunked body")
                                       : absl::StrCat("Content-Length ", length.substr(0, 20)),
                        ")"));
    return httplib::Server::HandlerResponse::Handled;
  }
  return httplib::Server::HandlerResponse::Unhandled;
}

// A JSON body for the errors httplib answers itself (414, 400, 413, ...).
httplib::Server::HandlerResponse ErrorBody(const httplib::Request&, httplib::Response& res) {
  if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
  int code = kInvalidArgument;
  std::string message = absl::StrCat("HTTP ", res.status);
  switch (res.status) {
    case 400:
      message = "malformed request (or a header line over 8 KiB)";
      break;
    case 404:
      code = kNotFound;
      message = "no such route";
      break;
    case 405:
      code = kUnimplemented;
      message = "method not allowed";
      break;
    case 408:
      code = kDeadlineExceeded;
      message = "request timeout";
      break;
    case 413:
      message = "request body too large";
      break;
    case 414:
      message = "request line over 8 KiB";
      break;
    default:
      break;
  }
  res.set_content(absl::StrCat("{\"code\":", code, ",\"message\":\"", message, "\"}"),
                  "application/json");
  return httplib::Server::HandlerResponse::Handled;
}

}  // namespace

HttpServer::HttpServer() : server_(std::make_unique<httplib::Server>()) {
  // Each open HTTP/JSON stream (Subscribe) holds one of httplib's worker threads until the
  // client leaves; the default pool (8 on small machines) would let a few subscribers starve
  // /healthz and /metrics.
  server_->new_task_queue = [] { return new httplib::ThreadPool(kWorkerThreads); };
  // Slow clients: a worker waits at most this long for each read, or for the next request.
  server_->set_read_timeout(kReadTimeout);
  server_->set_keep_alive_timeout(kKeepAliveTimeout.count());
  // No route takes a body (CheckLimits refuses one first); this bounds what httplib would read.
  server_->set_payload_max_length(kMaxHeaderBytes);
  server_->set_pre_routing_handler(CheckLimits);
  server_->set_error_handler(httplib::Server::HandlerWithResponse(ErrorBody));
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
