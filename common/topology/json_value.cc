#include "common/topology/json_value.h"

#include <cmath>
#include <cstdlib>
#include <limits>
#include <string>
#include <utility>

#include <rapidjson/error/en.h>
#include <rapidjson/memorystream.h>
#include <rapidjson/reader.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/utf8.h"

namespace kiq {
namespace {

// Error messages quote at most this much of a value.
constexpr size_t kMaxQuoted = 40;

std::string Quote(absl::string_view text) {
  const bool clipped = text.size() > kMaxQuoted;
  if (clipped) text = text.substr(0, kMaxQuoted);
  return absl::StrCat("\"", absl::Utf8SafeCHexEscape(text), clipped ? "...\"" : "\"");
}

// [sign] digits, nothing else (no spaces, no '+' of its own, no hex).
bool IsDecimalInteger(absl::string_view text) {
  if (!text.empty() && (text.front() == '-' || text.front() == '+')) text.remove_prefix(1);
  if (text.empty()) return false;
  for (char c : text) {
    if (!absl::ascii_isdigit(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

// [sign] digits [. digits] [e [sign] digits], with at least one digit before the exponent.
bool IsDecimalNumber(absl::string_view text) {
  size_t i = 0;
  auto digits = [&] {
    size_t n = 0;
    while (i < text.size() && absl::ascii_isdigit(static_cast<unsigned char>(text[i]))) ++i, ++n;
    return n;
  };
  if (i < text.size() && (text[i] == '+' || text[i] == '-')) ++i;
  size_t mantissa = digits();
  if (i < text.size() && text[i] == '.') {
    ++i;
    mantissa += digits();
  }
  if (mantissa == 0) return false;
  if (i < text.size() && (text[i] == 'e' || text[i] == 'E')) {
    ++i;
    if (i < text.size() && (text[i] == '+' || text[i] == '-')) ++i;
    if (digits() == 0) return false;
  }
  return i == text.size();
}

absl::Status NotA(const FieldPath& path, absl::string_view what, absl::string_view found) {
  return absl::InvalidArgumentError(absl::StrCat(path.Describe(), " is not ", what, ": ", found));
}

// SAX events forwarded to a document under construction, refusing (by returning false, which
// stops the reader) a nesting deeper than the limit or a string that is not UTF-8. Strings are
// checked after unescaping, so an escaped lone surrogate ("\udc00") is refused too.
class LimitingHandler {
 public:
  using Ch = char;
  LimitingHandler(rapidjson::Document& doc, int max_depth) : doc_(doc), max_depth_(max_depth) {}

  bool Null() { return doc_.Null(); }
  bool Bool(bool b) { return doc_.Bool(b); }
  bool Int(int i) { return doc_.Int(i); }
  bool Uint(unsigned u) { return doc_.Uint(u); }
  bool Int64(int64_t i) { return doc_.Int64(i); }
  bool Uint64(uint64_t u) { return doc_.Uint64(u); }
  bool Double(double d) { return doc_.Double(d); }
  // Numbers come as text (kParseNumbersAsStringsFlag) and are converted here: an integer that
  // fits int64 or uint64 as it is, anything else as the nearest double (strtod, in the "C"
  // locale kiq never changes). RapidJSON 1.1.0's own conversion is an ulp off on its fast path
  // and calls clz(0) (undefined) on its precise one, e.g. for "0e54" (both found by fuzzing).
  bool RawNumber(const Ch* s, rapidjson::SizeType n, bool) {
    const std::string text(s, n);
    if (text.find_first_of(".eE") == std::string::npos) {
      int64_t i = 0;
      if (absl::SimpleAtoi(text, &i)) return doc_.Int64(i);
      uint64_t u = 0;
      if (absl::SimpleAtoi(text, &u)) return doc_.Uint64(u);
    }
    const double d = std::strtod(text.c_str(), nullptr);
    if (!std::isfinite(d)) return false;  // beyond a double: not JSON kiq can read
    return doc_.Double(d);
  }
  bool String(const Ch* s, rapidjson::SizeType n, bool copy) {
    return Utf8(s, n) && doc_.String(s, n, copy);
  }
  bool Key(const Ch* s, rapidjson::SizeType n, bool copy) {
    return Utf8(s, n) && doc_.Key(s, n, copy);
  }
  bool StartObject() { return Enter() && doc_.StartObject(); }
  bool EndObject(rapidjson::SizeType n) {
    --depth_;
    return doc_.EndObject(n);
  }
  bool StartArray() { return Enter() && doc_.StartArray(); }
  bool EndArray(rapidjson::SizeType n) {
    --depth_;
    return doc_.EndArray(n);
  }

  bool too_deep() const { return too_deep_; }
  bool bad_utf8() const { return bad_utf8_; }

 private:
  bool Enter() {
    if (++depth_ <= max_depth_) return true;
    too_deep_ = true;
    return false;
  }
  bool Utf8(const Ch* s, rapidjson::SizeType n) {
    if (IsValidUtf8(absl::string_view(s, n))) return true;
    bad_utf8_ = true;
    return false;
  }

  rapidjson::Document& doc_;
  const int max_depth_;
  int depth_ = 0;
  bool too_deep_ = false;
  bool bad_utf8_ = false;
};

}  // namespace

absl::Status ParseJson(absl::string_view text, const JsonLimits& limits, absl::string_view what,
                       rapidjson::Document* doc) {
  doc->SetNull();
  if (text.size() > limits.max_value_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, " too large (", text.size(), " bytes; the limit is ", limits.max_value_bytes, ")"));
  }
  // RFC 8259 lets a parser ignore a byte order mark (RapidJSON's Document::Parse does).
  if (absl::StartsWith(text, "\xEF\xBB\xBF")) text.remove_prefix(3);
  rapidjson::MemoryStream stream(text.data(), text.size());
  LimitingHandler handler(*doc, limits.max_depth);
  rapidjson::ParseResult result;
  auto generate = [&](rapidjson::Document&) {
    // The iterative reader keeps its state on the heap: no recursion, whatever the nesting.
    rapidjson::Reader reader;
    // Numbers as text: see LimitingHandler::RawNumber.
    result = reader.Parse<rapidjson::kParseIterativeFlag | rapidjson::kParseNumbersAsStringsFlag>(
        stream, handler);
    // The reader stops at a NUL byte as at the end: text after one is not part of the value.
    return !result.IsError() && stream.Tell() == text.size();
  };
  doc->Populate(generate);
  if (!result.IsError() && stream.Tell() == text.size()) return absl::OkStatus();
  doc->SetNull();
  if (handler.too_deep()) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " nests deeper than ", limits.max_depth, " levels"));
  }
  if (handler.bad_utf8() || result.Code() == rapidjson::kParseErrorStringInvalidEncoding) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " is not UTF-8 (a JSON string holds invalid UTF-8)"));
  }
  return absl::InvalidArgumentError(absl::StrCat(what, " is not JSON"));
}

