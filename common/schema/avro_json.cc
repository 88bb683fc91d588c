#include "common/schema/avro_json.h"

#include <cmath>
#include <cstdlib>
#include <mutex>

#include <avro.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/utf8.h"

namespace kiq::schema {
namespace {

// libavro allocates what a value's length prefix claims before reading it: a truncated or
// hostile record claiming a 2 GB string would make the node allocate 2 GB. No value kiq
// accepts is larger than --max-value-bytes (at most 64 MiB), so larger requests fail (libavro
// then reports ENOMEM and the record is a bad record).
constexpr size_t kMaxAvroAllocation = size_t{64} << 20;

void* BoundedAvroAllocator(void* /*user_data*/, void* ptr, size_t /*osize*/, size_t nsize) {
  if (nsize == 0) {
    free(ptr);
    return nullptr;
  }
  if (nsize > kMaxAvroAllocation) return nullptr;
  return realloc(ptr, nsize);
}

void UseBoundedAllocator() {
  static std::once_flag once;
  std::call_once(once, [] { avro_set_allocator(BoundedAvroAllocator, nullptr); });
}

using JsonWriter = rapidjson::Writer<rapidjson::StringBuffer, rapidjson::UTF8<>, rapidjson::UTF8<>,
                                     rapidjson::CrtAllocator, rapidjson::kWriteValidateEncodingFlag>;

std::string AvroError() {
  const char* e = avro_strerror();
  return e != nullptr && *e != '\0' ? std::string(e) : std::string("unknown libavro error");
}

void WriteDouble(JsonWriter& w, double d) {
  // JSON has no NaN or infinities; they are written as protobuf's JSON mapping writes them.
  if (std::isnan(d)) {
    w.String("NaN");
  } else if (std::isinf(d)) {
    w.String(d > 0 ? "Infinity" : "-Infinity");
  } else {
    w.Double(d);
  }
}

// Writes text from the record (an Avro string, a map key) as a JSON string, or returns false if
// it is not UTF-8. Checked here first: RapidJSON's own validation reads a multi-byte
// sequence's continuation bytes without checking the length, so a string ending in a lead
// byte would be read past its end (found by schema_decoder_fuzzer under ASan).
bool WriteUtf8(JsonWriter& w, absl::string_view s, bool key) {
  if (!IsValidUtf8(s)) return false;
  const auto size = static_cast<rapidjson::SizeType>(s.size());
  return key ? w.Key(s.data(), size) : w.String(s.data(), size);
}

void WriteBase64(JsonWriter& w, const void* buf, size_t size) {
  const std::string b64 =
      absl::Base64Escape(absl::string_view(static_cast<const char*>(buf), size));
  w.String(b64.data(), static_cast<rapidjson::SizeType>(b64.size()));
}

// Writes `value` as JSON. The depth bound also bounds this recursion: recursive Avro types
// (a linked list) nest as deep as the data says.
absl::Status ToJson(avro_value_t* value, int depth, const JsonLimits& limits, JsonWriter& w) {
  const auto malformed = [] {
    return absl::InvalidArgumentError(absl::StrCat("value is not valid Avro: ", AvroError()));
  };
  switch (avro_value_get_type(value)) {
    case AVRO_NULL:
      w.Null();
      return absl::OkStatus();
    case AVRO_BOOLEAN: {
      int b = 0;
      if (avro_value_get_boolean(value, &b) != 0) return malformed();
      w.Bool(b != 0);
      return absl::OkStatus();
    }
    case AVRO_INT32: {
      int32_t i = 0;
      if (avro_value_get_int(value, &i) != 0) return malformed();
      w.Int(i);
      return absl::OkStatus();
    }
    case AVRO_INT64: {
      int64_t i = 0;
      if (avro_value_get_long(value, &i) != 0) return malformed();
      w.Int64(i);
      return absl::OkStatus();
    }
    case AVRO_FLOAT: {
      float f = 0;
      if (avro_value_get_float(value, &f) != 0) return malformed();
      WriteDouble(w, f);
      return absl::OkStatus();
    }
    case AVRO_DOUBLE: {
      double d = 0;
      if (avro_value_get_double(value, &d) != 0) return malformed();
      WriteDouble(w, d);
      return absl::OkStatus();
    }
    case AVRO_STRING: {
      const char* s = nullptr;
      size_t size = 0;  // libavro counts the terminating NUL
      if (avro_value_get_string(value, &s, &size) != 0) return malformed();
      if (!WriteUtf8(w, absl::string_view(s, size > 0 ? size - 1 : 0), /*key=*/false)) {
        return absl::InvalidArgumentError("value is not UTF-8 (an Avro string holds invalid UTF-8)");
      }
      return absl::OkStatus();
    }
    case AVRO_BYTES: {
      const void* buf = nullptr;
      size_t size = 0;
      if (avro_value_get_bytes(value, &buf, &size) != 0) return malformed();
      WriteBase64(w, buf, size);
      return absl::OkStatus();
    }
    case AVRO_FIXED: {
      const void* buf = nullptr;
      size_t size = 0;
      if (avro_value_get_fixed(value, &buf, &size) != 0) return malformed();
      WriteBase64(w, buf, size);
      return absl::OkStatus();
    }
    case AVRO_ENUM: {
      int symbol = 0;
      if (avro_value_get_enum(value, &symbol) != 0) return malformed();
      const char* name = avro_schema_enum_get(avro_value_get_schema(value), symbol);
      if (name == nullptr) return absl::InvalidArgumentError("value has an unknown Avro enum symbol");
      w.String(name);
      return absl::OkStatus();
    }
    case AVRO_UNION: {
      avro_value_t branch;
      if (avro_value_get_current_branch(value, &branch) != 0) return malformed();
      return ToJson(&branch, depth, limits, w);
    }
    default:
      break;
  }
  // Containers: one level deeper.
  if (depth + 1 > limits.max_depth) {
    return absl::InvalidArgumentError(
        absl::StrCat("value nests deeper than ", limits.max_depth, " levels"));
  }
  size_t size = 0;
  if (avro_value_get_size(value, &size) != 0) return malformed();
  const avro_type_t type = avro_value_get_type(value);
  if (type == AVRO_ARRAY) {
    w.StartArray();
  } else if (type == AVRO_RECORD || type == AVRO_MAP) {
    w.StartObject();
  } else {
    return absl::InvalidArgumentError("value has an Avro type kiq does not know");
  }
  for (size_t i = 0; i < size; ++i) {
    avro_value_t child;
    const char* name = nullptr;
    if (avro_value_get_by_index(value, i, &child, type == AVRO_ARRAY ? nullptr : &name) != 0) {
      return malformed();
    }
    // Record field names are Avro names (ASCII, checked by libavro); map keys are data.
    if (name != nullptr && !WriteUtf8(w, name, /*key=*/true)) {
      return absl::InvalidArgumentError("value is not UTF-8 (an Avro map key holds invalid UTF-8)");
    }
    if (absl::Status s = ToJson(&child, depth + 1, limits, w); !s.ok()) return s;
  }
  if (type == AVRO_ARRAY) {
    w.EndArray();
  } else {
    w.EndObject();
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<AvroSchema>> AvroSchema::Parse(absl::string_view text) {
  UseBoundedAllocator();
  avro_schema_t schema = nullptr;
  if (avro_schema_from_json_length(text.data(), text.size(), &schema) != 0 || schema == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("libavro refuses the writer schema: ", AvroError()));
  }
  avro_value_iface_t* iface = avro_generic_class_from_schema(schema);
  if (iface == nullptr) {
    const std::string error = AvroError();
    avro_schema_decref(schema);
    return absl::InvalidArgumentError(absl::StrCat("libavro refuses the writer schema: ", error));
  }
  return std::unique_ptr<AvroSchema>(new AvroSchema(schema, iface));
}

AvroSchema::~AvroSchema() {
  avro_value_iface_decref(iface_);
  avro_schema_decref(schema_);
}

absl::Status AvroSchema::Decode(absl::string_view payload, const JsonLimits& limits,
                                std::string* json) const {
  avro_value_t value;
  if (avro_generic_value_new(iface_, &value) != 0) {
    return absl::ResourceExhaustedError(absl::StrCat("libavro: ", AvroError()));
  }
  absl::Cleanup free_value = [&value] { avro_value_decref(&value); };
  avro_reader_t reader = avro_reader_memory(payload.data(), static_cast<int64_t>(payload.size()));
  if (reader == nullptr) return absl::ResourceExhaustedError("libavro: no memory for a reader");
  absl::Cleanup free_reader = [reader] { avro_reader_free(reader); };
  if (avro_value_read(reader, &value) != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("value is not valid Avro for its writer schema (truncated or malformed, ",
                     payload.size(), " bytes): ", AvroError()));
  }
  // libavro's memory reader has no "at end" test (avro_reader_is_eof is for files): skipping
  // one more byte succeeds only if there is one.
  if (avro_skip(reader, 1) == 0) {
    return absl::InvalidArgumentError(
        "value is not valid Avro for its writer schema (bytes left after the value)");
  }
  rapidjson::StringBuffer buffer;
  JsonWriter writer(buffer);
  if (absl::Status s = ToJson(&value, 0, limits, writer); !s.ok()) return s;
  json->assign(buffer.GetString(), buffer.GetSize());
  return absl::OkStatus();
}

}  // namespace kiq::schema
