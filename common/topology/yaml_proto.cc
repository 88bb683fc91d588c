#include "common/topology/yaml_proto.h"

#include "common/proto_field.h"

#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <set>
#include <string>
#include <type_traits>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/message.h"
#include "yaml-cpp/yaml.h"

namespace kiq {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::EnumDescriptor;
using google::protobuf::EnumValueDescriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::OneofDescriptor;
using google::protobuf::Reflection;

// Config messages are a few levels deep; the bound only stops a recursive message type (or a
// hand-built node) from exhausting the stack.
constexpr int kMaxDepth = 100;
// The most nodes one mapping reads, an alias counting once per use: aliases of aliases expand
// exponentially ("billion laughs": 700 bytes of YAML once took 2 minutes and 1.5 GB), and a
// config this size is far beyond any real one.
constexpr size_t kMaxNodes = 100'000;
// Keeps an error about a long scalar readable.
constexpr size_t kMaxQuotedLength = 60;

#define KIQ_RETURN_IF_ERROR(expr)              \
  do {                                         \
    absl::Status kiq_status_ = (expr);         \
    if (!kiq_status_.ok()) return kiq_status_; \
  } while (false)

absl::Status Error(const std::string& path, absl::string_view reason) {
  if (path.empty()) return absl::InvalidArgumentError(reason);
  return absl::InvalidArgumentError(absl::StrCat(path, ": ", reason));
}

std::string FieldPath(const std::string& path, absl::string_view field) {
  return path.empty() ? std::string(field) : absl::StrCat(path, ".", field);
}

std::string Clip(absl::string_view text) {
  if (text.size() <= kMaxQuotedLength) return std::string(text);
  return absl::StrCat(text.substr(0, kMaxQuotedLength), "...");
}

std::string Quote(absl::string_view text) {
  return absl::StrCat("\"", absl::Utf8SafeCHexEscape(Clip(text)), "\"");
}

// What the user wrote, for "found ..." in an error.
std::string Describe(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Undefined:
      return "nothing";
    case YAML::NodeType::Null:
      return "null";
    case YAML::NodeType::Scalar:
      return Quote(node.Scalar());
    case YAML::NodeType::Sequence:
      return "a sequence";
    case YAML::NodeType::Map:
      return "a mapping";
  }
  return "an unknown YAML node";
}

std::string ExpectedMessage(const Descriptor* type) {
  return absl::StrCat("a mapping (", type->full_name(), ")");
}

// What a single value of `field` looks like, for "expected ..." in an error.
std::string Expected(const FieldDescriptor* field) {
  switch (field->cpp_type()) {
    case FieldDescriptor::CPPTYPE_INT32:
    case FieldDescriptor::CPPTYPE_INT64:
    case FieldDescriptor::CPPTYPE_UINT32:
    case FieldDescriptor::CPPTYPE_UINT64:
      return absl::StrCat("an integer (", field->cpp_type_name(), ")");
    case FieldDescriptor::CPPTYPE_FLOAT:
    case FieldDescriptor::CPPTYPE_DOUBLE:
      return absl::StrCat("a number (", field->cpp_type_name(), ")");
    case FieldDescriptor::CPPTYPE_BOOL:
      return "true or false";
    case FieldDescriptor::CPPTYPE_ENUM:
      return absl::StrCat("a ", field->enum_type()->name(), " name");
    case FieldDescriptor::CPPTYPE_STRING:
      return field->type() == FieldDescriptor::TYPE_BYTES ? "a string (bytes)" : "a string";
    case FieldDescriptor::CPPTYPE_MESSAGE:
      return ExpectedMessage(field->message_type());
  }
  return "a value";
}

const FieldDescriptor* FindField(const Descriptor* type, const std::string& key) {
  if (const FieldDescriptor* field = type->FindFieldByName(key)) return field;
  for (int i = 0; i < type->field_count(); ++i) {
    const FieldDescriptor* field = type->field(i);
    if (field->json_name() == key || field->camelcase_name() == key) return field;
  }
  return nullptr;
}

std::string KnownFields(const Descriptor* type) {
  std::vector<std::string> names;
  names.reserve(type->field_count());
  for (int i = 0; i < type->field_count(); ++i) names.push_back(type->field(i)->name());
  return absl::StrJoin(names, ", ");
}

enum class IntParse { kOk, kNotAnInteger, kOutOfRange };

