#include "router/http_gateway.h"

#include <httplib.h>

#include <chrono>
#include <optional>
#include <set>

#include <google/protobuf/descriptor.h>
#include <google/protobuf/dynamic_message.h>
#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>
#include <grpcpp/client_context.h>
#include <grpcpp/completion_queue.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/support/byte_buffer.h>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/logging.h"
#include "common/proto_field.h"
#include "common/status.h"
#include "common/utf8.h"
#include "google/api/annotations.pb.h"

namespace kiq::router {
namespace {

namespace pb = google::protobuf;

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// grpc-timeout's format (gRPC over HTTP/2): up to 8 digits and a unit H M S m u n.
absl::StatusOr<absl::Duration> ParseGrpcTimeout(absl::string_view text) {
  if (text.size() < 2 || text.size() > 9) {
    return absl::InvalidArgumentError(absl::StrCat("bad grpc-timeout ", ClipKey(text)));
  }
  int64_t amount = 0;
  if (!absl::SimpleAtoi(text.substr(0, text.size() - 1), &amount) || amount < 0) {
    return absl::InvalidArgumentError(absl::StrCat("bad grpc-timeout ", ClipKey(text)));
  }
  switch (text.back()) {
    case 'H':
      return absl::Hours(amount);
    case 'M':
      return absl::Minutes(amount);
    case 'S':
      return absl::Seconds(amount);
    case 'm':
      return absl::Milliseconds(amount);
    case 'u':
      return absl::Microseconds(amount);
    case 'n':
      return absl::Nanoseconds(amount);
  }
  return absl::InvalidArgumentError(
      absl::StrCat("bad grpc-timeout ", ClipKey(text), ": unit must be one of H M S m u n"));
}

grpc::ByteBuffer Serialize(const pb::Message& message) {
  std::string bytes = message.SerializeAsString();
  grpc::Slice slice(bytes);
  return grpc::ByteBuffer(&slice, 1);
}

bool Parse(const grpc::ByteBuffer& buffer, pb::Message* message) {
  std::vector<grpc::Slice> slices;
  if (!buffer.Dump(&slices).ok()) return false;
  std::string bytes;
  for (const grpc::Slice& s : slices) {
    bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  }
  return message->ParseFromString(bytes);
}

pb::util::JsonPrintOptions PrintOptions() {
  pb::util::JsonPrintOptions options;
  // Like grpc-gateway's default marshaler: proto field names are lowerCamelCase JSON names,
  // default values omitted.
  options.preserve_proto_field_names = false;
  return options;
}

void SendError(httplib::Response& res, grpc::StatusCode code, absl::string_view message) {
  res.status = HttpStatusFromGrpcCode(code);
  res.set_content(ErrorJson(code, message), "application/json");
}

std::string ErrorObject(grpc::StatusCode code, absl::string_view message) {
  // Written by hand for grpc-gateway's field order; the message is escaped by the JSON printer.
  pb::Value text;
  text.set_string_value(std::string(message));
  std::string escaped;
  if (!pb::util::MessageToJsonString(text, &escaped).ok()) escaped = "\"\"";
  return absl::StrCat("{\"code\":", static_cast<int>(code), ",\"message\":", escaped,
                      ",\"details\":[]}");
}

// Waits for `tag` on `cq`; every `poll` checks `still_wanted` and cancels the call if not.
bool Await(grpc::CompletionQueue& cq, grpc::ClientContext& ctx, void* tag,
           const std::function<bool()>& still_wanted) {
  bool cancelled = false;
  for (;;) {
    void* got = nullptr;
    bool ok = false;
    auto deadline = std::chrono::system_clock::now() + std::chrono::milliseconds(200);
    switch (cq.AsyncNext(&got, &ok, deadline)) {
      case grpc::CompletionQueue::GOT_EVENT:
        if (got == tag) return ok;
        break;
      case grpc::CompletionQueue::TIMEOUT:
        if (!cancelled && still_wanted && !still_wanted()) {
          // The HTTP client went away: stop the RPC (the server sees CANCELLED).
          ctx.TryCancel();
          cancelled = true;
        }
        break;
      case grpc::CompletionQueue::SHUTDOWN:
        return false;
    }
  }
}

// Whether the (dotted) field path names a repeated field; false if it names none (setting it
// then reports the unknown field).
bool IsRepeatedField(const pb::Descriptor* desc, absl::string_view path) {
  const pb::FieldDescriptor* field = nullptr;
  for (absl::string_view name : absl::StrSplit(path, '.')) {
    if (desc == nullptr) return false;
    field = desc->FindFieldByName(std::string(name));
    if (field == nullptr) field = desc->FindFieldByCamelcaseName(std::string(name));
    if (field == nullptr) return false;
    desc = field->message_type();
  }
  return field != nullptr && field->is_repeated();
}

// A query parameter: a field not already bound by the path.
absl::Status SetQueryParameter(pb::Message* request, const std::set<std::string>& bound,
                               absl::string_view path_template, const std::string& name,
                               absl::string_view value) {
  if (bound.count(name) > 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("parameter '", name, "' is already bound by the path ", path_template));
  }
  return SetFieldFromText(request, name, value);
}

}  // namespace

