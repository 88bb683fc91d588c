#pragma once

#include <string>

#include "absl/strings/string_view.h"

namespace kiq::security {

// The few OpenSSL primitives kiq's authentication needs (libcrypto). Pure and thread-safe.

// SHA-256 of `data`: 32 raw bytes.
std::string Sha256(absl::string_view data);
// HMAC-SHA256 of `data` under `key`: 32 raw bytes.
std::string HmacSha256(absl::string_view key, absl::string_view data);
// Whether a == b, in time that depends only on their lengths (OpenSSL's CRYPTO_memcmp), so that
// a caller cannot learn a secret one byte at a time from how long a refusal takes.
bool ConstantTimeEquals(absl::string_view a, absl::string_view b);
// Lower-case hex of `bytes`, and back (nullopt-like: false if `hex` is not even-length hex).
std::string ToHex(absl::string_view bytes);
bool FromHex(absl::string_view hex, std::string* bytes);

}  // namespace kiq::security
