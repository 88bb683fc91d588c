#pragma once

#include <cstddef>

#include "absl/status/status.h"
#include "kiq/v1/peer.pb.h"
#include "kiq/v1/query.pb.h"

namespace kiq::router {

// Size limits on request fields, checked before anything else looks at a request: a field past
// its limit is INVALID_ARGUMENT naming the field and its size, never echoing it (a status
// message travels in a gRPC trailer, and one of a few KiB cannot be sent at all).

// Kafka's bound on a topic name; store names end up in changelog topic names.
inline constexpr size_t kMaxStoreNameBytes = 249;
// Keys, key prefixes and range bounds.
inline constexpr size_t kMaxKeyBytes = 64 * 1024;
// A page token is base64url of the store, the resume key and both bounds
// (router/page_token.h): room for all of them at their limits.
inline constexpr size_t kMaxPageTokenBytes =
    4 * ((kMaxStoreNameBytes + 3 * kMaxKeyBytes + 64 + 2) / 3);
// Entries of a min_position, and partitions named in one peer request.
inline constexpr int kMaxPositionEntries = 65536;
inline constexpr int kMaxRequestPartitions = 65536;
// Keys of one GetMany. A batch costs one forward per owner, so past a few hundred keys the
// call is bounded by its largest owner's share, not by round trips; 1024 keeps a response of
// small values well under gRPC's 4 MiB default message size.
inline constexpr int kMaxGetManyKeys = 1024;

absl::Status CheckRequest(const kiq::v1::GetRequest& request);
// Also: at least one key, at most kMaxGetManyKeys.
absl::Status CheckRequest(const kiq::v1::GetManyRequest& request);
absl::Status CheckRequest(const kiq::v1::RangeRequest& request);
absl::Status CheckRequest(const kiq::v1::AllRequest& request);
absl::Status CheckRequest(const kiq::v1::CountRequest& request);
absl::Status CheckRequest(const kiq::v1::WindowFetchRequest& request);
absl::Status CheckRequest(const kiq::v1::SubscribeRequest& request);
absl::Status CheckRequest(const kiq::v1::ScanPartitionsRequest& request);
absl::Status CheckRequest(const kiq::v1::CountPartitionsRequest& request);
absl::Status CheckRequest(const kiq::v1::SubscribePartitionsRequest& request);

}  // namespace kiq::router