absl::Status FillRequest(absl::string_view path_template,
                         const std::vector<std::pair<std::string, std::string>>& bindings,
                         absl::string_view query, pb::Message* request) {
  std::set<std::string> bound;
  for (const auto& [field, value] : bindings) bound.insert(field);
  std::set<std::string> seen;
  // Query parameters first, path variables last: grpc-gateway rejects neither, but a query
  // parameter naming a path variable is a client mistake worth reporting.
  // The query string is decoded here, not by httplib: '+' is a space in a query (HTML forms,
  // curl --data-urlencode) and a malformed escape must be an error, not passed on.
  for (absl::string_view pair : absl::StrSplit(query, '&', absl::SkipEmpty())) {
    std::pair<absl::string_view, absl::string_view> kv =
        absl::StrSplit(pair, absl::MaxSplits('=', 1));
    absl::StatusOr<std::string> name = PercentDecode(kv.first, /*plus_is_space=*/true);
    absl::StatusOr<std::string> value = PercentDecode(kv.second, /*plus_is_space=*/true);
    if (!name.ok() || !value.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("query parameter '", ClipKey(pair),
                       "': ", (name.ok() ? value.status() : name.status()).message()));
    }
    if (!seen.insert(*name).second && !IsRepeatedField(request->GetDescriptor(), *name)) {
      // grpc-gateway: only a repeated field takes a parameter more than once.
      return absl::InvalidArgumentError(absl::StrCat("parameter ", ClipKey(*name),
                                                     " is given more than once, and its field "
                                                     "is not repeated"));
    }
    absl::Status s = SetQueryParameter(request, bound, path_template, *name, *value);
    if (!s.ok()) return s;
  }
  for (const auto& [field, value] : bindings) {
    absl::Status set = SetFieldFromText(request, field, value);
    if (!set.ok()) return set;
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> PercentDecode(absl::string_view s, bool plus_is_space) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%') {
      int hi = i + 2 < s.size() + 0 ? HexValue(s[i + 1]) : -1;
      int lo = i + 2 < s.size() ? HexValue(s[i + 2]) : -1;
      if (hi < 0 || lo < 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("malformed percent-escape at offset ", i, " of ", ClipKey(s)));
      }
      out.push_back(static_cast<char>(hi * 16 + lo));
      i += 2;
    } else if (plus_is_space && s[i] == '+') {
      out.push_back(' ');
    } else {
      out.push_back(s[i]);
    }
  }
  if (!IsValidUtf8(out)) {
    return absl::InvalidArgumentError(absl::StrCat(ClipKey(s), " does not decode to valid UTF-8"));
  }
  return out;
}

absl::StatusOr<PathTemplate> PathTemplate::Parse(absl::string_view path) {
  auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat("path template '", path, "': ", why));
  };
  if (path.empty() || path[0] != '/') return bad("must start with '/'");
  if (path.find(':') != absl::string_view::npos) return bad("custom verbs are not supported");
  PathTemplate t;
  t.text_ = std::string(path);
  bool seen_many = false;
  for (absl::string_view part : absl::StrSplit(path.substr(1), '/')) {
    Segment seg;
    absl::string_view pattern = part;
    if (!part.empty() && part.front() == '{') {
      if (part.back() != '}') return bad("unterminated variable");
      absl::string_view inner = part.substr(1, part.size() - 2);
      size_t eq = inner.find('=');
      seg.field = std::string(inner.substr(0, eq));
      pattern = eq == absl::string_view::npos ? "*" : inner.substr(eq + 1);
      if (seg.field.empty()) return bad("variable without a field name");
    }
    if (pattern == "*") {
      seg.kind = Segment::kOne;
    } else if (pattern == "**") {
      if (seen_many) return bad("more than one '**'");
      seen_many = true;
      seg.kind = Segment::kMany;
    } else if (seg.field.empty() && pattern.find_first_of("{}*") == absl::string_view::npos &&
               !pattern.empty()) {
      seg.literal = std::string(pattern);
    } else {
      return bad(absl::StrCat("unsupported segment '", part, "'"));
    }
    t.segments_.push_back(std::move(seg));
  }
  return t;
}

