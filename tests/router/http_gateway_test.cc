// The HTTP/JSON gateway: path templates, query parameter mapping, URL decoding and status
// mapping as units, then the whole gateway over loopback HTTP against a test-only annotated
// gRPC service (tests/testing/proto/kiq/testing/gateway_test.proto), including streaming.
#include "router/http_gateway.h"

#include <httplib.h>

#include <atomic>
#include <thread>
#include <tuple>
#include <utility>

#include <gmock/gmock.h>
#include <google/protobuf/util/json_util.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <rapidjson/document.h>

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "kiq/testing/gateway_test.grpc.pb.h"
#include "kiq/v1/query.pb.h"
#include "router/http_server.h"
#include "tests/testing/process.h"
#include "tests/testing/status_matchers.h"

namespace kiq::router {
namespace {

using ::kiq::testing::IsOkAndHolds;
using ::kiq::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::Pair;
using Bindings = std::vector<std::pair<std::string, std::string>>;

TEST(PathTemplateTest, MatchesLiteralsAndSingleSegmentVariables) {
  auto t = PathTemplate::Parse("/v1/stores/{store}/count");
  ASSERT_OK(t);
  Bindings b;
  ASSERT_TRUE(t->Match("/v1/stores/order_count/count", &b));
  EXPECT_THAT(b, ElementsAre(Pair("store", "order_count")));
  EXPECT_FALSE(t->Match("/v1/stores/order_count/counts", &b));
  EXPECT_FALSE(t->Match("/v1/stores/order_count", &b));
  EXPECT_FALSE(t->Match("/v1/stores/a/b/count", &b));
  EXPECT_FALSE(t->Match("/v1/stores//count", &b));  // an empty variable matches nothing
}

TEST(PathTemplateTest, DecodesVariablesAndKeepsEncodedSlashesInOneSegment) {
  auto t = PathTemplate::Parse("/v1/stores/{store}/keys/{key}");
  ASSERT_OK(t);
  Bindings b;
  ASSERT_TRUE(t->Match("/v1/stores/s/keys/a%2Fb%20c%C3%A9", &b));
  EXPECT_THAT(b, ElementsAre(Pair("store", "s"), Pair("key", "a/b c\xC3\xA9")));
  EXPECT_FALSE(t->Match("/v1/stores/s/keys/a/b", &b));
  EXPECT_FALSE(t->Match("/v1/stores/s/keys/%zz", &b));  // malformed escape
  EXPECT_FALSE(t->Match("/v1/stores/s/keys/%FF", &b));  // not UTF-8
}

TEST(PathTemplateTest, DoubleStarSpansSegmentsBeforeTrailingLiterals) {
  auto t = PathTemplate::Parse("/files/{path=**}/meta");
  ASSERT_OK(t);
  Bindings b;
  ASSERT_TRUE(t->Match("/files/a/b%2Fc/d/meta", &b));
  EXPECT_THAT(b, ElementsAre(Pair("path", "a/b/c/d")));
  ASSERT_TRUE(t->Match("/files/x/meta", &b));
  EXPECT_THAT(b, ElementsAre(Pair("path", "x")));
  EXPECT_FALSE(t->Match("/files/meta", &b));
  EXPECT_FALSE(t->Match("/files/a/b", &b));
}

TEST(PathTemplateTest, RefusesWhatItCannotServe) {
  EXPECT_THAT(PathTemplate::Parse("v1/x").status().message(), HasSubstr("start with '/'"));
  EXPECT_THAT(PathTemplate::Parse("/v1/{a=**}/{b=**}").status().message(),
              HasSubstr("more than one"));
  EXPECT_THAT(PathTemplate::Parse("/v1/{a=x*}").status().message(),
              HasSubstr("unsupported segment"));
  EXPECT_THAT(PathTemplate::Parse("/v1/x:verb").status().message(), HasSubstr("custom verbs"));
  EXPECT_THAT(PathTemplate::Parse("/v1/{a").status().message(), HasSubstr("unterminated"));
}

TEST(PercentDecodeTest, DecodesEscapesPlusAndRejectsBadInput) {
  EXPECT_THAT(PercentDecode("a%20b+c", false), IsOkAndHolds(std::string("a b+c")));
  EXPECT_THAT(PercentDecode("a%20b+c", true), IsOkAndHolds(std::string("a b c")));
  EXPECT_THAT(PercentDecode("%E2%82%AC", false), IsOkAndHolds(std::string("\xE2\x82\xAC")));
  EXPECT_FALSE(PercentDecode("%2", false).ok());
  EXPECT_FALSE(PercentDecode("%G0", false).ok());
  EXPECT_FALSE(PercentDecode("%C0%AF", false).ok());  // overlong '/'
}

TEST(SetFieldFromTextTest, MapsScalarsNestedRepeatedEnumsAndBytes) {
  kiq::testing::EchoRequest r;
  ASSERT_OK(SetFieldFromText(&r, "name", "n"));
  ASSERT_OK(SetFieldFromText(&r, "nested.label", "l"));
  ASSERT_OK(SetFieldFromText(&r, "nested.inner.depth", "-7"));
  ASSERT_OK(SetFieldFromText(&r, "numbers", "1"));
  ASSERT_OK(SetFieldFromText(&r, "numbers", "2"));
  ASSERT_OK(SetFieldFromText(&r, "color", "GREEN"));
  ASSERT_OK(SetFieldFromText(&r, "data", "aGk="));
  ASSERT_OK(SetFieldFromText(&r, "big", "9007199254740993"));
  ASSERT_OK(SetFieldFromText(&r, "flag", "true"));
  ASSERT_OK(SetFieldFromText(&r, "ratio", "0.25"));
  EXPECT_EQ(r.name(), "n");
  EXPECT_EQ(r.nested().label(), "l");
  EXPECT_EQ(r.nested().inner().depth(), -7);
  EXPECT_THAT(r.numbers(), ElementsAre(1, 2));
  EXPECT_EQ(r.color(), kiq::testing::GREEN);
  EXPECT_EQ(r.data(), "hi");
  EXPECT_EQ(r.big(), 9007199254740993);
  EXPECT_TRUE(r.flag());
  EXPECT_EQ(r.ratio(), 0.25);
  ASSERT_OK(SetFieldFromText(&r, "color", "1"));  // enums by number too
  EXPECT_EQ(r.color(), kiq::testing::RED);
}

TEST(SetFieldFromTextTest, NamesTheParameterOnBadInput) {
  kiq::testing::EchoRequest r;
  EXPECT_THAT(SetFieldFromText(&r, "numbers", "x").message(), HasSubstr("'numbers'"));
  EXPECT_THAT(SetFieldFromText(&r, "color", "BLUE").message(), HasSubstr("kiq.testing.Color"));
  EXPECT_THAT(SetFieldFromText(&r, "nope", "1").message(), HasSubstr("no field 'nope'"));
  EXPECT_THAT(SetFieldFromText(&r, "name.x", "1").message(), HasSubstr("not a nested message"));
  EXPECT_THAT(SetFieldFromText(&r, "nested", "1").message(), HasSubstr("names a message"));
  EXPECT_THAT(SetFieldFromText(&r, "data", "!!").message(), HasSubstr("base64"));
  EXPECT_FALSE(SetFieldFromText(&r, "flag", "maybe").ok());
}

TEST(FillRequestTest, AOneofSetTwiceIsAnError) {
  // grpc-gateway: "oneof already set"; before, the path's key silently won over ?key_bytes=.
  kiq::v1::GetRequest request;
  absl::Status s = FillRequest("/v1/stores/{store}/keys/{key=**}",
                               {{"store", "customers"}, {"key", "u1"}}, "key_bytes=dTE%3D", &request);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("oneof 'key_kind' is already set (by 'key_bytes')"));
  kiq::v1::GetRequest alone;
  EXPECT_OK(FillRequest("/v1/stores/{store}/keys/{key=**}", {{"store", "customers"}}, "key_bytes=dTE%3D",
                        &alone));
  EXPECT_EQ(alone.key_bytes(), "u1");
}

TEST(FillRequestTest, ARepeatedScalarParameterIsAnErrorUnlessTheFieldIsRepeated) {
  kiq::testing::EchoRequest r;
  absl::Status s = FillRequest("/test/v1/echo/{name}", {{"name", "x"}}, "ratio=1&ratio=2", &r);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("\"ratio\" is given more than once"));
  // A repeated field takes any number.
  kiq::testing::EchoRequest ok;
  EXPECT_OK(FillRequest("/test/v1/echo/{name}", {{"name", "x"}}, "numbers=1&numbers=2&tags=a",
                        &ok));
  EXPECT_EQ(ok.numbers_size(), 2);
}

