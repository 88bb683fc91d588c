// The HTTP serving layer of a real kiq-node: the admin port answers probes in milliseconds while
// the public HTTP port holds hundreds of idle keep-alive connections and open Subscribe streams;
// past --http-max-connections a connection is answered 503, past --http-max-streams a stream
// 429 (both with JSON bodies); an idle keep-alive connection is closed after
// --http-idle-timeout; gRPC's health service follows /readyz.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <vector>

#include <gmock/gmock.h>
#include <google/protobuf/descriptor.pb.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <rapidjson/document.h>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpc/reflection/v1/reflection.grpc.pb.h"
#include "kiq/v1/query.grpc.pb.h"
#include "tests/testing/kafka_fixture.h"
#include "tests/testing/kiq_processes.h"
#include "tests/testing/metrics.h"
#include "tests/testing/queries.h"
#include "tests/testing/status_matchers.h"

namespace kiq::testing {
namespace {

using ::testing::HasSubstr;

constexpr int kPartitions = 2;

std::vector<std::pair<std::string, int>> Topics() {
  return {{"customers", kPartitions},
          {"orders", kPartitions},
          {"orders-demo-order_count-changelog", kPartitions}};
}

// A raw loopback TCP connection, so that the test controls exactly when it speaks and when
// it stays silent (httplib's client would reconnect). Closed by the destructor.
class Connection {
 public:
  explicit Connection(int port) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
      close(fd_);
      fd_ = -1;
    }
  }
  ~Connection() {
    if (fd_ >= 0) close(fd_);
  }
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  bool ok() const { return fd_ >= 0; }

  bool SendGet(const std::string& path) {
    const std::string request =
        absl::StrCat("GET ", path, " HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    return send(fd_, request.data(), request.size(), MSG_NOSIGNAL) ==
           static_cast<ssize_t>(request.size());
  }

  // Reads until the response head (and, with Content-Length, its body) has arrived or
  // `timeout` passed; the status code (0 if none), the body in `body`.
  int ReadResponse(absl::Duration timeout, std::string* body = nullptr) {
    const absl::Time deadline = absl::Now() + timeout;
    for (;;) {
      const size_t head_end = buffer_.find("\r\n\r\n");
      if (head_end != std::string::npos) {
        int status = 0;
        if (buffer_.size() > 12) absl::SimpleAtoi(buffer_.substr(9, 3), &status);
        const std::string head = buffer_.substr(0, head_end);
        size_t length = 0;
        const size_t cl = head.find("Content-Length: ");
        if (cl != std::string::npos) {
          absl::SimpleAtoi(head.substr(cl + 16, head.find("\r\n", cl) - cl - 16), &length);
        }
        if (cl == std::string::npos || buffer_.size() >= head_end + 4 + length) {
          if (body != nullptr) *body = buffer_.substr(head_end + 4, length);
          buffer_.erase(0, cl == std::string::npos ? head_end + 4 : head_end + 4 + length);
          return status;
        }
      }
      if (!ReadSome(deadline)) return 0;
    }
  }

  // Reads until `needle` has arrived (anywhere since the last response read) or `deadline`.
  bool ReadUntil(absl::string_view needle, absl::Time deadline) {
    while (!absl::StrContains(buffer_, needle)) {
      if (!ReadSome(deadline)) return false;
    }
    return true;
  }

  // Whether the server closed the connection (EOF) before `deadline`.
  bool ClosedBy(absl::Time deadline) {
    for (;;) {
      const int64_t left = absl::ToInt64Milliseconds(deadline - absl::Now());
      if (left <= 0) return false;
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, static_cast<int>(left)) <= 0) continue;
      char buf[4096];
      const ssize_t n = recv(fd_, buf, sizeof(buf), 0);
      if (n <= 0) return true;
    }
  }

 private:
  bool ReadSome(absl::Time deadline) {
    const int64_t left = absl::ToInt64Milliseconds(deadline - absl::Now());
    if (left <= 0) return false;
    pollfd p{fd_, POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(left)) <= 0) return false;
    char buf[4096];
    const ssize_t n = recv(fd_, buf, sizeof(buf), 0);
    if (n <= 0) return false;
    buffer_.append(buf, static_cast<size_t>(n));
    return true;
  }

  int fd_ = -1;
  std::string buffer_;
};

// {"code": <code>, "message": ...} with the given gRPC code.
void ExpectJsonError(const std::string& body, int code, const std::string& message_part) {
  rapidjson::Document doc;
  doc.Parse(body.c_str());
  ASSERT_TRUE(doc.IsObject()) << body;
  ASSERT_TRUE(doc.HasMember("code") && doc["code"].IsInt()) << body;
  EXPECT_EQ(doc["code"].GetInt(), code) << body;
  ASSERT_TRUE(doc.HasMember("message") && doc["message"].IsString()) << body;
  EXPECT_THAT(doc["message"].GetString(), HasSubstr(message_part));
}