bool PathTemplate::Match(absl::string_view raw_path,
                         std::vector<std::pair<std::string, std::string>>* bindings) const {
  if (raw_path.empty() || raw_path[0] != '/') return false;
  std::vector<absl::string_view> parts = absl::StrSplit(raw_path.substr(1), '/');
  size_t many = segments_.size();
  for (size_t i = 0; i < segments_.size(); ++i) {
    if (segments_[i].kind == Segment::kMany) many = i;
  }
  size_t after = many == segments_.size() ? 0 : segments_.size() - many - 1;
  if (many == segments_.size() ? parts.size() != segments_.size()
                               : parts.size() < many + after + 1) {
    return false;
  }
  std::vector<std::pair<std::string, std::string>> out;
  auto bind = [&](const Segment& seg, absl::string_view raw) {
    if (seg.field.empty()) return true;
    absl::StatusOr<std::string> value = PercentDecode(raw, /*plus_is_space=*/false);
    if (!value.ok()) return false;
    out.emplace_back(seg.field, *std::move(value));
    return true;
  };
  auto one = [&](const Segment& seg, absl::string_view raw) {
    if (seg.kind == Segment::kLiteral) return raw == seg.literal;
    return !raw.empty() && bind(seg, raw);
  };
  for (size_t i = 0; i < std::min(many, segments_.size()); ++i) {
    if (!one(segments_[i], parts[i])) return false;
  }
  if (many < segments_.size()) {
    for (size_t k = 0; k < after; ++k) {
      if (!one(segments_[many + 1 + k], parts[parts.size() - after + k])) return false;
    }
    // The `**` variable spans the middle segments, slashes included.
    std::vector<absl::string_view> middle(parts.begin() + many, parts.end() - after);
    std::string joined = absl::StrJoin(middle, "/");
    if (joined.empty() || !bind(segments_[many], joined)) return false;
  }
  *bindings = std::move(out);
  return true;
}

absl::Status SetFieldFromText(pb::Message* message, absl::string_view path,
                              absl::string_view value) {
  std::vector<absl::string_view> names = absl::StrSplit(path, '.');
  pb::Message* target = message;
  for (size_t i = 0; i < names.size(); ++i) {
    const pb::Descriptor* desc = target->GetDescriptor();
    const pb::FieldDescriptor* field = desc->FindFieldByName(std::string(names[i]));
    if (field == nullptr) field = desc->FindFieldByCamelcaseName(std::string(names[i]));
    if (field == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(
          "unknown parameter '", path, "': ", desc->full_name(), " has no field '", names[i], "'"));
    }
    const pb::Reflection* refl = target->GetReflection();
    if (i + 1 < names.size()) {
      if (field->cpp_type() != pb::FieldDescriptor::CPPTYPE_MESSAGE || field->is_repeated()) {
        return absl::InvalidArgumentError(
            absl::StrCat("parameter '", path, "': '", names[i], "' is not a nested message"));
      }
      target = refl->MutableMessage(target, field);
      continue;
    }
    if (const pb::OneofDescriptor* oneof = field->real_containing_oneof(); oneof != nullptr) {
      // grpc-gateway: a second member of a oneof is an error, not a silent replacement
      // (e.g. a key in the path and ?key_bytes=).
      const pb::FieldDescriptor* set = refl->GetOneofFieldDescriptor(*target, oneof);
      if (set != nullptr && set != field) {
        return absl::InvalidArgumentError(
            absl::StrCat("parameter '", path, "': oneof '", oneof->name(), "' is already set (by '",
                         set->name(), "')"));
      }
    }
    auto bad = [&](absl::string_view type) {
      return absl::InvalidArgumentError(
          absl::StrCat("parameter '", path, "': ", ClipKey(value), " is not a valid ", type));
    };
    switch (field->cpp_type()) {
      case pb::FieldDescriptor::CPPTYPE_INT32: {
        int32_t v;
        if (!absl::SimpleAtoi(value, &v)) return bad("int32");
        SetOrAddField(target, field, v);
        break;
      }
      case pb::FieldDescriptor::CPPTYPE_INT64: {
        int64_t v;
        if (!absl::SimpleAtoi(value, &v)) return bad("int64");
        SetOrAddField(target, field, v);
        break;
      }
      case pb::FieldDescriptor::CPPTYPE_UINT32: {
        uint32_t v;
        if (!absl::SimpleAtoi(value, &v)) return bad("uint32");
        SetOrAddField(target, field, v);
        break;
      }
      case pb::FieldDescriptor::CPPTYPE_UINT64: {
        uint64_t v;
        if (!absl::SimpleAtoi(value, &v)) return bad("uint64");
        SetOrAddField(target, field, v);
        break;
      }
      case pb::FieldDescriptor::CPPTYPE_DOUBLE: {
        double v;
        if (!absl::SimpleAtod(value, &v)) return bad("double");
        SetOrAddField(target, field, v);
        break;
      }
      case pb::FieldDescriptor::CPPTYPE_FLOAT: {
        float v;
        if (!absl::SimpleAtof(value, &v)) return bad("float");
        SetOrAddField(target, field, v);
        break;
      }
      case pb::FieldDescriptor::CPPTYPE_BOOL: {
        bool v;
        if (!absl::SimpleAtob(value, &v)) return bad("bool");
        SetOrAddField(target, field, v);
        break;
      }
      case pb::FieldDescriptor::CPPTYPE_ENUM: {
        const pb::EnumValueDescriptor* ev = field->enum_type()->FindValueByName(std::string(value));
        int number;
        if (ev == nullptr && absl::SimpleAtoi(value, &number)) {
          ev = field->enum_type()->FindValueByNumber(number);
        }
        if (ev == nullptr) return bad(field->enum_type()->full_name());
        SetOrAddField(target, field, ev);
        break;
      }
      case pb::FieldDescriptor::CPPTYPE_STRING: {
        std::string v(value);
        if (field->type() == pb::FieldDescriptor::TYPE_BYTES) {
          // grpc-gateway: bytes are base64, standard or URL-safe alphabet.
          if (!absl::Base64Unescape(value, &v) && !absl::WebSafeBase64Unescape(value, &v)) {
            return bad("base64 value");
          }
        }
        SetOrAddField(target, field, std::move(v));
        break;
      }
      case pb::FieldDescriptor::CPPTYPE_MESSAGE:
        return absl::InvalidArgumentError(absl::StrCat(
            "parameter '", path, "' names a message; set its fields (", path, ".<field>)"));
    }
  }
  return absl::OkStatus();
}