TEST(HttpStatusTest, FollowsGrpcGateway) {
  using C = grpc::StatusCode;
  const std::vector<std::pair<C, int>> expected = {{C::OK, 200},
                                                   {C::CANCELLED, 499},
                                                   {C::UNKNOWN, 500},
                                                   {C::INVALID_ARGUMENT, 400},
                                                   {C::DEADLINE_EXCEEDED, 504},
                                                   {C::NOT_FOUND, 404},
                                                   {C::ALREADY_EXISTS, 409},
                                                   {C::PERMISSION_DENIED, 403},
                                                   {C::UNAUTHENTICATED, 401},
                                                   {C::RESOURCE_EXHAUSTED, 429},
                                                   {C::FAILED_PRECONDITION, 400},
                                                   {C::ABORTED, 409},
                                                   {C::OUT_OF_RANGE, 400},
                                                   {C::UNIMPLEMENTED, 501},
                                                   {C::INTERNAL, 500},
                                                   {C::UNAVAILABLE, 503},
                                                   {C::DATA_LOSS, 500}};
  for (const auto& [code, http] : expected) {
    EXPECT_EQ(HttpStatusFromGrpcCode(code), http) << static_cast<int>(code);
  }
}

TEST(ErrorJsonTest, IsGrpcGatewaysShapeWithTheMessageEscaped) {
  EXPECT_EQ(ErrorJson(grpc::StatusCode::NOT_FOUND, "unknown store \"x\"\n"),
            R"({"code":5,"message":"unknown store \"x\"\n","details":[]})");
}

