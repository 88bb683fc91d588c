#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "absl/strings/string_view.h"

namespace kiq {

// Key layout of windowed stores: the user key followed by the window start (ms since the
// epoch) as 8 bytes big-endian with the sign bit flipped, so that the windows of one key sort
// by start, negative starts included. Every window entry is at least 8 bytes long, which
// leaves the empty key of a partition free for its stream time (see kStreamTimeKey).
inline constexpr size_t kWindowSuffixSize = 8;

// The reserved key under which a windowed store keeps a partition's stream time (the largest
// record timestamp seen) in its own column family, so that it travels with the store's state
// through batches, changelogs and restoration. Never a window entry; never answered.
inline constexpr absl::string_view kStreamTimeKey = "";

std::string EncodeWindowStart(int64_t start_ms);
std::string WindowKey(absl::string_view user_key, int64_t start_ms);

struct DecodedWindowKey {
  absl::string_view user_key;
  int64_t start_ms = 0;
};
// nullopt for a key that is not a window entry (shorter than 8 bytes: the stream time).
std::optional<DecodedWindowKey> DecodeWindowKey(absl::string_view stored_key);

}  // namespace kiq
