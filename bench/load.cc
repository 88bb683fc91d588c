// kiq-bench-load: the load generator of the benchmark suite (bench/README.md).
//
//   get   Get QPS and latency against any kiq.v1.QueryService (a kiq-node, or the bare
//         hash-map server of kiq-bench-baselines). Closed loop (--inflight N requests always
//         outstanding) or open loop (--rate R requests/s offered, latency measured from each
//         request's scheduled send time so a stalled server cannot hide its queueing), or a
//         ramp (--ramp r1,r2,...: open loop steps until p99 exceeds --knee_p99_ms).
//   batch Keys/s of GetMany with --batch keys per call (--batch=1: the Get RPC, the same
//         driver and key choice: the single-Get baseline), closed loop at --inflight calls.
//   scan  All / Range entries/s, paging through the whole store, one call in flight; or the
//         whole store through one Scan stream (--scan=stream).
//
// Requests go through gRPC's callback client API: a few threads drive thousands of calls, so
// the generator itself is not the bottleneck one-thread-per-request clients are.
// Prints CSV lines (header with --header) for bench/run.sh to collect.
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "bench/histogram.h"
#include "common/security/tls.h"
#include "common/topology/partitioner.h"
#include "kiq/v1/membership.grpc.pb.h"
#include "kiq/v1/query.grpc.pb.h"

ABSL_FLAG(std::string, mode, "get", "get, batch or scan");
ABSL_FLAG(int, batch, 64, "batch mode: keys per GetMany call (1: single Gets)");
ABSL_FLAG(std::string, target, "", "host:port of the QueryService");
ABSL_FLAG(std::string, store, "", "store name");
ABSL_FLAG(std::string, label, "", "label printed in the first CSV column");
ABSL_FLAG(int, keys, 10000, "keys are key_prefix + [0, keys)");
ABSL_FLAG(std::string, key_prefix, "user-", "key prefix");
ABSL_FLAG(std::string, key_set, "all",
          "all; local: only keys whose partition the target node owns; remote: only keys it "
          "does not own (asks the target's MetadataService)");
ABSL_FLAG(int, partitions, 6, "source partitions (for local/remote key selection)");
ABSL_FLAG(int, inflight, 1, "closed loop: requests outstanding");
ABSL_FLAG(double, rate, 0, "open loop: offered requests/s (0: closed loop)");
ABSL_FLAG(std::string, ramp, "", "open-loop steps r1,r2,...; stops after the knee");
ABSL_FLAG(double, knee_p99_ms, 50, "ramp stops once p99 exceeds this");
ABSL_FLAG(double, duration, 5, "seconds measured per step");
ABSL_FLAG(double, warmup, 1, "seconds of unmeasured load before each step");
ABSL_FLAG(int, channels, 2, "gRPC channels (separate connections)");
ABSL_FLAG(int, pacers, 1, "open loop: threads sending on the schedule");
ABSL_FLAG(int, tick_us, 500, "open loop: pacer wakeup granularity");
ABSL_FLAG(int, max_outstanding, 20000, "open loop: cap on outstanding calls (counted as errors)");
ABSL_FLAG(int, page_size, 1000, "scan page size");
ABSL_FLAG(std::string, scan, "all", "scan kind: all, range or stream (All as one Scan stream)");
ABSL_FLAG(bool, header, false, "print the CSV header first");
ABSL_FLAG(std::string, tls_ca_file, "",
          "connect over TLS, verifying the target against this PEM CA bundle (empty: plaintext)");