// The fake implementation: echoes requests, streams as told, records cancellations.
class FakeService final : public kiq::testing::GatewayTestService::Service {
 public:
  grpc::Status Echo(grpc::ServerContext* ctx, const kiq::testing::EchoRequest* request,
                    kiq::testing::EchoResponse* response) override {
    if (request->hang()) {
      while (!ctx->IsCancelled()) std::this_thread::sleep_for(std::chrono::milliseconds(10));
      return grpc::Status(grpc::StatusCode::CANCELLED, "cancelled");
    }
    *response->mutable_request() = *request;
    return grpc::Status::OK;
  }
  grpc::Status EchoPath(grpc::ServerContext* ctx, const kiq::testing::EchoRequest* request,
                        kiq::testing::EchoResponse* response) override {
    return Echo(ctx, request, response);
  }
  grpc::Status EchoBody(grpc::ServerContext* ctx, const kiq::testing::EchoRequest* request,
                        kiq::testing::EchoResponse* response) override {
    return Echo(ctx, request, response);
  }
  grpc::Status Stream(grpc::ServerContext* ctx, const kiq::testing::StreamRequest* request,
                      grpc::ServerWriter<kiq::testing::EchoResponse>* writer) override {
    for (int i = 0; i < request->count(); ++i) {
      kiq::testing::EchoResponse message;
      message.mutable_request()->set_name(request->name());
      message.set_index(i);
      if (!writer->Write(message)) return grpc::Status(grpc::StatusCode::CANCELLED, "gone");
    }
    if (request->hang()) {
      while (!ctx->IsCancelled()) std::this_thread::sleep_for(std::chrono::milliseconds(10));
      cancelled_streams.fetch_add(1);
      return grpc::Status(grpc::StatusCode::CANCELLED, "cancelled");
    }
    return grpc::Status(static_cast<grpc::StatusCode>(request->fail_code()),
                        request->fail_code() == 0 ? "" : "stream failed on purpose");
  }
  std::atomic<int> cancelled_streams{0};
};