int HttpStatusFromGrpcCode(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK:
      return 200;
    case grpc::StatusCode::CANCELLED:
      return 499;
    case grpc::StatusCode::UNKNOWN:
      return 500;
    case grpc::StatusCode::INVALID_ARGUMENT:
      return 400;
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return 504;
    case grpc::StatusCode::NOT_FOUND:
      return 404;
    case grpc::StatusCode::ALREADY_EXISTS:
      return 409;
    case grpc::StatusCode::PERMISSION_DENIED:
      return 403;
    case grpc::StatusCode::UNAUTHENTICATED:
      return 401;
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return 429;
    case grpc::StatusCode::FAILED_PRECONDITION:
      return 400;
    case grpc::StatusCode::ABORTED:
      return 409;
    case grpc::StatusCode::OUT_OF_RANGE:
      return 400;
    case grpc::StatusCode::UNIMPLEMENTED:
      return 501;
    case grpc::StatusCode::INTERNAL:
      return 500;
    case grpc::StatusCode::UNAVAILABLE:
      return 503;
    case grpc::StatusCode::DATA_LOSS:
      return 500;
    default:
      return 500;
  }
}

std::string ErrorJson(grpc::StatusCode code, absl::string_view message) {
  return ErrorObject(code, message);
}

absl::StatusOr<std::unique_ptr<HttpGateway>> HttpGateway::Create(
    std::shared_ptr<grpc::ChannelInterface> channel, const std::vector<std::string>& service_names,
    Options options) {
  std::vector<Route> routes;
  for (const std::string& name : service_names) {
    const pb::ServiceDescriptor* service =
        pb::DescriptorPool::generated_pool()->FindServiceByName(name);
    if (service == nullptr) return absl::NotFoundError(absl::StrCat("no service ", name));
    for (int i = 0; i < service->method_count(); ++i) {
      const pb::MethodDescriptor* method = service->method(i);
      if (!method->options().HasExtension(google::api::http)) continue;
      if (method->client_streaming()) {
        return absl::InvalidArgumentError(absl::StrCat(
            method->full_name(), ": client-streaming RPCs cannot be served over HTTP/JSON"));
      }
      std::vector<google::api::HttpRule> rules = {
          method->options().GetExtension(google::api::http)};
      for (const google::api::HttpRule& extra : rules[0].additional_bindings()) {
        rules.push_back(extra);
      }
      for (const google::api::HttpRule& rule : rules) {
        // body "*": the whole request message is the JSON body (path variables bound on
        // top); a body naming one field is not needed by any kiq method.
        if (!rule.body().empty() && rule.body() != "*") {
          return absl::InvalidArgumentError(absl::StrCat(
              method->full_name(), ": only body \"*\" is supported, not \"", rule.body(), "\""));
        }
        Route route;
        route.body = !rule.body().empty();
        std::string path;
        switch (rule.pattern_case()) {
          case google::api::HttpRule::kGet:
            route.http_method = "GET";
            path = rule.get();
            break;
          case google::api::HttpRule::kPut:
            route.http_method = "PUT";
            path = rule.put();
            break;
          case google::api::HttpRule::kPost:
            route.http_method = "POST";
            path = rule.post();
            break;
          case google::api::HttpRule::kDelete:
            route.http_method = "DELETE";
            path = rule.delete_();
            break;
          case google::api::HttpRule::kPatch:
            route.http_method = "PATCH";
            path = rule.patch();
            break;
          default:
            return absl::InvalidArgumentError(
                absl::StrCat(method->full_name(), ": custom HTTP patterns are not supported"));
        }
        absl::StatusOr<PathTemplate> tmpl = PathTemplate::Parse(path);
        if (!tmpl.ok()) {
          return absl::InvalidArgumentError(
              absl::StrCat(method->full_name(), ": ", tmpl.status().message()));
        }
        route.path = *std::move(tmpl);
        route.method = method;
        route.request_prototype =
            pb::MessageFactory::generated_factory()->GetPrototype(method->input_type());
        route.response_prototype =
            pb::MessageFactory::generated_factory()->GetPrototype(method->output_type());
        route.grpc_path = absl::StrCat("/", service->full_name(), "/", method->name());
        routes.push_back(std::move(route));
      }
    }
  }
  for (const auto& [grpc_path, direct] : options.direct) {
    const Route* route = nullptr;
    for (const Route& r : routes) {
      if (r.grpc_path == grpc_path) route = &r;
    }
    if (route == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("direct method ", grpc_path, ": no HTTP route calls it"));
    }
    if (route->method->server_streaming()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "direct method ", grpc_path, ": only unary methods can be answered directly"));
    }
    if (direct.request_type != route->method->input_type() ||
        direct.response_type != route->method->output_type() || !direct.answer) {
      return absl::InvalidArgumentError(absl::StrCat(
          "direct method ", grpc_path, ": its types are not the method's, or it has no answer"));
    }
  }
  return std::unique_ptr<HttpGateway>(
      new HttpGateway(std::move(channel), std::move(routes), std::move(options)));
}