namespace {

using Clock = std::chrono::steady_clock;
using kiq::bench::Histogram;

// Plaintext, or TLS with --tls_ca_file (exits 1 if the file cannot be used).
std::shared_ptr<grpc::ChannelCredentials> Credentials() {
  kiq::security::ClientTls tls;
  tls.ca_file = absl::GetFlag(FLAGS_tls_ca_file);
  tls.enabled = !tls.ca_file.empty();
  absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> credentials =
      kiq::security::GrpcClientCredentials(tls);
  if (!credentials.ok()) {
    fprintf(stderr, "kiq-bench-load: %s\n", std::string(credentials.status().message()).c_str());
    exit(1);
  }
  return *credentials;
}

std::vector<std::string> SelectKeys() {
  const std::string prefix = absl::GetFlag(FLAGS_key_prefix);
  const std::string key_set = absl::GetFlag(FLAGS_key_set);
  std::vector<bool> owned(absl::GetFlag(FLAGS_partitions), true);
  if (key_set != "all") {
    auto channel =
        grpc::CreateChannel(absl::GetFlag(FLAGS_target), Credentials());
    auto stub = kiq::v1::MetadataService::NewStub(channel);
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    kiq::v1::NodesForStoreRequest req;
    req.set_store(absl::GetFlag(FLAGS_store));
    kiq::v1::NodesResponse resp;
    grpc::Status s = stub->NodesForStore(&ctx, req, &resp);
    if (!s.ok()) {
      fprintf(stderr, "kiq-bench-load: NodesForStore: %s\n", s.error_message().c_str());
      exit(1);
    }
    const std::string target = absl::GetFlag(FLAGS_target);
    std::fill(owned.begin(), owned.end(), false);
    bool found = false;
    for (const auto& node : resp.nodes()) {
      if (absl::StrCat(node.host(), ":", node.port()) != target) continue;
      found = true;
      for (const auto& p : node.partitions()) {
        if (p.partition() >= 0 && p.partition() < static_cast<int>(owned.size()))
          owned[p.partition()] = true;
      }
    }
    if (!found) {
      fprintf(stderr, "kiq-bench-load: %s is not among the store's nodes\n", target.c_str());
      exit(1);
    }
    if (key_set == "remote") owned.flip();
  }
  std::vector<std::string> keys;
  for (int i = 0; i < absl::GetFlag(FLAGS_keys); ++i) {
    std::string key = absl::StrCat(prefix, i);
    if (owned[kiq::Murmur2Partition(key, static_cast<int32_t>(owned.size()))]) keys.push_back(key);
  }
  if (keys.empty()) {
    fprintf(stderr, "kiq-bench-load: no keys in key set %s\n", key_set.c_str());
    exit(1);
  }
  return keys;
}

std::vector<std::unique_ptr<kiq::v1::QueryService::Stub>> MakeStubs() {
  std::vector<std::unique_ptr<kiq::v1::QueryService::Stub>> stubs;
  for (int i = 0; i < absl::GetFlag(FLAGS_channels); ++i) {
    grpc::ChannelArguments args;
    // Distinct channel args keep gRPC from sharing one TCP connection between the channels.
    args.SetInt("kiq.bench.channel", i);
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    stubs.push_back(kiq::v1::QueryService::NewStub(grpc::CreateCustomChannel(
        absl::GetFlag(FLAGS_target), Credentials(), args)));
  }
  return stubs;
}

// One Get run (closed or open loop) for warmup + duration seconds; only calls *started*
// inside the measured window are counted.
struct StepResult {
  uint64_t ok = 0, errors = 0, not_found = 0;
  double seconds = 0;
  uint64_t p50 = 0, p99 = 0, p999 = 0;
  std::string first_error;
};

class GetDriver {
 public:
  // batch > 1: each call is a GetMany of `batch` keys; else a Get.
  GetDriver(std::vector<std::unique_ptr<kiq::v1::QueryService::Stub>>& stubs,
            std::vector<std::string> keys, int batch = 1)
      : stubs_(stubs),
        keys_(std::move(keys)),
        batch_(std::max(1, batch)),
        store_(absl::GetFlag(FLAGS_store)),
        max_outstanding_(absl::GetFlag(FLAGS_max_outstanding)) {}

