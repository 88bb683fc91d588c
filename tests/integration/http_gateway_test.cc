// The HTTP/JSON gateway of a real kiq-node: every route over loopback HTTP (httplib::Client)
// gives the same answer as the gRPC API (compared after the proto3 JSON mapping), keys with
// slashes, spaces and unicode work URL-encoded, and errors carry grpc-gateway's HTTP statuses.
#include <signal.h>

#include <algorithm>
#include <map>

#include <gmock/gmock.h>
#include <google/protobuf/util/json_util.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <rapidjson/document.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "kiq/v1/membership.grpc.pb.h"
#include "kiq/v1/query.grpc.pb.h"
#include "router/http_gateway.h"
#include "tests/testing/kafka_fixture.h"
#include "tests/testing/kiq_processes.h"
#include "tests/testing/queries.h"
#include "tests/testing/status_matchers.h"

namespace kiq::testing {
namespace {

using ::testing::HasSubstr;
namespace pb = google::protobuf;

constexpr int kPartitions = 4;

std::vector<std::pair<std::string, int>> Topics() {
  return {{"customers", kPartitions},
          {"orders", kPartitions},
          {"orders-demo-order_count-changelog", kPartitions}};
}

// RFC 3986 percent-encoding of everything but unreserved characters.
std::string UrlEncode(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out += absl::StrFormat("%%%02X", c);
    }
  }
  return out;
}

// Positions list partitions in no promised order, and membership leases tick: normalize both.
void Normalize(pb::Message* message) {
  const pb::Reflection* refl = message->GetReflection();
  const pb::Descriptor* desc = message->GetDescriptor();
  if (desc->full_name() == "kiq.v1.Position") {
    auto* p = static_cast<kiq::v1::Position*>(message);
    std::sort(p->mutable_offsets()->begin(), p->mutable_offsets()->end(),
              [](const auto& a, const auto& b) {
                return std::make_pair(a.topic(), a.partition()) <
                       std::make_pair(b.topic(), b.partition());
              });
    return;
  }
  if (desc->full_name() == "kiq.v1.NodeInfo") {
    static_cast<kiq::v1::NodeInfo*>(message)->clear_lease_expiry_ms();
  }
  for (int i = 0; i < desc->field_count(); ++i) {
    const pb::FieldDescriptor* f = desc->field(i);
    if (f->cpp_type() != pb::FieldDescriptor::CPPTYPE_MESSAGE) continue;
    if (f->is_repeated()) {
      for (int k = 0; k < refl->FieldSize(*message, f); ++k) {
        Normalize(refl->MutableRepeatedMessage(message, f, k));
      }
    } else if (refl->HasField(*message, f)) {
      Normalize(refl->MutableMessage(message, f));
    }
  }
}

template <typename M>
std::string NormalizedJson(M message) {
  Normalize(&message);
  std::string json;
  EXPECT_TRUE(pb::util::MessageToJsonString(message, &json).ok());
  return json;
}

class HttpGatewayIntegrationTest : public KafkaFixture {
 protected:
  void SetUp() override { StartKafka("http-gateway", Topics()); }

  void StartNode(std::vector<std::string> extra_flags = {}) {
    auto node = LaunchNode(ExampleTopology("orders"), "n1", std::move(extra_flags));
    ASSERT_OK(node);
    node_ = std::move(*node);
    ASSERT_GT(node_->http_port(), 0);
    auto channel = grpc::CreateChannel(node_->target(), grpc::InsecureChannelCredentials());
    query_ = kiq::v1::QueryService::NewStub(channel);
    metadata_ = kiq::v1::MetadataService::NewStub(channel);
    client_ = std::make_unique<NodeClient>(node_->target());
    http_ = std::make_unique<httplib::Client>("127.0.0.1", node_->http_port());
    http_->set_read_timeout(30, 0);
    http_->set_url_encode(false);  // paths are sent exactly as encoded here
  }

  void Produce(const std::string& topic, const std::string& key, const std::string& value) {
    ProduceAndTrack(topic, key, value);
  }

  void WaitCaughtUp(const std::string& store, const std::string& topic) {
    ASSERT_TRUE(WaitFor([&] { return client_->CaughtUp(store, Topic(topic), produced_); },
                        absl::Seconds(60)))
        << node_->process().ReadLog();
  }

