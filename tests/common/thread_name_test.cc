#include "common/thread_name.h"

#include <thread>

#include "gtest/gtest.h"

namespace kiq {
namespace {

TEST(ThreadNameTest, NamesTheCallingThreadOnly) {
  const std::string before = ThisThreadName();
  std::string inside;
  std::thread t([&] {
    NameThisThread("kiq-test");
    inside = ThisThreadName();
  });
  t.join();
  EXPECT_EQ(inside, "kiq-test");
  EXPECT_EQ(ThisThreadName(), before);
}

TEST(ThreadNameTest, CutsANameToLinuxsFifteenBytes) {
  std::string inside;
  std::thread t([&] {
    NameThisThread("kiq-a-name-longer-than-fifteen");
    inside = ThisThreadName();
  });
  t.join();
  EXPECT_EQ(inside, "kiq-a-name-long");
}

TEST(ThreadNameTest, AThreadStartedByANamedOneInheritsItsName) {
  std::string child;
  std::thread t([&] {
    NameThisThread("kiq-parent");
    std::thread c([&] { child = ThisThreadName(); });
    c.join();
  });
  t.join();
  EXPECT_EQ(child, "kiq-parent");
}

}  // namespace
}  // namespace kiq
