// The GetResponse JSON renderer of the HTTP gateway's local Get must write exactly what
// protobuf's printer writes (MessageToJsonString with the gateway's options): compared here
// over many generated messages, every field of every message it renders included.
#include "router/get_response_json.h"

#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "kiq/v1/query.pb.h"

namespace kiq::router {
namespace {

namespace pb = google::protobuf;

// The truth: what the gateway printed before (router/http_gateway.cc's PrintOptions).
std::string ProtobufJson(const pb::Message& message) {
  pb::util::JsonPrintOptions options;
  options.preserve_proto_field_names = false;
  std::string json;
  EXPECT_TRUE(pb::util::MessageToJsonString(message, &json, options).ok());
  return json;
}

// Pieces of strings: plain ASCII, everything JSON or JsonEscaping escapes (controls, quotes,
// backslash, < >, DEL, C1 controls, the invisible characters it escapes, supplementary ones as
// surrogate pairs) and ordinary non-ASCII UTF-8 of 2, 3 and 4 bytes next to them.
const std::vector<std::string>& Pieces() {
  static const std::vector<std::string> pieces = {"a",
                                                  "user-42",
                                                  " ",
                                                  "Z",
                                                  "~",
                                                  "'",
                                                  "/",
                                                  "&",
                                                  "=",
                                                  "%2F",
                                                  "\"",
                                                  "\\",
                                                  "<",
                                                  ">",
                                                  "\x7f",
                                                  std::string(1, '\0'),
                                                  "\x01",
                                                  "\b",
                                                  "\t",
                                                  "\n",
                                                  "\x0b",
                                                  "\f",
                                                  "\r",
                                                  "\x1b",
                                                  "\x1f",
                                                  "\xc2\x80",
                                                  "\xc2\x9f",
                                                  "\xc2\xa0",
                                                  "\xc2\xad",
                                                  "\xc3\xa9",
                                                  "\xd8\x80",
                                                  "\xd8\x83",
                                                  "\xdb\x9d",
                                                  "\xdc\x8f",
                                                  "\xe1\x9e\xb4",
                                                  "\xe1\x9e\xb5",
                                                  "\xe2\x80\x8b",
                                                  "\xe2\x80\x8f",
                                                  "\xe2\x80\xa8",
                                                  "\xe2\x80\xae",
                                                  "\xe2\x81\xa0",
                                                  "\xe2\x81\xa4",
                                                  "\xe2\x81\xaa",
                                                  "\xe2\x81\xaf",
                                                  "\xe2\x82\xac",
                                                  "\xe4\xb8\xad",
                                                  "\xef\xbb\xbf",
                                                  "\xef\xbf\xb9",
                                                  "\xef\xbf\xbb",
                                                  "\xef\xbf\xbd",
                                                  "\xef\xbf\xbf",
                                                  "\xf0\x9d\x85\xb3",
                                                  "\xf0\x9d\x85\xba",
                                                  "\xf0\x9d\x85\xbb",
                                                  "\xf3\xa0\x80\x81",
                                                  "\xf3\xa0\x80\xa0",
                                                  "\xf3\xa0\x81\xbf",
                                                  "\xf0\x9f\x98\x80",
                                                  "\xf4\x8f\xbf\xbf"};
  return pieces;
}

class Generator {
 public:
  explicit Generator(uint32_t seed) : rng_(seed) {}

  int Int(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng_); }
  bool Chance(int percent) { return Int(0, 99) < percent; }

