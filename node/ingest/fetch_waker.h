#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include <librdkafka/rdkafkacpp.h>

namespace kiq::node {

// Restarts librdkafka 2.0's fetching soon after the application has drained part of a full
// pre-fetch queue, instead of at its broker thread's next routine wake-up (up to 1 s later).
//
// Why: a broker thread decides whether to fetch a partition only when it wakes up (an op on its
// queue, I/O on its connection, or rd_kafka_max_block_ms = 1 s; rdkafka_broker.c
// rd_kafka_broker_consumer_serve()). Once the consumer queue holds queued.max.messages.kbytes it
// stops fetching (rdkafka_fetcher.c rd_kafka_toppar_fetch_decide(), "queued.max.messages.kbytes
// exceeded"), no fetch response is outstanding to wake it, and popping messages posts nothing to
// it: a backlog is read about one queue per second (2.1 added fetch.queue.backoff.ms for this).
// A request sent from another thread is posted to the leader's broker thread as an op
// (rd_kafka_broker_buf_enq_replyq(): RD_KAFKA_OP_XMIT_BUF), which wakes it, and its serve loop
// then decides again. The request used is a ListOffsets for the latest offset of one partition,
// sent with offsetsForTimes() and a 0 ms timeout: read-only, it neither purges the prefetched
// messages (unlike seek or pause/resume) nor waits for its answer (dropped, as librdkafka does
// for a timed-out call).
//
// It wakes the leader of the partition of the record that crossed the threshold; with several
// leaders, each is woken as often as its partitions' records come up.
//
// Not thread-safe: used by the ingestion thread only.
class FetchWaker {
 public:
  // Wakes after every `wake_bytes` of consumed keys and values; 0 disables it.
  explicit FetchWaker(int64_t wake_bytes) : wake_bytes_(wake_bytes) {}

  // Counts a consumed record; returns true when the fetcher should be woken now.
  bool Consumed(int64_t bytes) {
    if (wake_bytes_ <= 0) return false;
    consumed_ += bytes;
    if (consumed_ < wake_bytes_) return false;
    consumed_ = 0;
    ++wakes_;
    return true;
  }

  // Wakes the broker thread that fetches `topic` [`partition`] of `consumer`.
  static void Wake(RdKafka::KafkaConsumer& consumer, const std::string& topic, int32_t partition);

  int64_t wakes() const { return wakes_; }

 private:
  const int64_t wake_bytes_;
  int64_t consumed_ = 0;
  int64_t wakes_ = 0;
};

}  // namespace kiq::node