class HttpGatewayTest : public ::testing::Test {
 protected:
  void SetUp() override {
    grpc::ServerBuilder builder;
    builder.RegisterService(&service_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    auto gateway = HttpGateway::Create(server_->InProcessChannel(grpc::ChannelArguments()),
                                       {"kiq.testing.GatewayTestService"}, GatewayOptions());
    ASSERT_OK(gateway);
    gateway_ = *std::move(gateway);
    gateway_->Register(http_.native());
    auto port = http_.Start("127.0.0.1", 0);
    ASSERT_OK(port);
    client_ = std::make_unique<httplib::Client>("127.0.0.1", *port);
    client_->set_read_timeout(30, 0);
    client_->set_url_encode(false);  // the tests send exactly the escapes they mean
  }
  virtual HttpGateway::Options GatewayOptions() { return HttpGateway::Options(); }
  void TearDown() override {
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
    http_.Stop();
  }

  // GET `path`; expects JSON and parses it.
  rapidjson::Document GetJson(const std::string& path, int expected_status,
                              const httplib::Headers& headers = {}) {
    rapidjson::Document doc;
    auto res = client_->Get(path.c_str(), headers);
    EXPECT_TRUE(res) << path;
    if (!res) return doc;
    EXPECT_EQ(res->status, expected_status) << path << ": " << res->body;
    EXPECT_EQ(res->get_header_value("Content-Type"), "application/json") << path;
    doc.Parse(res->body.c_str());
    EXPECT_FALSE(doc.HasParseError()) << res->body;
    return doc;
  }

  FakeService service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<HttpGateway> gateway_;
  // As the frontend wires it: the gateway's body "*" routes take a body.
  HttpServer http_{[this] {
    HttpServer::Options options;
    options.takes_body = [this](absl::string_view method, absl::string_view target) {
      return gateway_ != nullptr && gateway_->TakesBody(method, target);
    };
    return options;
  }()};
  std::unique_ptr<httplib::Client> client_;
};

TEST_F(HttpGatewayTest, RoutesComeFromTheAnnotations) {
  EXPECT_THAT(gateway_->Describe(),
              ElementsAre("GET /test/v1/echo/{name} → kiq.testing.GatewayTestService.Echo",
                          "GET /test/v1/files/{path=**}/meta → "
                          "kiq.testing.GatewayTestService.EchoPath",
                          "GET /test/v1/names/{name}/nested/{nested.label} → "
                          "kiq.testing.GatewayTestService.EchoPath",
                          "POST /test/v1/body/{name} → kiq.testing.GatewayTestService.EchoBody",
                          "GET /test/v1/stream/{name} → kiq.testing.GatewayTestService.Stream"));
}

TEST_F(HttpGatewayTest, PathAndQueryParametersBecomeTheRequest) {
  rapidjson::Document doc = GetJson(
      "/test/v1/echo/caf%C3%A9%2Fbar%20baz?numbers=3&numbers=4&nested.inner.depth=5&color=RED"
      "&data=aGk%3D&big=123&flag=true&ratio=1.5&tags=a+b&tags=%E2%82%AC",
      200);
  ASSERT_TRUE(doc.IsObject());
  const auto& r = doc["request"];
  EXPECT_STREQ(r["name"].GetString(), "caf\xC3\xA9/bar baz");
  EXPECT_EQ(r["numbers"].Size(), 2u);
  EXPECT_EQ(r["numbers"][1].GetInt(), 4);
  EXPECT_STREQ(r["nested"]["inner"]["depth"].GetString(), "5");  // int64 as a JSON string
  EXPECT_STREQ(r["color"].GetString(), "RED");
  EXPECT_STREQ(r["data"].GetString(), "aGk=");
  EXPECT_STREQ(r["big"].GetString(), "123");
  EXPECT_TRUE(r["flag"].GetBool());
  EXPECT_EQ(r["ratio"].GetDouble(), 1.5);
  EXPECT_STREQ(r["tags"][0].GetString(), "a b");
  EXPECT_STREQ(r["tags"][1].GetString(), "\xE2\x82\xAC");

  doc = GetJson("/test/v1/files/a/b%2Fc/meta", 200);
  EXPECT_STREQ(doc["request"]["path"].GetString(), "a/b/c");
  doc = GetJson("/test/v1/names/x/nested/y%20z", 200);  // additional binding, nested field
  EXPECT_STREQ(doc["request"]["name"].GetString(), "x");
  EXPECT_STREQ(doc["request"]["nested"]["label"].GetString(), "y z");
}

TEST_F(HttpGatewayTest, ErrorsAreJsonWithGrpcGatewayStatuses) {
  rapidjson::Document doc = GetJson("/test/v1/echo/x?numbers=many", 400);
  EXPECT_EQ(doc["code"].GetInt(), 3);
  EXPECT_THAT(doc["message"].GetString(), HasSubstr("'numbers'"));
  EXPECT_TRUE(doc["details"].IsArray());
  doc = GetJson("/test/v1/echo/x?nope=1", 400);
  EXPECT_THAT(doc["message"].GetString(), HasSubstr("no field 'nope'"));
  doc = GetJson("/test/v1/echo/x?name=y", 400);  // already bound by the path
  EXPECT_THAT(doc["message"].GetString(), HasSubstr("already bound"));
  doc = GetJson("/test/v1/nothing/here", 404);
  EXPECT_EQ(doc["code"].GetInt(), 5);
}

TEST_F(HttpGatewayTest, ErrorsEchoUserInputClipped) {
  const std::string long_value(4000, 'v');
  rapidjson::Document doc = GetJson("/test/v1/echo/x?numbers=" + long_value, 400);
  EXPECT_THAT(doc["message"].GetString(), HasSubstr("...(4000 bytes)"));
  EXPECT_THAT(doc["message"].GetString(), Not(HasSubstr(std::string(100, 'v'))));
  doc = GetJson("/test/v1/nothing/" + std::string(4000, 'p'), 404);
  EXPECT_THAT(doc["message"].GetString(), HasSubstr("bytes)"));
  EXPECT_THAT(doc["message"].GetString(), Not(HasSubstr(std::string(100, 'p'))));
}

TEST_F(HttpGatewayTest, WrongMethodIs405) {
  // Any method but GET, with or without a body, on a route or not: 405 with the JSON error
  // (before: a POST without a body was a 400 with an empty body).
  auto expect_405 = [](const httplib::Result& res, const std::string& method) {
    ASSERT_TRUE(res) << method;
    EXPECT_EQ(res->status, 405) << method;
    EXPECT_EQ(res->get_header_value("Allow"), "GET");
    EXPECT_EQ(res->get_header_value("Content-Type"), "application/json");
    rapidjson::Document doc;
    doc.Parse(res->body.c_str());
    ASSERT_TRUE(doc.IsObject()) << method << ": " << res->body;
    EXPECT_EQ(doc["code"].GetInt(), 12);
    EXPECT_THAT(doc["message"].GetString(), HasSubstr(method + " not allowed"));
    EXPECT_TRUE(doc["details"].IsArray());
  };
  expect_405(client_->Post("/test/v1/echo/x"), "POST");
  expect_405(client_->Post("/test/v1/echo/x", "", "application/json"), "POST");
  expect_405(client_->Post("/test/v1/echo/x", "{}", "application/json"), "POST");
  expect_405(client_->Put("/test/v1/echo/x"), "PUT");
  expect_405(client_->Delete("/test/v1/stream/x"), "DELETE");
  expect_405(client_->Patch("/test/v1/nothing/here"), "PATCH");
  expect_405(client_->Options("/test/v1/echo/x"), "OPTIONS");
}

TEST_F(HttpGatewayTest, BodyStarRouteReadsTheRequestFromTheJsonBody) {
  auto post = [&](const std::string& path, const std::string& body) {
    auto res = client_->Post(path.c_str(), body, "application/json");
    EXPECT_TRUE(res) << path;
    rapidjson::Document doc;
    if (res) doc.Parse(res->body.c_str());
    return std::make_pair(res ? res->status : 0, std::move(doc));
  };
  auto [status, doc] =
      post("/test/v1/body/from-path", R"({"tags":["a","b"],"numbers":[3,1],"nested":{"label":"l"},)"
                                      R"("name":"from-body","big":"9007199254740993"})");
  ASSERT_EQ(status, 200);
  // The path variable is bound over the body's field.
  EXPECT_STREQ(doc["request"]["name"].GetString(), "from-path");
  ASSERT_EQ(doc["request"]["tags"].Size(), 2u);
  EXPECT_STREQ(doc["request"]["tags"][1].GetString(), "b");
  EXPECT_EQ(doc["request"]["numbers"][0].GetInt(), 3);
  EXPECT_STREQ(doc["request"]["nested"]["label"].GetString(), "l");
  EXPECT_STREQ(doc["request"]["big"].GetString(), "9007199254740993");
  // No body is the empty message.
  std::tie(status, doc) = post("/test/v1/body/x", "");
  ASSERT_EQ(status, 200);
  EXPECT_STREQ(doc["request"]["name"].GetString(), "x");
  // A body that is not the message's JSON is a 400 saying so.
  std::tie(status, doc) = post("/test/v1/body/x", "{\"tags\": [");
  EXPECT_EQ(status, 400);
  EXPECT_THAT(doc["message"].GetString(), HasSubstr("body: "));
  std::tie(status, doc) = post("/test/v1/body/x", R"({"nope": 1})");
  EXPECT_EQ(status, 400);
  EXPECT_THAT(doc["message"].GetString(), HasSubstr("body: "));
  // GET on it: 405 naming the method it takes.
  auto res = client_->Get("/test/v1/body/x");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 405);
  EXPECT_EQ(res->get_header_value("Allow"), "POST");
}