  std::string Text() {
    std::string s;
    const int n = Int(0, 12);
    for (int i = 0; i < n; ++i) s += Pieces()[Int(0, static_cast<int>(Pieces().size()) - 1)];
    return s;
  }
  std::string Bytes() {
    std::string s(Int(0, 40), '\0');
    for (char& c : s) c = static_cast<char>(Int(0, 255));
    return s;
  }
  // Zero, small, an extreme or any value of the integer type T.
  template <typename T>
  T Integer() {
    switch (Int(0, 3)) {
      case 0:
        return 0;
      case 1:
        return Int(-5, 5);
      case 2:
        return Chance(50) ? std::numeric_limits<T>::min() : std::numeric_limits<T>::max();
      default:
        return std::uniform_int_distribution<T>()(rng_);
    }
  }
  int32_t Int32() { return Integer<int32_t>(); }
  int64_t Int64() { return Integer<int64_t>(); }
  double Double() {
    static const double kSpecial[] = {0.0,
                                      -0.0,
                                      1.0,
                                      -1.0,
                                      6.0,
                                      0.1,
                                      0.5,
                                      1.0 / 3,
                                      1e15,
                                      -1e15,
                                      999999999999999.0,
                                      1e15 + 1,
                                      9007199254740993.0,
                                      1e16,
                                      1e21,
                                      1e22,
                                      1e-7,
                                      5e-324,
                                      1.7976931348623157e308,
                                      123.456,
                                      -2.5e-3,
                                      4294967296.0};
    switch (Int(0, 3)) {
      case 0:
        return kSpecial[Int(0, sizeof(kSpecial) / sizeof(kSpecial[0]) - 1)];
      case 1:
        return static_cast<double>(Int64() >> Int(0, 63));
      case 2:
        return std::uniform_real_distribution<double>(-1e6, 1e6)(rng_);
      default: {
        // Any finite bit pattern.
        uint64_t bits = std::uniform_int_distribution<uint64_t>()(rng_);
        double d;
        std::memcpy(&d, &bits, sizeof(d));
        return std::isfinite(d) ? d : 2.0;
      }
    }
  }
  void Value(pb::Value* v, int depth) {
    switch (Int(0, depth >= 4 ? 3 : 5)) {
      case 0:
        v->set_null_value(pb::NULL_VALUE);
        break;
      case 1:
        v->set_number_value(Double());
        break;
      case 2:
        v->set_string_value(Text());
        break;
      case 3:
        v->set_bool_value(Chance(50));
        break;
      case 4: {
        pb::Struct* s = v->mutable_struct_value();
        const int n = Int(0, 6);
        for (int i = 0; i < n; ++i) Value(&(*s->mutable_fields())[Text()], depth + 1);
        break;
      }
      default: {
        pb::ListValue* l = v->mutable_list_value();
        const int n = Int(0, 5);
        for (int i = 0; i < n; ++i) Value(l->add_values(), depth + 1);
        break;
      }
    }
  }
  kiq::v1::GetResponse Response() {
    kiq::v1::GetResponse r;
    r.set_found(Chance(70));
    if (Chance(85)) {
      kiq::v1::Entry* e = r.mutable_entry();
      if (Chance(80)) e->set_key(Text());
      if (Chance(30)) e->set_key_bytes(Bytes());
      if (Chance(80)) e->set_value(Bytes());
      if (Chance(80)) Value(e->mutable_json(), 0);
      if (Chance(80)) e->set_partition(Int32());
      if (Chance(30)) {
        kiq::v1::Window* w = e->mutable_window();
        if (Chance(80)) w->set_start_ms(Int64());
        if (Chance(80)) w->set_end_ms(Int64());
      }
    }
    if (Chance(85)) {
      kiq::v1::Position* p = r.mutable_position();
      const int n = Int(0, 6);
      for (int i = 0; i < n; ++i) {
        kiq::v1::PartitionOffset* o = p->add_offsets();
        if (Chance(80)) o->set_topic(Text());
        if (Chance(80)) o->set_partition(Int32());
        if (Chance(80)) o->set_offset(Int64());
      }
    }
    const int standby = Chance(30) ? Int(1, 3) : 0;
    for (int i = 0; i < standby; ++i) {
      kiq::v1::StandbyRead* s = r.add_standby_reads();
      if (Chance(80)) s->set_partition(Int32());
      if (Chance(80)) s->set_node_id(Text());
      if (Chance(80)) s->set_lag_records(Int64());
    }
    return r;
  }

