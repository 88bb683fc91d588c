#pragma once

#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "grpc/reflection/v1/reflection.grpc.pb.h"

namespace kiq::router {

// gRPC server reflection v1 (grpc.reflection.v1.ServerReflection), answered from protobuf's
// generated descriptor pool, the one gRPC's own v1alpha service reads: Debian's gRPC 1.51 has
// only v1alpha, and current clients ask v1 first. Each file is sent once per stream, with the
// files it depends on (as gRPC's implementation does). Thread-safe (holds no mutable state);
// a sync service: a reflection stream is a few short requests from a developer's tool.
class ReflectionV1Service final : public grpc::reflection::v1::ServerReflection::Service {
 public:
  // `services`: what list_services answers (the server's services, by full name).
  explicit ReflectionV1Service(std::vector<std::string> services);

  grpc::Status ServerReflectionInfo(
      grpc::ServerContext* context,
      grpc::ServerReaderWriter<grpc::reflection::v1::ServerReflectionResponse,
                               grpc::reflection::v1::ServerReflectionRequest>* stream) override;

 private:
  const std::vector<std::string> services_;
};

}  // namespace kiq::router
