// The Schema Registry formats: the wire format's header, the Avro and Protobuf decoders, the
// registry's answers, the cache of writer schemas (with a fake registry) and the HTTP client
// (against a registry served here on 127.0.0.1). The encoded bytes below were written by a
// real serializer, @kafkajs/confluent-schema-registry 4.1.0 (tests/js/encode.js; Protobuf
// payloads by its protobufjs, with Confluent's message indexes), not by hand.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <httplib.h>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/schema/avro_json.h"
#include "common/schema/protobuf_json.h"
#include "common/schema/registry_client.h"
#include "common/schema/schema_decoder.h"
#include "common/schema/wire_format.h"
#include "common/topology/topology_config.h"
#include "tests/testing/status_matchers.h"

namespace kiq::schema {
namespace {

using ::testing::HasSubstr;

std::string Hex(absl::string_view hex) { return absl::HexStringToBytes(hex); }

constexpr char kPaymentV1[] =
    R"({"type":"record","name":"Payment","fields":[{"name":"id","type":"string"},)"
    R"({"name":"amount","type":"long"}]})";
constexpr char kPaymentV2[] =
    R"({"type":"record","name":"Payment","fields":[{"name":"id","type":"string"},)"
    R"({"name":"amount","type":"long"},{"name":"currency","type":"string","default":"EUR"}]})";
// {"id":"a","amount":5} with kPaymentV1 as id 1; {"id":"b","amount":7,"currency":"USD"} with
// kPaymentV2 as id 2.
constexpr char kPaymentV1Hex[] = "000000000102610a";
constexpr char kPaymentV2Hex[] = "000000000202620e06555344";

constexpr char kRich[] =
    R"({"type":"record","name":"Rich","namespace":"t","fields":[{"name":"id","type":"string"},)"
    R"({"name":"n","type":"int"},{"name":"big","type":"long"},{"name":"ok","type":"boolean"},)"
    R"({"name":"price","type":"double"},{"name":"f","type":"float"},)"
    R"({"name":"note","type":["null","string"],"default":null},)"
    R"({"name":"kind","type":{"type":"enum","name":"Kind","symbols":["CARD","CASH"]}},)"
    R"({"name":"raw","type":"bytes"},{"name":"tags","type":{"type":"array","items":"string"}},)"
    R"({"name":"attrs","type":{"type":"map","values":"long"}},)"
    R"({"name":"customer","type":{"type":"record","name":"Customer","fields":[)"
    R"({"name":"city","type":"string"}]}},)"
    R"({"name":"ts","type":{"type":"long","logicalType":"timestamp-millis"}}]})";
// Schema id 5.
constexpr char kRichHex[] =
    "00000000050472310580a0d9e61d0100000000000004400000003f020668c3a902060102ff04026102620002027802"
    "00084f736c6f80a0abfef962";
constexpr char kRichNullsHex[] =
    "000000000504723200000000000000000000000000000000000000000000";

constexpr char kProto[] =
    "syntax = \"proto3\";\npackage t;\nmessage A { string x = 1; }\n"
    "message Pay { string id = 1; int64 amount = 2; }\n";
// Pay {id: "c", amount: 9} (indexes [1]) and A {x: "hi"} (indexes [0], a single 0), id 3.
constexpr char kProtoPayHex[] = "000000000302020a01631009";
constexpr char kProtoAHex[] = "0000000003000a026869";

TEST(WireFormatTest, ReadsTheSchemaIdAndThePayload) {
  const std::string bytes = Hex(kPaymentV2Hex);  // the payload is a view into it
  absl::StatusOr<WireValue> v = ParseWireFormat(bytes, false);
  ASSERT_OK(v);
  EXPECT_EQ(v->schema_id, 2);
  EXPECT_EQ(v->payload, Hex("0262" "0e" "06555344"));
  EXPECT_TRUE(v->message_indexes.empty());
  v = ParseWireFormat(Hex("7fffffff01"), false);
  EXPECT_FALSE(v.ok());
  v = ParseWireFormat(Hex("00000100ff"), false);
  ASSERT_OK(v);
  EXPECT_EQ(v->schema_id, 0x100ff);
}

TEST(WireFormatTest, RefusesAnotherMagicByteAndShortValues) {
  absl::StatusOr<WireValue> v = ParseWireFormat(R"({"id":1})", false);
  EXPECT_TRUE(absl::IsInvalidArgument(v.status()));
  EXPECT_THAT(v.status().message(), HasSubstr("magic byte 0x7b, expected 0"));
  v = ParseWireFormat(Hex("000000"), false, "key");
  EXPECT_THAT(v.status().message(), HasSubstr("key is not in the Schema Registry wire format (3 bytes"));
  EXPECT_FALSE(ParseWireFormat("", false).ok());
}

TEST(WireFormatTest, ReadsProtobufMessageIndexes) {
  const std::string a = Hex(kProtoAHex);
  absl::StatusOr<WireValue> v = ParseWireFormat(a, true);
  ASSERT_OK(v);
  EXPECT_EQ(v->schema_id, 3);
  EXPECT_EQ(v->message_indexes, std::vector<int32_t>{0});  // a single 0: the first message
  EXPECT_EQ(v->payload, Hex("0a026869"));
  v = ParseWireFormat(Hex(kProtoPayHex), true);
  ASSERT_OK(v);
  EXPECT_EQ(v->message_indexes, std::vector<int32_t>{1});
  // Count 2 (zigzag 4): [1, 0] (zigzag 2, 0).
  v = ParseWireFormat(Hex("0000000003040200"), true);
  ASSERT_OK(v);
  EXPECT_EQ(v->message_indexes, (std::vector<int32_t>{1, 0}));
  // A count with no indexes after it, a negative count, a varint that never ends.
  for (const char* bad : {"000000000304", "000000000301", "0000000003ffffffffffff"}) {
    v = ParseWireFormat(Hex(bad), true);
    EXPECT_TRUE(absl::IsInvalidArgument(v.status())) << bad;
    EXPECT_THAT(v.status().message(), HasSubstr("bad protobuf message indexes")) << bad;
  }
}

std::string DecodeAvro(const char* schema, absl::string_view hex, JsonLimits limits = {}) {
  absl::StatusOr<std::unique_ptr<AvroSchema>> s = AvroSchema::Parse(schema);
  EXPECT_OK(s);
  if (!s.ok()) return "";
  const std::string bytes = Hex(hex);
  absl::StatusOr<WireValue> wire = ParseWireFormat(bytes, false);
  EXPECT_OK(wire);
  std::string json;
  absl::Status status = (*s)->Decode(wire->payload, limits, &json);
  return status.ok() ? json : std::string(status.message());
}

TEST(AvroSchemaTest, DecodesEveryTypeIntoTheJsonModel) {
  EXPECT_EQ(DecodeAvro(kRich, kRichHex),
            R"({"id":"r1","n":-3,"big":4000000000,"ok":true,"price":2.5,"f":0.5,"note":"hé",)"
            R"("kind":"CASH","raw":"AQL/","tags":["a","b"],"attrs":{"x":1},)"
            R"("customer":{"city":"Oslo"},"ts":1700000000000})");
  EXPECT_EQ(DecodeAvro(kRich, kRichNullsHex),
            R"({"id":"r2","n":0,"big":0,"ok":false,"price":0.0,"f":0.0,"note":null,)"
            R"("kind":"CARD","raw":"","tags":[],"attrs":{},"customer":{"city":""},"ts":0})");
}

TEST(AvroSchemaTest, EachRecordDecodesWithItsOwnWriterSchema) {
  EXPECT_EQ(DecodeAvro(kPaymentV1, kPaymentV1Hex), R"({"id":"a","amount":5})");
  EXPECT_EQ(DecodeAvro(kPaymentV2, kPaymentV2Hex), R"({"id":"b","amount":7,"currency":"USD"})");
}

TEST(AvroSchemaTest, TruncatedTrailingAndTooDeepValuesAreBad) {
  const std::string full = Hex(kRichHex).substr(5);
  absl::StatusOr<std::unique_ptr<AvroSchema>> s = AvroSchema::Parse(kRich);
  ASSERT_OK(s);
  std::string json;
  for (size_t cut = 0; cut < full.size(); ++cut) {
    absl::Status status = (*s)->Decode(full.substr(0, cut), {}, &json);
    EXPECT_TRUE(absl::IsInvalidArgument(status)) << "cut at " << cut;
    EXPECT_THAT(status.message(), HasSubstr("not valid Avro")) << "cut at " << cut;
  }
  absl::Status trailing = (*s)->Decode(full + "x", {}, &json);
  EXPECT_THAT(trailing.message(), HasSubstr("bytes left after the value"));
  JsonLimits shallow;
  shallow.max_depth = 1;  // the record is 1 deep, its customer 2
  absl::Status deep = (*s)->Decode(full, shallow, &json);
  EXPECT_THAT(deep.message(), HasSubstr("nests deeper than 1 levels"));
}

// Strings and map keys ending in a UTF-8 lead byte (schema_decoder_fuzzer found RapidJSON
// reading past such a string under ASan), or holding one that is not UTF-8, are bad values.
TEST(AvroSchemaTest, StringsAndMapKeysThatAreNotUtf8AreBadValues) {
  for (const char* hex :
       {"000000000102f2", "000000000102c3", "0000000001048041", "00000000010463ff"}) {
    EXPECT_EQ(DecodeAvro(R"("string")", hex),
              "value is not UTF-8 (an Avro string holds invalid UTF-8)")
        << hex;
  }
  EXPECT_EQ(DecodeAvro(R"("string")", "000000000104c3a9"), R"("é")");
  constexpr char kMap[] = R"({"type":"map","values":"int"})";
  EXPECT_EQ(DecodeAvro(kMap, "00000000010202f20000"),
            "value is not UTF-8 (an Avro map key holds invalid UTF-8)");
  EXPECT_EQ(DecodeAvro(kMap, "00000000010202610200"), R"({"a":1})");
}

TEST(AvroSchemaTest, RefusesWhatLibavroRefuses) {
  for (const char* bad : {"{", R"({"type":"record","name":"X","fields":[{"name":"a"}]})",
                          R"({"type":"nope"})"}) {
    absl::StatusOr<std::unique_ptr<AvroSchema>> s = AvroSchema::Parse(bad);
    EXPECT_TRUE(absl::IsInvalidArgument(s.status())) << bad;
    EXPECT_THAT(s.status().message(), HasSubstr("libavro refuses the writer schema")) << bad;
  }
}

TEST(ProtobufSchemaTest, DecodesTheMessageTheIndexesName) {
  absl::StatusOr<std::unique_ptr<ProtobufSchema>> s = ProtobufSchema::Parse(kProto);
  ASSERT_OK(s);
  std::string json;
  const std::string pay_bytes = Hex(kProtoPayHex);
  absl::StatusOr<WireValue> pay = ParseWireFormat(pay_bytes, true);
  ASSERT_OK((*s)->Decode(pay->payload, pay->message_indexes, {}, &json));
  EXPECT_EQ(json, R"({"id":"c","amount":"9"})");  // int64 as a string: JSON mapping
  const std::string a_bytes = Hex(kProtoAHex);
  absl::StatusOr<WireValue> a = ParseWireFormat(a_bytes, true);
  ASSERT_OK((*s)->Decode(a->payload, a->message_indexes, {}, &json));
  EXPECT_EQ(json, R"({"x":"hi"})");
  // Defaults are printed: a proto3 zero is a field that is there.
  ASSERT_OK((*s)->Decode("", {1}, {}, &json));
  EXPECT_EQ(json, R"({"id":"","amount":"0"})");
  absl::Status no_such = (*s)->Decode("", {2}, {}, &json);
  EXPECT_THAT(no_such.message(), HasSubstr("message index 2 at level 0"));
  absl::Status garbage = (*s)->Decode(Hex("0aff"), {1}, {}, &json);
  EXPECT_THAT(garbage.message(), HasSubstr("is not a valid t.Pay"));
}

TEST(ProtobufSchemaTest, NestedMessagesWellKnownImportsAndRefusals) {
  absl::StatusOr<std::unique_ptr<ProtobufSchema>> s = ProtobufSchema::Parse(
      "syntax = \"proto3\";\nimport \"google/protobuf/timestamp.proto\";\n"
      "message Outer { message Inner { int32 v = 1; } Inner inner = 1; "
      "google.protobuf.Timestamp at = 2; }\n");
  ASSERT_OK(s);
  std::string json;
  ASSERT_OK((*s)->Decode(Hex("0802"), {0, 0}, {}, &json));
  EXPECT_EQ(json, R"({"v":2})");
  absl::StatusOr<std::unique_ptr<ProtobufSchema>> refs =
      ProtobufSchema::Parse("syntax = \"proto3\";\nimport \"other.proto\";\nmessage M { Other o = 1; }\n");
  EXPECT_THAT(refs.status().message(), HasSubstr("schema references are not supported"));
  absl::StatusOr<std::unique_ptr<ProtobufSchema>> syntax = ProtobufSchema::Parse("message {");
  EXPECT_THAT(syntax.status().message(), HasSubstr("libprotoc refuses the writer schema: line 1"));
}

TEST(RegistryAnswerTest, SchemasAndErrorsAreClassified) {
  absl::StatusOr<RegisteredSchema> s = ParseSchemaAnswer(1, 200, R"({"schema":"\"long\""})");
  ASSERT_OK(s);
  EXPECT_EQ(s->type, SchemaType::kAvro);  // no schemaType: Avro
  EXPECT_EQ(s->text, "\"long\"");
  s = ParseSchemaAnswer(1, 200, R"({"schema":"x","schemaType":"PROTOBUF","references":[{}]})");
  ASSERT_OK(s);
  EXPECT_EQ(s->type, SchemaType::kProtobuf);
  EXPECT_EQ(s->references, 1);
  EXPECT_TRUE(absl::IsNotFound(
      ParseSchemaAnswer(7, 404, R"({"error_code":40403,"message":"Schema 7 not found"})").status()));
  EXPECT_THAT(ParseSchemaAnswer(7, 404, R"({"error_code":40403,"message":"Schema 7 not found"})")
                  .status()
                  .message(),
              HasSubstr("HTTP 404 error_code 40403: Schema 7 not found"));
  for (long status : {500L, 502L, 503L, 401L, 403L, 429L}) {
    EXPECT_TRUE(absl::IsUnavailable(ParseSchemaAnswer(7, status, "down").status())) << status;
  }
  EXPECT_TRUE(absl::IsInvalidArgument(ParseSchemaAnswer(7, 422, "{}").status()));
  EXPECT_TRUE(absl::IsInvalidArgument(ParseSchemaAnswer(7, 200, "not json").status()));
  EXPECT_TRUE(absl::IsInvalidArgument(
      ParseSchemaAnswer(7, 200, R"({"schema":"x","schemaType":"XML"})").status()));
}

// A registry that answers from a map, or is down, or holds requests (as a registry that does
// not answer does) until released or until its "timeout".
class FakeRegistry : public RegistryClient {
 public:
  absl::StatusOr<RegisteredSchema> SchemaById(int32_t id) override {
    absl::MutexLock lock(&mu_);
    ++requests_;
    if (!mu_.AwaitWithTimeout(absl::Condition(&released_), hold_timeout_)) {
      return absl::UnavailableError("schema registry: operation timed out");
    }
    if (down_) return absl::UnavailableError("schema registry: connection refused");
    auto it = schemas_.find(id);
    if (it == schemas_.end()) return absl::NotFoundError(absl::StrCat("Schema ", id, " not found"));
    return it->second;
  }
  void Add(int32_t id, SchemaType type, std::string text) {
    absl::MutexLock lock(&mu_);
    schemas_[id] = RegisteredSchema{type, std::move(text), 0};
  }
  void SetDown(bool down) {
    absl::MutexLock lock(&mu_);
    down_ = down;
  }
  // Requests from now on wait until Release() or `timeout`.
  void Hold(absl::Duration timeout) {
    absl::MutexLock lock(&mu_);
    released_ = false;
    hold_timeout_ = timeout;
  }
  void Release() {
    absl::MutexLock lock(&mu_);
    released_ = true;
  }
  int requests() {
    absl::MutexLock lock(&mu_);
    return requests_;
  }

