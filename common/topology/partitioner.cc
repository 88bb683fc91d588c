#include "common/topology/partitioner.h"

#include <array>
#include <cstdio>
#include <cstdlib>

#include <zlib.h>

namespace kiq {
namespace {

// A partition count comes from topic metadata or configuration that was validated where it
// entered the process; a non-positive one here means that validation was skipped, and any
// partition we returned (or the division by zero) would route keys to the wrong owner.
void CheckPartitionCount(int32_t num_partitions, const char* caller) {
  if (num_partitions <= 0) {
    std::fprintf(stderr,
                 "kiq::%s: num_partitions=%d; must be > 0 (validated where the "
                 "topic's partition count enters the process)\n",
                 caller, static_cast<int>(num_partitions));
    std::abort();
  }
}

}  // namespace

int32_t Murmur2(absl::string_view key) {
  // Java does this arithmetic on signed ints with wrap-around and logical shifts (>>>); the
  // same bits come out of unsigned arithmetic, which is well-defined in C++.
  constexpr uint32_t kSeed = 0x9747b28c;
  constexpr uint32_t kM = 0x5bd1e995;
  constexpr int kR = 24;

  const auto* data = reinterpret_cast<const unsigned char*>(key.data());
  const size_t length = key.size();
  // Java hashes byte[].length, an int; keys are far below 2^31 bytes.
  uint32_t h = kSeed ^ static_cast<uint32_t>(length);

  const size_t length4 = length / 4;
  for (size_t i = 0; i < length4; ++i) {
    const unsigned char* p = data + i * 4;
    // Little-endian by construction, whatever the host's byte order.
    uint32_t k = static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) |
                 (static_cast<uint32_t>(p[2]) << 16) | (static_cast<uint32_t>(p[3]) << 24);
    k *= kM;
    k ^= k >> kR;
    k *= kM;
    h *= kM;
    h ^= k;
  }

  // Java masks each tail byte with 0xff, so bytes >= 0x80 are not sign-extended.
  const unsigned char* tail = data + length4 * 4;
  switch (length % 4) {
    case 3:
      h ^= static_cast<uint32_t>(tail[2]) << 16;
      [[fallthrough]];
    case 2:
      h ^= static_cast<uint32_t>(tail[1]) << 8;
      [[fallthrough]];
    case 1:
      h ^= static_cast<uint32_t>(tail[0]);
      h *= kM;
  }

  h ^= h >> 13;
  h *= kM;
  h ^= h >> 15;
  return static_cast<int32_t>(h);
}

int32_t Murmur2Partition(absl::string_view key, int32_t num_partitions) {
  CheckPartitionCount(num_partitions, "Murmur2Partition");
  return (Murmur2(key) & 0x7fffffff) % num_partitions;
}

uint32_t Crc32(absl::string_view key) {
  return static_cast<uint32_t>(
      crc32(0, reinterpret_cast<const Bytef*>(key.data()), static_cast<uInt>(key.size())));
}

int32_t ConsistentPartition(absl::string_view key, int32_t num_partitions) {
  CheckPartitionCount(num_partitions, "ConsistentPartition");
  // librdkafka computes `rd_crc32(...) % partition_cnt` with a uint32_t left operand, so the
  // int32_t count is converted and the modulo is unsigned; a signed modulo would differ for
  // CRCs >= 2^31.
  return static_cast<int32_t>(Crc32(key) % static_cast<uint32_t>(num_partitions));
}

int32_t PartitionForKey(PartitionerKind kind, absl::string_view key, int32_t num_partitions) {
  switch (kind) {
    case PartitionerKind::kMurmur2:
      return Murmur2Partition(key, num_partitions);
    case PartitionerKind::kConsistent:
      return ConsistentPartition(key, num_partitions);
  }
  // Only reachable with a value cast into the enum from outside its range.
  std::fprintf(stderr, "kiq::PartitionForKey: PartitionerKind %d is not a known kind\n",
               static_cast<int>(kind));
  std::abort();
}

}  // namespace kiq
