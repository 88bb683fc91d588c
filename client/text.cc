#include "client/text.h"

#include <cstdint>

#include "absl/strings/str_cat.h"

namespace kiq::client {
namespace {

// Length of the well-formed UTF-8 sequence at the start of `s` (storing its code point in
// `*code_point`), or 0 if `s` does not start with one.
size_t DecodeUtf8(std::string_view s, char32_t* code_point) {
  if (s.empty()) return 0;
  const auto byte = [&s](size_t i) { return static_cast<uint8_t>(s[i]); };
  const uint8_t lead = byte(0);
  if (lead < 0x80) {
    *code_point = lead;
    return 1;
  }
  size_t length;
  char32_t value;
  char32_t smallest;  // Anything below is an overlong form.
  if ((lead & 0xE0) == 0xC0) {
    length = 2;
    value = lead & 0x1F;
    smallest = 0x80;
  } else if ((lead & 0xF0) == 0xE0) {
    length = 3;
    value = lead & 0x0F;
    smallest = 0x800;
  } else if ((lead & 0xF8) == 0xF0) {
    length = 4;
    value = lead & 0x07;
    smallest = 0x10000;
  } else {
    return 0;
  }
  if (s.size() < length) return 0;
  for (size_t i = 1; i < length; ++i) {
    if ((byte(i) & 0xC0) != 0x80) return 0;
    value = (value << 6) | (byte(i) & 0x3F);
  }
  if (value < smallest || value > 0x10FFFF || (value >= 0xD800 && value <= 0xDFFF)) return 0;
  *code_point = value;
  return length;
}

constexpr char kHexDigits[] = "0123456789abcdef";

void AppendHexByte(uint8_t b, std::string* out) {
  out->append("\\x");
  out->push_back(kHexDigits[b >> 4]);
  out->push_back(kHexDigits[b & 0xF]);
}

std::string Escape(std::string_view bytes, bool escape_quotes) {
  std::string out;
  out.reserve(bytes.size());
  while (!bytes.empty()) {
    char32_t cp = 0;
    const size_t n = DecodeUtf8(bytes, &cp);
    if (n == 0) {
      AppendHexByte(static_cast<uint8_t>(bytes[0]), &out);
      bytes.remove_prefix(1);
      continue;
    }
    if (cp == '\\') {
      out.append("\\\\");
    } else if (cp == '"' && escape_quotes) {
      out.append("\\\"");
    } else if (cp == '\n') {
      out.append("\\n");
    } else if (cp == '\r') {
      out.append("\\r");
    } else if (cp == '\t') {
      out.append("\\t");
    } else if (cp < 0x20 || cp == 0x7F) {
      AppendHexByte(static_cast<uint8_t>(cp), &out);
    } else if (cp >= 0x80 && cp <= 0x9F) {
      // C1 controls are valid UTF-8 but some terminals act on them.
      out.append("\\u00");
      out.push_back(kHexDigits[cp >> 4]);
      out.push_back(kHexDigits[cp & 0xF]);
    } else {
      out.append(bytes.data(), n);
    }
    bytes.remove_prefix(n);
  }
  return out;
}

}  // namespace

bool IsValidUtf8(std::string_view s) {
  while (!s.empty()) {
    char32_t cp = 0;
    const size_t n = DecodeUtf8(s, &cp);
    if (n == 0) return false;
    s.remove_prefix(n);
  }
  return true;
}

std::string EscapeForTerminal(std::string_view bytes) { return Escape(bytes, false); }

std::string QuoteForMessage(std::string_view bytes) {
  constexpr size_t kMaxShown = 64;
  if (bytes.size() <= kMaxShown) return absl::StrCat("\"", Escape(bytes, true), "\"");
  // Cut at a code point boundary so the clipped text stays readable.
  size_t cut = kMaxShown;
  while (cut > 0 && (static_cast<uint8_t>(bytes[cut]) & 0xC0) == 0x80) --cut;
  return absl::StrCat("\"", Escape(bytes.substr(0, cut), true), "\"...(", bytes.size(), " bytes)");
}

size_t DisplayWidth(std::string_view utf8) {
  size_t width = 0;
  for (char c : utf8) {
    if ((static_cast<uint8_t>(c) & 0xC0) != 0x80) ++width;
  }
  return width;
}

}  // namespace kiq::client