 private:
  absl::Mutex mu_;
  bool released_ ABSL_GUARDED_BY(mu_) = true;
  absl::Duration hold_timeout_ ABSL_GUARDED_BY(mu_) = absl::ZeroDuration();
  std::map<int32_t, RegisteredSchema> schemas_ ABSL_GUARDED_BY(mu_);
  bool down_ ABSL_GUARDED_BY(mu_) = false;
  int requests_ ABSL_GUARDED_BY(mu_) = 0;
};

class SchemaDecoderTest : public ::testing::Test {
 protected:
  SchemaDecoderTest() {
    auto registry = std::make_unique<FakeRegistry>();
    registry_ = registry.get();
    registry_->Add(1, SchemaType::kAvro, kPaymentV1);
    registry_->Add(2, SchemaType::kAvro, kPaymentV2);
    registry_->Add(3, SchemaType::kProtobuf, kProto);
    registry_->Add(4, SchemaType::kJson, R"({"type":"object"})");
    registry_->Add(9, SchemaType::kAvro, R"({"type":"bogus"})");
    SchemaDecoder::Options options;
    options.max_schemas = 3;
    decoder_ = std::make_unique<SchemaDecoder>(std::move(registry), options);
  }
  // Waits (with a deadline) until the fetch of `id` is not in flight; its state then.
  SchemaDecoder::FetchState AwaitFetch(int32_t id, absl::Status* error = nullptr) {
    const absl::Time deadline = absl::Now() + absl::Seconds(10);
    SchemaDecoder::FetchState state = decoder_->Poll(id, error);
    while (state == SchemaDecoder::FetchState::kInFlight && absl::Now() < deadline) {
      absl::SleepFor(absl::Milliseconds(1));
      state = decoder_->Poll(id, error);
    }
    return state;
  }
  // Decodes; if the id is not cached yet, waits for its fetch and decodes again (as a paused
  // partition does).
  absl::Status Decode(kiq::v1::Format format, absl::string_view bytes, std::string* json) {
    int32_t id = -1;
    absl::Status s = decoder_->Decode(format, bytes, "value", {}, json, &id);
    if (!absl::IsUnavailable(s)) return s;
    AwaitFetch(id);
    return decoder_->Decode(format, bytes, "value", {}, json);
  }
  // Waits until the registry has been asked `n` times (a fetch has started).
  bool AwaitRequests(int n) {
    const absl::Time deadline = absl::Now() + absl::Seconds(10);
    while (registry_->requests() < n && absl::Now() < deadline)
      absl::SleepFor(absl::Milliseconds(1));
    return registry_->requests() == n;
  }
  FakeRegistry* registry_;
  std::unique_ptr<SchemaDecoder> decoder_;
};

TEST_F(SchemaDecoderTest, FetchesEachIdOnceAndDecodesWhileTheRegistryIsDown) {
  std::string json;
  ASSERT_OK(Decode(kiq::v1::FORMAT_AVRO, Hex(kPaymentV1Hex), &json));
  EXPECT_EQ(json, R"({"id":"a","amount":5})");
  ASSERT_OK(Decode(kiq::v1::FORMAT_AVRO, Hex(kPaymentV1Hex), &json));
  EXPECT_EQ(registry_->requests(), 1);
  registry_->SetDown(true);
  ASSERT_OK(Decode(kiq::v1::FORMAT_AVRO, Hex(kPaymentV1Hex), &json));  // cached
  int32_t id = -1;
  absl::Status s = decoder_->Decode(kiq::v1::FORMAT_AVRO, Hex(kPaymentV2Hex), "value", {}, &json, &id);
  EXPECT_TRUE(absl::IsUnavailable(s)) << s;  // not cached: wait, never a bad record
  EXPECT_EQ(id, 2);
  absl::Status error;
  EXPECT_EQ(AwaitFetch(2, &error), SchemaDecoder::FetchState::kFailed);
  EXPECT_THAT(error.message(), HasSubstr("connection refused"));
  s = decoder_->Decode(kiq::v1::FORMAT_AVRO, Hex(kPaymentV2Hex), "value", {}, &json);
  EXPECT_THAT(s.message(), HasSubstr("last attempt: schema registry: connection refused"));
  EXPECT_EQ(AwaitFetch(2), SchemaDecoder::FetchState::kFailed);
  EXPECT_EQ(decoder_->stats().fetch_failures.load(), 2);
  registry_->SetDown(false);
  decoder_->Fetch(2);
  EXPECT_EQ(AwaitFetch(2), SchemaDecoder::FetchState::kCached);
  const int before = registry_->requests();
  ASSERT_OK(decoder_->Decode(kiq::v1::FORMAT_AVRO, Hex(kPaymentV2Hex), "value", {}, &json));
  EXPECT_EQ(registry_->requests(), before);  // the fetch cached it
  EXPECT_EQ(json, R"({"id":"b","amount":7,"currency":"USD"})");
}

TEST_F(SchemaDecoderTest, UnknownIdsAndRefusedSchemasAreBadRecordsAskedForOnce) {
  std::string json;
  absl::Status s = Decode(kiq::v1::FORMAT_AVRO, Hex("000000002a02610a"), &json);
  EXPECT_TRUE(absl::IsInvalidArgument(s));
  EXPECT_THAT(s.message(), HasSubstr("unknown schema id 42"));
  s = Decode(kiq::v1::FORMAT_AVRO, Hex("000000000902610a"), &json);
  EXPECT_THAT(s.message(), HasSubstr("libavro refuses the writer schema"));
  const int requests = registry_->requests();
  EXPECT_FALSE(Decode(kiq::v1::FORMAT_AVRO, Hex("000000002a02610a"), &json).ok());
  EXPECT_FALSE(Decode(kiq::v1::FORMAT_AVRO, Hex("000000000902610a"), &json).ok());
  EXPECT_EQ(registry_->requests(), requests);  // remembered for negative_ttl
  // Not the wire format; a schema of another type; Avro bytes that do not fit the schema.
  EXPECT_THAT(Decode(kiq::v1::FORMAT_AVRO, R"({"id":"a"})", &json).message(),
              HasSubstr("magic byte 0x7b"));
  EXPECT_THAT(Decode(kiq::v1::FORMAT_AVRO, Hex(kProtoAHex), &json).message(),
              HasSubstr("a PROTOBUF schema; the topology says avro"));
  EXPECT_THAT(Decode(kiq::v1::FORMAT_AVRO, Hex("0000000001ff"), &json).message(),
              HasSubstr("not valid Avro"));
}

TEST_F(SchemaDecoderTest, ProtobufAndJsonSchemaValues) {
  std::string json;
  ASSERT_OK(Decode(kiq::v1::FORMAT_PROTOBUF, Hex(kProtoPayHex), &json));
  EXPECT_EQ(json, R"({"id":"c","amount":"9"})");
  ASSERT_OK(Decode(kiq::v1::FORMAT_JSON_SR, Hex("00000000047b226964223a2264227d"), &json));
  EXPECT_EQ(json, R"({"id":"d"})");
  absl::Status key = decoder_->Decode(kiq::v1::FORMAT_JSON_SR, "x", "key", {}, &json);
  EXPECT_THAT(key.message(), HasSubstr("key is not in the Schema Registry wire format"));
}

TEST_F(SchemaDecoderTest, TheCacheIsBounded) {
  std::string json;
  ASSERT_OK(Decode(kiq::v1::FORMAT_AVRO, Hex(kPaymentV1Hex), &json));
  ASSERT_OK(Decode(kiq::v1::FORMAT_AVRO, Hex(kPaymentV2Hex), &json));
  ASSERT_OK(Decode(kiq::v1::FORMAT_PROTOBUF, Hex(kProtoPayHex), &json));
  ASSERT_OK(Decode(kiq::v1::FORMAT_JSON_SR, Hex("00000000047b7d"), &json));
  EXPECT_EQ(decoder_->cached(), 3u);
  EXPECT_EQ(decoder_->stats().evictions.load(), 1);
  const int requests = registry_->requests();
  ASSERT_OK(Decode(kiq::v1::FORMAT_AVRO, Hex(kPaymentV1Hex), &json));  // evicted: fetched again
  EXPECT_EQ(registry_->requests(), requests + 1);
}

TEST_F(SchemaDecoderTest, ThreadsShareTheCache) {
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      std::string json;
      for (int i = 0; i < 500; ++i) {
        if (!Decode(kiq::v1::FORMAT_AVRO, Hex(i % 2 ? kPaymentV1Hex : kPaymentV2Hex), &json).ok()) {
          ++failures;
        }
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(registry_->requests(), 2);  // one fetch per id, however many threads miss it
}

TEST_F(SchemaDecoderTest, AMissNeverWaitsForTheRegistryAndFetchesEachIdOnceAtATime) {
  registry_->Hold(absl::Seconds(60));  // a registry that does not answer
  std::string json;
  int32_t id = -1;
  const absl::Time start = absl::Now();
  absl::Status s =
      decoder_->Decode(kiq::v1::FORMAT_AVRO, Hex(kPaymentV1Hex), "value", {}, &json, &id);
  EXPECT_TRUE(absl::IsUnavailable(s)) << s;
  EXPECT_THAT(s.message(), HasSubstr("value has schema id 1, not cached yet"));
  EXPECT_EQ(id, 1);
  ASSERT_TRUE(AwaitRequests(1));  // the fetcher is inside the request, which hangs
  // Misses of the same id while it hangs answer at once and start no second fetch; another id
  // queues behind it.
  for (int i = 0; i < 100; ++i) {
    EXPECT_TRUE(absl::IsUnavailable(
        decoder_->Decode(kiq::v1::FORMAT_AVRO, Hex(kPaymentV1Hex), "value", {}, &json)));
    decoder_->Fetch(1);
  }
  EXPECT_TRUE(absl::IsUnavailable(
      decoder_->Decode(kiq::v1::FORMAT_AVRO, Hex(kPaymentV2Hex), "value", {}, &json)));
  EXPECT_LT(absl::Now() - start, absl::Seconds(5)) << "Decode waited for the registry";
  EXPECT_EQ(decoder_->Poll(1), SchemaDecoder::FetchState::kInFlight);
  EXPECT_EQ(decoder_->Poll(2), SchemaDecoder::FetchState::kInFlight);
  EXPECT_EQ(registry_->requests(), 1);
  // The registry answers: both ids become available, each fetched once.
  registry_->Release();
  EXPECT_EQ(AwaitFetch(1), SchemaDecoder::FetchState::kCached);
  EXPECT_EQ(AwaitFetch(2), SchemaDecoder::FetchState::kCached);
  ASSERT_OK(decoder_->Decode(kiq::v1::FORMAT_AVRO, Hex(kPaymentV1Hex), "value", {}, &json));
  EXPECT_EQ(json, R"({"id":"a","amount":5})");
  ASSERT_OK(decoder_->Decode(kiq::v1::FORMAT_AVRO, Hex(kPaymentV2Hex), "value", {}, &json));
  EXPECT_EQ(registry_->requests(), 2);
  EXPECT_EQ(decoder_->stats().fetches.load(), 2);
}

TEST_F(SchemaDecoderTest, ADefinitiveNoWhileHeldIsABadRecordOnceAnswered) {
  registry_->Hold(absl::Seconds(60));
  std::string json;
  EXPECT_TRUE(absl::IsUnavailable(
      decoder_->Decode(kiq::v1::FORMAT_AVRO, Hex("000000002a02610a"), "value", {}, &json)));
  registry_->Release();
  EXPECT_EQ(AwaitFetch(42), SchemaDecoder::FetchState::kCached);  // answered: no such id
  absl::Status s =
      decoder_->Decode(kiq::v1::FORMAT_AVRO, Hex("000000002a02610a"), "value", {}, &json);
  EXPECT_TRUE(absl::IsInvalidArgument(s)) << s;
  EXPECT_THAT(s.message(), HasSubstr("unknown schema id 42"));
}

TEST_F(SchemaDecoderTest, DestructionWhileAFetchHangsEndsWithinTheRequestTimeout) {
  const absl::Duration timeout = absl::Seconds(1);  // the client's request timeout
  registry_->Hold(timeout);
  std::string json;
  EXPECT_TRUE(absl::IsUnavailable(
      decoder_->Decode(kiq::v1::FORMAT_AVRO, Hex(kPaymentV1Hex), "value", {}, &json)));
  decoder_->Fetch(3);  // queued behind the hanging one: dropped
  ASSERT_TRUE(AwaitRequests(1));
  const absl::Time start = absl::Now();
  decoder_.reset();
  const absl::Duration took = absl::Now() - start;
  EXPECT_LT(took, timeout + absl::Seconds(2)) << took;
}

// The HTTP client against a registry served here.
class HttpRegistryClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_.Get(R"(/schemas/ids/(\d+))", [this](const httplib::Request& req, httplib::Response& res) {
      authorization_ = req.get_header_value("Authorization");
      if (req.matches[1] == "1") {
        res.set_content(R"({"schema":"\"long\""})", "application/vnd.schemaregistry.v1+json");
      } else if (req.matches[1] == "5") {
        res.status = 503;
        res.set_content("unavailable", "text/plain");
      } else {
        res.status = 404;
        res.set_content(R"({"error_code":40403,"message":"Schema not found"})", "application/json");
      }
    });
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    while (!server_.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  void TearDown() override {
    server_.stop();
    thread_.join();
  }
  httplib::Server server_;
  std::thread thread_;
  int port_ = 0;
  std::string authorization_;
};

TEST_F(HttpRegistryClientTest, FetchesWithBasicAuthAndClassifiesAnswers) {
  RegistryConfig config;
  config.url = absl::StrCat("http://127.0.0.1:", port_, "/");
  config.username = "kiq";
  config.password = "s3cret";
  absl::StatusOr<std::unique_ptr<HttpRegistryClient>> client = HttpRegistryClient::Create(config);
  ASSERT_OK(client);
  absl::StatusOr<RegisteredSchema> s = (*client)->SchemaById(1);
  ASSERT_OK(s);
  EXPECT_EQ(s->text, "\"long\"");
  EXPECT_EQ(authorization_, "Basic " + absl::Base64Escape("kiq:s3cret"));
  EXPECT_TRUE(absl::IsNotFound((*client)->SchemaById(2).status()));
  EXPECT_TRUE(absl::IsUnavailable((*client)->SchemaById(5).status()));
}

TEST(HttpRegistryClientDownTest, ARegistryThatIsNotThereIsUnavailable) {
  // A port nothing listens on: bound (never listened on) and closed again.
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  const int port = ntohs(addr.sin_port);
  close(fd);
  RegistryConfig config;
  config.url = absl::StrCat("http://127.0.0.1:", port);
  absl::StatusOr<std::unique_ptr<HttpRegistryClient>> client = HttpRegistryClient::Create(config);
  ASSERT_OK(client);
  absl::Status s = (*client)->SchemaById(1).status();
  EXPECT_TRUE(absl::IsUnavailable(s)) << s;
  EXPECT_THAT(s.message(), HasSubstr("schema id 1"));
  RegistryConfig ftp;
  ftp.url = "ftp://x";
  EXPECT_FALSE(HttpRegistryClient::Create(ftp).ok());
}

TEST(RegistryConfigTest, PasswordsAndCaFiles) {
  kiq::v1::SchemaRegistry spec;
  spec.set_url("https://registry:8081");
  spec.set_username("kiq");
  absl::StatusOr<RegistryConfig> c = ResolveRegistryConfig(spec, std::nullopt);
  EXPECT_THAT(c.status().message(), HasSubstr("schema_registry.password: required"));
  c = ResolveRegistryConfig(spec, std::string("from-secret"));
  ASSERT_OK(c);
  EXPECT_EQ(c->password, "from-secret");
  spec.set_password("in-file");
  c = ResolveRegistryConfig(spec, std::nullopt);
  ASSERT_OK(c);
  EXPECT_EQ(c->password, "in-file");
  spec.set_ca_file("/nonexistent/ca.pem");
  c = ResolveRegistryConfig(spec, std::nullopt);
  EXPECT_THAT(c.status().message(),
              HasSubstr("schema_registry.ca_file: cannot read /nonexistent/ca.pem"));
  EXPECT_THAT(ReadPasswordFile("/nonexistent/pw").status().message(),
              HasSubstr("--schema-registry-password-file: cannot read /nonexistent/pw"));
}

TEST(RegistryTopologyTest, RegistryFormatsNeedARegistryAndReadFieldsAsJson) {
  absl::StatusOr<kiq::v1::Topology> t = ParseTopology(R"(
application_id: a
sources: [{topic: payments, value_format: avro}]
stores: [{name: total, source: payments, sum: {field: amount}}]
)",
                                                      "t.yaml");
  EXPECT_THAT(t.status().message(),
              HasSubstr("t.yaml: sources[0].value_format: avro needs schema_registry.url"));
  t = ParseTopology(R"(
application_id: a
schema_registry: {url: "registry:8081"}
sources: [{topic: payments, value_format: protobuf, key_format: json_sr}]
stores: [{name: total, source: payments, sum: {field: amount}}]
)",
                    "t.yaml");
  EXPECT_THAT(t.status().message(),
              HasSubstr("schema_registry.url: \"registry:8081\" must start with http://"));
  t = ParseTopology(R"(
application_id: a
schema_registry: {url: "http://127.0.0.1:8081", cache_size: 10}
sources: [{topic: payments, value_format: avro}]
stores:
  - {name: total, source: payments, sum: {field: amount}, filter: {all: [{compare: {field: id, op: eq, string_value: x}}]}}
  - {name: by_city, source: payments, count: {}, group_by: {field: customer.city}}
)",
                    "t.yaml");
  ASSERT_OK(t);
  EXPECT_EQ(t->sources(0).value_format(), kiq::v1::FORMAT_AVRO);
}

}  // namespace
}  // namespace kiq::schema
