#pragma once

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "kiq/v1/query.pb.h"
#include "router/local_stores.h"

namespace kiq::router {

inline constexpr int32_t kDefaultPageSize = 100;
inline constexpr int32_t kMaxPageSize = 5000;

// Answers QueryService requests: key → partition (the store's partitioner) → the partition's
// reader; range/all/count → every partition, k-way merged by key and paginated.
//
// Synchronous and thread-safe (holds no mutable state); the gRPC service runs it inline for
// point reads and on a worker pool for scans and waits. Errors are absl::Status values naming
// the store, key (clipped) and partition.
class QueryRouter {
 public:
  explicit QueryRouter(const LocalStores& local) : local_(local) {}

  absl::StatusOr<kiq::v1::GetResponse> Get(const kiq::v1::GetRequest& request,
                                           absl::Time deadline) const;
  absl::StatusOr<kiq::v1::ScanResponse> Range(const kiq::v1::RangeRequest& request,
                                              absl::Time deadline) const;
  absl::StatusOr<kiq::v1::ScanResponse> All(const kiq::v1::AllRequest& request,
                                            absl::Time deadline) const;
  absl::StatusOr<kiq::v1::CountResponse> Count(const kiq::v1::CountRequest& request,
                                               absl::Time deadline) const;

 private:
  absl::StatusOr<kiq::v1::ScanResponse> Scan(const std::string& store, const KeyRange& range,
                                             int32_t page_size, const std::string& page_token,
                                             const kiq::v1::Position& min_position,
                                             bool allow_partial, absl::Time deadline) const;
  absl::StatusOr<StoreInfo> DescribeForRequest(absl::string_view store) const;

  const LocalStores& local_;
};

}  // namespace kiq::router
