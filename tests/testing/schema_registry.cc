#include "tests/testing/schema_registry.h"

#include <signal.h>

#include <atomic>
#include <cstdio>
#include <fstream>

#include <httplib.h>
#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "tests/testing/kiq_processes.h"

namespace kiq::testing {
namespace {

constexpr char kNodeJs[] = KIQ_NODEJS_BIN;

absl::Status CheckNodeJs() {
  if (std::string(kNodeJs).empty()) {
    return absl::FailedPreconditionError(
        "Node.js was not found at configure time (./kiq.sh installs nodejs and npm)");
  }
  std::ifstream lib(std::string(kSourceDir) +
                    "/tests/js/node_modules/@kafkajs/confluent-schema-registry/package.json");
  if (!lib) {
    return absl::FailedPreconditionError(
        "tests/js/node_modules is missing: run `npm ci` in tests/js (./kiq.sh does)");
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<SchemaRegistryProcess>> SchemaRegistryProcess::Start(
    const std::string& dir) {
  if (absl::Status s = CheckNodeJs(); !s.ok()) return s;
  std::unique_ptr<SchemaRegistryProcess> out(new SchemaRegistryProcess(dir));
  if (absl::Status s = out->Launch(0); !s.ok()) return s;
  return out;
}

absl::Status SchemaRegistryProcess::Launch(int port) {
  const std::string port_file = absl::StrCat(dir_, "/registry.port");
  std::remove(port_file.c_str());
  ++launches_;
  absl::StatusOr<std::unique_ptr<Process>> p = Process::Start(
      {kNodeJs, std::string(kSourceDir) + "/tests/js/registry.js",
       "--port-file=" + port_file, absl::StrCat("--port=", port),
       absl::StrCat("--state=", dir_, "/registry-state.json")},
      absl::StrCat(dir_, "/registry-", launches_, ".log"));
  if (!p.ok()) return p.status();
  process_ = *std::move(p);
  int read = 0;
  if (!WaitFor(
          [&] {
            std::string text(absl::StripAsciiWhitespace(ReadFile(port_file)));
            return absl::SimpleAtoi(text, &read) && read > 0;
          },
          absl::Seconds(20))) {
    return absl::DeadlineExceededError(
        absl::StrCat("test schema registry did not start: ", process_->ReadLog()));
  }
  port_ = read;
  return absl::OkStatus();
}

absl::Status SchemaRegistryProcess::Stop() {
  if (process_ == nullptr) return absl::OkStatus();
  absl::StatusOr<int> code = process_->Terminate(absl::Seconds(10));
  process_.reset();
  return code.ok() ? absl::OkStatus() : code.status();
}

absl::Status SchemaRegistryProcess::Restart() {
  if (absl::Status s = Stop(); !s.ok()) return s;
  return Launch(port_);
}

absl::StatusOr<int> SchemaRegistryProcess::SetHang(bool hang) {
  httplib::Client http("127.0.0.1", port_);
  http.set_connection_timeout(5);
  http.set_read_timeout(5);
  httplib::Result r = http.Put("/_control/hang", hang ? R"({"hang":true})" : R"({"hang":false})",
                               "application/json");
  if (!r || r->status != 200) {
    return absl::UnavailableError(absl::StrCat("test schema registry: PUT /_control/hang failed",
                                               r ? absl::StrCat(": HTTP ", r->status) : ""));
  }
  rapidjson::Document answer;
  answer.Parse(r->body.c_str());
  if (!answer.IsObject() || !answer.HasMember("released") || !answer["released"].IsInt()) {
    return absl::InternalError(absl::StrCat("test schema registry: bad answer ", r->body));
  }
  return answer["released"].GetInt();
}

absl::StatusOr<Encoded> EncodeWithSerializer(const std::string& dir, const std::string& registry_url,
                                             const std::vector<SerializerSchema>& schemas,
                                             const std::vector<SerializerRecord>& records) {
  if (absl::Status s = CheckNodeJs(); !s.ok()) return s;
  static std::atomic<int> runs{0};
  const int run = ++runs;
  rapidjson::StringBuffer buffer;
  rapidjson::Writer<rapidjson::StringBuffer> w(buffer);
  w.StartObject();
  w.Key("registry");
  w.String(registry_url.c_str());
  w.Key("schemas");
  w.StartArray();
  for (const SerializerSchema& s : schemas) {
    w.StartObject();
    w.Key("subject");
    w.String(s.subject.c_str());
    w.Key("type");
    w.String(s.type.c_str());
    w.Key("schema");
    w.String(s.schema.data(), static_cast<rapidjson::SizeType>(s.schema.size()));
    w.EndObject();
  }
  w.EndArray();
  w.Key("records");
  w.StartArray();
  for (const SerializerRecord& r : records) {
    w.StartObject();
    w.Key("schema");
    w.Int(r.schema);
    w.Key("message");
    w.String(r.message.c_str());
    w.Key("value");
    w.RawValue(r.value_json.data(), r.value_json.size(), rapidjson::kObjectType);
    w.EndObject();
  }
  w.EndArray();
  w.EndObject();
  const std::string spec = absl::StrCat(dir, "/encode-", run, ".json");
  const std::string out = absl::StrCat(dir, "/encode-", run, ".out");
  {
    std::ofstream f(spec);
    f << buffer.GetString();
    if (!f) return absl::InternalError(absl::StrCat("cannot write ", spec));
  }
  absl::StatusOr<std::unique_ptr<Process>> p =
      Process::Start({kNodeJs, std::string(kSourceDir) + "/tests/js/encode.js", spec, out},
                     absl::StrCat(dir, "/encode-", run, ".log"));
  if (!p.ok()) return p.status();
  absl::StatusOr<int> code = (*p)->Wait(absl::Seconds(60));
  if (!code.ok() || *code != 0) {
    return absl::InternalError(absl::StrCat("tests/js/encode.js failed: ", (*p)->ReadLog()));
  }
  std::vector<std::string> lines = absl::StrSplit(ReadFile(out), '\n', absl::SkipEmpty());
  if (lines.size() != records.size() + 1 || !absl::StartsWith(lines[0], "ids")) {
    return absl::InternalError(absl::StrCat("tests/js/encode.js: unexpected output in ", out));
  }
  Encoded encoded;
  for (absl::string_view id : absl::StrSplit(lines[0], ' ', absl::SkipEmpty())) {
    int32_t n = 0;
    if (absl::SimpleAtoi(id, &n)) encoded.schema_ids.push_back(n);
  }
  for (size_t i = 1; i < lines.size(); ++i) encoded.values.push_back(absl::HexStringToBytes(lines[i]));
  return encoded;
}

}  // namespace kiq::testing
