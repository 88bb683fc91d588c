#include "common/topology/window_key.h"

namespace kiq {

std::string EncodeWindowStart(int64_t start_ms) {
  // Flipping the sign bit maps int64 order onto unsigned byte order.
  uint64_t u = static_cast<uint64_t>(start_ms) ^ (uint64_t{1} << 63);
  std::string out(kWindowSuffixSize, '\0');
  for (int i = 7; i >= 0; --i) {
    out[i] = static_cast<char>(u & 0xff);
    u >>= 8;
  }
  return out;
}

std::string WindowKey(absl::string_view user_key, int64_t start_ms) {
  std::string out(user_key);
  out += EncodeWindowStart(start_ms);
  return out;
}

std::optional<DecodedWindowKey> DecodeWindowKey(absl::string_view stored_key) {
  if (stored_key.size() < kWindowSuffixSize) return std::nullopt;
  const size_t split = stored_key.size() - kWindowSuffixSize;
  uint64_t u = 0;
  for (unsigned char c : stored_key.substr(split)) u = (u << 8) | c;
  return DecodedWindowKey{stored_key.substr(0, split),
                          static_cast<int64_t>(u ^ (uint64_t{1} << 63))};
}

}  // namespace kiq
