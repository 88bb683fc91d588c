#include "router/page_token.h"

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "kiq/v1/query.pb.h"

namespace kiq::router {
namespace {

// Bounds are encoded with a presence byte so that an open bound differs from an empty key.
std::string EncodeBound(const std::optional<std::string>& bound) {
  return bound ? absl::StrCat("=", *bound) : std::string();
}

}  // namespace

std::string EncodePageToken(absl::string_view store, const KeyRange& range,
                            absl::string_view after_key) {
  kiq::v1::PageToken token;
  token.set_store(std::string(store));
  token.set_after_key(std::string(after_key));
  token.set_from(EncodeBound(range.from));
  token.set_to(EncodeBound(range.to));
  return absl::WebSafeBase64Escape(token.SerializeAsString());
}

absl::StatusOr<std::optional<std::string>> DecodePageToken(absl::string_view token,
                                                           absl::string_view store,
                                                           const KeyRange& range) {
  if (token.empty()) return std::optional<std::string>();
  std::string bytes;
  kiq::v1::PageToken parsed;
  if (!absl::WebSafeBase64Unescape(token, &bytes) || !parsed.ParseFromString(bytes)) {
    return absl::InvalidArgumentError("page_token is malformed");
  }
  if (parsed.store() != store || parsed.from() != EncodeBound(range.from) ||
      parsed.to() != EncodeBound(range.to)) {
    return absl::InvalidArgumentError(
        "page_token belongs to another request (store or range differ)");
  }
  return std::optional<std::string>(parsed.after_key());
}

}  // namespace kiq::router