  // GETs `path` and checks it answers like the gRPC call did: the same message (normalized)
  // with 200, or the same error with grpc-gateway's status.
  template <typename Response>
  void ExpectSameAnswer(const std::string& path, const grpc::Status& status,
                        const Response& grpc_response) {
    SCOPED_TRACE(path);
    auto res = http_->Get(path.c_str());
    ASSERT_TRUE(res);
    EXPECT_EQ(res->get_header_value("Content-Type"), "application/json");
    if (!status.ok()) {
      EXPECT_EQ(res->status, router::HttpStatusFromGrpcCode(status.error_code())) << res->body;
      rapidjson::Document doc;
      doc.Parse(res->body.c_str());
      ASSERT_TRUE(doc.IsObject()) << res->body;
      EXPECT_EQ(doc["code"].GetInt(), static_cast<int>(status.error_code()));
      EXPECT_EQ(doc["message"].GetString(), status.error_message());
      EXPECT_TRUE(doc["details"].IsArray());
      return;
    }
    ASSERT_EQ(res->status, 200) << res->body;
    Response http_response;
    ASSERT_TRUE(pb::util::JsonStringToMessage(res->body, &http_response).ok()) << res->body;
    EXPECT_EQ(NormalizedJson(http_response), NormalizedJson(grpc_response));
  }

  std::unique_ptr<grpc::ClientContext> Context() {
    auto ctx = std::make_unique<grpc::ClientContext>();
    ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    return ctx;
  }

  kiq::v1::GetResponse GrpcGet(const std::string& store, const std::string& key,
                               grpc::Status* status) {
    kiq::v1::GetRequest request;
    request.set_store(store);
    request.set_key(key);
    kiq::v1::GetResponse response;
    *status = query_->Get(Context().get(), request, &response);
    return response;
  }

  std::unique_ptr<NodeProcess> node_;
  std::unique_ptr<kiq::v1::QueryService::Stub> query_;
  std::unique_ptr<kiq::v1::MetadataService::Stub> metadata_;
  std::unique_ptr<NodeClient> client_;
  std::unique_ptr<httplib::Client> http_;
};

const std::vector<std::string>& AwkwardKeys() {
  static const std::vector<std::string> keys = {
      "u1", "a/b", "with space", "caf\xC3\xA9 \xE2\x82\xAC", "x/y/z", "plus+sign?&=#%"};
  return keys;
}