// Parses a decimal integer as sign and magnitude first, so that a value too large for any
// integer type is reported as out of range rather than as malformed.
template <typename T>
IntParse ParseInteger(absl::string_view text, T* out) {
  bool negative = false;
  if (!text.empty() && (text.front() == '-' || text.front() == '+')) {
    negative = text.front() == '-';
    text.remove_prefix(1);
  }
  if (text.empty()) return IntParse::kNotAnInteger;
  uint64_t magnitude = 0;
  bool overflow = false;
  for (char c : text) {
    if (!absl::ascii_isdigit(static_cast<unsigned char>(c))) return IntParse::kNotAnInteger;
    const uint64_t digit = static_cast<uint64_t>(c - '0');
    if (magnitude > (std::numeric_limits<uint64_t>::max() - digit) / 10) {
      overflow = true;  // Keep scanning: a later non-digit makes it malformed instead.
    } else {
      magnitude = magnitude * 10 + digit;
    }
  }
  if (overflow) return IntParse::kOutOfRange;
  if (negative && magnitude != 0) {
    if constexpr (std::is_unsigned_v<T>) {
      return IntParse::kOutOfRange;
    } else {
      // |min| is max + 1; negate through magnitude - 1 so that min itself does not overflow.
      if (magnitude > static_cast<uint64_t>(std::numeric_limits<T>::max()) + 1) {
        return IntParse::kOutOfRange;
      }
      *out = static_cast<T>(-static_cast<int64_t>(magnitude - 1) - 1);
      return IntParse::kOk;
    }
  }
  if (magnitude > static_cast<uint64_t>(std::numeric_limits<T>::max())) {
    return IntParse::kOutOfRange;
  }
  *out = static_cast<T>(magnitude);
  return IntParse::kOk;
}

template <typename T>
absl::Status ParseIntegerField(const std::string& text, const FieldDescriptor* field,
                               const std::string& path, T* out) {
  switch (ParseInteger(text, out)) {
    case IntParse::kOk:
      return absl::OkStatus();
    case IntParse::kNotAnInteger:
      return Error(path, absl::StrCat("expected ", Expected(field), ", found ", Quote(text)));
    case IntParse::kOutOfRange:
      break;
  }
  return Error(path, absl::StrCat(Clip(text), " is out of range for ", field->cpp_type_name(), " (",
                                  std::numeric_limits<T>::min(), " to ",
                                  std::numeric_limits<T>::max(), ")"));
}

// YAML 1.2 and JSON-style spellings of the non-finite values.
bool ParseSpecialFloat(absl::string_view text, double* out) {
  const std::string lower = absl::AsciiStrToLower(text);
  if (lower == ".inf" || lower == "+.inf" || lower == "inf" || lower == "+inf" ||
      lower == "infinity" || lower == "+infinity") {
    *out = std::numeric_limits<double>::infinity();
    return true;
  }
  if (lower == "-.inf" || lower == "-inf" || lower == "-infinity") {
    *out = -std::numeric_limits<double>::infinity();
    return true;
  }
  if (lower == ".nan" || lower == "nan") {
    *out = std::numeric_limits<double>::quiet_NaN();
    return true;
  }
  return false;
}

// Decimal notation only ([sign] digits [. digits] [e [sign] digits]); SimpleAtod alone would
// also take hex floats and surrounding whitespace.
bool IsDecimalNumber(absl::string_view text) {
  size_t i = 0;
  if (i < text.size() && (text[i] == '+' || text[i] == '-')) ++i;
  size_t digits = 0;
  while (i < text.size() && absl::ascii_isdigit(static_cast<unsigned char>(text[i]))) ++i, ++digits;
  if (i < text.size() && text[i] == '.') {
    ++i;
    while (i < text.size() && absl::ascii_isdigit(static_cast<unsigned char>(text[i]))) {
      ++i, ++digits;
    }
  }
  if (digits == 0) return false;
  if (i < text.size() && (text[i] == 'e' || text[i] == 'E')) {
    ++i;
    if (i < text.size() && (text[i] == '+' || text[i] == '-')) ++i;
    size_t exponent_digits = 0;
    while (i < text.size() && absl::ascii_isdigit(static_cast<unsigned char>(text[i]))) {
      ++i, ++exponent_digits;
    }
    if (exponent_digits == 0) return false;
  }
  return i == text.size();
}

