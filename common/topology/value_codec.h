#pragma once

#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include "absl/strings/string_view.h"

namespace kiq {

// Numbers in stores (counts, sums) are 8 bytes, big-endian: fixed size so a read-modify-write
// never reallocates, and the same bytes on every platform (they travel in changelogs).
inline std::string EncodeInt64(int64_t v) {
  std::string out(8, '\0');
  uint64_t u = static_cast<uint64_t>(v);
  for (int i = 7; i >= 0; --i) {
    out[i] = static_cast<char>(u & 0xff);
    u >>= 8;
  }
  return out;
}

inline std::optional<int64_t> DecodeInt64(absl::string_view bytes) {
  if (bytes.size() != 8) return std::nullopt;
  uint64_t u = 0;
  for (unsigned char c : bytes) u = (u << 8) | c;
  return static_cast<int64_t>(u);
}

// Doubles (floating sums, minima, maxima) are their IEEE 754 bits, 8 bytes big-endian.
inline std::string EncodeDouble(double v) {
  static_assert(sizeof(double) == sizeof(uint64_t), "IEEE 754 double expected");
  uint64_t bits = 0;
  std::memcpy(&bits, &v, sizeof(bits));
  return EncodeInt64(static_cast<int64_t>(bits));
}

inline std::optional<double> DecodeDouble(absl::string_view bytes) {
  std::optional<int64_t> bits = DecodeInt64(bytes);
  if (!bits) return std::nullopt;
  const uint64_t u = static_cast<uint64_t>(*bits);
  double v = 0;
  std::memcpy(&v, &u, sizeof(v));
  return v;
}

}  // namespace kiq