  StepResult Run(int inflight, double rate, double warmup, double duration) {
    hist_ = std::make_unique<Histogram>();
    ok_ = errors_ = not_found_ = 0;
    outstanding_ = 0;
    start_ = Clock::now();
    closed_loop_ = rate <= 0;
    measure_from_ = start_ + ToDur(warmup);
    stop_at_ = measure_from_ + ToDur(duration);
    if (rate <= 0) {
      for (int i = 0; i < inflight; ++i) Issue(Clock::now(), i);
    } else {
      // Open loop: the schedule, not completions, decides when calls start. --pacers threads
      // may share it (thread t sends calls t, t+P, ...) if one pacer cannot keep up.
      const int pacers = std::max(1, absl::GetFlag(FLAGS_pacers));
      std::vector<std::thread> threads;
      for (int t = 0; t < pacers; ++t) {
        threads.emplace_back([this, t, pacers, rate] {
          const double interval = 1.0 / rate;
          // Wakes at most every --tick_us and sends every call due by then: a wakeup per call
          // (50 µs apart at 20k/s) costs more context switches than the calls themselves.
          // Latency is still measured from each call's exact scheduled time.
          const auto tick = std::chrono::microseconds(absl::GetFlag(FLAGS_tick_us));
          for (uint64_t n = static_cast<uint64_t>(t);; n += static_cast<uint64_t>(pacers)) {
            const Clock::time_point when = start_ + ToDur(interval * static_cast<double>(n));
            if (when >= stop_at_) break;
            if (when > Clock::now())
              std::this_thread::sleep_until(std::max(when, Clock::now() + tick));
            if (outstanding_.load() >= max_outstanding_) {
              if (when >= measure_from_) errors_++;
            } else {
              Issue(when, n);
            }
          }
        });
      }
      for (auto& th : threads) th.join();
    }
    std::this_thread::sleep_until(stop_at_);
    {
      std::unique_lock<std::mutex> lock(mu_);
      done_cv_.wait_for(lock, std::chrono::seconds(30), [&] { return outstanding_.load() == 0; });
    }
    StepResult r;
    r.ok = ok_;
    r.errors = errors_;
    r.not_found = not_found_;
    r.seconds = duration;
    r.p50 = hist_->Quantile(0.50);
    r.p99 = hist_->Quantile(0.99);
    r.p999 = hist_->Quantile(0.999);
    std::lock_guard<std::mutex> lock(mu_);
    r.first_error = first_error_;
    return r;
  }

 private:
  static Clock::duration ToDur(double s) {
    return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s));
  }

  struct Call {
    grpc::ClientContext ctx;
    kiq::v1::GetRequest req;
    kiq::v1::GetResponse resp;
    kiq::v1::GetManyRequest many_req;
    kiq::v1::GetManyResponse many_resp;
    Clock::time_point scheduled;
    uint64_t seq;
  };

  void Issue(Clock::time_point scheduled, uint64_t seq) {
    auto* call = new Call;
    call->scheduled = scheduled;
    call->seq = seq;
    call->ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    outstanding_++;
    if (batch_ > 1) {
      call->many_req.set_store(store_);
      for (int i = 0; i < batch_; ++i) {
        call->many_req.add_keys(keys_[(seq * 7919 + counter_.fetch_add(1)) % keys_.size()]);
      }
      stubs_[seq % stubs_.size()]->async()->GetMany(
          &call->ctx, &call->many_req, &call->many_resp,
          [this, call](grpc::Status s) { Done(call, s); });
      return;
    }
    call->req.set_store(store_);
    call->req.set_key(keys_[(seq * 7919 + counter_.fetch_add(1)) % keys_.size()]);
    stubs_[seq % stubs_.size()]->async()->Get(&call->ctx, &call->req, &call->resp,
                                              [this, call](grpc::Status s) { Done(call, s); });
  }

  void Done(Call* call, grpc::Status s) {
    const Clock::time_point now = Clock::now();
    const bool measured = call->scheduled >= measure_from_ && call->scheduled < stop_at_;
    if (s.ok() && batch_ > 1 && call->many_resp.results_size() != batch_) {
      s = grpc::Status(grpc::StatusCode::INTERNAL, absl::StrCat(call->many_resp.results_size(),
                                                                " results for ", batch_, " keys"));
    }
    if (measured) {
      if (s.ok()) {
        ok_++;
        if (batch_ > 1) {
          for (const kiq::v1::GetResponse& r : call->many_resp.results()) not_found_ += !r.found();
        } else if (!call->resp.found()) {
          not_found_++;
        }
        hist_->Record(static_cast<uint64_t>(
            std::chrono::duration_cast<std::chrono::microseconds>(now - call->scheduled).count()));
      } else {
        errors_++;
        std::lock_guard<std::mutex> lock(mu_);
        if (first_error_.empty())
          first_error_ = absl::StrCat(s.error_code(), " ", s.error_message());
      }
    }
    const uint64_t seq = call->seq;
    delete call;
    if (closed_loop_ && now < stop_at_) {
      Issue(now, seq);  // closed loop: the slot is reused at once
    }
    if (--outstanding_ == 0) {
      std::lock_guard<std::mutex> lock(mu_);
      done_cv_.notify_all();
    }
  }

  std::vector<std::unique_ptr<kiq::v1::QueryService::Stub>>& stubs_;
  const std::vector<std::string> keys_;
  const int batch_;
  const std::string store_;
  const int max_outstanding_;
  std::unique_ptr<Histogram> hist_;
  std::atomic<uint64_t> ok_{0}, errors_{0}, not_found_{0}, counter_{0};
  std::atomic<int> outstanding_{0};
  Clock::time_point start_, measure_from_, stop_at_;
  bool closed_loop_ = true;
  std::mutex mu_;
  std::condition_variable done_cv_;
  std::string first_error_;
};

