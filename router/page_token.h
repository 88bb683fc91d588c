#pragma once

#include <optional>
#include <string>
#include "absl/strings/string_view.h"

#include "absl/status/statusor.h"
#include "router/port/local_stores.h"

namespace kiq::router {

// AIP-158 page tokens. A token carries the store, the request's bounds and the last key
// returned, so the next page can be asked of any node and a token cannot be replayed against
// another request. Opaque to clients: base64url of kiq.v1.PageToken.
std::string EncodePageToken(absl::string_view store, const KeyRange& range,
                            absl::string_view after_key);

// Returns the key to resume after, or nullopt for an empty token (the first page).
// INVALID_ARGUMENT if the token is malformed or belongs to another store or range.
absl::StatusOr<std::optional<std::string>> DecodePageToken(absl::string_view token,
                                                           absl::string_view store,
                                                           const KeyRange& range);

}  // namespace kiq::router