HttpGateway::HttpGateway(std::shared_ptr<grpc::ChannelInterface> channel, std::vector<Route> routes,
                         Options options)
    : channel_(std::move(channel)), routes_(std::move(routes)), options_(std::move(options)) {
  for (Route& route : routes_) {
    if (auto direct = options_.direct.find(route.grpc_path); direct != options_.direct.end()) {
      route.direct = &direct->second;
    }
  }
}

bool HttpGateway::TakesBody(absl::string_view method, absl::string_view target) const {
  const absl::string_view raw_path = target.substr(0, target.find('?'));
  for (const Route& r : routes_) {
    std::vector<std::pair<std::string, std::string>> bindings;
    if (r.body && r.http_method == method && r.path.Match(raw_path, &bindings)) return true;
  }
  return false;
}

std::vector<std::string> HttpGateway::Describe() const {
  std::vector<std::string> out;
  for (const Route& r : routes_) {
    out.push_back(absl::StrCat(r.http_method, " ", r.path.text(), " → ", r.method->full_name()));
  }
  return out;
}

void HttpGateway::Register(httplib::Server& server) {
  // One handler per first path segment of the routes ("/v1/..."), for every HTTP method, so
  // unknown paths and wrong methods under the API's prefix get JSON errors.
  std::set<std::string> prefixes;
  for (const Route& r : routes_) {
    absl::string_view text = r.path.text();
    prefixes.insert(std::string(text.substr(0, text.find('/', 1))));
  }
  for (const std::string& prefix : prefixes) {
    // [\s\S], not '.': httplib matches the decoded path, where a key may hold a newline.
    std::string pattern = absl::StrCat(prefix, "(/[\\s\\S]*)?");
    auto handler = [this](const httplib::Request& req, httplib::Response& res) {
      Handle(req, res);
    };
    server.Get(pattern, handler);
    server.Post(pattern, httplib::Server::Handler(handler));
    server.Put(pattern, httplib::Server::Handler(handler));
    server.Patch(pattern, httplib::Server::Handler(handler));
    server.Delete(pattern, httplib::Server::Handler(handler));
  }
}

