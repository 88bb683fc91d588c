#include "router/scan_read_ahead.h"

#include <gtest/gtest.h>

namespace kiq::router {
namespace {

kiq::v1::ScanResponse PageOf(int entries, const std::string& token) {
  kiq::v1::ScanResponse page;
  for (int i = 0; i < entries; ++i) page.add_entries()->set_key(absl::StrCat("k", i));
  page.set_next_page_token(token);
  return page;
}

class ScanReadAheadTest : public ::testing::Test {
 protected:
  absl::Time now_ = absl::FromUnixSeconds(1000);
  ScanReadAhead ahead_{absl::Seconds(2), 100, [this] { return now_; }};
};

TEST_F(ScanReadAheadTest, APageIsServedOnceUnderItsKey) {
  std::vector<std::pair<std::string, kiq::v1::ScanResponse>> pages;
  pages.emplace_back("a", PageOf(3, "ta"));
  pages.emplace_back("b", PageOf(4, "tb"));
  ahead_.Put(std::move(pages));
  EXPECT_EQ(ahead_.entries(), 7u);
  EXPECT_FALSE(ahead_.Take("c").has_value());
  std::optional<kiq::v1::ScanResponse> b = ahead_.Take("b");
  ASSERT_TRUE(b.has_value());
  EXPECT_EQ(b->entries_size(), 4);
  EXPECT_EQ(b->next_page_token(), "tb");
  EXPECT_FALSE(ahead_.Take("b").has_value()) << "served twice";
  EXPECT_EQ(ahead_.entries(), 3u);
}

TEST_F(ScanReadAheadTest, APageOlderThanTheTtlIsNotServed) {
  std::vector<std::pair<std::string, kiq::v1::ScanResponse>> pages;
  pages.emplace_back("a", PageOf(3, "ta"));
  pages.emplace_back("b", PageOf(3, "tb"));
  ahead_.Put(std::move(pages));
  now_ += absl::Seconds(2);
  EXPECT_TRUE(ahead_.Take("a").has_value()) << "exactly the ttl old";
  now_ += absl::Milliseconds(1);
  EXPECT_FALSE(ahead_.Take("b").has_value());
  EXPECT_EQ(ahead_.entries(), 0u);
}

TEST_F(ScanReadAheadTest, StalePagesAndTheOldestBeyondTheBoundAreDropped) {
  std::vector<std::pair<std::string, kiq::v1::ScanResponse>> first;
  first.emplace_back("old", PageOf(10, "t"));
  ahead_.Put(std::move(first));
  now_ += absl::Seconds(3);
  std::vector<std::pair<std::string, kiq::v1::ScanResponse>> second;
  second.emplace_back("x", PageOf(60, "t"));
  ahead_.Put(std::move(second));
  EXPECT_EQ(ahead_.entries(), 60u) << "the stale page is dropped on the next put";
  std::vector<std::pair<std::string, kiq::v1::ScanResponse>> third;
  third.emplace_back("y", PageOf(60, "t"));
  ahead_.Put(std::move(third));
  // 120 entries > 100: the oldest page goes.
  EXPECT_EQ(ahead_.entries(), 60u);
  EXPECT_FALSE(ahead_.Take("x").has_value());
  EXPECT_TRUE(ahead_.Take("y").has_value());
}

TEST_F(ScanReadAheadTest, APutUnderAKeptKeyReplacesItsPage) {
  std::vector<std::pair<std::string, kiq::v1::ScanResponse>> first;
  first.emplace_back("a", PageOf(10, "old"));
  ahead_.Put(std::move(first));
  std::vector<std::pair<std::string, kiq::v1::ScanResponse>> second;
  second.emplace_back("a", PageOf(2, "new"));
  ahead_.Put(std::move(second));
  EXPECT_EQ(ahead_.entries(), 2u);
  std::optional<kiq::v1::ScanResponse> a = ahead_.Take("a");
  ASSERT_TRUE(a.has_value());
  EXPECT_EQ(a->next_page_token(), "new");
}

TEST_F(ScanReadAheadTest, KeysTellMethodsCallersAndRequestsApart) {
  kiq::v1::AllRequest all;
  all.set_store("s");
  all.set_page_token("t");
  kiq::v1::AllRequest other = all;
  other.set_page_size(7);
  const std::string peer = "ipv4:127.0.0.1:5000";
  EXPECT_NE(ScanReadAhead::KeyOf("All", peer, all), ScanReadAhead::KeyOf("All", peer, other));
  EXPECT_NE(ScanReadAhead::KeyOf("All", peer, all), ScanReadAhead::KeyOf("Range", peer, all));
  EXPECT_NE(ScanReadAhead::KeyOf("All", peer, all),
            ScanReadAhead::KeyOf("All", "ipv4:127.0.0.1:5001", all));
  EXPECT_EQ(ScanReadAhead::KeyOf("All", peer, all),
            ScanReadAhead::KeyOf("All", peer, kiq::v1::AllRequest(all)));
}

}  // namespace
}  // namespace kiq::router
