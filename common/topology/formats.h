#pragma once

#include <string>

#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "kiq/v1/topology.pb.h"

namespace kiq {

// True for the formats written in the Schema Registry wire format (avro, protobuf, json_sr).
inline bool IsRegistryFormat(kiq::v1::Format format) {
  return format == kiq::v1::FORMAT_AVRO || format == kiq::v1::FORMAT_PROTOBUF ||
         format == kiq::v1::FORMAT_JSON_SR;
}

// The format in which stores, filters and group_by read a source's values: registry formats
// are decoded into JSON at ingestion (the stores keep JSON), the others are read as they are.
inline kiq::v1::Format DecodedFormat(kiq::v1::Format format) {
  return IsRegistryFormat(format) ? kiq::v1::FORMAT_JSON : format;
}

// Why `url` cannot be a Schema Registry URL ("" if it can): http:// or https://, then a host.
inline std::string RegistryUrlProblem(absl::string_view url) {
  absl::string_view rest = url;
  if (!absl::ConsumePrefix(&rest, "http://") && !absl::ConsumePrefix(&rest, "https://")) {
    return "must start with http:// or https://";
  }
  if (rest.empty() || rest.front() == '/' || rest.front() == ':') return "names no host";
  return "";
}

}  // namespace kiq
