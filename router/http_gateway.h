#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <grpcpp/channel.h>
#include <grpcpp/support/status.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace google::protobuf {
class Descriptor;
class Message;
class MethodDescriptor;
}  // namespace google::protobuf

namespace httplib {
class Server;
struct Request;
struct Response;
}  // namespace httplib

namespace kiq::router {

// A google.api.http path template: literal segments, `*` / `{field}` / `{field=*}` (one
// segment) and `**` / `{field=**}` (any number of segments, at most one per template).
class PathTemplate {
 public:
  static absl::StatusOr<PathTemplate> Parse(absl::string_view path);

  // Matches a raw (still percent-encoded) request path. On success returns the variable
  // bindings (field path → percent-decoded value); a `**` variable keeps its slashes.
  bool Match(absl::string_view raw_path,
             std::vector<std::pair<std::string, std::string>>* bindings) const;

  const std::string& text() const { return text_; }

 private:
  struct Segment {
    enum Kind { kLiteral, kOne, kMany } kind = kLiteral;
    std::string literal;
    std::string field;  // empty for an unbound wildcard
  };
  std::string text_;
  std::vector<Segment> segments_;
};

// Percent-decodes a URL component; `plus_is_space` for query strings. Fails on a malformed
// escape or a result that is not valid UTF-8 (string fields must be UTF-8).
absl::StatusOr<std::string> PercentDecode(absl::string_view s, bool plus_is_space);

// Sets the field at a dotted path (`a.b.c`) of `message` from its text form, the way
// grpc-gateway maps query parameters: scalars parsed, enums by name or number, bytes as
// (URL-safe or standard) base64, repeated fields appended to.
absl::Status SetFieldFromText(google::protobuf::Message* message, absl::string_view path,
                              absl::string_view value);

// Fills `request` for a route whose template `path_template` matched with `bindings` (see
// PathTemplate::Match): the parameters of the raw `query` string (percent-decoded, '+' a space),
// then the path variables. INVALID_ARGUMENT naming the parameter or field. Pure.
absl::Status FillRequest(absl::string_view path_template,
                         const std::vector<std::pair<std::string, std::string>>& bindings,
                         absl::string_view query, google::protobuf::Message* request);

// grpc-gateway's HTTPStatusFromCode.
int HttpStatusFromGrpcCode(grpc::StatusCode code);

// The JSON body of an error: {"code": <grpc code>, "message": ..., "details": []}.
std::string ErrorJson(grpc::StatusCode code, absl::string_view message);

// The HTTP/JSON gateway: routes read from the google.api.http annotations of the given
// services in the generated descriptor pool, each request translated into the RPC's request
// message (the JSON body for body "*", then query parameters, then path variables), sent through
// `channel` (the gRPC server's in-process channel, so the same implementation answers) and the
// response converted with the proto3 JSON mapping. Server-streaming RPCs answer chunked
// application/x-ndjson: {"result": ...} per message and a final {"error": ...} line if the
// stream fails.
class HttpGateway {
 public:
  // A method the gateway may answer by a function call on the HTTP connection's thread. The
  // function gets the request, the client's Authorization header if it sent one, and the
  // response to fill; it returns the call's status, or nullopt to decline (e.g. the answer
  // needs a wait or a forward), and then the call goes through the channel like any other.
  struct DirectMethod {
    const google::protobuf::Descriptor* request_type = nullptr;
    const google::protobuf::Descriptor* response_type = nullptr;
    std::function<std::optional<grpc::Status>(const google::protobuf::Message& request,
                                              std::optional<absl::string_view> authorization,
                                              google::protobuf::Message* response)>
        answer;
    // Optional: appends the JSON of a direct answer, exactly as protobuf's printer would write
    // it, or returns false (appending nothing) to leave it to that printer.
    std::function<bool(const google::protobuf::Message& response, std::string* json)> render;
  };
  // A DirectMethod for a generated Request/Response pair.
  template <typename Request, typename Response>
  static DirectMethod Direct(std::function<std::optional<grpc::Status>(
                                 const Request&, std::optional<absl::string_view>, Response*)>
                                 answer,
                             bool (*render)(const Response&, std::string*) = nullptr) {
    DirectMethod direct{Request::descriptor(), Response::descriptor(),
                        [answer = std::move(answer)](const google::protobuf::Message& request,
                                                     std::optional<absl::string_view> authorization,
                                                     google::protobuf::Message* response) {
                          return answer(static_cast<const Request&>(request), authorization,
                                        static_cast<Response*>(response));
                        },
                        nullptr};
    if (render != nullptr) {
      direct.render = [render](const google::protobuf::Message& response, std::string* json) {
        return render(static_cast<const Response&>(response), json);
      };
    }
    return direct;
  }

