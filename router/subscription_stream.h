#pragma once

#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/synchronization/mutex.h"
#include "common/grpc_status.h"
#include "router/port/subscription.h"

namespace kiq::router {

// How a SubscriptionStream turns a subscription into messages of type `Response`.
template <typename Response>
struct SubscriptionRenderer {
  std::function<Response(KeyValue)> snapshot;
  std::function<Response()> snapshot_end;
  std::function<Response(ChangeEvent)> change;
  // Optional: a message saying where the stream stands, sent whenever the queue is drained
  // and the progress moved since the last one.
  std::function<Response(const Progress&)> progress;
  // Optional: runs once with the final status (metrics).
  std::function<void(const grpc::Status&)> done;
};

// One server stream of a subscription: the snapshot pages (if asked), SNAPSHOT_END, then the
// changes, one write in flight at a time. Driven by write completions and by the
// subscription's notify. A notify may come from the ingestion thread: then it only takes
// already-queued changes (or snapshot entries another node sent), never reads RocksDB.
// A client that stops reading stalls its own writes only; its queue overflows and the stream
// ends with RESOURCE_EXHAUSTED once the pending write completes. Deletes itself when done.
template <typename Response>
class SubscriptionStream final : public grpc::ServerWriteReactor<Response> {
 public:
  SubscriptionStream(std::unique_ptr<Subscription> subscription, bool snapshot,
                     SubscriptionRenderer<Response> render)
      : subscription_(std::move(subscription)),
        render_(std::move(render)),
        in_snapshot_(snapshot) {}

  void Start() {
    subscription_->SetNotify([this] { Pump(/*from_notify=*/true); });
    Pump(false);
  }

  void OnWriteDone(bool ok) override {
    {
      absl::MutexLock lock(&mu_);
      writing_ = false;
      if (!ok) cancelled_ = true;
    }
    Pump(false);
  }

  void OnCancel() override {
    {
      absl::MutexLock lock(&mu_);
      cancelled_ = true;
    }
    Pump(false);
  }

  void OnDone() override {
    subscription_->SetNotify(nullptr);
    subscription_.reset();  // unregisters
    delete this;
  }

 private:
  static constexpr size_t kSnapshotPage = 256;
  static constexpr size_t kTakeBatch = 64;

  void Pump(bool from_notify) {
    std::optional<grpc::Status> finish;
    {
      absl::MutexLock lock(&mu_);
      if (writing_ || finished_) return;
      if (cancelled_) {
        finish = grpc::Status(grpc::StatusCode::CANCELLED, "client cancelled the subscription");
      } else if (in_snapshot_) {
        // Local snapshot pages are read on write completions, off the ingestion thread; a
        // notify only matters while waiting for entries from another node.
        if (from_notify && !waiting_for_snapshot_) return;
        if (snapshot_.empty() && !snapshot_done_) {
          absl::StatusOr<SnapshotPage> page = subscription_->NextSnapshotPage(kSnapshotPage);
          if (!page.ok()) {
            finish = ToGrpcStatus(page.status());
          } else {
            for (KeyValue& kv : page->entries) snapshot_.push_back(std::move(kv));
            snapshot_done_ = page->done;
            waiting_for_snapshot_ = snapshot_.empty() && !snapshot_done_;
            if (waiting_for_snapshot_) return;  // idle until notified
          }
        }
        if (!finish) {
          if (!snapshot_.empty()) {
            response_ = render_.snapshot(std::move(snapshot_.front()));
            snapshot_.pop_front();
          } else {
            response_ = render_.snapshot_end();
            in_snapshot_ = false;
          }
          writing_ = true;
        }
      } else {
        if (changes_.empty() && end_.ok()) {
          std::vector<ChangeEvent> taken;
          Progress progress;
          end_ = subscription_->Take(kTakeBatch, &taken, render_.progress ? &progress : nullptr);
          for (ChangeEvent& c : taken) changes_.push_back(std::move(c));
          if (!progress.empty() && progress != sent_progress_) pending_progress_ = progress;
        }
        if (!changes_.empty()) {
          response_ = render_.change(std::move(changes_.front()));
          changes_.pop_front();
          writing_ = true;
        } else if (pending_progress_) {
          response_ = render_.progress(*pending_progress_);
          sent_progress_ = std::move(*pending_progress_);
          pending_progress_.reset();
          writing_ = true;
        } else if (!end_.ok()) {
          finish = ToGrpcStatus(end_);
        } else {
          return;  // idle until notified
        }
      }
      if (finish) finished_ = true;
    }
    if (finish) {
      if (render_.done) render_.done(*finish);
      this->Finish(*finish);
      return;
    }
    // Only this path writes, and only with writing_ set: response_ is not touched until
    // OnWriteDone.
    this->StartWrite(&response_);
  }

  std::unique_ptr<Subscription> subscription_;
  const SubscriptionRenderer<Response> render_;
  absl::Mutex mu_;
  bool in_snapshot_ ABSL_GUARDED_BY(mu_);
  bool snapshot_done_ ABSL_GUARDED_BY(mu_) = false;
  bool waiting_for_snapshot_ ABSL_GUARDED_BY(mu_) = false;
  std::deque<KeyValue> snapshot_ ABSL_GUARDED_BY(mu_);
  std::deque<ChangeEvent> changes_ ABSL_GUARDED_BY(mu_);
  Progress sent_progress_ ABSL_GUARDED_BY(mu_);
  std::optional<Progress> pending_progress_ ABSL_GUARDED_BY(mu_);
  absl::Status end_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  Response response_;
};

// A stream that only reports `status`.
template <typename Response>
class RefusedStream final : public grpc::ServerWriteReactor<Response> {
 public:
  explicit RefusedStream(grpc::Status status) { this->Finish(std::move(status)); }
  void OnDone() override { delete this; }
};

}  // namespace kiq::router
