#include "common/utf8.h"

#include <cstdint>

namespace kiq {

size_t DecodeUtf8(absl::string_view s, char32_t* code_point) {
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

bool IsValidUtf8(absl::string_view s) {
  while (!s.empty()) {
    // ASCII runs are the common case in keys and JSON.
    if (static_cast<uint8_t>(s[0]) < 0x80) {
      s.remove_prefix(1);
      continue;
    }
    char32_t cp = 0;
    const size_t n = DecodeUtf8(s, &cp);
    if (n == 0) return false;
    s.remove_prefix(n);
  }
  return true;
}

}  // namespace kiq
