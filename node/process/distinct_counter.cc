#include "node/process/distinct_counter.h"

#include <algorithm>
#include <cmath>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"

namespace kiq::node {

uint64_t DistinctCounter::Hash(absl::string_view value) {
  uint64_t h = 14695981039346656037ull;  // FNV-1a 64
  for (unsigned char c : value) {
    h ^= c;
    h *= 1099511628211ull;
  }
  // MurmurHash3's fmix64: every input bit reaches every output bit (HyperLogLog reads the top
  // bits for the register and the rest for the rank).
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdull;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ull;
  h ^= h >> 33;
  return h;
}

void DistinctCounter::AddToRegisters(uint64_t hash) {
  const size_t index = static_cast<size_t>(hash >> (64 - kPrecision));
  const uint64_t rest = hash << kPrecision;
  // The rank of the first 1 bit of the remaining 53 bits (54 if they are all 0).
  const int rank = rest == 0 ? 64 - kPrecision + 1 : __builtin_clzll(rest) + 1;
  char& r = registers_[index];
  r = static_cast<char>(std::max(static_cast<int>(r), rank));
}

void DistinctCounter::Add(uint64_t hash) {
  if (!exact()) {
    AddToRegisters(hash);
    return;
  }
  if (std::find(hashes_.begin(), hashes_.end(), hash) != hashes_.end()) return;
  hashes_.push_back(hash);
  if (hashes_.size() <= kExactLimit) return;
  registers_.assign(kRegisters, '\0');
  for (uint64_t h : hashes_) AddToRegisters(h);
  hashes_.clear();
  hashes_.shrink_to_fit();
}

int64_t DistinctCounter::Count() const {
  if (exact()) return static_cast<int64_t>(hashes_.size());
  const double m = static_cast<double>(kRegisters);
  double sum = 0;
  int zeros = 0;
  for (char r : registers_) {
    sum += std::ldexp(1.0, -static_cast<int>(r));
    if (r == 0) ++zeros;
  }
  const double alpha = 0.7213 / (1 + 1.079 / m);
  double estimate = alpha * m * m / sum;
  // Small range: linear counting over the empty registers (Flajolet et al.); no large-range
  // correction is needed with 64-bit hashes.
  if (estimate <= 2.5 * m && zeros > 0) estimate = m * std::log(m / zeros);
  return static_cast<int64_t>(std::llround(estimate));
}

void DistinctCounter::ToJson(rapidjson::Value* out,
                             rapidjson::Document::AllocatorType& alloc) const {
  out->SetObject();
  if (exact()) {
    rapidjson::Value hashes(rapidjson::kArrayType);
    hashes.Reserve(static_cast<rapidjson::SizeType>(hashes_.size()), alloc);
    for (uint64_t h : hashes_) hashes.PushBack(rapidjson::Value(h), alloc);
    out->AddMember("h", hashes, alloc);
  } else {
    const std::string text = absl::Base64Escape(registers_);
    out->AddMember(
        "r", rapidjson::Value(text.data(), static_cast<rapidjson::SizeType>(text.size()), alloc),
        alloc);
  }
}

absl::StatusOr<DistinctCounter> DistinctCounter::FromJson(const rapidjson::Value& json) {
  DistinctCounter out;
  if (json.IsObject()) {
    if (auto h = json.FindMember("h");
        h != json.MemberEnd() && h->value.IsArray() && h->value.Size() <= kExactLimit) {
      for (const rapidjson::Value& v : h->value.GetArray()) {
        if (!v.IsUint64()) return absl::InvalidArgumentError("count_distinct state: a bad hash");
        out.hashes_.push_back(v.GetUint64());
      }
      return out;
    }
    if (auto r = json.FindMember("r"); r != json.MemberEnd() && r->value.IsString()) {
      std::string registers;
      if (absl::Base64Unescape(absl::string_view(r->value.GetString(), r->value.GetStringLength()),
                               &registers) &&
          registers.size() == kRegisters) {
        out.registers_ = std::move(registers);
        return out;
      }
    }
  }
  return absl::InvalidArgumentError("count_distinct state is neither hashes nor registers");
}

}  // namespace kiq::node
