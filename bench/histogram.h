#pragma once

#include <atomic>
#include <cmath>
#include <cstdint>
#include <vector>

// A lock-free log-linear latency histogram (HDR-style): exact below 1024 µs, then 64
// sub-buckets per power of two (< 1.6 % relative error). Record() is called from gRPC
// callback threads concurrently, so buckets are atomics rather than a mutex-guarded vector.
namespace kiq::bench {

class Histogram {
 public:
  static constexpr int kLinear = 1024;
  static constexpr int kSub = 64;
  static constexpr int kBuckets = kLinear + 40 * kSub;

  Histogram() : buckets_(kBuckets) {}

  void Record(uint64_t micros) { buckets_[Index(micros)].fetch_add(1, std::memory_order_relaxed); }

  uint64_t Count() const {
    uint64_t n = 0;
    for (const auto& b : buckets_) n += b.load(std::memory_order_relaxed);
    return n;
  }

  // The value at quantile q (0..1), as the upper bound of its bucket, in µs; 0 when empty.
  uint64_t Quantile(double q) const {
    const uint64_t total = Count();
    if (total == 0) return 0;
    const uint64_t rank = static_cast<uint64_t>(std::ceil(q * static_cast<double>(total)));
    uint64_t seen = 0;
    for (int i = 0; i < kBuckets; ++i) {
      seen += buckets_[i].load(std::memory_order_relaxed);
      if (seen >= rank && seen > 0) return UpperBound(i);
    }
    return UpperBound(kBuckets - 1);
  }

 private:
  static int Index(uint64_t v) {
    if (v < kLinear) return static_cast<int>(v);
    const int msb = 63 - __builtin_clzll(v);  // >= 10
    const int sub = static_cast<int>((v >> (msb - 6)) & (kSub - 1));
    const int i = kLinear + (msb - 10) * kSub + sub;
    return i < kBuckets ? i : kBuckets - 1;
  }
  static uint64_t UpperBound(int i) {
    if (i < kLinear) return static_cast<uint64_t>(i);
    const int msb = (i - kLinear) / kSub + 10;
    const int sub = (i - kLinear) % kSub;
    return ((static_cast<uint64_t>(kSub + sub + 1)) << (msb - 6)) - 1;
  }

  std::vector<std::atomic<uint64_t>> buckets_;
};

}  // namespace kiq::bench