TEST_F(HttpGatewayTest, MalformedEscapeInThePathIs400) {
  // grpc-gateway: 400 malformed escape (before: 404, as if no route matched).
  rapidjson::Document doc = GetJson("/test/v1/echo/a%ZZ", 400);
  EXPECT_EQ(doc["code"].GetInt(), 3);
  EXPECT_THAT(doc["message"].GetString(), HasSubstr("malformed percent-escape"));
  doc = GetJson("/test/v1/echo/a%2", 400);
  EXPECT_THAT(doc["message"].GetString(), HasSubstr("malformed percent-escape"));
}

TEST_F(HttpGatewayTest, ARepeatedScalarQueryParameterIs400) {
  rapidjson::Document doc = GetJson("/test/v1/echo/x?flag=true&flag=false", 400);
  EXPECT_EQ(doc["code"].GetInt(), 3);
  EXPECT_THAT(doc["message"].GetString(), HasSubstr("given more than once"));
}

TEST_F(HttpGatewayTest, DeadlineFromGrpcTimeoutHeader) {
  rapidjson::Document doc = GetJson("/test/v1/echo/x?hang=true", 504, {{"grpc-timeout", "200m"}});
  EXPECT_EQ(doc["code"].GetInt(), 4);
  doc = GetJson("/test/v1/echo/x", 400, {{"grpc-timeout", "soon"}});
  EXPECT_THAT(doc["message"].GetString(), HasSubstr("grpc-timeout"));
}

