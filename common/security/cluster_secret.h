#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace kiq::security {

// Kafka headers of an authenticated members-topic record (node/membership/membership_publisher.cc
// writes them, router/membership_tailer.cc checks them).
inline constexpr char kMemberMacHeader[] = "kiq-mac";
// When the record was written (decimal Unix milliseconds), inside the MAC: for a tombstone it
// is the only time there is, and it lets a tailer tell a replayed old tombstone from a new one.
inline constexpr char kMemberWrittenAtHeader[] = "kiq-written-at";
// gRPC metadata a node or router attaches to every call to a peer (PeerService, forwarded
// QueryService calls): "<unix_ms>.<hex HMAC>", valid kPeerTokenLifetime either side of now.
inline constexpr char kPeerAuthHeader[] = "kiq-peer-auth";
inline constexpr absl::Duration kPeerTokenLifetime = absl::Seconds(60);
// Shorter secrets are refused: HMAC is only as strong as its key.
inline constexpr size_t kMinSecretBytes = 16;

// The secret all nodes and routers of one application share (--cluster-secret-file or
// $KIQ_CLUSTER_SECRET). It authenticates members records (so that only a holder of the secret
// can say where queries go) and peer calls (so that PeerService answers only peers). The key
// is kept in memory only; nothing derived from it is logged. Immutable, thread-safe.
class ClusterSecret {
 public:
  // `secret` with surrounding whitespace (a file's trailing newline) removed; INVALID_ARGUMENT
  // naming `source` if it is shorter than kMinSecretBytes.
  static absl::StatusOr<ClusterSecret> FromText(absl::string_view secret, absl::string_view source);

  // HMAC-SHA256 over a domain tag, the key, the written-at time and the value (null: a
  // tombstone), each length-prefixed, so no two distinct records share a MAC input.
  std::string MemberMac(absl::string_view key, int64_t written_at_ms,
                        const std::optional<absl::string_view>& value) const;
  enum class MemberCheck { kOk, kUnsigned, kBadMac };
  // Checks a record's headers (nullopt: header absent). `*written_at_ms` is set when kOk.
  MemberCheck CheckMember(absl::string_view key, const std::optional<absl::string_view>& value,
                          const std::optional<absl::string_view>& mac_header,
                          const std::optional<absl::string_view>& written_at_header,
                          int64_t* written_at_ms) const;

  // A fresh kPeerAuthHeader value for a call made at `now`.
  std::string PeerToken(absl::Time now) const;
  // Whether `token` was made with this secret within kPeerTokenLifetime of `now`.
  bool CheckPeerToken(absl::string_view token, absl::Time now) const;

 private:
  explicit ClusterSecret(std::string key) : key_(std::move(key)) {}
  // Constant after construction. Each MAC input starts with its own domain tag, so that a MAC
  // of one kind can never pass as one of another.
  std::string key_;
};

}  // namespace kiq::security