void LazyJson::Reset(absl::string_view text) {
  text_ = text;
  if (parsed_) {
    document_.SetNull();
    pool_.Clear();  // Keeps the inline buffer; frees the chunks a large document needed.
  }
  parsed_ = false;
  error_ = absl::OkStatus();
}

const rapidjson::Value* LazyJson::Root() {
  if (!parsed_) {
    parsed_ = true;
    error_ = ParseJson(text_, limits_, "value", &document_);
  }
  return error_.ok() ? &document_ : nullptr;
}

std::string FieldPath::Problem(absl::string_view path) {
  if (path.empty()) return "";
  for (absl::string_view segment : absl::StrSplit(path, '.')) {
    if (segment.empty()) {
      return absl::StrCat(Quote(path),
                          " is not a field path: expected names separated by single dots, "
                          "e.g. \"points\" or \"customer.id\"");
    }
  }
  return "";
}

FieldPath::FieldPath(std::string path) : name_(std::move(path)) {
  if (!name_.empty()) segments_ = absl::StrSplit(name_, '.');
}

const rapidjson::Value* FieldPath::Find(const rapidjson::Value& root) const {
  const rapidjson::Value* current = &root;
  for (const std::string& segment : segments_) {
    // A field of a null (the missing side of a left join, an optional record) is null, as in
    // SQL; a field of a number or string does not exist.
    if (current->IsNull()) return current;
    if (!current->IsObject()) return nullptr;
    auto it =
        current->FindMember(rapidjson::Value(rapidjson::StringRef(segment.data(), segment.size())));
    if (it == current->MemberEnd()) return nullptr;
    current = &it->value;
  }
  return current;
}

