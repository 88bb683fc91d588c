#include "node/ingest/changelog_batches.h"

#include <algorithm>

#include "node/ingest/record_headers.h"

namespace kiq::node {

absl::StatusOr<int64_t> ChangelogBatches::Add(const RdKafka::Message& m, StagedBatch& batch) {
  next_offset_ = m.offset() + 1;
  ChangelogMarks marks;
  // headers() is not const in librdkafka's C++ API; it only parses them on first use.
  if (RdKafka::Headers* headers = const_cast<RdKafka::Message&>(m).headers(); headers != nullptr) {
    for (const RdKafka::Headers::Header& h : headers->get_all()) {
      ParseChangelogHeader(
          h.key(), absl::string_view(static_cast<const char*>(h.value()), h.value_size()), &marks);
    }
  }
  Pending& record = pending_.emplace_back();
  record.key.assign(static_cast<const char*>(m.key_pointer()), m.key_len());
  if (m.payload() != nullptr) record.value.emplace(static_cast<const char*>(m.payload()), m.len());
  record.record_offset = marks.record_offset;
  if (!marks.batch_end || !marks.source_next) return 0;
  // A complete batch: staged with the changelog checkpoint and the source offset it reflects.
  last_batch_exact_ = std::all_of(pending_.begin(), pending_.end(),
                                  [](const Pending& r) { return r.record_offset.has_value(); });
  for (Pending& r : pending_) {
    batch.SetSource(source_topic_, Offset(last_batch_exact_ ? *r.record_offset : -1));
    if (absl::Status s = batch.Write(store_.handle, partition_, r.key, std::move(r.value));
        !s.ok()) {
      return s;
    }
  }
  const auto applied = static_cast<int64_t>(pending_.size());
  pending_.clear();
  batch.SetOffset(store_.changelog_stream, partition_, Offset(next_offset_));
  batch.SetOffset(store_.source_stream, partition_, Offset(*marks.source_next));
  for (const auto& [up, next] : marks.upstream) {
    batch.SetOffset(store_.UpstreamStream(up), partition_, Offset(next));
  }
  source_next_ = *marks.source_next;
  return applied;
}

}  // namespace kiq::node