std::vector<std::string> Lines(const std::string& body) {
  return absl::StrSplit(body, '\n', absl::SkipEmpty());
}

TEST_F(HttpGatewayTest, ServerStreamingIsNdjson) {
  auto res = client_->Get("/test/v1/stream/s?count=3");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(res->get_header_value("Content-Type"), "application/x-ndjson");
  EXPECT_THAT(Lines(res->body), ElementsAre(R"({"result":{"request":{"name":"s"}}})",
                                            R"({"result":{"request":{"name":"s"},"index":1}})",
                                            R"({"result":{"request":{"name":"s"},"index":2}})"));
}

TEST_F(HttpGatewayTest, StreamErrorAfterMessagesIsTheLastLine) {
  auto res = client_->Get("/test/v1/stream/s?count=2&fail_code=14");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  std::vector<std::string> lines = Lines(res->body);
  ASSERT_EQ(lines.size(), 3u) << res->body;
  rapidjson::Document last;
  last.Parse(lines[2].c_str());
  ASSERT_TRUE(last.IsObject()) << lines[2];
  EXPECT_EQ(last["error"]["code"].GetInt(), 14);
  EXPECT_STREQ(last["error"]["message"].GetString(), "stream failed on purpose");
}

TEST_F(HttpGatewayTest, StreamThatFailsAtOnceAnswersWithTheErrorStatus) {
  rapidjson::Document doc = GetJson("/test/v1/stream/s?fail_code=5", 404);
  EXPECT_EQ(doc["code"].GetInt(), 5);
  doc = GetJson("/test/v1/stream/s?count=x", 400);
}

TEST_F(HttpGatewayTest, ClientDisconnectCancelsTheStream) {
  std::string received;
  auto res =
      client_->Get("/test/v1/stream/s?count=1&hang=true", [&](const char* data, size_t size) {
        received.append(data, size);
        return false;  // hang up after the first chunk
      });
  EXPECT_FALSE(res);
  EXPECT_THAT(received, HasSubstr(R"({"result":{"request":{"name":"s"}}})"));
  EXPECT_TRUE(kiq::testing::WaitFor([&] { return service_.cancelled_streams.load() == 1; },
                                    absl::Seconds(30)));
}

