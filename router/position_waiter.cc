#include "router/position_waiter.h"

#include <algorithm>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/thread_name.h"

namespace kiq::router {

PositionWaiter::PositionWaiter(const LocalStores& local, int max_waiting)
    : local_(local), max_waiting_(max_waiting), thread_([this] {
        NameThisThread("kiq-pos-waiter");
        Run();
      }) {}

PositionWaiter::~PositionWaiter() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  thread_.join();
  std::vector<Pending> left;
  {
    absl::MutexLock lock(&mu_);
    left.swap(pending_);
  }
  for (Pending& w : left) {
    w.done(absl::UnavailableError("shutting down: the read-your-writes wait was ended"));
  }
}

PositionWaiter::Slot::~Slot() {
  absl::MutexLock lock(&waiter_.mu_);
  --waiter_.admitted_;
}

absl::StatusOr<std::shared_ptr<PositionWaiter::Slot>> PositionWaiter::Admit() {
  {
    absl::MutexLock lock(&mu_);
    if (admitted_ >= max_waiting_) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "too many requests waiting for a min_position (limit ", max_waiting_, "): retry later"));
    }
    ++admitted_;
  }
  return std::make_shared<Slot>(*this);
}

int PositionWaiter::waiting() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int>(pending_.size());
}

std::optional<absl::Status> PositionWaiter::Check(const Pending& w, absl::Time now) const {
  if (w.parent != nullptr && w.parent->IsCancelled()) {
    return absl::CancelledError("the caller cancelled while waiting for min_position");
  }
  // A deadline in the past makes WaitForPosition a check: it never blocks.
  absl::Status s = local_.WaitForPosition(w.store, w.min, absl::InfinitePast());
  if (s.ok() || s.code() != absl::StatusCode::kDeadlineExceeded || now >= w.deadline) return s;
  return std::nullopt;
}

void PositionWaiter::Wait(std::string store, kiq::v1::Position min, absl::Time deadline,
                          const grpc::CallbackServerContext* parent,
                          std::function<void(absl::Status)> done) {
  Pending w{std::move(store), std::move(min), deadline, parent, std::move(done)};
  if (w.min.offsets().empty()) return w.done(absl::OkStatus());
  if (std::optional<absl::Status> now = Check(w, absl::Now())) return w.done(*std::move(now));
  absl::MutexLock lock(&mu_);
  if (stopping_) {
    w.done(absl::UnavailableError("shutting down"));
    return;
  }
  pending_.push_back(std::move(w));
}

void PositionWaiter::Run() {
  for (;;) {
    std::vector<Pending> batch;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](PositionWaiter* self) ABSL_EXCLUSIVE_LOCKS_REQUIRED(self->mu_) {
            return self->stopping_ || !self->pending_.empty();
          },
          this));
      if (stopping_) return;
      batch.swap(pending_);
    }
    // Read before the checks: a move between a check and the wait below ends the wait.
    const uint64_t version = local_.PositionVersion();
    const absl::Time now = absl::Now();
    std::vector<std::pair<std::function<void(absl::Status)>, absl::Status>> finished;
    std::vector<Pending> still;
    absl::Time wake = now + kTick;
    for (Pending& w : batch) {
      if (std::optional<absl::Status> s = Check(w, now)) {
        finished.emplace_back(std::move(w.done), *std::move(s));
      } else {
        wake = std::min(wake, w.deadline);
        still.push_back(std::move(w));
      }
    }
    {
      absl::MutexLock lock(&mu_);
      for (Pending& w : still) pending_.push_back(std::move(w));
    }
    for (auto& [done, status] : finished) done(std::move(status));
    if (!still.empty()) local_.WaitForPositionChange(version, wake);
  }
}

}  // namespace kiq::router
