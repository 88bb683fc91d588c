#include "router/get_response_json.h"

#include <google/protobuf/struct.pb.h>
#include <google/protobuf/stubs/strutil.h>

#include <cmath>
#include <cstdint>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "common/utf8.h"
#include "kiq/v1/query.pb.h"

namespace kiq::router {
namespace {

namespace pb = google::protobuf;

constexpr char kHex[] = "0123456789abcdef";

void AppendUnicodeEscape(uint32_t unit, std::string* out) {
  const char escaped[6] = {'\\',
                           'u',
                           kHex[(unit >> 12) & 0xf],
                           kHex[(unit >> 8) & 0xf],
                           kHex[(unit >> 4) & 0xf],
                           kHex[unit & 0xf]};
  out->append(escaped, sizeof(escaped));
}

// The code points from U+00A0 up that protobuf's JsonEscaping (util/internal/json_escaping.cc)
// writes as \u escapes although JSON does not require it (invisible and formatting characters,
// escaped against JavaScript injection).
bool EscapedAbove9F(char32_t cp) {
  switch (cp) {
    case 0x00ad:
    case 0x06dd:
    case 0x070f:
    case 0x17b4:
    case 0x17b5:
    case 0xfeff:
    case 0xfff9:
    case 0xfffa:
    case 0xfffb:
    case 0xe0001:
      return true;
    default:
      break;
  }
  return (cp >= 0x0600 && cp <= 0x0603) || (cp >= 0x200b && cp <= 0x200f) ||
         (cp >= 0x2028 && cp <= 0x202e) || (cp >= 0x2060 && cp <= 0x2064) ||
         (cp >= 0x206a && cp <= 0x206f) || (cp >= 0x1d173 && cp <= 0x1d17a) ||
         (cp >= 0xe0020 && cp <= 0xe007f);
}

// A JSON string as JsonEscaping writes it: ", \ and the C0/C1 controls, DEL, < and > escaped
// (\b \t \n \f \r by name, the rest as \u00xx), plus EscapedAbove9F (as UTF-16 surrogate
// pairs above U+FFFF). False on a malformed sequence: JsonEscaping accepts some that
// DecodeUtf8 refuses (overlong forms) and drops others, so those are left to it.
bool AppendString(absl::string_view s, std::string* out) {
  out->push_back('"');
  size_t i = 0;
  while (i < s.size()) {
    size_t plain = i;
    while (plain < s.size()) {
      const unsigned char c = static_cast<unsigned char>(s[plain]);
      if (c < 0x20 || c >= 0x7f || c == '"' || c == '<' || c == '>' || c == '\\') break;
      ++plain;
    }
    out->append(s.data() + i, plain - i);
    if (plain == s.size()) break;
    i = plain;
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      switch (c) {
        case '"':
          out->append("\\\"");
          break;
        case '\\':
          out->append("\\\\");
          break;
        case '\b':
          out->append("\\b");
          break;
        case '\t':
          out->append("\\t");
          break;
        case '\n':
          out->append("\\n");
          break;
        case '\f':
          out->append("\\f");
          break;
        case '\r':
          out->append("\\r");
          break;
        default:  // the other controls, DEL, < and >
          AppendUnicodeEscape(c, out);
          break;
      }
      ++i;
      continue;
    }
    char32_t cp = 0;
    const size_t n = DecodeUtf8(s.substr(i), &cp);
    if (n == 0) return false;
    if (cp < 0xa0 || EscapedAbove9F(cp)) {
      if (cp >= 0x10000) {
        AppendUnicodeEscape(0xd800 + ((cp - 0x10000) >> 10), out);
        AppendUnicodeEscape(0xdc00 + (cp & 0x3ff), out);
      } else {
        AppendUnicodeEscape(cp, out);
      }
    } else {
      out->append(s.data() + i, n);
    }
    i += n;
  }
  out->push_back('"');
  return true;
}

void AppendBytes(absl::string_view bytes, std::string* out) {
  // Standard alphabet with padding, as protobuf's JSON printer writes bytes.
  std::string base64;
  absl::Base64Escape(bytes, &base64);
  out->push_back('"');
  out->append(base64);
  out->push_back('"');
}

// int64 and uint64 are JSON strings in the proto3 mapping.
void AppendInt64(int64_t v, std::string* out) {
  out->push_back('"');
  absl::StrAppend(out, v);
  out->push_back('"');
}

// As protobuf prints a double (SimpleDtoa: %.15g, or %.17g when that does not read back).
// An integer below 1e15 prints as itself under %.15g, without the formatting.
bool AppendDouble(double v, std::string* out) {
  if (!std::isfinite(v)) return false;  // protobuf writes "NaN" / "Infinity" or refuses
  if (std::fabs(v) < 1e15 && v == std::floor(v) && !(v == 0 && std::signbit(v))) {
    absl::StrAppend(out, static_cast<int64_t>(v));
  } else {
    out->append(pb::SimpleDtoa(v));
  }
  return true;
}

// The members of a JSON object, with commas between them.
class Members {
 public:
  explicit Members(std::string* out) : out_(out) { out_->push_back('{'); }
  // Writes the (plain ASCII) name and its colon; returns where the value goes.
  std::string* Name(absl::string_view name) {
    if (!first_) out_->push_back(',');
    first_ = false;
    out_->push_back('"');
    out_->append(name.data(), name.size());
    out_->append("\":");
    return out_;
  }
  void End() { out_->push_back('}'); }