TEST_F(HttpGatewayIntegrationTest, EveryRouteAnswersLikeGrpc) {
  StartNode();
  for (size_t i = 0; i < AwkwardKeys().size(); ++i) {
    Produce("customers", AwkwardKeys()[i], absl::StrCat("name-", i));
  }
  for (int i = 0; i < 30; ++i) Produce("orders", absl::StrCat("k", i % 7), "food");
  Produce("orders", "a/b", "food");
  WaitCaughtUp("customers", "customers");
  WaitCaughtUp("order_count", "orders");

  // Get: every awkward key URL-encoded, found and equal to the gRPC answer.
  for (const std::string& key : AwkwardKeys()) {
    grpc::Status status;
    kiq::v1::GetResponse response = GrpcGet("customers", key, &status);
    ASSERT_TRUE(status.ok()) << status.error_message();
    ASSERT_TRUE(response.found()) << key;
    ExpectSameAnswer(absl::StrCat("/v1/stores/customers/keys/", UrlEncode(key)), status, response);
  }
  {
    // The key variable is {key=**}: unencoded slashes work too.
    grpc::Status status;
    kiq::v1::GetResponse response = GrpcGet("customers", "x/y/z", &status);
    ExpectSameAnswer("/v1/stores/customers/keys/x/y/z", status, response);
    response = GrpcGet("order_count", "k3", &status);
    EXPECT_EQ(response.entry().json().number_value(), 4);  // k3: i = 3, 10, 17, 24
    ExpectSameAnswer("/v1/stores/order_count/keys/k3", status, response);
    response = GrpcGet("customers", "missing", &status);
    EXPECT_FALSE(response.found());
    ExpectSameAnswer("/v1/stores/customers/keys/missing", status, response);
  }

  // All, page by page, following next_page_token.
  {
    std::string token;
    int pages = 0;
    do {
      kiq::v1::AllRequest request;
      request.set_store("customers");
      request.set_page_size(2);
      request.set_page_token(token);
      kiq::v1::ScanResponse response;
      grpc::Status status = query_->All(Context().get(), request, &response);
      ASSERT_TRUE(status.ok()) << status.error_message();
      ExpectSameAnswer(
          absl::StrCat("/v1/stores/customers/entries?page_size=2&page_token=", UrlEncode(token)),
          status, response);
      token = response.next_page_token();
      ++pages;
    } while (!token.empty() && pages < 10);
    EXPECT_EQ(pages, 3);  // 6 keys, 2 per page
  }

  // Range with awkward bounds, and Count.
  {
    kiq::v1::RangeRequest request;
    request.set_store("customers");
    request.set_from("a/b");
    request.set_to("with space");
    kiq::v1::ScanResponse response;
    grpc::Status status = query_->Range(Context().get(), request, &response);
    ASSERT_TRUE(status.ok()) << status.error_message();
    EXPECT_GE(response.entries_size(), 3);
    ExpectSameAnswer("/v1/stores/customers/range?from=a%2Fb&to=with+space", status, response);
    ExpectSameAnswer("/v1/stores/customers/range?from=a/b&to=with%20space", status, response);
  }
  {
    kiq::v1::CountRequest request;
    request.set_store("order_count");
    kiq::v1::CountResponse response;
    grpc::Status status = query_->Count(Context().get(), request, &response);
    ASSERT_TRUE(status.ok()) << status.error_message();
    ExpectSameAnswer("/v1/stores/order_count/count", status, response);
  }

  // WindowFetch: whatever gRPC says (UNIMPLEMENTED → 501 until windows land; FAILED_PRECONDITION
  // → 400 for a store that is not windowed once they do).
  {
    kiq::v1::WindowFetchRequest request;
    request.set_store("order_count");
    request.set_key("k1");
    request.set_time_from(5);
    kiq::v1::WindowFetchResponse response;
    grpc::Status status = query_->WindowFetch(Context().get(), request, &response);
    ExpectSameAnswer("/v1/stores/order_count/windows/k1?time_from=5", status, response);
  }

  // Metadata.
  {
    kiq::v1::NodesResponse response;
    grpc::Status status =
        metadata_->AllNodes(Context().get(), kiq::v1::AllNodesRequest(), &response);
    ASSERT_TRUE(status.ok()) << status.error_message();
    ASSERT_EQ(response.nodes_size(), 1);
    ExpectSameAnswer("/v1/metadata/nodes", status, response);
    kiq::v1::NodesForStoreRequest for_store;
    for_store.set_store("customers");
    status = metadata_->NodesForStore(Context().get(), for_store, &response);
    ASSERT_TRUE(status.ok()) << status.error_message();
    ExpectSameAnswer("/v1/metadata/stores/customers/nodes", status, response);
    for (const std::string& key : {std::string("a/b"), std::string("caf\xC3\xA9 \xE2\x82\xAC")}) {
      kiq::v1::NodeForKeyRequest for_key;
      for_key.set_store("customers");
      for_key.set_key(key);
      kiq::v1::NodeForKeyResponse owner;
      status = metadata_->NodeForKey(Context().get(), for_key, &owner);
      ASSERT_TRUE(status.ok()) << status.error_message();
      ExpectSameAnswer(absl::StrCat("/v1/metadata/stores/customers/keys/", UrlEncode(key)), status,
                       owner);
    }
  }
}

