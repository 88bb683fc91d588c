#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <rapidjson/document.h>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace kiq::node {

// COUNT_DISTINCT's state for one key (one window): the 64-bit hashes of the distinct values
// seen, exact up to kExactLimit of them, then a HyperLogLog of 2^kPrecision registers
// (standard error 1.04 / sqrt(2048) ~ 2.3%). "Exact" is up to 64-bit hash collisions (for
// 1,000 values a chance of about 3e-14). Kept as JSON in the hidden part of an aggregate
// row. A value type: not thread-safe.
class DistinctCounter {
 public:
  static constexpr size_t kExactLimit = 1000;
  static constexpr int kPrecision = 11;
  static constexpr size_t kRegisters = size_t{1} << kPrecision;

  // A stable hash of a value's text (FNV-1a then a 64-bit finalizer): the state outlives the
  // process, so it must not depend on a per-process seed.
  static uint64_t Hash(absl::string_view value);

  void Add(uint64_t hash);
  // The exact count while exact(), else the HyperLogLog estimate (rounded).
  int64_t Count() const;
  bool exact() const { return registers_.empty(); }

  // {"h": [hash, ...]} while exact, {"r": "<base64 of the registers>"} after.
  void ToJson(rapidjson::Value* out, rapidjson::Document::AllocatorType& alloc) const;
  // The state ToJson wrote; INVALID_ARGUMENT if it is not one.
  static absl::StatusOr<DistinctCounter> FromJson(const rapidjson::Value& json);

 private:
  void AddToRegisters(uint64_t hash);
  std::vector<uint64_t> hashes_;  // exact: the distinct hashes, in order of arrival
  std::string registers_;         // approximate: kRegisters bytes, each a rank 0..64
};

}  // namespace kiq::node