  struct Options {
    // Deadline of a call unless the request sets `grpc-timeout` (e.g. "5S", "200m").
    absl::Duration default_timeout = absl::Seconds(30);
    // Streams have no default deadline: a subscription lasts until the client leaves.
    // A stream that fails within this long of its start answers with the error's HTTP status;
    // later failures arrive as a final {"error": ...} line of a 200 response (grpc-gateway).
    absl::Duration stream_status_wait = absl::Seconds(2);
    // Server streams open at once; past it a new one is refused 429 (RESOURCE_EXHAUSTED), so
    // that subscribers cannot take every connection of the port (--http-max-streams).
    int max_streams = 256;
    // Unary methods answered without the channel when they can be, keyed by gRPC path
    // ("/kiq.v1.QueryService/Get"): a keep-alive request then costs no hand-off to a gRPC
    // thread and back (the largest cost of an HTTP Get in the profile). See DirectMethod.
    std::map<std::string, DirectMethod> direct;
  };

  static absl::StatusOr<std::unique_ptr<HttpGateway>> Create(
      std::shared_ptr<grpc::ChannelInterface> channel,
      const std::vector<std::string>& service_names, Options options);
  static absl::StatusOr<std::unique_ptr<HttpGateway>> Create(
      std::shared_ptr<grpc::ChannelInterface> channel,
      const std::vector<std::string>& service_names) {
    return Create(std::move(channel), service_names, Options());
  }

  // Registers the routes on `server` (every method, so a known path with another method
  // answers 405 and an unknown one a JSON 404).
  void Register(httplib::Server& server);

  int open_streams() const { return open_streams_.load(); }

  // Whether a request (method, raw target with its query) is for a body "*" route: the
  // HttpServer's Options::takes_body.
  bool TakesBody(absl::string_view method, absl::string_view target) const;

  // For tests and logs: "GET /v1/stores/{store}/count → kiq.v1.QueryService.Count".
  std::vector<std::string> Describe() const;

  struct Route {
    std::string http_method;
    PathTemplate path;
    const google::protobuf::MethodDescriptor* method = nullptr;
    std::string grpc_path;  // "/kiq.v1.QueryService/Count"
    bool body = false;      // body "*": the request message is the JSON body
    // The generated messages' prototypes, looked up once.
    const google::protobuf::Message* request_prototype = nullptr;
    const google::protobuf::Message* response_prototype = nullptr;
    // Options::direct's entry for the method, if any.
    const DirectMethod* direct = nullptr;
  };

 private:
  HttpGateway(std::shared_ptr<grpc::ChannelInterface> channel, std::vector<Route> routes,
              Options options);
  void Handle(const httplib::Request& req, httplib::Response& res) const;
  void Unary(const Route& route, const httplib::Request& req,
             std::unique_ptr<google::protobuf::Message> request, httplib::Response& res) const;
  // Sends `status`, or `response` in the proto3 JSON mapping if it is OK (through `render`
  // when one is given and takes it).
  static void Reply(const Route& route, const grpc::Status& status,
                    const google::protobuf::Message& response, httplib::Response& res,
                    const DirectMethod* render = nullptr);
  void ServerStreaming(const Route& route, const httplib::Request& req,
                       std::unique_ptr<google::protobuf::Message> request,
                       httplib::Response& res) const;

  std::shared_ptr<grpc::ChannelInterface> channel_;
  std::vector<Route> routes_;
  Options options_;
  // Server streams being served; each StreamCall gives its slot back when it goes away.
  mutable std::atomic<int> open_streams_{0};
};

}  // namespace kiq::router
