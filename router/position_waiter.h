#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/server_context.h>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "kiq/v1/query.pb.h"
#include "router/port/local_stores.h"

namespace kiq::router {

// Read-your-writes waits (requests with min_position) without a thread each: one thread
// watches every pending wait, re-checking them whenever a local position moves
// (LocalStores::WaitForPositionChange) and at least every kTick (deadlines, cancelled callers).
// Waiting requests thus never hold the workers that scans and scatter-gather need; how many
// may wait at once is bounded (Admit). Thread-safe; `local` must outlive it. The destructor
// ends the waits still pending with UNAVAILABLE.
class PositionWaiter {
 public:
  static constexpr int kDefaultMaxWaiting = 1024;
  // How late a deadline or a cancellation may be noticed.
  static constexpr absl::Duration kTick = absl::Milliseconds(20);

  explicit PositionWaiter(const LocalStores& local, int max_waiting = kDefaultMaxWaiting);
  ~PositionWaiter() ABSL_LOCKS_EXCLUDED(mu_);
  PositionWaiter(const PositionWaiter&) = delete;
  PositionWaiter& operator=(const PositionWaiter&) = delete;

  // The place of one request that may wait, held until it is answered.
  class Slot {
   public:
    explicit Slot(PositionWaiter& waiter) : waiter_(waiter) {}
    ~Slot();
    Slot(const Slot&) = delete;
    Slot& operator=(const Slot&) = delete;

   private:
    PositionWaiter& waiter_;
  };
  // A slot, or RESOURCE_EXHAUSTED when `max_waiting` requests already hold one.
  absl::StatusOr<std::shared_ptr<Slot>> Admit() ABSL_LOCKS_EXCLUDED(mu_);

  // Calls `done` once: OK when `store` has reached every entry of `min` (at once, on this
  // thread, if it already has or `min` is empty), LocalStores::WaitForPosition's
  // DEADLINE_EXCEEDED at `deadline`, CANCELLED when `parent` (optional) is cancelled. `done`
  // runs on this thread or the waiter's: it must not block (schedule the work it starts).
  void Wait(std::string store, kiq::v1::Position min, absl::Time deadline,
            const grpc::CallbackServerContext* parent, std::function<void(absl::Status)> done)
      ABSL_LOCKS_EXCLUDED(mu_);

  int waiting() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  struct Pending {
    std::string store;
    kiq::v1::Position min;
    absl::Time deadline;
    const grpc::CallbackServerContext* parent;
    std::function<void(absl::Status)> done;
  };

  void Run() ABSL_LOCKS_EXCLUDED(mu_);
  // The outcome of `w` now, or nullopt if it must go on waiting.
  std::optional<absl::Status> Check(const Pending& w, absl::Time now) const;

  const LocalStores& local_;
  const int max_waiting_;
  mutable absl::Mutex mu_;
  std::vector<Pending> pending_ ABSL_GUARDED_BY(mu_);
  int admitted_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace kiq::router
