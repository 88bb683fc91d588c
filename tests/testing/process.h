#pragma once

#include <sys/types.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace kiq::testing {

// A child process started by a test, stopped by PID. stdout and stderr go to `log_path`.
// The destructor SIGKILLs it if it is still running. Not thread-safe.
class Process {
 public:
  static absl::StatusOr<std::unique_ptr<Process>> Start(const std::vector<std::string>& argv,
                                                        const std::string& log_path);
  ~Process();

  pid_t pid() const { return pid_; }
  const std::string& log_path() const { return log_path_; }
  bool running();
  void Signal(int signal);
  // Waits for the process to exit; its exit code (128 + signal if killed), or
  // DEADLINE_EXCEEDED.
  absl::StatusOr<int> Wait(absl::Duration timeout);
  // Graceful stop: SIGTERM, then waits for the exit; its exit code, or DEADLINE_EXCEEDED
  // after SIGKILL (a process that ignores SIGTERM does not outlive the test).
  absl::StatusOr<int> Terminate(absl::Duration timeout);
  // SIGKILL and reap.
  void Kill();
  std::string ReadLog() const;

 private:
  Process(pid_t pid, std::string log_path) : pid_(pid), log_path_(std::move(log_path)) {}
  pid_t pid_;
  std::string log_path_;
  std::optional<int> exit_code_;
};

// Polls `condition` every few milliseconds until it holds or `timeout` passes.
bool WaitFor(const std::function<bool()>& condition, absl::Duration timeout);

std::string ReadFile(const std::string& path);
// A fresh directory under the test's temp dir.
std::string MakeTempDir(const std::string& prefix);

}  // namespace kiq::testing
