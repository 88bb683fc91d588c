#include "client/text.h"

#include <cstdint>

#include "absl/strings/str_cat.h"
#include "common/utf8.h"

namespace kiq::client {
namespace {

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
    const size_t n = DecodeUtf8(absl::string_view(bytes.data(), bytes.size()), &cp);
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
  return kiq::IsValidUtf8(absl::string_view(s.data(), s.size()));
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
