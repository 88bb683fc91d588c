#include "router/http_server.h"

#include <httplib.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <iterator>
#include <memory>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "common/thread_name.h"

namespace kiq::router {

namespace {

// gRPC codes in the JSON bodies, as the gateway's errors carry them.
constexpr int kInvalidArgument = 3;
constexpr int kDeadlineExceeded = 4;
constexpr int kNotFound = 5;
constexpr int kUnimplemented = 12;
constexpr int kUnavailable = 14;

// {"code":..,"message":..,"details":[]}, the message JSON-escaped (it may quote a method).
std::string ErrorJson(int code, absl::string_view message) {
  rapidjson::StringBuffer out;
  rapidjson::Writer<rapidjson::StringBuffer> writer(out);
  writer.StartObject();
  writer.Key("code");
  writer.Int(code);
  writer.Key("message");
  writer.String(message.data(), static_cast<rapidjson::SizeType>(message.size()));
  writer.Key("details");
  writer.StartArray();
  writer.EndArray();
  writer.EndObject();
  return out.GetString();
}

// Answers and then closes the connection. httplib keeps a connection alive whatever the
// response's Connection header says; a content provider that returns false (after writing the
// whole body) makes it close the connection once the answer is out.
void Refuse(httplib::Response& res, int http_status, int code, absl::string_view message) {
  res.status = http_status;
  res.set_header("Connection", "close");
  auto body = std::make_shared<const std::string>(ErrorJson(code, message));
  res.set_content_provider(
      body->size(), "application/json",
      [body](size_t offset, size_t length, httplib::DataSink& sink) {
        sink.write(body->data() + offset, length);
        return false;
      });
}

// Set on a refusal worker while it answers a connection past the limit.
thread_local bool t_refusing = false;

// Checks a request whose headers httplib has read, before routing reads its body.
httplib::Server::HandlerResponse CheckLimits(const httplib::Request& req, httplib::Response& res,
                                             const HttpServer::Options& options) {
  const bool takes_body = options.takes_body && options.takes_body(req.method, req.target);
  if (req.method != "GET" && req.method != "HEAD" && !takes_body) {
    // Every route is a GET: say so before httplib would try to read a body (a POST without
    // one was a 400 with an empty body). grpc-gateway answers 405 with code UNIMPLEMENTED.
    res.set_header("Allow", "GET");
    Refuse(res, 405, kUnimplemented,
           absl::StrCat("method ", req.method.substr(0, 32), " not allowed (only GET)"));
    return httplib::Server::HandlerResponse::Handled;
  }
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
  if (takes_body) {
    // httplib itself refuses a longer chunked body (set_payload_max_length).
    size_t bytes = 0;
    if (!length.empty() &&
        (!absl::SimpleAtoi(length, &bytes) || bytes > HttpServer::kMaxBodyBytes)) {
      Refuse(res, 413, kInvalidArgument,
             absl::StrCat("the request body is ", length.substr(0, 20),
                          " bytes, over the limit of ", HttpServer::kMaxBodyBytes));
      return httplib::Server::HandlerResponse::Handled;
    }
    return httplib::Server::HandlerResponse::Unhandled;
  }
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
  if (!res.body.empty() || res.content_length_ > 0) return httplib::Server::HandlerResponse::Unhandled;
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
  res.set_content(ErrorJson(code, message), "application/json");
  return httplib::Server::HandlerResponse::Handled;
}

}  // namespace

struct HttpServer::Counters {
  std::atomic<int> open{0};
  std::atomic<int64_t> refused{0};
};

// httplib's task queue gets one task per accepted connection, which serves the connection to
// its end. Up to max_connections go to workers of their own; the others to the refusal
// workers, whose pre-routing check answers 503. A silent refused client holds a refusal worker
// until the idle timeout (then it is dropped), so refusals may queue but never take a worker.
class HttpServer::ConnectionQueue : public httplib::TaskQueue {
 public:
  ConnectionQueue(int max_connections, std::shared_ptr<Counters> counters)
      : max_(max_connections),
        counters_(std::move(counters)),
        workers_(static_cast<size_t>(max_connections)),
        refusals_(kRefusalThreads) {}