// The worst of `n` GETs of `path` on a fresh httplib client each time (as a kubelet probes).
absl::Duration WorstProbe(int port, const std::string& path, int n, int* last_status) {
  absl::Duration worst;
  for (int i = 0; i < n; ++i) {
    httplib::Client client("127.0.0.1", port);
    client.set_connection_timeout(5, 0);
    client.set_read_timeout(5, 0);
    const absl::Time start = absl::Now();
    auto res = client.Get(path.c_str());
    worst = std::max(worst, absl::Now() - start);
    *last_status = res ? res->status : 0;
    if (!res) return absl::InfiniteDuration();
  }
  return worst;
}

// grpc.health.v1.Health/Check's status for `service`, by name ("SERVING"), or the error.
std::string HealthCheck(const std::shared_ptr<grpc::Channel>& channel, const std::string& service) {
  auto stub = grpc::health::v1::Health::NewStub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  grpc::health::v1::HealthCheckRequest request;
  request.set_service(service);
  grpc::health::v1::HealthCheckResponse response;
  grpc::Status status = stub->Check(&ctx, request, &response);
  if (!status.ok()) return absl::StrCat("error ", status.error_code(), ": ", status.error_message());
  return grpc::health::v1::HealthCheckResponse::ServingStatus_Name(response.status());
}

// Asks grpc.reflection.v1 one question per request on one stream; the answers in order.
std::vector<grpc::reflection::v1::ServerReflectionResponse> ReflectV1(
    const std::shared_ptr<grpc::Channel>& channel,
    const std::vector<grpc::reflection::v1::ServerReflectionRequest>& requests) {
  auto stub = grpc::reflection::v1::ServerReflection::NewStub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  auto stream = stub->ServerReflectionInfo(&ctx);
  std::vector<grpc::reflection::v1::ServerReflectionResponse> out;
  for (const auto& request : requests) {
    grpc::reflection::v1::ServerReflectionResponse response;
    if (!stream->Write(request) || !stream->Read(&response)) break;
    out.push_back(response);
  }
  stream->WritesDone();
  grpc::Status status = stream->Finish();
  EXPECT_TRUE(status.ok()) << status.error_message();
  return out;
}

class ServingTest : public KafkaFixture {
 protected:
  void SetUp() override { StartKafka("serving", Topics()); }

  void StartNode(std::vector<std::string> flags) {
    auto node = LaunchNode(ExampleTopology("orders"), "n1", std::move(flags));
    ASSERT_OK(node);
    node_ = std::move(*node);
    ASSERT_GT(node_->http_port(), 0);
    ASSERT_GT(node_->admin_port(), 0);
  }

  void WaitReady() {
    ASSERT_TRUE(WaitFor(
        [&] {
          httplib::Client client("127.0.0.1", node_->admin_port());
          auto res = client.Get("/readyz");
          return res && res->status == 200;
        },
        absl::Seconds(60)))
        << node_->process().ReadLog();
  }

  // Opens `n` Subscribe streams (all changes of customers, from now): each answered 200.
  void OpenStreams(int n, std::vector<std::unique_ptr<Connection>>* out) {
    const size_t first = out->size();
    for (int i = 0; i < n; ++i) {
      out->push_back(std::make_unique<Connection>(node_->http_port()));
      ASSERT_TRUE(out->back()->ok());
      ASSERT_TRUE(out->back()->SendGet("/v1/stores/customers/subscribe?all=true"));
    }
    // The gateway answers a stream once its first event came, or after 2 s without one.
    for (size_t i = first; i < out->size(); ++i) {
      ASSERT_EQ((*out)[i]->ReadResponse(absl::Seconds(30)), 200) << "stream " << i;
    }
  }

  // Opens `n` keep-alive connections that made one request and now stay idle.
  void OpenIdle(int n, std::vector<std::unique_ptr<Connection>>* out) {
    for (int i = 0; i < n; ++i) {
      out->push_back(std::make_unique<Connection>(node_->http_port()));
      ASSERT_TRUE(out->back()->ok());
      ASSERT_TRUE(out->back()->SendGet("/healthz"));
      ASSERT_EQ(out->back()->ReadResponse(absl::Seconds(30)), 200) << "idle connection " << i;
    }
  }

  std::unique_ptr<NodeProcess> node_;
};

