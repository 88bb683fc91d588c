#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "client/client.h"

// kiqctl, the command line of kiq: argument parsing and the commands, kept out of main so that
// they are tested in-process against a fake server.
namespace kiq::client {

// kiqctl's exit codes (listed in its --help).
enum KiqctlExitCode : int {
  kExitOk = 0,
  kExitNotFound = 1,  // get: the key is not in the store; metadata STORE KEY: no live owner.
  kExitUsage = 2,     // bad command line.
  kExitError = 3,     // the RPC failed or the server answered an error (e.g. unknown store).
};

inline constexpr char kDefaultTarget[] = "localhost:7070";

enum class KiqctlCommand {
  kHelp,
  kGet,
  kGetMany,  // get-many STORE KEY [KEY...]
  kRange,
  kAll,
  kCount,
  kWindowFetch,    // window-fetch STORE KEY [FROM [TO]]
  kNodes,          // metadata
  kNodesForStore,  // metadata STORE
  kNodeForKey,     // metadata STORE KEY
  kSubscribe,      // subscribe STORE
};

// A parsed command line.
struct KiqctlArgs {
  KiqctlCommand command = KiqctlCommand::kHelp;
  std::string target = kDefaultTarget;
  bool json = false;
  absl::Duration timeout = absl::Seconds(10);
  std::string store;      // Empty only for kHelp and kNodes.
  std::string key;        // get, metadata STORE KEY
  std::vector<std::string> keys;  // get-many, in the order given
  std::string from;       // range
  std::string to;         // range
  ScanOptions scan;       // range, all
  int64_t time_from = 0;  // window-fetch: ms since the epoch
  int64_t time_to = 0;    // window-fetch: 0 = no upper bound
  // subscribe: --key or --prefix (neither: every key), --snapshot, --coalesce.
  std::optional<std::string> subscribe_key;
  std::optional<std::string> subscribe_prefix;
  bool snapshot = false;
  bool coalesce = false;
  // --stale [--max-lag N]: reads may be answered by standby replicas.
  bool allow_stale = false;
  int64_t max_lag_records = 0;
  // --tls, --tls-ca-file, --tls-cert-file, --tls-key-file (any of them turns TLS on).
  security::ClientTls tls;
  // --token-file: the bearer token is read from it (else $KIQ_TOKEN).
  std::string token_file;
};

// The --help text: every command, flag and exit code.
std::string KiqctlUsage();

// Parses kiqctl's arguments (without the program name) with CLI11. Flags may come before or
// after the command; "--" ends them (an operand such as "-x" must follow it). `env_target` is
// $KIQ_TARGET ("" when unset), used when --target is not given. INVALID_ARGUMENT with a
// one-line message for a usage error.
absl::StatusOr<KiqctlArgs> ParseKiqctlArgs(const std::vector<std::string>& args,
                                           std::string_view env_target);

// Makes the client kiqctl talks to; tests point it at an in-process server.
using ClientFactory = std::function<absl::StatusOr<std::unique_ptr<Client>>(
    const std::string& target, ClientOptions options)>;

// The time kiqctl shows leases against; tests pin it.
using Clock = std::function<absl::Time()>;

// `env_token` is $KIQ_TOKEN, the bearer token when --token-file is not given.
// Runs kiqctl: results on `out`; errors, as one line each, and the next page token of a table
// scan stopped by --limit on `err`. Returns a KiqctlExitCode.
int RunKiqctl(const std::vector<std::string>& args, std::ostream& out, std::ostream& err,
              const ClientFactory& client_factory = Client::Connect,
              std::string_view env_target = {}, const Clock& clock = absl::Now,
              std::string_view env_token = {});

}  // namespace kiq::client
