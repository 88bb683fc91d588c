#pragma once

#include <chrono>
#include <memory>
#include <string>

#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server.h>
#include <grpcpp/server_builder.h>

#include "absl/strings/str_cat.h"
#include "tests/client/fake_metadata_service.h"
#include "tests/client/fake_query_service.h"

// Header-only (the test build compiles only *_test.cc).
namespace kiq::client {

// A FakeQueryService and, unless told otherwise, a FakeMetadataService on one gRPC server on
// 127.0.0.1 at a port the kernel picks, like a kiq node serving both.
class FakeServer {
 public:
  enum class Services {
    kQueryAndMetadata,
    kQueryOnly,  // Like a server without MetadataService: metadata calls are UNIMPLEMENTED.
  };

  explicit FakeServer(Services services = Services::kQueryAndMetadata) {
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    builder.RegisterService(&query_service_);
    if (services == Services::kQueryAndMetadata) builder.RegisterService(&metadata_service_);
    server_ = builder.BuildAndStart();
  }
  ~FakeServer() { Shutdown(); }

  void Shutdown() {
    if (server_ != nullptr) server_->Shutdown(std::chrono::system_clock::now());
  }

  bool started() const { return server_ != nullptr && port_ > 0; }
  std::string target() const { return absl::StrCat("127.0.0.1:", port_); }
  FakeQueryService& service() { return query_service_; }
  FakeMetadataService& metadata_service() { return metadata_service_; }

 private:
  FakeQueryService query_service_;
  FakeMetadataService metadata_service_;
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
};

}  // namespace kiq::client
