#include "common/topology/partitioner.h"

#include <cstdint>
#include <random>
#include <string>
#include <vector>
#include "absl/strings/string_view.h"

#include "gtest/gtest.h"
#include "librdkafka/rdkafka.h"

namespace kiq {
namespace {

// Golden vectors of Kafka's UtilsTest.testMurmur2 (clients/src/test/java/org/apache/kafka/
// common/utils/UtilsTest.java): the Java client's own hash, so a match here means a keyed
// record from a Java producer is looked up on the partition it was written to.
TEST(Murmur2Test, MatchesJavaUtilsTestVectors) {
  EXPECT_EQ(Murmur2("21"), -973932308);
  EXPECT_EQ(Murmur2("foobar"), -790332482);
  EXPECT_EQ(Murmur2("a-little-bit-long-string"), -985981536);
  EXPECT_EQ(Murmur2("a-little-bit-longer-string"), -1486304829);
  EXPECT_EQ(Murmur2("lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8"), -58897971);
  EXPECT_EQ(Murmur2("abc"), 479470107);
}

// Bytes above 0x7f are where a port most easily goes wrong (Java's byte is signed and must be
// masked). Vector generated with the JVM Kafka 1.0.0 client (as used by sarama's tests).
TEST(Murmur2Test, MatchesJavaForBinaryKey) {
  const char key[] = {12, 42, 56, 24, 109, 111};
  EXPECT_EQ(Murmur2(absl::string_view(key, sizeof(key))), 274204207);
}

// librdkafka's unittest_murmur2 vectors (src/rdmurmur2.c), themselves taken from Java; they
// cover every tail length 0..3 and the empty key.
TEST(Murmur2Test, MatchesLibrdkafkaUnitTestVectors) {
  const std::string unaligned = "PreAmbleWillBeRemoved,ThePrePartThatIs";
  EXPECT_EQ(static_cast<uint32_t>(Murmur2("kafka")), 0xd067cf64u);
  EXPECT_EQ(static_cast<uint32_t>(Murmur2("giberish123456789")), 0x8f552b0cu);
  EXPECT_EQ(static_cast<uint32_t>(Murmur2("1234")), 0x9fc97b14u);
  EXPECT_EQ(static_cast<uint32_t>(Murmur2("234")), 0xe7c009cau);
  EXPECT_EQ(static_cast<uint32_t>(Murmur2("34")), 0x873930dau);
  EXPECT_EQ(static_cast<uint32_t>(Murmur2("4")), 0x5a4b5ca1u);
  EXPECT_EQ(static_cast<uint32_t>(Murmur2(unaligned)), 0x78424f1cu);
  EXPECT_EQ(static_cast<uint32_t>(Murmur2(unaligned.substr(1))), 0x4a62b377u);
  EXPECT_EQ(static_cast<uint32_t>(Murmur2(unaligned.substr(2))), 0xe0e4e09eu);
  EXPECT_EQ(static_cast<uint32_t>(Murmur2(unaligned.substr(3))), 0x62b8b43fu);
}

TEST(Murmur2Test, EmptyKeyHashesToSeedMix) {
  EXPECT_EQ(Murmur2(""), 275646681);  // 0x106e08d9
  EXPECT_EQ(Murmur2(absl::string_view()), 275646681);
}

TEST(Murmur2Test, EmbeddedNulBytesAreHashed) {
  EXPECT_NE(Murmur2(absl::string_view("a\0b", 3)), Murmur2(absl::string_view("a\0c", 3)));
  EXPECT_NE(Murmur2(absl::string_view("\0", 1)), Murmur2(""));
}

// Java's toPositive is `x & 0x7fffffff`, not abs(): for "21" abs() would give 973932308 % 7 = 6.
TEST(Murmur2PartitionTest, UsesMaskNotAbsForNegativeHashes) {
  EXPECT_EQ(Murmur2Partition("21", 7), 3);
  EXPECT_EQ(Murmur2Partition("21", 12), 0);
  EXPECT_EQ(Murmur2Partition("21", 64), 44);
  EXPECT_EQ(Murmur2Partition("21", 1000), 340);
  EXPECT_EQ(Murmur2Partition("foobar", 12), 6);
  EXPECT_EQ(Murmur2Partition("abc", 7), 4);
  EXPECT_EQ(Murmur2Partition("", 1000), 681);
}

TEST(Murmur2PartitionTest, SinglePartitionAlwaysZero) {
  EXPECT_EQ(Murmur2Partition("21", 1), 0);
  EXPECT_EQ(Murmur2Partition("", 1), 0);
}

TEST(Crc32Test, MatchesStandardCheckValue) {
  // The catalogue check value of CRC-32/ISO-HDLC (zlib's crc32), which rd_crc32 is.
  EXPECT_EQ(Crc32("123456789"), 0xcbf43926u);
  EXPECT_EQ(Crc32(""), 0u);
  EXPECT_EQ(Crc32("21"), 0xfd7746b4u);
  EXPECT_EQ(Crc32("\xff\xfe"), 0x88f83096u);
}

// CRCs >= 2^31 must be reduced unsigned, as librdkafka does; a signed modulo of
// 0xfd7746b4 ("21") by 7 would give 2 (or -5), not 6.
TEST(ConsistentPartitionTest, ReducesCrcUnsigned) {
  EXPECT_EQ(ConsistentPartition("21", 7), 6);
  EXPECT_EQ(ConsistentPartition("21", 64), 52);
  EXPECT_EQ(ConsistentPartition("foobar", 7), 6);
  EXPECT_EQ(ConsistentPartition("orders-42", 12), 4);
  EXPECT_EQ(ConsistentPartition("\xff\xfe", 1000), 742);
}

TEST(ConsistentPartitionTest, EmptyKeyGoesToPartitionZero) {
  EXPECT_EQ(ConsistentPartition("", 1), 0);
  EXPECT_EQ(ConsistentPartition("", 64), 0);
}

TEST(PartitionForKeyTest, DispatchesOnKind) {
  EXPECT_EQ(PartitionForKey(PartitionerKind::kMurmur2, "21", 7), 3);
  EXPECT_EQ(PartitionForKey(PartitionerKind::kConsistent, "21", 7), 6);
  EXPECT_EQ(PartitionForKey(PartitionerKind::kMurmur2, "", 1000), 681);
  EXPECT_EQ(PartitionForKey(PartitionerKind::kConsistent, "", 1000), 0);
}

TEST(PartitionForKeyTest, ResultIsAlwaysInRange) {
  std::mt19937 rng(7);
  for (int i = 0; i < 2000; ++i) {
    std::string key(rng() % 40, '\0');
    for (char& c : key) c = static_cast<char>(rng());
    const int32_t n = static_cast<int32_t>(1 + rng() % 1000);
    for (PartitionerKind kind : {PartitionerKind::kMurmur2, PartitionerKind::kConsistent}) {
      const int32_t p = PartitionForKey(kind, key, n);
      ASSERT_GE(p, 0);
      ASSERT_LT(p, n);
    }
  }
}

TEST(PartitionerDeathTest, NonPositivePartitionCountAborts) {
  EXPECT_DEATH(Murmur2Partition("k", 0), "num_partitions=0");
  EXPECT_DEATH(Murmur2Partition("k", -3), "num_partitions=-3");
  EXPECT_DEATH(ConsistentPartition("k", 0), "num_partitions=0");
  EXPECT_DEATH(ConsistentPartition("k", INT32_MIN), "must be > 0");
  EXPECT_DEATH(PartitionForKey(PartitionerKind::kMurmur2, "k", 0), "num_partitions=0");
  EXPECT_DEATH(PartitionForKey(PartitionerKind::kConsistent, "k", -1), "num_partitions=-1");
}

TEST(PartitionerDeathTest, OutOfRangeKindAborts) {
  EXPECT_DEATH(PartitionForKey(static_cast<PartitionerKind>(42), "k", 3),
               "PartitionerKind 42 is not a known kind");
}

// Cross-check against librdkafka's own exported partitioners, i.e. the code that placed the
// records of a librdkafka producer. In librdkafka (src/rdkafka_msg.c) both
// rd_kafka_msg_partitioner_murmur2 and rd_kafka_msg_partitioner_consistent only hash the key
// and never touch rkt or the opaques, so no topic handle is needed. (The `_random` variants do
// dereference rkt, but only for a null key (murmur2_random) or an empty one
// (consistent_random), which are not tested through them.)
class LibrdkafkaCrossCheckTest : public ::testing::Test {
 protected:
  // Keys of length 0..130 (crossing every tail length and several 4-byte blocks) with bytes
  // from the whole 0..255 range, so NUL and non-ASCII/invalid UTF-8 bytes are included; a
  // fixed seed keeps failures reproducible.
  static std::vector<std::string> RandomKeys(size_t count) {
    std::mt19937 rng(20240611);
    std::vector<std::string> keys;
    keys.reserve(count);
    for (size_t i = 0; i < count; ++i) {
      std::string key(i < 131 ? i : rng() % 131, '\0');
      // Every third key is printable ASCII, like most real keys.
      for (char& c : key) {
        c = static_cast<char>(i % 3 == 0 ? 0x20 + rng() % 95 : rng() % 256);
      }
      keys.push_back(std::move(key));
    }
    return keys;
  }