void HttpGateway::Handle(const httplib::Request& req, httplib::Response& res) const {
  // req.path is already percent-decoded by httplib; match on the raw target so that an
  // encoded slash (%2F) inside a key stays inside its segment.
  absl::string_view target = req.target;
  absl::string_view raw_path = target.substr(0, target.find('?'));
  if (absl::StatusOr<std::string> decoded = PercentDecode(raw_path, /*plus_is_space=*/false);
      !decoded.ok()) {
    // grpc-gateway: a malformed escape (%ZZ) is a bad request, not an unknown path.
    SendError(res, grpc::StatusCode::INVALID_ARGUMENT,
              absl::StrCat("path: ", decoded.status().message()));
    return;
  }
  const Route* found = nullptr;
  bool other_method = false;
  std::vector<std::pair<std::string, std::string>> bindings;
  for (const Route& route : routes_) {
    std::vector<std::pair<std::string, std::string>> b;
    if (!route.path.Match(raw_path, &b)) continue;
    if (route.http_method != req.method) {
      other_method = true;
      continue;
    }
    found = &route;
    bindings = std::move(b);
    break;
  }
  if (found == nullptr) {
    if (other_method) {
      std::set<std::string> allowed;
      for (const Route& route : routes_) {
        std::vector<std::pair<std::string, std::string>> b;
        if (route.path.Match(raw_path, &b)) allowed.insert(route.http_method);
      }
      res.set_header("Allow", absl::StrJoin(allowed, ", "));
      res.status = 405;
      res.set_content(ErrorJson(grpc::StatusCode::UNIMPLEMENTED,
                                absl::StrCat("method ", ClipKey(req.method), " not allowed on ",
                                             ClipKey(raw_path))),
                      "application/json");
      return;
    }
    SendError(res, grpc::StatusCode::NOT_FOUND, absl::StrCat("no route for ", ClipKey(raw_path)));
    return;
  }

  std::unique_ptr<pb::Message> request(found->request_prototype->New());
  absl::string_view query;
  if (size_t q = target.find('?'); q != absl::string_view::npos) query = target.substr(q + 1);
  if (found->body) {
    // The body first, then the path variables over it (grpc-gateway's order for body "*").
    pb::util::JsonParseOptions options;
    options.ignore_unknown_fields = false;
    const std::string body = req.body.empty() ? "{}" : req.body;
    if (pb::util::Status s = pb::util::JsonStringToMessage(body, request.get(), options); !s.ok()) {
      const pb::StringPiece why = s.message();
      SendError(res, grpc::StatusCode::INVALID_ARGUMENT,
                absl::StrCat("body: ", ClipKey(absl::string_view(why.data(), why.size()))));
      return;
    }
  }
  if (absl::Status s = FillRequest(found->path.text(), bindings, query, request.get()); !s.ok()) {
    SendError(res, grpc::StatusCode::INVALID_ARGUMENT, s.message());
    return;
  }
  if (found->method->server_streaming()) {
    ServerStreaming(*found, req, std::move(request), res);
  } else {
    Unary(*found, req, std::move(request), res);
  }
}

namespace {

// The client's Authorization header becomes the call's "authorization" metadata, which the
// services check (router/auth.h) as they do for gRPC clients. Nothing else is passed: a
// client cannot claim to be a peer over HTTP.
void PassAuthorization(const httplib::Request& req, grpc::ClientContext& ctx) {
  if (req.has_header("Authorization")) {
    ctx.AddMetadata("authorization", req.get_header_value("Authorization"));
  }
}

// The timeout of a call: the client's grpc-timeout header, else the default (if any).
absl::StatusOr<std::optional<absl::Duration>> Timeout(const httplib::Request& req,
                                                      std::optional<absl::Duration> fallback) {
  if (auto header = req.headers.find("grpc-timeout"); header != req.headers.end()) {
    absl::StatusOr<absl::Duration> parsed = ParseGrpcTimeout(header->second);
    if (!parsed.ok()) return parsed.status();
    return std::optional<absl::Duration>(*parsed);
  }
  return fallback;
}

absl::Status SetDeadline(const httplib::Request& req, std::optional<absl::Duration> fallback,
                         grpc::ClientContext& ctx) {
  absl::StatusOr<std::optional<absl::Duration>> timeout = Timeout(req, fallback);
  if (!timeout.ok()) return timeout.status();
  if (timeout->has_value()) ctx.set_deadline(absl::ToChronoTime(absl::Now() + **timeout));
  return absl::OkStatus();
}

}  // namespace

