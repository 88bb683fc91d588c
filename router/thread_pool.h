#pragma once

#include <functional>
#include <string>
#include <thread>
#include <vector>

#include <deque>
#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace kiq::router {

// A fixed pool of worker threads for work that must not run on gRPC's callback threads
// (scans, read-your-writes waits). Thread-safe. The destructor drains queued work and joins.
class ThreadPool {
 public:
  // `name` names its threads (NameThisThread).
  explicit ThreadPool(int num_threads, std::string name = "kiq-pool");
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  void Schedule(std::function<void()> fn) ABSL_LOCKS_EXCLUDED(mu_);

 private:
  void WorkLoop() ABSL_LOCKS_EXCLUDED(mu_);

  absl::Mutex mu_;
  std::deque<std::function<void()>> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

}  // namespace kiq::router
