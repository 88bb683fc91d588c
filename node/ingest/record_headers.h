#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"

// The Kafka record headers kiq writes on its own topics, and their one parser.
namespace kiq::node {

// Changelog records: the source offset the batch ends at (the next one to process), and the
// mark on the last record of a batch for a (store, partition) — a restore applies only
// complete batches.
inline constexpr char kSourceOffsetHeader[] = "kiq.source.offset";
inline constexpr char kBatchEndHeader[] = "kiq.batch.end";
// On every changelog record of an exact batch: the offset of the source record whose processing
// made this write. A batch written while someone subscribes holds each write in order (not one
// folded write per key), so that a standby replica keeps the same changes its owner pushed, and
// a subscription can resume from them after the owner dies.
inline constexpr char kRecordOffsetHeader[] = "kiq.record.offset";
// On a repartition record: the upstream partition and offset it was forwarded for
// ("<partition>:<offset>"), so the grouped store drops the duplicates a re-processed upstream
// batch forwards again. On a grouped store's batch-end changelog record: its dedup watermarks,
// one "<partition>:<next offset>" per upstream partition, comma-separated.
inline constexpr char kUpstreamHeader[] = "kiq.upstream";

// (upstream partition, offset) pairs.
using UpstreamMarks = std::vector<std::pair<int32_t, int64_t>>;

inline std::string FormatUpstreamMarks(const UpstreamMarks& marks) {
  return absl::StrJoin(marks, ",", [](std::string* out, const std::pair<int32_t, int64_t>& m) {
    absl::StrAppend(out, m.first, ":", m.second);
  });
}

// Malformed marks are skipped: a header kiq did not write cannot name a partition.
inline UpstreamMarks ParseUpstreamMarks(absl::string_view text) {
  UpstreamMarks marks;
  for (absl::string_view mark : absl::StrSplit(text, ',', absl::SkipEmpty())) {
    std::pair<absl::string_view, absl::string_view> parts = absl::StrSplit(mark, ':');
    int32_t partition = 0;
    int64_t offset = 0;
    if (absl::SimpleAtoi(parts.first, &partition) && absl::SimpleAtoi(parts.second, &offset)) {
      marks.emplace_back(partition, offset);
    }
  }
  return marks;
}

// What a changelog record's headers say (see kSourceOffsetHeader, kBatchEndHeader,
// kUpstreamHeader). Fed one header at a time by ParseChangelogHeader.
struct ChangelogMarks {
  std::optional<int64_t> source_next;    // the source offset the batch ends at
  std::optional<int64_t> record_offset;  // the source record that made this write
  bool batch_end = false;
  UpstreamMarks upstream;
};

// Reads one header of a changelog record into `marks`; other headers and malformed values are
// ignored (a restore applies only batches whose end is marked with a source offset).
inline void ParseChangelogHeader(absl::string_view key, absl::string_view value,
                                 ChangelogMarks* marks) {
  int64_t n = 0;
  if (key == kSourceOffsetHeader && absl::SimpleAtoi(value, &n)) marks->source_next = n;
  if (key == kRecordOffsetHeader && absl::SimpleAtoi(value, &n)) marks->record_offset = n;
  if (key == kBatchEndHeader) marks->batch_end = true;
  if (key == kUpstreamHeader) marks->upstream = ParseUpstreamMarks(value);
}

}  // namespace kiq::node