// Echo answered directly for names starting with "direct" (with the Authorization header it
// was given), declined otherwise; the fake service behind the channel echoes as before.
class HttpGatewayDirectTest : public HttpGatewayTest {
 protected:
  HttpGateway::Options GatewayOptions() override {
    HttpGateway::Options options;
    options.direct["/kiq.testing.GatewayTestService/Echo"] =
        HttpGateway::Direct<kiq::testing::EchoRequest, kiq::testing::EchoResponse>(
            [this](const kiq::testing::EchoRequest& request,
                   std::optional<absl::string_view> authorization,
                   kiq::testing::EchoResponse* response) -> std::optional<grpc::Status> {
              direct_calls_.fetch_add(1);
              if (request.name() == "direct-fail") {
                return grpc::Status(grpc::StatusCode::PERMISSION_DENIED, "no, directly");
              }
              if (!absl::StartsWith(request.name(), "direct")) return std::nullopt;
              *response->mutable_request() = request;
              response->mutable_request()->add_tags(authorization ? std::string(*authorization)
                                                                  : "(none)");
              return grpc::Status::OK;
            });
    return options;
  }
  std::atomic<int> direct_calls_{0};
};

TEST_F(HttpGatewayDirectTest, DirectMethodsAreAnsweredWithoutTheChannelUnlessTheyDecline) {
  rapidjson::Document doc =
      GetJson("/test/v1/echo/direct-1?numbers=7", 200, {{"Authorization", "Bearer t1"}});
  EXPECT_STREQ(doc["request"]["name"].GetString(), "direct-1");
  EXPECT_EQ(doc["request"]["numbers"][0].GetInt(), 7);
  ASSERT_TRUE(doc["request"]["tags"].IsArray());
  EXPECT_STREQ(doc["request"]["tags"][0].GetString(), "Bearer t1");
  EXPECT_EQ(direct_calls_.load(), 1);

  doc = GetJson("/test/v1/echo/direct-2", 200);
  EXPECT_STREQ(doc["request"]["tags"][0].GetString(), "(none)");

  // Declined: the service behind the channel answers (it adds no tag).
  doc = GetJson("/test/v1/echo/other?numbers=8", 200);
  EXPECT_STREQ(doc["request"]["name"].GetString(), "other");
  EXPECT_EQ(doc["request"]["numbers"][0].GetInt(), 8);
  EXPECT_FALSE(doc["request"].HasMember("tags"));
  EXPECT_EQ(direct_calls_.load(), 3);

  // A direct error maps as a channel error does.
  doc = GetJson("/test/v1/echo/direct-fail", 403);
  EXPECT_EQ(doc["code"].GetInt(), 7);
  EXPECT_STREQ(doc["message"].GetString(), "no, directly");

  // A bad grpc-timeout is refused before anything answers.
  GetJson("/test/v1/echo/direct-3", 400, {{"grpc-timeout", "soon"}});
  EXPECT_EQ(direct_calls_.load(), 4);

  // Other methods never ask.
  GetJson("/test/v1/files/a/meta", 200);
  EXPECT_EQ(direct_calls_.load(), 4);
}

TEST(HttpGatewayCreateTest, OnlyUnaryMethodsWithTheirOwnTypesCanBeAnsweredDirectly) {
  grpc::ServerBuilder builder;
  FakeService service;
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  ASSERT_NE(server, nullptr);
  auto decline = [](const auto&, std::optional<absl::string_view>,
                    auto*) -> std::optional<grpc::Status> { return std::nullopt; };
  auto create = [&](const std::string& path, HttpGateway::DirectMethod direct) {
    HttpGateway::Options options;
    options.direct[path] = std::move(direct);
    return HttpGateway::Create(server->InProcessChannel(grpc::ChannelArguments()),
                               {"kiq.testing.GatewayTestService"}, options)
        .status();
  };
  using Echo = HttpGateway::DirectMethod;
  Echo echo = HttpGateway::Direct<kiq::testing::EchoRequest, kiq::testing::EchoResponse>(decline);
  EXPECT_OK(create("/kiq.testing.GatewayTestService/Echo", echo));
  EXPECT_THAT(
      create("/kiq.testing.GatewayTestService/Stream", echo),
      StatusIs(absl::StatusCode::kInvalidArgument, "only unary methods can be answered directly"));
  EXPECT_THAT(create("/kiq.testing.GatewayTestService/Nope", echo),
              StatusIs(absl::StatusCode::kInvalidArgument, "no HTTP route calls it"));
  EXPECT_THAT(create("/kiq.testing.GatewayTestService/Echo",
                     HttpGateway::Direct<kiq::v1::GetRequest, kiq::v1::GetResponse>(decline)),
              StatusIs(absl::StatusCode::kInvalidArgument, "types are not the method's"));
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
}

}  // namespace
}  // namespace kiq::router
