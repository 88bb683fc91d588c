#include "router/frontend.h"

#include <cstdio>

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server_builder.h>

#include "absl/strings/str_cat.h"
#include "common/thread_name.h"
#include "router/get_response_json.h"

namespace kiq::router {

absl::Status WriteFileAtomically(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  FILE* f = std::fopen(tmp.c_str(), "w");
  if (f == nullptr) return absl::UnavailableError(absl::StrCat("cannot write ", tmp));
  const bool ok = std::fputs(text.c_str(), f) >= 0;
  if (std::fclose(f) != 0 || !ok || std::rename(tmp.c_str(), path.c_str()) != 0) {
    return absl::UnavailableError(absl::StrCat("cannot write ", path));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Frontend>> Frontend::Start(
    Options options, const LocalStores& local, const std::function<void(HttpServer&)>& add_routes) {
  std::unique_ptr<Frontend> frontend(new Frontend());
  absl::StatusOr<std::unique_ptr<Authorizer>> auth =
      Authorizer::Create(options.security, options.registry);
  if (!auth.ok()) return auth.status();
  frontend->auth_ = *std::move(auth);
  const std::optional<security::ClusterSecret>& secret = frontend->auth_->cluster_secret();
  if (secret.has_value()) frontend->peers_.Authenticate(*secret);
  // Discovery: the routing table follows the members topic.
  absl::StatusOr<std::unique_ptr<MembershipTailer>> tailer = MembershipTailer::Start(
      options.kafka, options.members_topic, frontend->table_, secret, options.registry);
  if (!tailer.ok()) return tailer.status();
  frontend->tailer_ = *std::move(tailer);
  if (options.registry != nullptr) {
    frontend->metrics_ = std::make_unique<QueryMetrics>(*options.registry);
  }
  frontend->waiter_ = std::make_unique<PositionWaiter>(local, options.max_waiting_requests);
  ClusterView cluster;
  cluster.table = &frontend->table_;
  cluster.peers = &frontend->peers_;
  cluster.self_node_id = options.self_id;
  // The service's view: without metrics and waiter (the router has them).
  ClusterView service_cluster = cluster;
  cluster.metrics = frontend->metrics_.get();
  cluster.waiter = frontend->waiter_.get();
  ForwardCoalescer::Options coalescing;
  coalescing.window = options.serving.forward_coalescing_window;
  frontend->router_ = std::make_unique<QueryRouter>(local, std::move(cluster), coalescing);
  frontend->query_service_ = std::make_unique<QueryServiceImpl>(
      *frontend->router_, frontend->pool_, frontend->wait_pool_, *frontend->waiter_,
      frontend->metrics_.get(), std::move(service_cluster), frontend->auth_.get());
  frontend->metadata_service_ =
      std::make_unique<MetadataServiceImpl>(frontend->table_, local, frontend->auth_.get());
  if (options.serve_peers) {
    frontend->peer_service_ = std::make_unique<PeerServiceImpl>(
        local, frontend->pool_, frontend->waiter_.get(), frontend->auth_.get());
  }

  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder builder;
  const security::TlsFiles& tls = options.serving.tls;
  if (tls.dials_tls()) frontend->peers_.SetCredentials(security::GrpcPeerCredentials(tls));
  builder.AddListeningPort(absl::StrCat(options.bind_address, ":", options.grpc_port),
                           tls.serves_tls() ? security::GrpcServerCredentials(tls)
                                            : grpc::InsecureServerCredentials(),
                           &frontend->grpc_port_);
  builder.RegisterService(frontend->query_service_.get());
  if (frontend->peer_service_) builder.RegisterService(frontend->peer_service_.get());
  builder.RegisterService(frontend->metadata_service_.get());
  std::vector<std::string> services = {"kiq.v1.QueryService", "kiq.v1.MetadataService",
                                       "grpc.health.v1.Health",
                                       "grpc.reflection.v1alpha.ServerReflection",
                                       "grpc.reflection.v1.ServerReflection"};
  if (frontend->peer_service_) services.push_back("kiq.v1.PeerService");
  frontend->reflection_v1_ = std::make_unique<ReflectionV1Service>(services);
  builder.RegisterService(frontend->reflection_v1_.get());
  frontend->server_ = builder.BuildAndStart();
  if (!frontend->server_ || frontend->grpc_port_ == 0) {
    return absl::UnavailableError(absl::StrCat("--grpc-port: cannot listen on ",
                                               options.bind_address, ":", options.grpc_port));
  }
  // Not serving until the owner says how to tell (StartHealthUpdates).
  if (grpc::HealthCheckServiceInterface* health = frontend->server_->GetHealthCheckService()) {
    // gRPC's service knows only "" until a name is set; every service answers for itself.
    health->SetServingStatus("", false);
    for (const std::string& name : services) health->SetServingStatus(name, false);
  }
  if (options.http_port >= 0) {
    HttpServer::Options http;
    http.max_connections = options.serving.http_max_connections;
    http.idle_timeout = options.serving.http_idle_timeout;
    // GetMany's POST with a JSON body; the gateway is made below, before the port serves.
    http.takes_body = [frontend = frontend.get()](absl::string_view method,
                                                  absl::string_view target) {
      return frontend->gateway_ != nullptr && frontend->gateway_->TakesBody(method, target);
    };
    if (tls.serves_tls()) {
      absl::StatusOr<std::shared_ptr<security::ServerTlsContext>> context =
          security::ServerTlsContext::Open(tls);
      if (!context.ok()) return context.status();
      http.tls = *std::move(context);
    }
    frontend->http_ = std::make_unique<HttpServer>(http);
    HttpGateway::Options gateway_options;
    gateway_options.max_streams = options.serving.http_max_streams;
    // A local point read is answered on the HTTP connection's thread; the rest goes through
    // the in-process channel.
    gateway_options.direct["/kiq.v1.QueryService/Get"] =
        HttpGateway::Direct<kiq::v1::GetRequest, kiq::v1::GetResponse>(
            [service = frontend->query_service_.get()](
                const kiq::v1::GetRequest& request, std::optional<absl::string_view> authorization,
                kiq::v1::GetResponse* response) {
              CallCredentials credentials;
              credentials.authorization = authorization;
              return service->GetDirect(request, credentials, response);
            },
            // Its JSON printed without protobuf's binary round trip (same bytes).
            &AppendGetResponseJson);
    absl::StatusOr<std::unique_ptr<HttpGateway>> gateway =
        HttpGateway::Create(frontend->server_->InProcessChannel(grpc::ChannelArguments()),
                            {"kiq.v1.QueryService", "kiq.v1.MetadataService"}, gateway_options);
    if (!gateway.ok()) return gateway.status();
    frontend->gateway_ = *std::move(gateway);
    frontend->gateway_->Register(frontend->http_->native());
    add_routes(*frontend->http_);
    absl::StatusOr<int> port = frontend->http_->Start(options.bind_address, options.http_port);
    if (!port.ok()) {
      return absl::UnavailableError(absl::StrCat("--http-port: ", port.status().message()));
    }
    frontend->http_port_ = *port;
  }
  if (options.serving.admin_port >= 0) {
    HttpServer::Options admin;
    admin.max_connections_flag = "--admin-max-connections";
    admin.max_connections = options.serving.admin_max_connections;
    frontend->admin_ = std::make_unique<HttpServer>(admin);
    add_routes(*frontend->admin_);
    absl::StatusOr<int> port = frontend->admin_->Start(options.bind_address, options.serving.admin_port);
    if (!port.ok()) {
      return absl::UnavailableError(absl::StrCat("--admin-port: ", port.status().message()));
    }
    frontend->admin_port_ = *port;
  }
  if (!options.port_file.empty()) {
    std::string text = absl::StrCat("grpc=", frontend->grpc_port_, "\n");
    if (frontend->http_port_ >= 0) absl::StrAppend(&text, "http=", frontend->http_port_, "\n");
    if (frontend->admin_port_ >= 0) {
      absl::StrAppend(&text, "admin=", frontend->admin_port_, "\n");
    }
    if (absl::Status s = WriteFileAtomically(options.port_file, text); !s.ok()) {
      return absl::UnavailableError(absl::StrCat("--port-file: ", s.message()));
    }
  }
  return frontend;
}

Frontend::~Frontend() { Shutdown(absl::Seconds(5)); }

void Frontend::StartHealthUpdates(std::function<bool()> ready) {
  grpc::HealthCheckServiceInterface* health = server_->GetHealthCheckService();
  if (health == nullptr || health_thread_.joinable()) return;
  health_thread_ = std::thread([this, health, ready = std::move(ready)] {
    NameThisThread("kiq-health");
    do {
      health->SetServingStatus(ready());
    } while (!health_stop_.WaitForNotificationWithTimeout(kHealthPoll));
  });
}

void Frontend::Shutdown(absl::Duration grace) {
  if (health_thread_.joinable()) {
    health_stop_.Notify();
    health_thread_.join();
  }
  if (server_) {
    // Health checkers see NOT_SERVING from now on (and the status cannot change back).
    if (grpc::HealthCheckServiceInterface* health = server_->GetHealthCheckService()) {
      health->Shutdown();
    }
    server_->Shutdown(std::chrono::system_clock::now() + absl::ToChronoMilliseconds(grace));
  }
  // After the server's Shutdown (which ends gateway streams) and before the server goes away.
  if (http_) http_->Stop();
  if (admin_) admin_->Stop();
  server_.reset();
}

}  // namespace kiq::router