  // Partition counts 1..64, plus large ones; INT32_MAX compares (almost) the whole 31-bit
  // hash rather than only its low bits.
  static std::vector<int32_t> PartitionCounts() {
    std::vector<int32_t> counts;
    for (int32_t n = 1; n <= 64; ++n) counts.push_back(n);
    for (int32_t n : {100, 1000, 4096, 65537, 1 << 30, INT32_MAX}) counts.push_back(n);
    return counts;
  }
};

TEST_F(LibrdkafkaCrossCheckTest, Murmur2PartitionMatchesLibrdkafka) {
  const std::vector<std::string> keys = RandomKeys(4000);
  const std::vector<int32_t> counts = PartitionCounts();
  for (const std::string& key : keys) {
    for (int32_t n : counts) {
      ASSERT_EQ(Murmur2Partition(key, n), rd_kafka_msg_partitioner_murmur2(
                                              nullptr, key.data(), key.size(), n, nullptr, nullptr))
          << "key length " << key.size() << " partitions " << n;
      ASSERT_EQ(Murmur2Partition(key, n), rd_kafka_msg_partitioner_murmur2_random(
                                              nullptr, key.data(), key.size(), n, nullptr, nullptr))
          << "key length " << key.size() << " partitions " << n;
    }
  }
}

TEST_F(LibrdkafkaCrossCheckTest, ConsistentPartitionMatchesLibrdkafka) {
  const std::vector<std::string> keys = RandomKeys(4000);
  const std::vector<int32_t> counts = PartitionCounts();
  for (const std::string& key : keys) {
    for (int32_t n : counts) {
      ASSERT_EQ(
          ConsistentPartition(key, n),
          rd_kafka_msg_partitioner_consistent(nullptr, key.data(), key.size(), n, nullptr, nullptr))
          << "key length " << key.size() << " partitions " << n;
      if (!key.empty()) {
        ASSERT_EQ(ConsistentPartition(key, n),
                  rd_kafka_msg_partitioner_consistent_random(nullptr, key.data(), key.size(), n,
                                                             nullptr, nullptr))
            << "key length " << key.size() << " partitions " << n;
      }
    }
  }
}

// librdkafka's rd_murmur2 takes a different code path for word-aligned and unaligned keys;
// ours has one path, so it must agree with both.
TEST_F(LibrdkafkaCrossCheckTest, Murmur2MatchesLibrdkafkaAtEveryAlignment) {
  alignas(8) char buffer[64 + 8];
  std::mt19937 rng(99);
  for (int round = 0; round < 200; ++round) {
    for (char& c : buffer) c = static_cast<char>(rng());
    for (size_t offset = 0; offset < 8; ++offset) {
      const size_t length = rng() % 64;
      const absl::string_view key(buffer + offset, length);
      EXPECT_EQ(Murmur2Partition(key, INT32_MAX),
                rd_kafka_msg_partitioner_murmur2(nullptr, key.data(), key.size(), INT32_MAX,
                                                 nullptr, nullptr))
          << "offset " << offset << " length " << length;
    }
  }
}

TEST_F(LibrdkafkaCrossCheckTest, EmptyKeyMatchesLibrdkafka) {
  for (int32_t n : PartitionCounts()) {
    EXPECT_EQ(Murmur2Partition("", n),
              rd_kafka_msg_partitioner_murmur2(nullptr, "", 0, n, nullptr, nullptr));
    EXPECT_EQ(ConsistentPartition("", n),
              rd_kafka_msg_partitioner_consistent(nullptr, "", 0, n, nullptr, nullptr));
  }
}

}  // namespace
}  // namespace kiq
