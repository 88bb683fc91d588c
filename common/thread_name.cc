#include "common/thread_name.h"

#include <pthread.h>

#include <algorithm>

namespace kiq {

void NameThisThread(absl::string_view name) {
  char buf[16];
  const size_t n = std::min(name.size(), sizeof(buf) - 1);
  name.copy(buf, n);
  buf[n] = '\0';
  // Fails only for a name over 15 bytes, which the copy prevents; a name is a convenience.
  (void)pthread_setname_np(pthread_self(), buf);
}

std::string ThisThreadName() {
  char buf[16] = {};
  if (pthread_getname_np(pthread_self(), buf, sizeof(buf)) != 0) return "";
  return buf;
}

}  // namespace kiq