void PrintGet(const std::string& label, int inflight, double offered, const StepResult& r) {
  printf("%s,%d,%.0f,%llu,%llu,%llu,%.0f,%.3f,%.3f,%.3f\n", label.c_str(), inflight, offered,
         static_cast<unsigned long long>(r.ok), static_cast<unsigned long long>(r.errors),
         static_cast<unsigned long long>(r.not_found), static_cast<double>(r.ok) / r.seconds,
         r.p50 / 1000.0, r.p99 / 1000.0, r.p999 / 1000.0);
  fflush(stdout);
  if (!r.first_error.empty())
    fprintf(stderr, "kiq-bench-load: first error: %s\n", r.first_error.c_str());
}

int RunGet() {
  auto stubs = MakeStubs();
  GetDriver driver(stubs, SelectKeys());
  const std::string label = absl::GetFlag(FLAGS_label);
  if (absl::GetFlag(FLAGS_header))
    printf("label,inflight,offered_qps,ok,errors,not_found,qps,p50_ms,p99_ms,p999_ms\n");
  const double warmup = absl::GetFlag(FLAGS_warmup), duration = absl::GetFlag(FLAGS_duration);
  if (!absl::GetFlag(FLAGS_ramp).empty()) {
    for (absl::string_view step : absl::StrSplit(absl::GetFlag(FLAGS_ramp), ',')) {
      double rate = 0;
      if (!absl::SimpleAtod(step, &rate) || rate <= 0) {
        fprintf(stderr, "kiq-bench-load: bad --ramp step '%s'\n", std::string(step).c_str());
        return 2;
      }
      StepResult r = driver.Run(0, rate, warmup, duration);
      PrintGet(label, 0, rate, r);
      if (r.p99 / 1000.0 > absl::GetFlag(FLAGS_knee_p99_ms)) break;
    }
    return 0;
  }
  StepResult r =
      driver.Run(absl::GetFlag(FLAGS_inflight), absl::GetFlag(FLAGS_rate), warmup, duration);
  PrintGet(label, absl::GetFlag(FLAGS_inflight), absl::GetFlag(FLAGS_rate), r);
  return r.ok > 0 && r.errors == 0 ? 0 : 1;
}

// Closed loop at --inflight calls of --batch keys each: keys/s is what a batch buys.
int RunBatch() {
  auto stubs = MakeStubs();
  const int batch = std::max(1, absl::GetFlag(FLAGS_batch));
  GetDriver driver(stubs, SelectKeys(), batch);
  const int inflight = absl::GetFlag(FLAGS_inflight);
  if (absl::GetFlag(FLAGS_header)) {
    printf(
        "label,inflight,keys_per_call,calls,errors,not_found,calls_per_s,keys_per_s,p50_ms,"
        "p99_ms,p999_ms\n");
  }
  StepResult r =
      driver.Run(inflight, 0, absl::GetFlag(FLAGS_warmup), absl::GetFlag(FLAGS_duration));
  const double calls_per_s = static_cast<double>(r.ok) / r.seconds;
  printf("%s,%d,%d,%llu,%llu,%llu,%.0f,%.0f,%.3f,%.3f,%.3f\n", absl::GetFlag(FLAGS_label).c_str(),
         inflight, batch, static_cast<unsigned long long>(r.ok),
         static_cast<unsigned long long>(r.errors), static_cast<unsigned long long>(r.not_found),
         calls_per_s, calls_per_s * batch, r.p50 / 1000.0, r.p99 / 1000.0, r.p999 / 1000.0);
  fflush(stdout);
  if (!r.first_error.empty())
    fprintf(stderr, "kiq-bench-load: first error: %s\n", r.first_error.c_str());
  return r.ok > 0 && r.errors == 0 ? 0 : 1;
}

