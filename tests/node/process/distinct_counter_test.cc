// DistinctCounter against the true number of distinct values: exact up to the threshold,
// within three standard errors of the HyperLogLog after it, and through its JSON state.
#include "node/process/distinct_counter.h"

#include <cmath>
#include <cstdint>
#include <set>
#include <string>

#include <rapidjson/document.h>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace kiq::node {
namespace {

// Through ToJson and FromJson, as each record's fold does.
DistinctCounter RoundTrip(const DistinctCounter& counter) {
  rapidjson::Document doc;
  rapidjson::Value json;
  counter.ToJson(&json, doc.GetAllocator());
  absl::StatusOr<DistinctCounter> back = DistinctCounter::FromJson(json);
  EXPECT_OK(back);
  return back.ok() ? *back : DistinctCounter();
}

TEST(DistinctCounterTest, ExactUpToTheThresholdThenWithinThreeStandardErrors) {
  const double standard_error = 1.04 / std::sqrt(static_cast<double>(DistinctCounter::kRegisters));
  DistinctCounter counter;
  std::set<std::string> truth;
  for (int i = 0; i < 50'000; ++i) {
    // Repeats: every value comes back, and a third of them three times.
    const std::string value = absl::StrCat("\"player-", i % 3 == 0 ? i / 3 : i, "\"");
    truth.insert(value);
    counter.Add(DistinctCounter::Hash(value));
    if (truth.size() <= DistinctCounter::kExactLimit) {
      ASSERT_TRUE(counter.exact());
      ASSERT_EQ(counter.Count(), static_cast<int64_t>(truth.size())) << "after " << i;
    }
    if (i % 997 == 0) counter = RoundTrip(counter);
    if (truth.size() > DistinctCounter::kExactLimit) {
      ASSERT_FALSE(counter.exact());
      const double n = static_cast<double>(truth.size());
      ASSERT_LE(std::abs(static_cast<double>(counter.Count()) - n), 3 * standard_error * n)
          << "after " << i << ": " << counter.Count() << " for " << n;
    }
  }
  EXPECT_GT(truth.size(), 30'000u);
  // Values seen again change nothing.
  const int64_t before = counter.Count();
  for (const std::string& value : truth) counter.Add(DistinctCounter::Hash(value));
  EXPECT_EQ(counter.Count(), before);
}

TEST(DistinctCounterTest, HashIsStableAcrossProcesses) {
  // Persisted state: the hash of a value must never change (pinned here).
  EXPECT_EQ(DistinctCounter::Hash(""), 0xefd01f60ba992926ull)
      << std::hex << DistinctCounter::Hash("");
  EXPECT_NE(DistinctCounter::Hash("1"), DistinctCounter::Hash("\"1\""));
}

TEST(DistinctCounterTest, BadStateIsRefused) {
  rapidjson::Document doc;
  for (const char* text : {"[]", R"({"h":[-1]})", R"({"h":"x"})", R"({"r":"AAAA"})", R"({})"}) {
    doc.Parse(text);
    EXPECT_FALSE(DistinctCounter::FromJson(doc).ok()) << text;
  }
}

}  // namespace
}  // namespace kiq::node
