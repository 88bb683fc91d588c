#pragma once

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace kiq::testing {

inline const absl::Status& GetStatus(const absl::Status& s) { return s; }
template <typename T>
const absl::Status& GetStatus(const absl::StatusOr<T>& s) {
  return s.status();
}

// Matches an OK StatusOr whose value matches `inner`.
MATCHER_P(IsOkAndHolds, inner, "") {
  if (!arg.ok()) {
    *result_listener << "status is " << arg.status();
    return false;
  }
  return ::testing::ExplainMatchResult(inner, *arg, result_listener);
}

// Matches a Status/StatusOr with `code` whose message contains `substring`.
MATCHER_P2(StatusIs, code, substring, "") {
  const absl::Status& s = ::kiq::testing::GetStatus(arg);
  *result_listener << "status is " << s;
  return s.code() == code && std::string(s.message()).find(substring) != std::string::npos;
}

}  // namespace kiq::testing

#define ASSERT_OK(expr)                                             \
  do {                                                              \
    const auto& _kiq_status = (expr);                               \
    ASSERT_TRUE(::kiq::testing::GetStatus(_kiq_status).ok())        \
        << #expr << ": " << ::kiq::testing::GetStatus(_kiq_status); \
  } while (0)

#define EXPECT_OK(expr)                                             \
  do {                                                              \
    const auto& _kiq_status = (expr);                               \
    EXPECT_TRUE(::kiq::testing::GetStatus(_kiq_status).ok())        \
        << #expr << ": " << ::kiq::testing::GetStatus(_kiq_status); \
  } while (0)
