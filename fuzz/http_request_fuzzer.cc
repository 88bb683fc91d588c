// The HTTP path and query parser (router/http_gateway.cc): a request target ("path?query") is
// matched against every google.api.http route of kiq.v1's services, as the gateway does, and a
// matched route's request message is filled from the path variables and query parameters
// (FillRequest: percent-decoding, dotted field paths, every scalar type, enums, bytes, repeated
// fields). A second input is parsed as a path template. Properties: no crash; decoded string
// fields are UTF-8 (the message serializes).
#include <fuzzer/FuzzedDataProvider.h>

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <google/protobuf/descriptor.h>
#include <google/protobuf/dynamic_message.h>

#include "absl/strings/string_view.h"
#include "common/logging.h"
#include "fuzz/fuzz_util.h"
#include "google/api/annotations.pb.h"
#include "kiq/v1/membership.grpc.pb.h"
#include "kiq/v1/query.grpc.pb.h"
#include "router/http_gateway.h"

namespace {

namespace pb = google::protobuf;

struct Route {
  kiq::router::PathTemplate path;
  const pb::Message* prototype;
};

std::vector<Route>* routes = nullptr;

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  kiq::fuzz::QuietLogs();
  routes = new std::vector<Route>();
  // Links and registers the generated files whose services are looked up by name below.
  (void)kiq::v1::GetRequest::descriptor();
  (void)kiq::v1::AllNodesRequest::descriptor();
  for (const char* name : {"kiq.v1.QueryService", "kiq.v1.MetadataService"}) {
    const pb::ServiceDescriptor* service =
        pb::DescriptorPool::generated_pool()->FindServiceByName(name);
    KIQ_FUZZ_CHECK(service != nullptr);
    for (int i = 0; i < service->method_count(); ++i) {
      const pb::MethodDescriptor* method = service->method(i);
      if (!method->options().HasExtension(google::api::http)) continue;
      const google::api::HttpRule& rule = method->options().GetExtension(google::api::http);
      // The routes are GETs, and POSTs with a body (GetMany).
      const std::string& pattern = rule.has_post() ? rule.post() : rule.get();
      absl::StatusOr<kiq::router::PathTemplate> path = kiq::router::PathTemplate::Parse(pattern);
      KIQ_FUZZ_CHECK(path.ok());
      routes->push_back(
          Route{*std::move(path),
                pb::MessageFactory::generated_factory()->GetPrototype(method->input_type())});
    }
  }
  KIQ_FUZZ_CHECK(!routes->empty());
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider in(data, size);
  const std::string template_text = in.ConsumeRandomLengthString(128);
  const std::string target = in.ConsumeRemainingBytesAsString();
  const absl::string_view view = target;
  const absl::string_view raw_path = view.substr(0, view.find('?'));
  absl::string_view query;
  if (size_t q = view.find('?'); q != absl::string_view::npos) query = view.substr(q + 1);

  for (const Route& route : *routes) {
    std::vector<std::pair<std::string, std::string>> bindings;
    if (!route.path.Match(raw_path, &bindings)) continue;
    std::unique_ptr<pb::Message> request(route.prototype->New());
    if (kiq::router::FillRequest(route.path.text(), bindings, query, request.get()).ok()) {
      std::string bytes;
      KIQ_FUZZ_CHECK(request->SerializeToString(&bytes));
    }
  }
  (void)kiq::router::PercentDecode(raw_path, /*plus_is_space=*/false);

  absl::StatusOr<kiq::router::PathTemplate> parsed =
      kiq::router::PathTemplate::Parse(template_text);
  if (parsed.ok()) {
    std::vector<std::pair<std::string, std::string>> bindings;
    (void)parsed->Match(raw_path, &bindings);
  }
  return 0;
}
