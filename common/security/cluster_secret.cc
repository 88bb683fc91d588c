#include "common/security/cluster_secret.h"

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/security/crypto.h"

namespace kiq::security {
namespace {

constexpr char kMemberDomain[] = "kiq-members-v1";
constexpr char kPeerDomain[] = "kiq-peer-auth-v1";

void AppendField(std::string* out, absl::string_view field) {
  absl::StrAppend(out, field.size(), ":", field, ";");
}

}  // namespace

absl::StatusOr<ClusterSecret> ClusterSecret::FromText(absl::string_view secret,
                                                      absl::string_view source) {
  absl::string_view trimmed = absl::StripAsciiWhitespace(secret);
  if (trimmed.size() < kMinSecretBytes) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": the cluster secret must be at least ",
                                                   kMinSecretBytes, " bytes, got ", trimmed.size()));
  }
  return ClusterSecret(std::string(trimmed));
}

std::string ClusterSecret::MemberMac(absl::string_view key, int64_t written_at_ms,
                                     const std::optional<absl::string_view>& value) const {
  std::string input;
  AppendField(&input, kMemberDomain);
  AppendField(&input, key);
  AppendField(&input, absl::StrCat(written_at_ms));
  // A tombstone and an empty value differ.
  if (value.has_value()) {
    AppendField(&input, *value);
  } else {
    input.append("null");
  }
  return HmacSha256(key_, input);
}

ClusterSecret::MemberCheck ClusterSecret::CheckMember(
    absl::string_view key, const std::optional<absl::string_view>& value,
    const std::optional<absl::string_view>& mac_header,
    const std::optional<absl::string_view>& written_at_header, int64_t* written_at_ms) const {
  if (!mac_header.has_value()) return MemberCheck::kUnsigned;
  int64_t written_at = 0;
  std::string mac;
  if (!written_at_header.has_value() || !absl::SimpleAtoi(*written_at_header, &written_at) ||
      !FromHex(*mac_header, &mac)) {
    return MemberCheck::kBadMac;
  }
  if (!ConstantTimeEquals(mac, MemberMac(key, written_at, value))) return MemberCheck::kBadMac;
  *written_at_ms = written_at;
  return MemberCheck::kOk;
}

std::string ClusterSecret::PeerToken(absl::Time now) const {
  const std::string ms = absl::StrCat(absl::ToUnixMillis(now));
  std::string input;
  AppendField(&input, kPeerDomain);
  AppendField(&input, ms);
  return absl::StrCat(ms, ".", ToHex(HmacSha256(key_, input)));
}

bool ClusterSecret::CheckPeerToken(absl::string_view token, absl::Time now) const {
  const size_t dot = token.find('.');
  if (dot == absl::string_view::npos) return false;
  const absl::string_view ms = token.substr(0, dot);
  int64_t at_ms = 0;
  std::string mac;
  if (!absl::SimpleAtoi(ms, &at_ms) || !FromHex(token.substr(dot + 1), &mac)) return false;
  if (absl::AbsDuration(now - absl::FromUnixMillis(at_ms)) > kPeerTokenLifetime) return false;
  std::string input;
  AppendField(&input, kPeerDomain);
  AppendField(&input, ms);
  return ConstantTimeEquals(mac, HmacSha256(key_, input));
}

}  // namespace kiq::security
