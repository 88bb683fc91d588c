#pragma once

#include <cstdint>
#include <functional>
#include <string>

// Strong little types for ids that are easy to mix up where they cross module boundaries
// (a partition is not an offset is not a generation).
namespace kiq {

template <typename Tag, typename Rep>
class StrongId {
 public:
  constexpr StrongId() = default;
  constexpr explicit StrongId(Rep value) : value_(value) {}
  constexpr Rep value() const { return value_; }
  friend constexpr bool operator==(StrongId a, StrongId b) { return a.value_ == b.value_; }
  friend constexpr bool operator!=(StrongId a, StrongId b) { return a.value_ != b.value_; }
  friend constexpr bool operator<(StrongId a, StrongId b) { return a.value_ < b.value_; }
  friend constexpr bool operator<=(StrongId a, StrongId b) { return a.value_ <= b.value_; }
  friend constexpr bool operator>(StrongId a, StrongId b) { return a.value_ > b.value_; }
  friend constexpr bool operator>=(StrongId a, StrongId b) { return a.value_ >= b.value_; }
  template <typename H>
  friend H AbslHashValue(H h, StrongId id) {
    return H::combine(std::move(h), id.value_);
  }

 private:
  Rep value_{};
};

using PartitionId = StrongId<struct PartitionTag, int32_t>;
// The next offset to process in a source partition (Kafka's committed-offset convention).
using Offset = StrongId<struct OffsetTag, int64_t>;
using Generation = StrongId<struct GenerationTag, int32_t>;

}  // namespace kiq