void HttpGateway::Unary(const Route& route, const httplib::Request& req,
                        std::unique_ptr<pb::Message> request, httplib::Response& res) const {
  std::unique_ptr<pb::Message> response(route.response_prototype->New());
  // The deadline counts from here, whichever path answers; a bad grpc-timeout is refused before
  // anything answers.
  const absl::Time now = absl::Now();
  absl::StatusOr<std::optional<absl::Duration>> timeout = Timeout(req, options_.default_timeout);
  if (!timeout.ok()) {
    SendError(res, grpc::StatusCode::INVALID_ARGUMENT, timeout.status().message());
    return;
  }
  if (route.direct != nullptr) {
    // A direct answer needs no gRPC call state (no ClientContext, no copy of the header).
    std::optional<absl::string_view> authorization;
    if (auto header = req.headers.find("Authorization"); header != req.headers.end()) {
      authorization = header->second;
    }
    std::optional<grpc::Status> answered =
        route.direct->answer(*request, authorization, response.get());
    if (answered.has_value()) {
      Reply(route, *answered, *response, res, route.direct);
      return;
    }
    response->Clear();
  }
  grpc::ClientContext ctx;
  if (timeout->has_value()) ctx.set_deadline(absl::ToChronoTime(now + **timeout));
  PassAuthorization(req, ctx);
  grpc::CompletionQueue cq;
  grpc::TemplatedGenericStub<grpc::ByteBuffer, grpc::ByteBuffer> stub(channel_);
  grpc::ByteBuffer send = Serialize(*request);
  std::unique_ptr<grpc::GenericClientAsyncResponseReader> call =
      stub.PrepareUnaryCall(&ctx, route.grpc_path, send, &cq);
  call->StartCall();
  grpc::ByteBuffer reply;
  grpc::Status status;
  int tag = 1;
  call->Finish(&reply, &status, &tag);
  Await(cq, ctx, &tag, nullptr);
  cq.Shutdown();
  void* ignored;
  bool ok;
  while (cq.Next(&ignored, &ok)) {
  }
  if (status.ok() && !Parse(reply, response.get())) {
    status = grpc::Status(grpc::StatusCode::INTERNAL,
                          absl::StrCat("cannot parse the response of ", route.method->full_name()));
  }
  Reply(route, status, *response, res);
}

void HttpGateway::Reply(const Route& route, const grpc::Status& status, const pb::Message& response,
                        httplib::Response& res, const DirectMethod* render) {
  if (!status.ok()) {
    SendError(res, status.error_code(), status.error_message());
    return;
  }
  std::string json;
  if (render != nullptr && render->render && render->render(response, &json)) {
    res.status = 200;
    res.set_content(json, "application/json");
    return;
  }
  if (!pb::util::MessageToJsonString(response, &json, PrintOptions()).ok()) {
    SendError(res, grpc::StatusCode::INTERNAL,
              absl::StrCat("cannot convert the response of ", route.method->full_name()));
    return;
  }
  res.status = 200;
  res.set_content(json, "application/json");
}

namespace {

// One server-streaming call, shared by the handler (which waits for the first event to pick
// the HTTP status) and httplib's chunked content provider (which streams the rest).
struct StreamCall {
  grpc::ClientContext ctx;
  grpc::CompletionQueue cq;
  std::unique_ptr<grpc::GenericClientAsyncReaderWriter> call;
  const pb::MethodDescriptor* method = nullptr;
  grpc::ByteBuffer pending;  // a read message not yet written to the client
  bool have_pending = false;
  bool finished = false;  // Finish completed; `status` is final
  grpc::Status status;
  int tag = 0;
  std::atomic<int>* slot = nullptr;  // the gateway's open-stream count, given back at the end

  ~StreamCall() {
    if (!finished) {
      ctx.TryCancel();
      Finish(nullptr);
    }
    cq.Shutdown();
    void* ignored;
    bool ok;
    while (cq.Next(&ignored, &ok)) {
    }
    if (slot != nullptr) slot->fetch_sub(1);
  }

  bool Step(const std::function<bool()>& still_wanted) {
    return Await(cq, ctx, &tag, still_wanted);
  }

