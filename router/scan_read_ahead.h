#pragma once

#include <cstddef>
#include <deque>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "kiq/v1/query.pb.h"

namespace kiq::router {

// The pages a paged scan (All, Range) read ahead of its client: a page request that carries a
// page token shows a client paging through, so the router reads several pages in one scatter
// (QueryRouter::RangePages) and keeps the ones after the answered page here, each under the
// request that will ask for it (the same request with the preceding page's token, from the same
// peer). The next request is then answered from memory, without a scatter, if it comes within
// `ttl`: a page reflects the state at its read (its `position` says which), at most `ttl` older
// than the request. Each page is served once. Bounded by `max_entries` (oldest pages dropped
// first). Thread-safe; `clock` is injected for tests.
class ScanReadAhead {
 public:
  static constexpr absl::Duration kDefaultTtl = absl::Seconds(2);
  static constexpr size_t kDefaultMaxEntries = 100000;

  explicit ScanReadAhead(
      absl::Duration ttl = kDefaultTtl, size_t max_entries = kDefaultMaxEntries,
      std::function<absl::Time()> clock = [] { return absl::Now(); })
      : ttl_(ttl), max_entries_(max_entries), clock_(std::move(clock)) {}

  // The key of the request for a page: the method, the caller (its peer address: pages read
  // ahead for one connection are not served to another, whose pages before may have been read
  // later) and the request as parsed (serialized again, so the same fields give the same key).
  template <typename Request>
  static std::string KeyOf(absl::string_view method, absl::string_view peer,
                           const Request& request) {
    return absl::StrCat(method, "/", peer, "/", request.SerializeAsString());
  }

  // Keeps `pages`, each under its key, replacing a page kept under the same key.
  void Put(std::vector<std::pair<std::string, kiq::v1::ScanResponse>> pages)
      ABSL_LOCKS_EXCLUDED(mu_);
  // The page kept under `key` if it is not older than the ttl; it is no longer kept after.
  std::optional<kiq::v1::ScanResponse> Take(const std::string& key) ABSL_LOCKS_EXCLUDED(mu_);

  // Entries kept (for tests).
  size_t entries() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  struct Kept {
    kiq::v1::ScanResponse page;
    absl::Time read_at;
    uint64_t serial = 0;  // tells this page from a later one under the same key
  };
  // Drops pages, oldest first, while more than max_entries_ are kept or the oldest is stale.
  void EvictLocked(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const absl::Duration ttl_;
  const size_t max_entries_;
  const std::function<absl::Time()> clock_;

  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, Kept> kept_ ABSL_GUARDED_BY(mu_);
  // Keys in the order they were put (with their serial), for eviction; a key taken or
  // replaced since is skipped.
  std::deque<std::pair<std::string, uint64_t>> order_ ABSL_GUARDED_BY(mu_);
  size_t entries_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t next_serial_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace kiq::router