absl::Status ParseFloatingField(const std::string& text, const FieldDescriptor* field,
                                const std::string& path, double* out) {
  if (ParseSpecialFloat(text, out)) return absl::OkStatus();
  if (!IsDecimalNumber(text) || !absl::SimpleAtod(text, out)) {
    return Error(path, absl::StrCat("expected ", Expected(field), ", found ", Quote(text)));
  }
  const double limit = field->cpp_type() == FieldDescriptor::CPPTYPE_FLOAT
                           ? static_cast<double>(std::numeric_limits<float>::max())
                           : std::numeric_limits<double>::max();
  if (std::isinf(*out) || std::fabs(*out) > limit) {
    return Error(path, absl::StrCat(Clip(text), " is out of range for ", field->cpp_type_name()));
  }
  return absl::OkStatus();
}

// The prefix shared by every value name up to its last '_' (FORMAT_ for FORMAT_JSON, ...),
// which users may leave out.
std::string CommonEnumPrefix(const EnumDescriptor* type) {
  if (type->value_count() == 0) return "";
  std::string prefix = type->value(0)->name();
  for (int i = 1; i < type->value_count(); ++i) {
    const std::string& name = type->value(i)->name();
    size_t n = 0;
    while (n < prefix.size() && n < name.size() && prefix[n] == name[n]) ++n;
    prefix.resize(n);
  }
  const size_t underscore = prefix.rfind('_');
  return underscore == std::string::npos ? "" : prefix.substr(0, underscore + 1);
}

const EnumValueDescriptor* FindEnumValue(const EnumDescriptor* type, absl::string_view text) {
  for (int i = 0; i < type->value_count(); ++i) {
    if (absl::EqualsIgnoreCase(type->value(i)->name(), text)) return type->value(i);
  }
  const std::string prefix = CommonEnumPrefix(type);
  for (int i = 0; i < type->value_count(); ++i) {
    const absl::string_view short_name =
        absl::string_view(type->value(i)->name()).substr(prefix.size());
    if (!short_name.empty() && absl::EqualsIgnoreCase(short_name, text)) return type->value(i);
  }
  return nullptr;
}

// The names a user would write: lower case, prefix left out.
std::string EnumNames(const EnumDescriptor* type) {
  const std::string prefix = CommonEnumPrefix(type);
  std::vector<std::string> names;
  for (int i = 0; i < type->value_count(); ++i) {
    names.push_back(absl::AsciiStrToLower(type->value(i)->name().substr(prefix.size())));
  }
  return absl::StrJoin(names, ", ");
}

absl::Status MergeMessage(const YAML::Node& node, Message* message, const std::string& path,
                          int depth);

// Sets a singular field, or appends one element to a repeated field.
absl::Status SetValue(const YAML::Node& node, const FieldDescriptor* field, Message* message,
                      const std::string& path, int depth) {
  const Reflection* reflection = message->GetReflection();
  const bool repeated = field->is_repeated();
  if (field->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
    if (!node.IsNull() && !node.IsMap()) {
      // A message without fields is only ever a marker (`count: {}`); say how to write one.
      const bool marker = field->message_type()->field_count() == 0 && !repeated;
      return Error(path,
                   absl::StrCat("expected ", Expected(field), ", found ", Describe(node),
                                marker ? absl::StrCat(" (write `", field->name(), ": {}`)") : ""));
    }
    // Created even for a null or empty mapping: an empty message still selects its oneof case.
    Message* child = repeated ? reflection->AddMessage(message, field)
                              : reflection->MutableMessage(message, field);
    return MergeMessage(node, child, path, depth + 1);
  }
  if (node.IsNull() && !repeated) {
    reflection->ClearField(message, field);
    return absl::OkStatus();
  }
  if (!node.IsScalar()) {
    return Error(path, absl::StrCat("expected ", Expected(field), ", found ", Describe(node)));
  }
  const std::string& text = node.Scalar();
  switch (field->cpp_type()) {
    case FieldDescriptor::CPPTYPE_INT32: {
      int32_t value = 0;
      KIQ_RETURN_IF_ERROR(ParseIntegerField(text, field, path, &value));
      SetOrAddField(message, field, value);
      break;
    }
    case FieldDescriptor::CPPTYPE_INT64: {
      int64_t value = 0;
      KIQ_RETURN_IF_ERROR(ParseIntegerField(text, field, path, &value));
      SetOrAddField(message, field, value);
      break;
    }
    case FieldDescriptor::CPPTYPE_UINT32: {
      uint32_t value = 0;
      KIQ_RETURN_IF_ERROR(ParseIntegerField(text, field, path, &value));
      SetOrAddField(message, field, value);
      break;
    }
    case FieldDescriptor::CPPTYPE_UINT64: {
      uint64_t value = 0;
      KIQ_RETURN_IF_ERROR(ParseIntegerField(text, field, path, &value));
      SetOrAddField(message, field, value);
      break;
    }
    case FieldDescriptor::CPPTYPE_DOUBLE: {
      double value = 0;
      KIQ_RETURN_IF_ERROR(ParseFloatingField(text, field, path, &value));
      SetOrAddField(message, field, value);
      break;
    }
    case FieldDescriptor::CPPTYPE_FLOAT: {
      double value = 0;
      KIQ_RETURN_IF_ERROR(ParseFloatingField(text, field, path, &value));
      SetOrAddField(message, field, static_cast<float>(value));
      break;
    }
    case FieldDescriptor::CPPTYPE_BOOL: {
      // Only the YAML 1.2 / JSON spellings: YAML 1.1's yes/no/on/off are too easy to write by
      // accident (a country code "no", a value "on").
      bool value = false;
      if (absl::EqualsIgnoreCase(text, "true")) {
        value = true;
      } else if (!absl::EqualsIgnoreCase(text, "false")) {
        return Error(path, absl::StrCat("expected ", Expected(field), ", found ", Quote(text)));
      }
      SetOrAddField(message, field, value);
      break;
    }
    case FieldDescriptor::CPPTYPE_ENUM: {
      const EnumValueDescriptor* value = FindEnumValue(field->enum_type(), text);
      if (value == nullptr) {
        return Error(path, absl::StrCat("unknown ", field->enum_type()->name(), " ", Quote(text),
                                        " (valid: ", EnumNames(field->enum_type()), ")"));
      }
      SetOrAddField(message, field, value);
      break;
    }
    case FieldDescriptor::CPPTYPE_STRING:
      // Any scalar is taken as written: a topic may well be named 2024 or true.
      SetOrAddField(message, field, text);
      break;
    case FieldDescriptor::CPPTYPE_MESSAGE:
      break;  // Handled above.
  }
  return absl::OkStatus();
}

