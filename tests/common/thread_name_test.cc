#include "common/thread_name.h"

#include <thread>

#include "gtest/gtest.h"

namespace kiq {
namespace {

// Names a new thread `name` and returns what that thread then reads as its name.
std::string NameReadBackByAThreadNamed(absl::string_view name) {
  std::string read_back;
  std::thread t([&] {
    NameThisThread(name);
    read_back = ThisThreadName();
  });
  t.join();
  return read_back;
}

TEST(ThreadNameTest, NamesTheCallingThreadOnly) {
  const std::string before = ThisThreadName();
  EXPECT_EQ(NameReadBackByAThreadNamed("kiq-test"), "kiq-test");
  EXPECT_EQ(ThisThreadName(), before);
}

TEST(ThreadNameTest, CutsANameToLinuxsFifteenBytes) {
  EXPECT_EQ(NameReadBackByAThreadNamed("kiq-a-name-longer-than-fifteen"), "kiq-a-name-long");
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