TEST_F(ServingTest, ProbesOnTheAdminPortAnswerUnder200IdleConnectionsAnd200Streams) {
  // Idle connections stay open for the whole test.
  StartNode({"--http-idle-timeout=600s"});
  WaitReady();
  ProduceAndTrack("customers", "u1", "alice");
  NodeClient client(node_->target());
  ASSERT_TRUE(WaitFor([&] { return client.CaughtUp("customers", Topic("customers"), produced_); },
                      absl::Seconds(60)));

  std::vector<std::unique_ptr<Connection>> streams;
  std::vector<std::unique_ptr<Connection>> idle;
  OpenStreams(200, &streams);
  OpenIdle(200, &idle);

  int status = 0;
  const absl::Duration healthz = WorstProbe(node_->admin_port(), "/healthz", 20, &status);
  EXPECT_EQ(status, 200);
  const absl::Duration readyz = WorstProbe(node_->admin_port(), "/readyz", 20, &status);
  EXPECT_EQ(status, 200);
  const absl::Duration metrics = WorstProbe(node_->admin_port(), "/metrics", 5, &status);
  EXPECT_EQ(status, 200);
  std::printf(
      "admin port with 200 idle keep-alive connections and 200 open streams on the HTTP port: "
      "worst of 20 /healthz %.2f ms, of 20 /readyz %.2f ms, of 5 /metrics %.2f ms\n",
      absl::ToDoubleMilliseconds(healthz), absl::ToDoubleMilliseconds(readyz),
      absl::ToDoubleMilliseconds(metrics));
  // Speed belongs in benchmarks; a generous bound that a starved port (seconds) fails.
  EXPECT_LT(healthz, absl::Seconds(1));
  EXPECT_LT(readyz, absl::Seconds(1));

  // The public port still serves a Get (400 of its 512 connections are taken).
  httplib::Client http("127.0.0.1", node_->http_port());
  http.set_read_timeout(10, 0);
  auto res = http.Get("/v1/stores/customers/keys/u1");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200) << res->body;
  EXPECT_THAT(res->body, HasSubstr("\"found\":true"));

  // gRPC's health service says SERVING, as /readyz does.
  auto channel = grpc::CreateChannel(node_->target(), grpc::InsecureChannelCredentials());
  EXPECT_EQ(HealthCheck(channel, ""), "SERVING");
  EXPECT_EQ(HealthCheck(channel, "kiq.v1.QueryService"), "SERVING");

  // The streams are live: a change reaches the first and the last one.
  ProduceAndTrack("customers", "u2", "bob");
  EXPECT_TRUE(streams.front()->ReadUntil("\"u2\"", absl::Now() + absl::Seconds(30)));
  EXPECT_TRUE(streams.back()->ReadUntil("\"u2\"", absl::Now() + absl::Seconds(30)));
}

TEST_F(ServingTest, LimitsAnswer503And429WithJsonAndIdleConnectionsAreClosed) {
  StartNode({"--http-max-connections=6", "--http-max-streams=4", "--http-idle-timeout=3s"});
  WaitReady();

  std::vector<std::unique_ptr<Connection>> streams;
  OpenStreams(4, &streams);
  // The 5th stream: 429, RESOURCE_EXHAUSTED, on a connection that stays usable.
  Connection fifth(node_->http_port());
  ASSERT_TRUE(fifth.SendGet("/v1/stores/customers/subscribe?all=true"));
  std::string body;
  EXPECT_EQ(fifth.ReadResponse(absl::Seconds(10), &body), 429);
  ExpectJsonError(body, /*RESOURCE_EXHAUSTED*/ 8, "--http-max-streams");
  const absl::Time fifth_idle_since = absl::Now();

  // Connection 6 is the last one allowed; the 7th is answered 503 and closed.
  Connection sixth(node_->http_port());
  ASSERT_TRUE(sixth.ok());
  Connection seventh(node_->http_port());
  ASSERT_TRUE(seventh.SendGet("/healthz"));
  EXPECT_EQ(seventh.ReadResponse(absl::Seconds(10), &body), 503);
  ExpectJsonError(body, /*UNAVAILABLE*/ 14, "--http-max-connections");
  EXPECT_TRUE(seventh.ClosedBy(absl::Now() + absl::Seconds(5)));

  // The admin port is not the HTTP port's limits' business.
  int status = 0;
  EXPECT_LT(WorstProbe(node_->admin_port(), "/healthz", 3, &status), absl::Seconds(1));
  EXPECT_EQ(status, 200);

  // The 5th connection, idle since its 429, is closed by the server after the idle timeout.
  EXPECT_TRUE(fifth.ClosedBy(fifth_idle_since + absl::Seconds(3 + 10)));
  const absl::Duration idle_for = absl::Now() - fifth_idle_since;
  std::printf("an idle keep-alive connection was closed after %.2f s (--http-idle-timeout=3s)\n",
              absl::ToDoubleSeconds(idle_for));
  EXPECT_GE(idle_for, absl::Seconds(2));

  // Streams ended by their clients give their slots back: a new stream is served.
  streams.clear();
  ASSERT_TRUE(WaitFor(
      [&] {
        Connection again(node_->http_port());
        return again.SendGet("/v1/stores/customers/subscribe?all=true") &&
               again.ReadResponse(absl::Seconds(10)) == 200;
      },
      absl::Seconds(30)));
}