// A map key in one spelling, so that `1` and `01` count as the same key of an integer map.
std::string CanonicalMapKey(const Message& entry, const FieldDescriptor* key_field) {
  const Reflection* reflection = entry.GetReflection();
  switch (key_field->cpp_type()) {
    case FieldDescriptor::CPPTYPE_INT32:
      return absl::StrCat(reflection->GetInt32(entry, key_field));
    case FieldDescriptor::CPPTYPE_INT64:
      return absl::StrCat(reflection->GetInt64(entry, key_field));
    case FieldDescriptor::CPPTYPE_UINT32:
      return absl::StrCat(reflection->GetUInt32(entry, key_field));
    case FieldDescriptor::CPPTYPE_UINT64:
      return absl::StrCat(reflection->GetUInt64(entry, key_field));
    case FieldDescriptor::CPPTYPE_BOOL:
      return reflection->GetBool(entry, key_field) ? "true" : "false";
    case FieldDescriptor::CPPTYPE_STRING:
      return reflection->GetString(entry, key_field);
    default:
      return "";  // Protobuf allows no other key types.
  }
}

absl::Status MergeMapField(const YAML::Node& node, const FieldDescriptor* field, Message* message,
                           const std::string& path, int depth) {
  const Reflection* reflection = message->GetReflection();
  if (node.IsNull()) {
    reflection->ClearField(message, field);
    return absl::OkStatus();
  }
  if (!node.IsMap()) {
    return Error(path, absl::StrCat("expected a mapping, found ", Describe(node)));
  }
  const FieldDescriptor* key_field = field->message_type()->map_key();
  const FieldDescriptor* value_field = field->message_type()->map_value();
  std::set<std::string> seen;
  for (const auto& entry : node) {
    const YAML::Node& key = entry.first;
    if (!key.IsScalar()) {
      return Error(
          path, absl::StrCat("expected ", Expected(key_field), " as key, found ", Describe(key)));
    }
    const std::string entry_path = absl::StrCat(path, "[", Quote(key.Scalar()), "]");
    Message* map_entry = reflection->AddMessage(message, field);
    KIQ_RETURN_IF_ERROR(SetValue(key, key_field, map_entry, entry_path, depth));
    if (!seen.insert(CanonicalMapKey(*map_entry, key_field)).second) {
      return Error(entry_path, "key given twice");
    }
    KIQ_RETURN_IF_ERROR(SetValue(entry.second, value_field, map_entry, entry_path, depth));
  }
  return absl::OkStatus();
}