std::string FieldPath::Describe() const {
  return segments_.empty() ? std::string("the value") : absl::StrCat("field ", name_);
}

absl::StatusOr<Scalar> ReadField(const FieldPath& path, absl::string_view value, LazyJson* json) {
  absl::StatusOr<std::optional<Scalar>> found = ReadOptionalField(path, value, json);
  if (!found.ok()) return found.status();
  if (!*found) return absl::InvalidArgumentError(absl::StrCat(path.Describe(), " is missing"));
  return **found;
}

absl::StatusOr<std::optional<Scalar>> ReadOptionalField(const FieldPath& path,
                                                        absl::string_view value, LazyJson* json) {
  Scalar scalar;
  if (json == nullptr) {
    // Validation only allows the whole value of a non-JSON source.
    if (!path.whole_value()) {
      return absl::InvalidArgumentError(
          absl::StrCat("cannot read ", path.Describe(), " of a value that is not JSON"));
    }
    scalar.text = value;
    return scalar;
  }
  const rapidjson::Value* root = json->Root();
  if (root == nullptr) return json->error();
  scalar.json = path.Find(*root);
  if (scalar.json == nullptr) return std::nullopt;
  return scalar;
}

absl::StatusOr<int64_t> ToInt64(const Scalar& scalar, const FieldPath& path) {
  absl::string_view text = scalar.text;
  if (scalar.json != nullptr) {
    const rapidjson::Value& v = *scalar.json;
    if (v.IsInt64()) return v.GetInt64();
    if (v.IsUint64()) return NotA(path, "an int64 (out of range)", DescribeJson(v));
    if (v.IsNumber()) {
      const double d = v.GetDouble();
      // 2^63 is exactly representable; every integral double below it fits.
      if (std::trunc(d) == d && d >= -9223372036854775808.0 && d < 9223372036854775808.0) {
        return static_cast<int64_t>(d);
      }
      return NotA(path, "an integer", DescribeJson(v));
    }
    if (!v.IsString()) return NotA(path, "a number", DescribeJson(v));
    text = absl::string_view(v.GetString(), v.GetStringLength());
  }
  int64_t out = 0;
  if (!IsDecimalInteger(text)) {
    return NotA(path, IsDecimalNumber(text) ? "an integer" : "a number", Quote(text));
  }
  if (!absl::SimpleAtoi(text, &out)) return NotA(path, "an int64 (out of range)", Quote(text));
  return out;
}

absl::StatusOr<double> ToDouble(const Scalar& scalar, const FieldPath& path) {
  absl::string_view text = scalar.text;
  if (scalar.json != nullptr) {
    const rapidjson::Value& v = *scalar.json;
    if (v.IsNumber()) return v.GetDouble();
    if (!v.IsString()) return NotA(path, "a number", DescribeJson(v));
    text = absl::string_view(v.GetString(), v.GetStringLength());
  }
  double out = 0;
  if (!IsDecimalNumber(text) || !absl::SimpleAtod(text, &out)) {
    return NotA(path, "a number", Quote(text));
  }
  if (!std::isfinite(out)) return NotA(path, "a finite double", Quote(text));
  return out;
}

std::string ToJsonText(const rapidjson::Value& value) {
  rapidjson::StringBuffer buffer;
  rapidjson::Writer<rapidjson::StringBuffer> writer(buffer);
  value.Accept(writer);
  return std::string(buffer.GetString(), buffer.GetSize());
}

std::string DescribeJson(const rapidjson::Value& value) {
  if (value.IsObject()) return "an object";
  if (value.IsArray()) return "an array";
  const std::string text = ToJsonText(value);
  if (text.size() <= kMaxQuoted) return text;
  return absl::StrCat(text.substr(0, kMaxQuoted), "...");
}

}  // namespace kiq