// kiq-router (no stores) serves the same routes on its --http-port, forwarding to the owner.
TEST_F(HttpGatewayIntegrationTest, RouterServesTheSameRoutes) {
  StartNode();
  Produce("customers", "caf\xC3\xA9/1\n", "v");
  WaitCaughtUp("customers", "customers");
  grpc::Status status;
  kiq::v1::GetResponse response = GrpcGet("customers", "caf\xC3\xA9/1\n", &status);
  ASSERT_TRUE(status.ok()) << status.error_message();
  ASSERT_TRUE(response.found());
  // Through the node's own gateway (a newline in the key included)...
  ExpectSameAnswer("/v1/stores/customers/keys/caf%C3%A9%2F1%0A", status, response);

  auto router = LaunchRouter(ExampleTopology("orders"));
  ASSERT_OK(router);
  ASSERT_GT((*router)->http_port(), 0);
  httplib::Client client("127.0.0.1", (*router)->http_port());
  client.set_url_encode(false);
  std::string body;
  // ...and through the router's, once it has seen the node's membership.
  ASSERT_TRUE(WaitFor(
      [&] {
        auto res = client.Get("/v1/stores/customers/keys/caf%C3%A9%2F1%0A");
        if (!res) return false;
        body = res->body;
        return res->status == 200;
      },
      absl::Seconds(60)))
      << body << "\n"
      << (*router)->process().ReadLog();
  kiq::v1::GetResponse via_router;
  ASSERT_TRUE(pb::util::JsonStringToMessage(body, &via_router).ok()) << body;
  EXPECT_EQ(NormalizedJson(via_router), NormalizedJson(response));
  auto res = client.Get("/v1/metadata/nodes");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_THAT(res->body, HasSubstr("\"nodeId\":\"n1\""));
}

TEST_F(HttpGatewayIntegrationTest, SubscribeStreamsLikeGrpc) {
  StartNode();
  Produce("customers", "a/b", "first");
  WaitCaughtUp("customers", "customers");

  // The first message (or the error) of a snapshot subscription to one key, over gRPC.
  kiq::v1::SubscribeRequest request;
  request.set_store("customers");
  request.set_key("a/b");
  request.set_from(kiq::v1::SubscribeRequest::FROM_SNAPSHOT);
  auto ctx = Context();
  auto reader = query_->Subscribe(ctx.get(), request);
  kiq::v1::SubscribeResponse first;
  bool got_first = reader->Read(&first);
  grpc::Status status;
  if (got_first) {
    ctx->TryCancel();
  }
  status = reader->Finish();

  // The same over HTTP: read up to the first line, then hang up.
  std::string body;
  int http_status = 0;
  std::string content_type;
  http_->Get(
      "/v1/stores/customers/subscribe?key=a%2Fb&from=FROM_SNAPSHOT",
      [&](const httplib::Response& res) {
        http_status = res.status;
        content_type = res.get_header_value("Content-Type");
        return true;
      },
      [&](const char* data, size_t size) {
        body.append(data, size);
        return body.find('\n') == std::string::npos;
      });
  if (got_first) {
    EXPECT_EQ(http_status, 200);
    EXPECT_EQ(content_type, "application/x-ndjson");
    ASSERT_NE(body.find('\n'), std::string::npos) << body;
    rapidjson::Document doc;
    std::string line = body.substr(0, body.find('\n'));
    doc.Parse(line.c_str());
    ASSERT_TRUE(doc.IsObject() && doc.HasMember("result")) << line;
    kiq::v1::SubscribeResponse over_http;
    std::string json = line.substr(std::string("{\"result\":").size());
    json.pop_back();
    ASSERT_TRUE(pb::util::JsonStringToMessage(json, &over_http).ok()) << json;
    EXPECT_EQ(NormalizedJson(over_http), NormalizedJson(first));
  } else {
    // Failed at once over gRPC (UNIMPLEMENTED until Subscribe lands): the HTTP status says
    // so, or (if the failure came later than the gateway waits) a final error line does.
    ASSERT_FALSE(status.ok());
    rapidjson::Document doc;
    if (http_status == 200) {
      doc.Parse(body.c_str());
      ASSERT_TRUE(doc.IsObject() && doc.HasMember("error")) << body;
      EXPECT_EQ(doc["error"]["code"].GetInt(), static_cast<int>(status.error_code()));
    } else {
      EXPECT_EQ(http_status, router::HttpStatusFromGrpcCode(status.error_code())) << body;
      doc.Parse(body.c_str());
      ASSERT_TRUE(doc.IsObject()) << body;
      EXPECT_EQ(doc["code"].GetInt(), static_cast<int>(status.error_code()));
      EXPECT_EQ(doc["message"].GetString(), status.error_message());
    }
  }
}