absl::Status MergeField(const YAML::Node& node, const FieldDescriptor* field, Message* message,
                        const std::string& path, int depth) {
  if (field->is_map()) return MergeMapField(node, field, message, path, depth);
  if (!field->is_repeated()) return SetValue(node, field, message, path, depth);
  if (node.IsNull()) {
    message->GetReflection()->ClearField(message, field);
    return absl::OkStatus();
  }
  if (!node.IsSequence()) {
    return Error(path, absl::StrCat("expected a sequence, found ", Describe(node)));
  }
  size_t index = 0;
  for (const YAML::Node& element : node) {
    KIQ_RETURN_IF_ERROR(
        SetValue(element, field, message, absl::StrCat(path, "[", index, "]"), depth));
    ++index;
  }
  return absl::OkStatus();
}

absl::Status MergeMessage(const YAML::Node& node, Message* message, const std::string& path,
                          int depth) {
  const Descriptor* type = message->GetDescriptor();
  if (depth > kMaxDepth) {
    return Error(path, absl::StrCat("nested more than ", kMaxDepth, " levels deep"));
  }
  if (!node.IsDefined() || node.IsNull()) return absl::OkStatus();
  if (!node.IsMap()) {
    return Error(path,
                 absl::StrCat("expected ", ExpectedMessage(type), ", found ", Describe(node)));
  }
  // Field → the key it was given as, to catch the same field given twice (also as
  // `application_id` and `applicationId`), which would otherwise silently keep the last.
  std::map<const FieldDescriptor*, std::string> given;
  std::map<const OneofDescriptor*, const FieldDescriptor*> oneof_given;
  for (const auto& entry : node) {
    const YAML::Node& key = entry.first;
    if (!key.IsScalar()) {
      return Error(path, absl::StrCat("expected field names as keys, found ", Describe(key)));
    }
    const std::string& name = key.Scalar();
    const FieldDescriptor* field = FindField(type, name);
    if (field == nullptr) {
      return Error(
          path, absl::StrCat("unknown field ", Quote(name), " (known: ", KnownFields(type), ")"));
    }
    const auto [previous, first_time] = given.emplace(field, name);
    if (!first_time) {
      return Error(path, absl::StrCat("field ", Quote(field->name()), " given twice",
                                      previous->second == name
                                          ? ""
                                          : absl::StrCat(" (as ", Quote(previous->second), " and ",
                                                         Quote(name), ")")));
    }
    if (const OneofDescriptor* oneof = field->real_containing_oneof()) {
      const auto [other, first_of_oneof] = oneof_given.emplace(oneof, field);
      if (!first_of_oneof) {
        return Error(path, absl::StrCat(Quote(other->second->name()), " and ", Quote(field->name()),
                                        " are both set, but only one of them may be (oneof ",
                                        oneof->name(), ")"));
      }
    }
    KIQ_RETURN_IF_ERROR(
        MergeField(entry.second, field, message, FieldPath(path, field->name()), depth));
  }
  return absl::OkStatus();
}

#undef KIQ_RETURN_IF_ERROR

// Whether `root` has at most `limit` nodes when read as a tree (an alias once per use, so a
// cycle counts without end). Iterative: the walk is what is being bounded.
bool WithinNodeBudget(const YAML::Node& root, size_t limit) {
  std::vector<YAML::Node> pending = {root};
  size_t seen = 0;
  while (!pending.empty()) {
    const YAML::Node node = pending.back();
    pending.pop_back();
    if (++seen > limit) return false;
    if (node.IsSequence()) {
      for (const YAML::Node& element : node) pending.push_back(element);
    } else if (node.IsMap()) {
      for (const auto& entry : node) {
        pending.push_back(entry.first);
        pending.push_back(entry.second);
      }
    }
  }
  return true;
}

}  // namespace

absl::Status YamlToMessage(const YAML::Node& node, google::protobuf::Message* message,
                           std::string_view path) {
  const std::string root(path);
  // Reading a loaded node should not throw, but yaml-cpp reports everything by exception and
  // none may leave this module.
  try {
    if (!WithinNodeBudget(node, kMaxNodes)) {
      return Error(root, absl::StrCat("more than ", kMaxNodes,
                                      " YAML nodes (with every alias expanded where it is used)"));
    }
    return MergeMessage(node, message, root, 0);
  } catch (const YAML::Exception& e) {
    return Error(root, absl::StrCat("cannot read YAML: ", e.what()));
  }
}

}  // namespace kiq
