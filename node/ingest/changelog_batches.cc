#include "node/ingest/changelog_batches.h"

#include <algorithm>

#include <librdkafka/rdkafka.h>

#include "node/ingest/record_headers.h"

namespace kiq::node {

absl::StatusOr<int64_t> ChangelogBatches::Add(const RdKafka::Message& m, StagedBatch& batch) {
  if (!Take(m)) return 0;
  return Stage(batch);
}

bool ChangelogBatches::Take(const RdKafka::Message& m) {
  next_offset_ = m.offset() + 1;
  ChangelogMarks marks;
  // Read through the C API, in place: the C++ API's Headers::get_all() copies every header's
  // name and value into a new vector, allocations for each record of a restore. (c_ptr() is
  // not const; the headers are parsed on first use.)
  rd_kafka_headers_t* headers = nullptr;
  if (rd_kafka_message_headers(const_cast<RdKafka::Message&>(m).c_ptr(), &headers) ==
      RD_KAFKA_RESP_ERR_NO_ERROR) {
    const char* name = nullptr;
    const void* value = nullptr;
    size_t size = 0;
    for (size_t i = 0;
         rd_kafka_header_get_all(headers, i, &name, &value, &size) == RD_KAFKA_RESP_ERR_NO_ERROR;
         ++i) {
      ParseChangelogHeader(name, absl::string_view(static_cast<const char*>(value), size), &marks);
    }
  }
  Pending& record = pending_.emplace_back();
  record.key.assign(static_cast<const char*>(m.key_pointer()), m.key_len());
  if (m.payload() != nullptr) record.value.emplace(static_cast<const char*>(m.payload()), m.len());
  record.record_offset = marks.record_offset;
  if (!marks.batch_end || !marks.source_next) return false;
  end_marks_ = std::move(marks);
  return true;
}

bool ChangelogBatches::complete_exact() const {
  return std::all_of(pending_.begin(), pending_.end(),
                     [](const Pending& r) { return r.record_offset.has_value(); });
}

absl::StatusOr<int64_t> ChangelogBatches::Stage(StagedBatch& batch) {
  // A complete batch: staged with the changelog checkpoint and the source offset it reflects.
  last_batch_exact_ = complete_exact();
  // Untracked, an inexact batch's writes need no source: it is set once, not per write.
  if (!last_batch_exact_) batch.SetSource(source_topic_, Offset(-1));
  for (Pending& r : pending_) {
    if (last_batch_exact_) batch.SetSource(source_topic_, Offset(*r.record_offset));
    if (absl::Status s = batch.Write(store_.handle, partition_, r.key, std::move(r.value));
        !s.ok()) {
      return s;
    }
  }
  const auto applied = static_cast<int64_t>(pending_.size());
  pending_.clear();
  batch.SetOffset(store_.changelog_stream, partition_, Offset(next_offset_));
  batch.SetOffset(store_.source_stream, partition_, Offset(*end_marks_.source_next));
  for (const auto& [up, next] : end_marks_.upstream) {
    batch.SetOffset(store_.UpstreamStream(up), partition_, Offset(next));
  }
  source_next_ = *end_marks_.source_next;
  return applied;
}

}  // namespace kiq::node