  // Reads the next message into `pending`; false when the stream ended (then Finish).
  bool Read(const std::function<bool()>& still_wanted) {
    call->Read(&pending, &tag);
    have_pending = Step(still_wanted);
    return have_pending;
  }

  void Finish(const std::function<bool()>& still_wanted) {
    call->Finish(&status, &tag);
    Step(still_wanted);
    finished = true;
  }

  std::string PendingLine() {
    const pb::Message* prototype =
        pb::MessageFactory::generated_factory()->GetPrototype(method->output_type());
    std::unique_ptr<pb::Message> message(prototype->New());
    std::string json;
    have_pending = false;
    if (!Parse(pending, message.get()) ||
        !pb::util::MessageToJsonString(*message, &json, PrintOptions()).ok()) {
      return absl::StrCat(
          "{\"error\":",
          ErrorJson(grpc::StatusCode::INTERNAL,
                    absl::StrCat("cannot convert a message of ", method->full_name())),
          "}\n");
    }
    return absl::StrCat("{\"result\":", json, "}\n");
  }
};

}  // namespace

void HttpGateway::ServerStreaming(const Route& route, const httplib::Request& req,
                                  std::unique_ptr<pb::Message> request,
                                  httplib::Response& res) const {
  if (open_streams_.fetch_add(1) >= options_.max_streams) {
    open_streams_.fetch_sub(1);
    SendError(res, grpc::StatusCode::RESOURCE_EXHAUSTED,
              absl::StrCat("too many open streams: this port serves ", options_.max_streams,
                           " at once (--http-max-streams); retry later"));
    return;
  }
  auto stream = std::make_shared<StreamCall>();
  stream->slot = &open_streams_;
  stream->method = route.method;
  // Streams (subscriptions) have no default deadline: they last until the client leaves.
  if (absl::Status s = SetDeadline(req, std::nullopt, stream->ctx); !s.ok()) {
    SendError(res, grpc::StatusCode::INVALID_ARGUMENT, s.message());
    return;
  }
  PassAuthorization(req, stream->ctx);
  grpc::TemplatedGenericStub<grpc::ByteBuffer, grpc::ByteBuffer> stub(channel_);
  stream->call = stub.PrepareCall(&stream->ctx, route.grpc_path, &stream->cq);
  stream->call->StartCall(&stream->tag);
  bool ok = stream->Step(nullptr);
  if (ok) {
    stream->call->Write(Serialize(*request), &stream->tag);
    ok = stream->Step(nullptr);
  }
  if (ok) {
    stream->call->WritesDone(&stream->tag);
    stream->Step(nullptr);
  }
  // Wait (briefly) for the first event so that a stream which fails at once (unknown store,
  // bad argument, unimplemented) answers with the error's HTTP status, not 200 + error line.
  auto first = std::make_shared<std::optional<bool>>();
  {
    stream->call->Read(&stream->pending, &stream->tag);
    auto deadline =
        std::chrono::system_clock::now() + absl::ToChronoMilliseconds(options_.stream_status_wait);
    void* got = nullptr;
    bool read_ok = false;
    if (stream->cq.AsyncNext(&got, &read_ok, deadline) == grpc::CompletionQueue::GOT_EVENT) {
      *first = read_ok;
    }
  }
  if (first->has_value() && !**first) {
    stream->Finish(nullptr);
    if (!stream->status.ok()) {
      SendError(res, stream->status.error_code(), stream->status.error_message());
      return;
    }
  }
  if (first->has_value() && **first) stream->have_pending = true;
  res.status = 200;
  res.set_chunked_content_provider(
      "application/x-ndjson", [stream, first](size_t, httplib::DataSink& sink) {
        std::function<bool()> still_wanted = [&sink] { return sink.is_writable(); };
        if (!first->has_value()) {
          // The first read is still outstanding: wait for it here, where a departed client
          // can be noticed.
          stream->have_pending = stream->Step(still_wanted);
          *first = stream->have_pending;
        }
        for (;;) {
          if (stream->have_pending) {
            std::string line = stream->PendingLine();
            if (!sink.write(line.data(), line.size())) return false;  // client gone: cancel
          }
          if (stream->finished) break;
          if (!stream->Read(still_wanted)) {
            stream->Finish(still_wanted);
            break;
          }
        }
        if (!stream->status.ok() && stream->status.error_code() != grpc::StatusCode::CANCELLED) {
          std::string line = absl::StrCat(
              "{\"error\":", ErrorJson(stream->status.error_code(), stream->status.error_message()),
              "}\n");
          sink.write(line.data(), line.size());
        }
        sink.done();
        return true;
      });
}

}  // namespace kiq::router
