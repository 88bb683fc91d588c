#include "common/schema/registry_client.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <mutex>
#include <sstream>

#include <curl/curl.h>
#include <rapidjson/document.h>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/topology/formats.h"

namespace kiq::schema {
namespace {

// Larger answers are not schemas anyone writes; the bound keeps a wrong URL from filling memory.
constexpr size_t kMaxAnswerBytes = 16 << 20;

struct Answer {
  std::string body;
  bool too_large = false;
};

size_t Collect(char* data, size_t size, size_t n, void* user) {
  Answer* answer = static_cast<Answer*>(user);
  if (answer->body.size() + size * n > kMaxAnswerBytes) {
    answer->too_large = true;
    return 0;  // aborts the transfer
  }
  answer->body.append(data, size * n);
  return size * n;
}

std::string Clip(absl::string_view s) {
  return std::string(s.size() > 200 ? absl::StrCat(s.substr(0, 200), "...") : s);
}

}  // namespace

absl::string_view SchemaTypeName(SchemaType type) {
  switch (type) {
    case SchemaType::kAvro:
      return "AVRO";
    case SchemaType::kProtobuf:
      return "PROTOBUF";
    case SchemaType::kJson:
      return "JSON";
  }
  return "?";
}

absl::StatusOr<RegisteredSchema> ParseSchemaAnswer(int32_t id, long http_status,
                                                   absl::string_view body) {
  const std::string what = absl::StrCat("schema registry: schema id ", id);
  rapidjson::Document doc;
  doc.Parse(body.data(), body.size());
  const bool json_object = !doc.HasParseError() && doc.IsObject();
  if (http_status != 200) {
    std::string detail = Clip(body);
    if (json_object && doc.HasMember("message") && doc["message"].IsString()) {
      detail = Clip(doc["message"].GetString());
    }
    int64_t error_code = 0;
    if (json_object && doc.HasMember("error_code") && doc["error_code"].IsInt64()) {
      error_code = doc["error_code"].GetInt64();
    }
    const std::string reason =
        absl::StrCat(what, ": HTTP ", http_status,
                     error_code != 0 ? absl::StrCat(" error_code ", error_code) : "", ": ", detail);
    if (http_status == 404 || error_code == 40403) return absl::NotFoundError(reason);
    // Server errors and refused credentials are not the data's fault: the record waits.
    if (http_status >= 500 || http_status == 401 || http_status == 403 || http_status == 429 ||
        http_status == 408) {
      return absl::UnavailableError(reason);
    }
    return absl::InvalidArgumentError(reason);
  }
  if (!json_object || !doc.HasMember("schema") || !doc["schema"].IsString()) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": the answer has no \"schema\" string: ", Clip(body)));
  }
  RegisteredSchema out;
  out.text.assign(doc["schema"].GetString(), doc["schema"].GetStringLength());
  if (doc.HasMember("schemaType")) {
    const rapidjson::Value& type = doc["schemaType"];
    const absl::string_view name =
        type.IsString() ? absl::string_view(type.GetString(), type.GetStringLength()) : "";
    if (name == "AVRO") {
      out.type = SchemaType::kAvro;
    } else if (name == "PROTOBUF") {
      out.type = SchemaType::kProtobuf;
    } else if (name == "JSON") {
      out.type = SchemaType::kJson;
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": unknown schemaType \"", Clip(name), "\""));
    }
  }
  if (doc.HasMember("references") && doc["references"].IsArray()) {
    out.references = static_cast<int>(doc["references"].Size());
  }
  return out;
}