  void enqueue(std::function<void()> fn) override {
    if (counters_->open.fetch_add(1) >= max_) {
      counters_->open.fetch_sub(1);
      counters_->refused.fetch_add(1);
      refusals_.enqueue([fn = std::move(fn)] {
        t_refusing = true;
        fn();
        t_refusing = false;
      });
      return;
    }
    workers_.enqueue([counters = counters_, fn = std::move(fn)] {
      fn();
      counters->open.fetch_sub(1);
    });
  }

  void shutdown() override {
    workers_.shutdown();
    refusals_.shutdown();
  }

 private:
  const int max_;
  const std::shared_ptr<Counters> counters_;
  httplib::ThreadPool workers_;
  httplib::ThreadPool refusals_;
};

HttpServer::HttpServer(Options options)
    : options_(std::move(options)),
      counters_(std::make_shared<Counters>()),
      server_(options_.tls ? std::make_unique<httplib::SSLServer>(
                                 [tls = options_.tls](SSL_CTX& ctx) { return tls->Configure(ctx); })
                           : std::make_unique<httplib::Server>()) {
  // httplib holds a worker per connection (an open Subscribe stream holds one until the client
  // leaves): one worker for each connection allowed, and spare ones to refuse the others.
  server_->new_task_queue = [max = options_.max_connections, counters = counters_] {
    return new ConnectionQueue(max, counters);
  };
  server_->set_tcp_nodelay(true);
  // httplib listens with a backlog of 5 (CPPHTTPLIB_LISTEN_BACKLOG, compiled into Debian's
  // libcpp-httplib): 64 clients connecting at once overflowed it, the kernel dropped their SYNs
  // and they connected ~0.5-1 s later (wrk's p99 of 0.45-0.69 s at 64 connections; `nstat`
  // counted the ListenOverflows). Start listens again on the socket with kListenBacklog.
  server_->set_socket_options([fd = &listen_fd_](int sock) {
    httplib::default_socket_options(sock);
    *fd = sock;
  });
  // Slow clients: a worker waits at most this long for each read.
  server_->set_read_timeout(kReadTimeout);
  server_->set_keep_alive_timeout(static_cast<time_t>(options_.idle_timeout.count()));
  server_->set_keep_alive_max_count(kKeepAliveMaxRequests);
  // Only the routes of takes_body take a body (CheckLimits refuses the others first); this
  // bounds what httplib would read.
  server_->set_payload_max_length(options_.takes_body ? kMaxBodyBytes : kMaxHeaderBytes);
  server_->set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    if (t_refusing) {
      Refuse(res, 503, kUnavailable,
             absl::StrCat("too many connections: this port serves ", options_.max_connections,
                          " at once (", options_.max_connections_flag, "); retry later"));
      return httplib::Server::HandlerResponse::Handled;
    }
    return CheckLimits(req, res, options_);
  });
  server_->set_error_handler(httplib::Server::HandlerWithResponse(ErrorBody));
}

int HttpServer::listen_backlog() const {
  tcp_info info{};
  socklen_t size = sizeof(info);
  if (listen_fd_ < 0 || getsockopt(listen_fd_, IPPROTO_TCP, TCP_INFO, &info, &size) != 0) return -1;
  return static_cast<int>(info.tcpi_sacked);  // for a listening socket: its backlog
}

int HttpServer::open_connections() const { return counters_->open.load(); }
int64_t HttpServer::refused_connections() const { return counters_->refused.load(); }

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
  // Linux takes a second listen() on a listening socket as a new backlog (the kernel caps it at
  // net.core.somaxconn). Best effort: with httplib's 5 the port still works.
  if (listen_fd_ >= 0) ::listen(listen_fd_, kListenBacklog);
  // cpp-httplib starts its connection threads from here: they are kiq-http too.
  thread_ = std::thread([this] {
    NameThisThread("kiq-http");
    server_->listen_after_bind();
  });
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