TEST_F(HttpGatewayIntegrationTest, ErrorsHaveGrpcGatewayStatuses) {
  StartNode();
  Produce("customers", "u1", "x");
  WaitCaughtUp("customers", "customers");

  // Unknown store → 404 naming it, the same message as over gRPC.
  grpc::Status status;
  kiq::v1::GetResponse response = GrpcGet("no_such_store", "u1", &status);
  ASSERT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(status.error_message(), HasSubstr("no_such_store"));
  ExpectSameAnswer("/v1/stores/no_such_store/keys/u1", status, response);

  // A range whose from is after its to → 400.
  kiq::v1::RangeRequest range;
  range.set_store("customers");
  range.set_from("z");
  range.set_to("a");
  kiq::v1::ScanResponse scan;
  status = query_->Range(Context().get(), range, &scan);
  ASSERT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  ExpectSameAnswer("/v1/stores/customers/range?from=z&to=a", status, scan);

  // Bad parameters are refused by the gateway itself → 400 naming the parameter.
  auto res = http_->Get("/v1/stores/customers/entries?page_size=ten");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 400);
  EXPECT_THAT(res->body, HasSubstr("page_size"));
  // Unknown route → JSON 404; wrong method → 405.
  res = http_->Get("/v1/nothing");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 404);
  EXPECT_THAT(res->body, HasSubstr("\"code\":5"));
  res = http_->Post("/v1/stores/customers/count", "", "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 405);
  EXPECT_THAT(res->body, HasSubstr("\"code\":12"));
  // A POST without any body (curl -X POST): the same JSON 405, not a 400 with an empty body.
  res = http_->Post("/v1/stores/customers/keys/u1");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 405);
  EXPECT_THAT(res->body, HasSubstr("\"code\":12"));

  // grpc-gateway's rules: a malformed escape in the path → 400 (not 404); a key in the path
  // and ?key_bytes= (a oneof set twice) → 400 (not one of them ignored); a scalar parameter
  // given twice → 400 (not the last one).
  res = http_->Get("/v1/stores/customers/keys/u%ZZ");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 400);
  EXPECT_THAT(res->body, HasSubstr("malformed percent-escape"));
  res = http_->Get("/v1/stores/customers/keys/u1?key_bytes=dTI%3D");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 400);
  EXPECT_THAT(res->body, HasSubstr("oneof 'key_kind' is already set"));
  res = http_->Get("/v1/stores/customers/entries?page_size=1&page_size=2");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 400);
  EXPECT_THAT(res->body, HasSubstr("given more than once"));
  // The operations endpoints are untouched.
  res = http_->Get("/healthz");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
}

// A partition whose stored offset is outside its (new, empty) log is FAILED under
// --offset-out-of-range=fail: its keys answer UNAVAILABLE, over HTTP 503.
TEST_F(HttpGatewayIntegrationTest, UnavailablePartitionIs503) {
  StartNode();
  Produce("orders", "u1", "pizza");
  WaitCaughtUp("order_count", "orders");
  node_->process().Signal(SIGTERM);
  ASSERT_OK(node_->process().Wait(absl::Seconds(30)));
  ASSERT_NO_FATAL_FAILURE(RestartKafkaEmpty());
  StartNode({"--offset-out-of-range=fail"});

  std::string body;
  ASSERT_TRUE(WaitFor(
      [&] {
        auto res = http_->Get("/v1/stores/order_count/keys/u1");
        if (!res) return false;
        body = res->body;
        return res->status == 503;
      },
      // Once the partition is FAILED the Get answers at once (it is not retried until the
      // gateway's 30 s deadline, as it was: ~36 s idle, past 60 s once in CI).
      absl::Seconds(60)))
      << body << "\n"
      << node_->process().ReadLog();
  rapidjson::Document doc;
  doc.Parse(body.c_str());
  ASSERT_TRUE(doc.IsObject()) << body;
  EXPECT_EQ(doc["code"].GetInt(), static_cast<int>(grpc::StatusCode::UNAVAILABLE));
  EXPECT_THAT(doc["message"].GetString(), HasSubstr("outside the log"));
}

}  // namespace
}  // namespace kiq::testing