int RunScan() {
  auto stub = kiq::v1::QueryService::NewStub(
      grpc::CreateChannel(absl::GetFlag(FLAGS_target), Credentials()));
  const bool range = absl::GetFlag(FLAGS_scan) == "range";
  const std::string prefix = absl::GetFlag(FLAGS_key_prefix);
  uint64_t entries = 0, scans = 0;
  const Clock::time_point start = Clock::now();
  const auto stop = start + std::chrono::duration_cast<Clock::duration>(
                                std::chrono::duration<double>(absl::GetFlag(FLAGS_duration)));
  while (Clock::now() < stop) {
    if (absl::GetFlag(FLAGS_scan) == "stream") {
      // The whole store through one Scan stream.
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
      kiq::v1::RangeRequest req;
      req.set_store(absl::GetFlag(FLAGS_store));
      req.set_page_size(absl::GetFlag(FLAGS_page_size));
      auto reader = stub->Scan(&ctx, req);
      kiq::v1::ScanResponse resp;
      while (reader->Read(&resp)) entries += resp.entries_size();
      if (grpc::Status s = reader->Finish(); !s.ok()) {
        fprintf(stderr, "kiq-bench-load: scan stream failed: %d %s\n", s.error_code(),
                s.error_message().c_str());
        return 1;
      }
      ++scans;
      continue;
    }
    std::string token;
    do {
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
      kiq::v1::ScanResponse resp;
      grpc::Status s;
      if (range) {
        kiq::v1::RangeRequest req;
        req.set_store(absl::GetFlag(FLAGS_store));
        // Keys sort as strings: [user-1, user-5) is about 4/9 of the key space.
        req.set_from(prefix + "1");
        req.set_to(prefix + "5");
        req.set_page_size(absl::GetFlag(FLAGS_page_size));
        req.set_page_token(token);
        s = stub->Range(&ctx, req, &resp);
      } else {
        kiq::v1::AllRequest req;
        req.set_store(absl::GetFlag(FLAGS_store));
        req.set_page_size(absl::GetFlag(FLAGS_page_size));
        req.set_page_token(token);
        s = stub->All(&ctx, req, &resp);
      }
      if (!s.ok()) {
        fprintf(stderr, "kiq-bench-load: scan failed: %d %s\n", s.error_code(),
                s.error_message().c_str());
        return 1;
      }
      entries += resp.entries_size();
      token = resp.next_page_token();
    } while (!token.empty());
    ++scans;
  }
  const double secs = std::chrono::duration<double>(Clock::now() - start).count();
  if (absl::GetFlag(FLAGS_header)) printf("label,scans,entries,seconds,entries_per_s\n");
  printf("%s,%llu,%llu,%.3f,%.0f\n", absl::GetFlag(FLAGS_label).c_str(),
         static_cast<unsigned long long>(scans), static_cast<unsigned long long>(entries), secs,
         static_cast<double>(entries) / secs);
  return entries > 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  if (absl::GetFlag(FLAGS_target).empty() || absl::GetFlag(FLAGS_store).empty()) {
    fprintf(stderr, "kiq-bench-load: --target and --store are required\n");
    return 2;
  }
  const std::string mode = absl::GetFlag(FLAGS_mode);
  if (mode == "get") return RunGet();
  if (mode == "batch") return RunBatch();
  if (mode == "scan") return RunScan();
  fprintf(stderr, "kiq-bench-load: unknown --mode %s\n", mode.c_str());
  return 2;
}
