#pragma once

#include <cstdint>
#include "absl/strings/string_view.h"

// Key → source partition, computed exactly as the producers that wrote the topic did, so the
// router can send a point query to the one partition (and so the one owner) that holds the key.
// A different hash here would silently route queries to partitions that never saw the key.
//
// Pure functions of their arguments; thread-safe.
namespace kiq {

// Which producer's placement rule the topic was written with.
enum class PartitionerKind {
  // Java client DefaultPartitioner / librdkafka `murmur2` and `murmur2_random`.
  kMurmur2,
  // librdkafka `consistent` and `consistent_random` (librdkafka's default).
  kConsistent,
};

// Kafka's org.apache.kafka.common.utils.Utils#murmur2 (seed 0x9747b28c), bit-exact with Java,
// including its signed result.
int32_t Murmur2(absl::string_view key);

// The Java DefaultPartitioner for a non-null key: toPositive(murmur2(key)) % num_partitions,
// where toPositive(x) = x & 0x7fffffff (not abs(), which Java avoids for INT_MIN).
// Aborts if num_partitions <= 0.
int32_t Murmur2Partition(absl::string_view key, int32_t num_partitions);

// CRC-32 (IEEE 802.3, reflected, as zlib's crc32), which is librdkafka's rd_crc32().
uint32_t Crc32(absl::string_view key);

// librdkafka's `consistent` / `consistent_random` partitioner for a non-null key:
// rd_crc32(key) % num_partitions, computed unsigned. Aborts if num_partitions <= 0.
int32_t ConsistentPartition(absl::string_view key, int32_t num_partitions);

// Dispatches to Murmur2Partition or ConsistentPartition. The empty key is hashed like any
// other, which is where the Java client, librdkafka `murmur2[_random]` and `consistent` put it;
// librdkafka's `consistent_random` (its default) instead places an empty key like a null one,
// randomly, so such records cannot be routed by key at all. Null keys are never routable.
// Aborts if num_partitions <= 0.
int32_t PartitionForKey(PartitionerKind kind, absl::string_view key, int32_t num_partitions);

}  // namespace kiq
