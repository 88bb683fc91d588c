#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace kiq::security {

// One bearer token of --auth-token-file: who it is (for logs and metrics, never the token) and
// which stores it may read ("*": all).
struct TokenGrant {
  std::string name;
  std::string digest;  // SHA-256 of the token, 32 raw bytes
  std::vector<std::string> stores;

  bool AllowsStore(absl::string_view store) const;
};

// The parsed token file:
//
//   tokens:
//     - name: dashboards
//       sha256: 9f86d081...        # hex SHA-256 of the token: the file holds no secret
//       stores: [orders_per_name]
//     - name: ops
//       token: "s3cret-value"      # or the token itself
//       stores: ["*"]
//
// Immutable, thread-safe.
class TokenSet {
 public:
  // INVALID_ARGUMENT naming the field path (e.g. "tokens[1].sha256") and the reason; `source`
  // (the file's name) prefixes every message.
  static absl::StatusOr<TokenSet> Parse(absl::string_view yaml, absl::string_view source);

  // The grant of `token`, or null if it is none of them. Compares SHA-256 digests in constant
  // time against every entry (the time does not tell which entry came closest).
  const TokenGrant* Find(absl::string_view token) const;
  const std::vector<TokenGrant>& grants() const { return grants_; }

 private:
  std::vector<TokenGrant> grants_;
};

}  // namespace kiq::security