absl::StatusOr<RegistryConfig> ResolveRegistryConfig(const kiq::v1::SchemaRegistry& spec,
                                                     const std::optional<std::string>& password) {
  RegistryConfig config;
  config.url = spec.url();
  config.username = spec.username();
  config.password = password ? *password : spec.password();
  config.ca_file = spec.ca_file();
  if (spec.timeout_ms() > 0) config.request_timeout = absl::Milliseconds(spec.timeout_ms());
  config.connect_timeout = std::min(config.connect_timeout, config.request_timeout);
  if (!config.username.empty() && config.password.empty()) {
    return absl::InvalidArgumentError(
        "schema_registry.password: required with schema_registry.username (in the topology, "
        "with --schema-registry-password-file or in $KIQ_SCHEMA_REGISTRY_PASSWORD)");
  }
  if (config.username.empty() && !config.password.empty()) {
    return absl::InvalidArgumentError(
        "schema_registry.username: required with a password (basic auth)");
  }
  if (!config.ca_file.empty()) {
    std::ifstream in(config.ca_file);
    if (!in) {
      return absl::InvalidArgumentError(absl::StrCat(
          "schema_registry.ca_file: cannot read ", config.ca_file, ": ", std::strerror(errno)));
    }
  }
  return config;
}

absl::StatusOr<std::string> ReadPasswordFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::InvalidArgumentError(absl::StrCat("--schema-registry-password-file: cannot read ",
                                                   path, ": ", std::strerror(errno)));
  }
  std::stringstream text;
  text << in.rdbuf();
  std::string password = text.str();
  while (!password.empty() && (password.back() == '\n' || password.back() == '\r')) {
    password.pop_back();
  }
  if (password.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--schema-registry-password-file: ", path, " is empty"));
  }
  return password;
}

absl::StatusOr<std::unique_ptr<HttpRegistryClient>> HttpRegistryClient::Create(
    RegistryConfig config) {
  if (std::string problem = RegistryUrlProblem(config.url); !problem.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("schema_registry.url: \"", config.url, "\" ", problem));
  }
  while (absl::EndsWith(config.url, "/")) config.url.pop_back();
  static std::once_flag once;
  static CURLcode init = CURLE_OK;
  std::call_once(once, [] { init = curl_global_init(CURL_GLOBAL_DEFAULT); });
  if (init != CURLE_OK) {
    return absl::InternalError(absl::StrCat("libcurl: ", curl_easy_strerror(init)));
  }
  return std::unique_ptr<HttpRegistryClient>(new HttpRegistryClient(std::move(config)));
}

absl::StatusOr<RegisteredSchema> HttpRegistryClient::SchemaById(int32_t id) {
  CURL* curl = curl_easy_init();
  if (curl == nullptr) return absl::UnavailableError("schema registry: libcurl has no handle");
  absl::Cleanup cleanup = [curl] { curl_easy_cleanup(curl); };
  const std::string url = absl::StrCat(config_.url, "/schemas/ids/", id);
  Answer answer;
  char error[CURL_ERROR_SIZE] = {0};
  curl_slist* headers =
      curl_slist_append(nullptr, "Accept: application/vnd.schemaregistry.v1+json, application/json");
  absl::Cleanup free_headers = [headers] { curl_slist_free_all(headers); };
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);  // no SIGALRM in a multi-threaded process
  curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS,
                   static_cast<long>(absl::ToInt64Milliseconds(config_.connect_timeout)));
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS,
                   static_cast<long>(absl::ToInt64Milliseconds(config_.request_timeout)));
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, &Collect);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &answer);
  curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, error);
  if (!config_.username.empty()) {
    curl_easy_setopt(curl, CURLOPT_HTTPAUTH, CURLAUTH_BASIC);
    curl_easy_setopt(curl, CURLOPT_USERNAME, config_.username.c_str());
    curl_easy_setopt(curl, CURLOPT_PASSWORD, config_.password.c_str());
  }
  if (!config_.ca_file.empty()) curl_easy_setopt(curl, CURLOPT_CAINFO, config_.ca_file.c_str());
  const CURLcode code = curl_easy_perform(curl);
  if (answer.too_large) {
    return absl::InvalidArgumentError(absl::StrCat("schema registry: schema id ", id,
                                                   ": the answer is larger than 16 MiB"));
  }
  if (code != CURLE_OK) {
    // Not reached, refused, timed out, TLS failed: the registry could not answer.
    return absl::UnavailableError(absl::StrCat("schema registry ", config_.url, ": schema id ", id,
                                               ": ", error[0] != '\0' ? error : curl_easy_strerror(code)));
  }
  long status = 0;
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
  return ParseSchemaAnswer(id, status, answer.body);
}

}  // namespace kiq::schema
