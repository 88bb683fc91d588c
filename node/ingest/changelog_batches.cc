#include "node/ingest/changelog_batches.h"

#include "node/ingest/record_headers.h"

namespace kiq::node {

absl::StatusOr<int64_t> ChangelogBatches::Add(const RdKafka::Message& m, StagedBatch& batch) {
  next_offset_ = m.offset() + 1;
  std::optional<std::string> value;
  if (m.payload() != nullptr) value.emplace(static_cast<const char*>(m.payload()), m.len());
  pending_.emplace_back(std::string(static_cast<const char*>(m.key_pointer()), m.key_len()),
                        std::move(value));
  ChangelogMarks marks;
  // headers() is not const in librdkafka's C++ API; it only parses them on first use.
  if (RdKafka::Headers* headers = const_cast<RdKafka::Message&>(m).headers(); headers != nullptr) {
    for (const RdKafka::Headers::Header& h : headers->get_all()) {
      ParseChangelogHeader(h.key(),
                           absl::string_view(static_cast<const char*>(h.value()), h.value_size()),
                           &marks);
    }
  }
  if (!marks.batch_end || !marks.source_next) return 0;
  // A complete batch: staged with the changelog checkpoint and the source offset it reflects.
  for (auto& [key, v] : pending_) {
    if (absl::Status s = batch.Write(store_.handle, partition_, key, std::move(v)); !s.ok()) {
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