 private:
  std::string* out_;
  bool first_ = true;
};

bool AppendValue(const pb::Value& value, int depth, std::string* out);

bool AppendStruct(const pb::Struct& s, int depth, std::string* out) {
  out->push_back('{');
  bool first = true;
  // The map's own order: the one its (non-deterministic) serialization, and so protobuf's
  // printer, follows.
  for (const auto& field : s.fields()) {
    if (!first) out->push_back(',');
    first = false;
    if (!AppendString(field.first, out)) return false;
    out->push_back(':');
    if (!AppendValue(field.second, depth + 1, out)) return false;
  }
  out->push_back('}');
  return true;
}

bool AppendList(const pb::ListValue& list, int depth, std::string* out) {
  out->push_back('[');
  for (int i = 0; i < list.values_size(); ++i) {
    if (i > 0) out->push_back(',');
    if (!AppendValue(list.values(i), depth + 1, out)) return false;
  }
  out->push_back(']');
  return true;
}

bool AppendValue(const pb::Value& value, int depth, std::string* out) {
  if (depth > kMaxJsonDepth) return false;
  switch (value.kind_case()) {
    case pb::Value::kNullValue:
      out->append("null");
      return true;
    case pb::Value::kNumberValue:
      return AppendDouble(value.number_value(), out);
    case pb::Value::kStringValue:
      return AppendString(value.string_value(), out);
    case pb::Value::kBoolValue:
      out->append(value.bool_value() ? "true" : "false");
      return true;
    case pb::Value::kStructValue:
      return AppendStruct(value.struct_value(), depth, out);
    case pb::Value::kListValue:
      return AppendList(value.list_value(), depth, out);
    case pb::Value::KIND_NOT_SET:
      break;
  }
  return false;
}

bool AppendEntry(const kiq::v1::Entry& entry, std::string* out) {
  Members m(out);
  if (!entry.key().empty() && !AppendString(entry.key(), m.Name("key"))) return false;
  if (!entry.key_bytes().empty()) AppendBytes(entry.key_bytes(), m.Name("keyBytes"));
  if (!entry.value().empty()) AppendBytes(entry.value(), m.Name("value"));
  if (entry.has_json() && !AppendValue(entry.json(), 1, m.Name("json"))) return false;
  if (entry.partition() != 0) absl::StrAppend(m.Name("partition"), entry.partition());
  if (entry.has_window()) {
    Members w(m.Name("window"));
    if (entry.window().start_ms() != 0) AppendInt64(entry.window().start_ms(), w.Name("startMs"));
    if (entry.window().end_ms() != 0) AppendInt64(entry.window().end_ms(), w.Name("endMs"));
    w.End();
  }
  m.End();
  return true;
}

bool AppendPosition(const kiq::v1::Position& position, std::string* out) {
  Members m(out);
  if (position.offsets_size() > 0) {
    std::string* list = m.Name("offsets");
    list->push_back('[');
    for (int i = 0; i < position.offsets_size(); ++i) {
      const kiq::v1::PartitionOffset& po = position.offsets(i);
      if (i > 0) list->push_back(',');
      Members o(list);
      if (!po.topic().empty() && !AppendString(po.topic(), o.Name("topic"))) return false;
      if (po.partition() != 0) absl::StrAppend(o.Name("partition"), po.partition());
      if (po.offset() != 0) AppendInt64(po.offset(), o.Name("offset"));
      o.End();
    }
    list->push_back(']');
  }
  m.End();
  return true;
}

bool AppendResponse(const kiq::v1::GetResponse& response, std::string* out) {
  Members m(out);
  if (response.found()) m.Name("found")->append("true");
  if (response.has_entry() && !AppendEntry(response.entry(), m.Name("entry"))) return false;
  if (response.has_position() && !AppendPosition(response.position(), m.Name("position"))) {
    return false;
  }
  if (response.standby_reads_size() > 0) {
    std::string* list = m.Name("standbyReads");
    list->push_back('[');
    for (int i = 0; i < response.standby_reads_size(); ++i) {
      const kiq::v1::StandbyRead& read = response.standby_reads(i);
      if (i > 0) list->push_back(',');
      Members r(list);
      if (read.partition() != 0) absl::StrAppend(r.Name("partition"), read.partition());
      if (!read.node_id().empty() && !AppendString(read.node_id(), r.Name("nodeId"))) return false;
      if (read.lag_records() != 0) AppendInt64(read.lag_records(), r.Name("lagRecords"));
      r.End();
    }
    list->push_back(']');
  }
  m.End();
  return true;
}

}  // namespace

bool AppendGetResponseJson(const kiq::v1::GetResponse& response, std::string* out) {
  const size_t start = out->size();
  if (!AppendResponse(response, out)) {
    out->resize(start);
    return false;
  }
  return true;
}

}  // namespace kiq::router