TEST_F(ServingTest, RouterIsReadyOnceEveryPartitionHasAnOwnerAndExportsMetrics) {
  auto router = LaunchRouter(ExampleTopology("orders"));
  ASSERT_OK(router);
  ASSERT_GT((*router)->admin_port(), 0);
  httplib::Client admin("127.0.0.1", (*router)->admin_port());
  admin.set_read_timeout(10, 0);
  auto channel = grpc::CreateChannel((*router)->target(), grpc::InsecureChannelCredentials());

  // No node yet: not ready, with the reason; gRPC health agrees.
  auto res = admin.Get("/readyz");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 503);
  EXPECT_EQ(res->get_header_value("Content-Type"), "application/json");
  EXPECT_THAT(res->body, HasSubstr("\"ready\":false"));
  EXPECT_THAT(res->body, HasSubstr("no live node owns partition 0"));
  ASSERT_TRUE(WaitFor([&] { return HealthCheck(channel, "") == "NOT_SERVING"; }, absl::Seconds(5)));
  res = admin.Get("/healthz");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);

  StartNode({});
  ProduceAndTrack("customers", "u1", "alice");
  ASSERT_TRUE(WaitFor(
      [&] {
        auto r = admin.Get("/readyz");
        return r && r->status == 200;
      },
      absl::Seconds(60)))
      << (*router)->process().ReadLog();
  EXPECT_TRUE(WaitFor([&] { return HealthCheck(channel, "") == "SERVING"; }, absl::Seconds(5)));

  // A Get through the router, then its metrics: queries, forwards, the routing table.
  NodeClient through_router((*router)->target());
  ASSERT_TRUE(WaitFor(
      [&] { return through_router.CaughtUp("customers", Topic("customers"), produced_); },
      absl::Seconds(60)));
  const std::string metrics = ScrapeMetrics((*router)->admin_port());
  EXPECT_EQ(MetricSum(metrics, "kiq_routing_table_partitions_owned", {}), kPartitions) << metrics;
  EXPECT_EQ(MetricSum(metrics, "kiq_routing_table_partitions", {}), kPartitions);
  EXPECT_EQ(MetricSum(metrics, "kiq_members", {}), 1);
  EXPECT_GE(MetricSum(metrics, "kiq_routing_table_age_seconds", {}), 0);
  EXPECT_EQ(MetricSum(metrics, "kiq_kafka_connected", {}), 1);
  EXPECT_GE(MetricSum(metrics, "kiq_queries_total", {}), 1) << metrics;
  EXPECT_GE(MetricSum(metrics, "kiq_forwarded_calls_total", {}), 1) << metrics;
  // kiq_subscription_moves_total (fan-in) shows once a subscription moved: prometheus-cpp
  // exposes a family from its first sample.
  // Server reflection v1 (besides gRPC's v1alpha): the services, and a service's file with
  // the files it imports.
  grpc::reflection::v1::ServerReflectionRequest list;
  list.set_list_services("");
  grpc::reflection::v1::ServerReflectionRequest symbol;
  symbol.set_file_containing_symbol("kiq.v1.QueryService");
  grpc::reflection::v1::ServerReflectionRequest unknown;
  unknown.set_file_containing_symbol("no.such.Service");
  const auto answers = ReflectV1(channel, {list, symbol, unknown});
  ASSERT_EQ(answers.size(), 3u);
  std::vector<std::string> services;
  for (const auto& s : answers[0].list_services_response().service()) services.push_back(s.name());
  EXPECT_THAT(services, ::testing::IsSupersetOf({"kiq.v1.QueryService", "kiq.v1.MetadataService",
                                                 "grpc.health.v1.Health",
                                                 "grpc.reflection.v1.ServerReflection",
                                                 "grpc.reflection.v1alpha.ServerReflection"}));
  ASSERT_GE(answers[1].file_descriptor_response().file_descriptor_proto_size(), 2);
  google::protobuf::FileDescriptorProto file;
  ASSERT_TRUE(file.ParseFromString(answers[1].file_descriptor_response().file_descriptor_proto(0)));
  EXPECT_EQ(file.name(), "kiq/v1/query.proto");
  EXPECT_EQ(answers[2].error_response().error_code(), static_cast<int>(grpc::StatusCode::NOT_FOUND));

  // The same routes on the router's public HTTP port, for compatibility.
  httplib::Client http("127.0.0.1", (*router)->http_port());
  res = http.Get("/metrics");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_THAT(res->body, HasSubstr("kiq_routing_table_partitions_owned"));
}

}  // namespace
}  // namespace kiq::testing