 private:
  std::mt19937 rng_;
};

TEST(GetResponseJsonTest, IsByteIdenticalToProtobufsPrinterOverGeneratedMessages) {
  Generator gen(20261203);
  int rendered = 0;
  for (int i = 0; i < 20000; ++i) {
    const kiq::v1::GetResponse r = gen.Response();
    std::string json = "prefix";
    ASSERT_TRUE(AppendGetResponseJson(r, &json)) << r.DebugString();
    ASSERT_EQ(json, "prefix" + ProtobufJson(r)) << r.DebugString();
    ++rendered;
  }
  EXPECT_EQ(rendered, 20000);
}

TEST(GetResponseJsonTest, EveryFieldOnce) {
  kiq::v1::GetResponse r;
  r.set_found(true);
  kiq::v1::Entry* e = r.mutable_entry();
  e->set_key("caf\xc3\xa9 \"<k>\"\n");
  e->set_key_bytes(std::string("\x00\xff\x10", 3));
  e->set_value("6");
  (*e->mutable_json()->mutable_struct_value()->mutable_fields())["n"].set_number_value(6);
  e->set_partition(5);
  e->mutable_window()->set_start_ms(1000);
  e->mutable_window()->set_end_ms(2000);
  kiq::v1::PartitionOffset* o = r.mutable_position()->add_offsets();
  o->set_topic("views");
  o->set_partition(5);
  o->set_offset(42);
  kiq::v1::StandbyRead* s = r.add_standby_reads();
  s->set_partition(5);
  s->set_node_id("node-2");
  s->set_lag_records(7);
  std::string json;
  ASSERT_TRUE(AppendGetResponseJson(r, &json));
  EXPECT_EQ(json,
            "{\"found\":true,\"entry\":{\"key\":\"caf\xc3\xa9 \\\"\\u003ck\\u003e\\\"\\n\","
            "\"keyBytes\":\"AP8Q\",\"value\":\"Ng==\",\"json\":{\"n\":6},\"partition\":5,"
            "\"window\":{\"startMs\":\"1000\",\"endMs\":\"2000\"}},\"position\":{\"offsets\":"
            "[{\"topic\":\"views\",\"partition\":5,\"offset\":\"42\"}]},\"standbyReads\":"
            "[{\"partition\":5,\"nodeId\":\"node-2\",\"lagRecords\":\"7\"}]}");
  EXPECT_EQ(json, ProtobufJson(r));
  // The renderer knows these fields and no others: a field added to the proto must be added
  // to it (and to the generator above).
  EXPECT_EQ(kiq::v1::GetResponse::descriptor()->field_count(), 4);
  EXPECT_EQ(kiq::v1::Entry::descriptor()->field_count(), 6);
  EXPECT_EQ(kiq::v1::Window::descriptor()->field_count(), 2);
  EXPECT_EQ(kiq::v1::Position::descriptor()->field_count(), 1);
  EXPECT_EQ(kiq::v1::PartitionOffset::descriptor()->field_count(), 3);
  EXPECT_EQ(kiq::v1::StandbyRead::descriptor()->field_count(), 3);
}

TEST(GetResponseJsonTest, EmptyAndDefaultMessages) {
  kiq::v1::GetResponse r;
  std::string json;
  ASSERT_TRUE(AppendGetResponseJson(r, &json));
  EXPECT_EQ(json, "{}");
  EXPECT_EQ(json, ProtobufJson(r));
  r.mutable_entry();
  r.mutable_position()->add_offsets();
  r.add_standby_reads();
  json.clear();
  ASSERT_TRUE(AppendGetResponseJson(r, &json));
  EXPECT_EQ(json, "{\"entry\":{},\"position\":{\"offsets\":[{}]},\"standbyReads\":[{}]}");
  EXPECT_EQ(json, ProtobufJson(r));
}

// What it cannot promise to print as protobuf does, it declines, leaving the output as it was.
TEST(GetResponseJsonTest, DeclinesWhatItCannotPrintTheSame) {
  auto declines = [](const kiq::v1::GetResponse& r) {
    std::string json = "kept";
    const bool rendered = AppendGetResponseJson(r, &json);
    EXPECT_EQ(json, "kept");
    return !rendered;
  };
  for (const std::string& bad : {std::string("\xff"), std::string("a\xc3"), std::string("\xc0\x80"),
                                 std::string("\xed\xa0\x80"), std::string("\xf4\x90\x80\x80")}) {
    kiq::v1::GetResponse r;
    r.mutable_entry()->set_key(bad);
    EXPECT_TRUE(declines(r));
    kiq::v1::GetResponse s;
    s.add_standby_reads()->set_node_id(bad);
    EXPECT_TRUE(declines(s));
    kiq::v1::GetResponse t;
    (*t.mutable_entry()->mutable_json()->mutable_struct_value()->mutable_fields())[bad]
        .set_bool_value(true);
    EXPECT_TRUE(declines(t));
  }
  for (double d : {std::nan(""), std::numeric_limits<double>::infinity(),
                   -std::numeric_limits<double>::infinity()}) {
    kiq::v1::GetResponse r;
    r.mutable_entry()->mutable_json()->mutable_list_value()->add_values()->set_number_value(d);
    EXPECT_TRUE(declines(r));
  }
  kiq::v1::GetResponse unset;
  unset.mutable_entry()->mutable_json();  // a Value with no kind
  EXPECT_TRUE(declines(unset));

  // Nested structs and lists, as deep as is rendered and one level more.
  auto nested = [](int levels) {
    kiq::v1::GetResponse r;
    pb::Value* v = r.mutable_entry()->mutable_json();
    for (int i = 1; i < levels; ++i) {
      v = i % 2 == 0 ? v->mutable_list_value()->add_values()
                     : &(*v->mutable_struct_value()->mutable_fields())["k"];
    }
    v->set_number_value(1);
    return r;
  };
  EXPECT_TRUE(declines(nested(kMaxJsonDepth + 1)));
  const kiq::v1::GetResponse shallow = nested(kMaxJsonDepth);
  std::string json;
  ASSERT_TRUE(AppendGetResponseJson(shallow, &json));
  EXPECT_EQ(json, ProtobufJson(shallow));
}

}  // namespace
}  // namespace kiq::router
