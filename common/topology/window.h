#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "kiq/v1/topology.pb.h"

namespace kiq {

// A WindowSpec in milliseconds, validated.
struct WindowParams {
  int64_t size_ms = 0;
  int64_t advance_ms = 0;  // == size_ms for tumbling windows
  int64_t grace_ms = 0;
  int64_t retention_ms = 0;
};

// Retention when unset: long enough for windows to be queried for a day after they close.
inline constexpr int64_t kDefaultWindowRetentionMs = 24 * 3600 * 1000;
// Grace when unset: a day, as ksqlDB's default. Records reach a windowed store out of order
// (a group_by interleaves every upstream partition in its repartition topic, producers retry,
// clocks differ): with no grace, a window closes at the first record past its end and most of
// such records are dropped as late. The price: a window's value may still change for a day
// of stream time after it ends, and it is kept at least size + 1 day. Set `grace: 0s` for
// windows that close at once. With an explicit retention and no grace, the grace is what the
// retention leaves after the window (retention - size), up to a day.
inline constexpr int64_t kDefaultWindowGraceMs = 24 * 3600 * 1000;

// The most windows one record may fall in (ceil(size / advance)): each is a read and a write
// of the batch, so a hopping window with a tiny advance (1 ms on a 1-day window: 86,400,000
// windows per record) would stall ingestion and bloat the store on the first record.
inline constexpr int64_t kMaxWindowsPerRecord = 1000;

// Parses and checks a WindowSpec. `problems` receives (field, reason) pairs, field relative
// to the spec ("size", "advance", ...); the result is meaningful only when there are none.
WindowParams ParseWindowSpec(const kiq::v1::WindowSpec& spec,
                             std::vector<std::pair<std::string, std::string>>* problems);

// Starts of the windows that contain `ts_ms` (start <= ts < start + size), oldest first:
// one for tumbling windows, ceil(size / advance) or so for hopping ones. Empty for a negative
// timestamp or one whose window end would overflow.
std::vector<int64_t> WindowStartsFor(const WindowParams& w, int64_t ts_ms);

// Kafka Streams' rule (KStreamWindowAggregate): a window still accepts records while its end
// plus the grace period is after the stream time.
inline bool WindowAccepts(const WindowParams& w, int64_t start_ms, int64_t stream_time_ms) {
  return stream_time_ms - start_ms < w.size_ms + w.grace_ms;
}

// A window is expired (deleted, never answered) once stream time reaches start + retention.
inline bool WindowExpired(const WindowParams& w, int64_t start_ms, int64_t stream_time_ms) {
  // Both are >= 0 (negative timestamps get no window): the difference cannot overflow.
  return stream_time_ms - start_ms >= w.retention_ms;
}

}  // namespace kiq
