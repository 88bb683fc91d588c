#include "common/topology/json_value.h"

#include <cmath>
#include <limits>
#include <string>
#include <utility>

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

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

}  // namespace

void LazyJson::Reset(absl::string_view text) {
  text_ = text;
  if (parsed_) {
    document_.SetNull();
    pool_.Clear();  // Keeps the inline buffer; frees the chunks a large document needed.
  }
  parsed_ = false;
  valid_ = false;
}

const rapidjson::Value* LazyJson::Root() {
  if (!parsed_) {
    parsed_ = true;
    document_.Parse(text_.data(), text_.size());
    valid_ = !document_.HasParseError();
  }
  return valid_ ? &document_ : nullptr;
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
  if (root == nullptr) return absl::InvalidArgumentError("value is not JSON");
  scalar.json = path.Find(*root);
  if (scalar.json == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(path.Describe(), " is missing"));
  }
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
