#include "client/kiqctl.h"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <fstream>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <CLI/CLI.hpp>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "client/output.h"
#include "client/text.h"
#include "kiq/v1/query.pb.h"

namespace kiq::client {
namespace {

constexpr char kUsage[] = R"usage(Usage: kiqctl [flags] COMMAND ARGS... [flags]

Queries the state that kiq serves from Kafka (kiq.v1.QueryService on any kiq node or kiq-router)
and which node holds it (kiq.v1.MetadataService).

Commands:
  get STORE KEY          The value of KEY in STORE.
  get-many STORE KEY...  The values of several keys of STORE in one call (one forward per
                         owner node; at most 1024 keys), in the order given.
  range STORE FROM TO    The entries with FROM <= key <= TO (both inclusive; "" is an open
                         bound), in byte order of the key.
  all STORE              Every entry of STORE, in byte order of the key.
  count STORE            The number of entries in STORE.
  window-fetch STORE KEY [FROM [TO]]
                         The windows of KEY in a windowed STORE whose start is in
                         [FROM, TO], oldest first. FROM and TO are ms since the epoch or
                         ISO-8601 times (2024-05-01T12:00:00Z); default: every window.
  metadata               Every live node of the cluster: endpoint, stores, partitions, lease.
  metadata STORE         The live nodes that host STORE.
  metadata STORE KEY     The partition of KEY in STORE and the node that owns it.
  subscribe STORE        Push query: print every change of STORE as it is materialized, one
                         line each, until the stream ends (Ctrl-C to stop). With --key K or
                         --prefix P only those keys; --snapshot first prints the current
                         entries (SNAPSHOT lines, then SNAPSHOT_END) with no gap or duplicate
                         before the changes; --coalesce keeps only the latest value per key
                         when this client falls behind (else the server ends the stream with
                         RESOURCE_EXHAUSTED).
  help                   Print this help.

  Keys and bounds are sent as given; those that are not valid UTF-8 go in the API's *_bytes
  fields. range and all follow every page unless --limit stops them.

Flags (before or after the command):
  --target HOST:PORT     Server to ask (default: $KIQ_TARGET if set, else localhost:7070).
  --token-file PATH      Send the bearer token in PATH with every call (servers started with
                         --auth-token-file; default: $KIQ_TOKEN if set, else none).
  --json                 Print JSON instead of a table (see Output).
  --timeout DURATION     Deadline of each RPC, e.g. 500ms, 5s, 1m (default: 10s); for
                         subscribe, of connecting (the stream itself has none).
  --page-size N          range, all: entries per RPC (default: the server's).
  --page-token TOKEN     range, all: start at TOKEN, a next page token printed by an earlier
                         range/all stopped by --limit.
  --limit N              range, all: stop after N entries; if more may follow, print the next
                         page token to resume from.
  --stale                get, get-many, window-fetch, range, all, count: if a partition's owner cannot
                         answer (down, restoring), read its freshest standby replica; the
                         answer then says so ("stale: partition P read from a standby ...").
  --max-lag N            With --stale: only replicas at most N records behind (default: any).
  --tls                  Connect over TLS, verifying the server's certificate against the
                         system's CAs and the target's host name (which must be in the
                         certificate's SAN). Implied by the three flags below.
  --tls-ca-file FILE     PEM bundle of the CA(s) to verify the server with instead.
  --tls-cert-file FILE, --tls-key-file FILE
                         mTLS: the client certificate (chain) and its private key, PEM.
  --key K, --prefix P    subscribe: only key K, or keys starting with P.
  --snapshot, --coalesce subscribe: see above.
  -h, --help             Print this help.
  --                     End of flags: later arguments are operands even if they start with -
                         (an operand such as -x must come after it; -10 and - need not).
  Flags take their value as the next argument or after '=' (--timeout=5s).

Output:
  Table (default): columns KEY, VALUE, PARTITION. A value is shown as JSON for JSON and numeric
  stores, else as text; bytes that are not UTF-8, control characters and backslash are escaped
  (\xNN, \n, \\). get prints "not found" for a missing key; get-many prints the keys
  found (in the order asked) and then "not found: K1, K2" for the missing ones; count prints "count: N"
  (with the missing partitions of a partial answer). Entries of windowed stores have WINDOW_START and WINDOW_END columns
  (ISO-8601 UTC, the window is [start, end)); window-fetch prints "no windows" when there are
  none. When --limit stops range/all before the end, they print the token to resume
  from to stderr as "next page token: TOKEN".
  subscribe: one line per event, flushed as it comes:
    SNAPSHOT KEY VALUE partition=P
    SNAPSHOT_END
    CHANGE KEY VALUE (was OLD) partition=P topic@offset
    DELETE KEY (was OLD) partition=P topic@offset
  With --json, one SubscribeResponse per line. The exit code is the stream's end: 3 with the
  status on stderr (e.g. RESOURCE_EXHAUSTED, ABORTED when partitions moved).
  metadata, metadata STORE: columns NODE, ENDPOINT, STORES, PARTITIONS, LEASE. PARTITIONS lists
  the partitions the node owns, in order, with a letter on those it does not serve:
  R restoring, F failed, ? unknown state (e.g. 0,1,4R,5F). LEASE is the time left on the node's
  membership lease in seconds, rounded up (e.g. 12s), or "expired". "no nodes" when none.
  metadata STORE KEY: one line, e.g.
    key "alice" of store order_count → partition 3 → node n2 at kiq-1:7070 (ACTIVE)
  ending in "no live owner" when no live node owns the partition.
  --json: one line of JSON, the proto3 JSON mapping of the response with every field present
  (bytes in base64, int64 as a string). range/all print a single ScanResponse holding every
  entry read, in order, with "nextPageToken" (empty when the scan reached the end). metadata
  prints the NodesResponse or NodeForKeyResponse (states as PARTITION_STATE_*, leases as Unix
  time in ms; an empty owner.nodeId means no live owner).

Exit codes:
  0  success (range/all stopped by --limit included)
  1  get: the key was not found; get-many: a key was not found; metadata STORE KEY: no live node owns its partition
  2  usage error
  3  RPC or server error (e.g. unknown store, server unreachable, deadline exceeded)
)usage";

absl::Status UsageError(absl::string_view message) { return absl::InvalidArgumentError(message); }

// A window-fetch bound: ms since the epoch, or an ISO-8601 (RFC 3339) time.
absl::StatusOr<int64_t> ParseTimeBound(const std::string& text, absl::string_view name) {
  int64_t ms = 0;
  if (absl::SimpleAtoi(text, &ms)) return ms;
  absl::Time t;
  std::string error;
  if (absl::ParseTime(absl::RFC3339_full, text, &t, &error)) return absl::ToUnixMillis(t);
  return UsageError(absl::StrCat("window-fetch: ", name,
                                 " wants ms since the epoch or an ISO-8601 time such as "
                                 "2024-05-01T12:00:00Z, got \"",
                                 EscapeForTerminal(text), "\""));
}

enum class Need { kRequired, kOptional };

// An operand of a command: its name in usage errors and where CLI11 stores it.
struct Operand {
  const char* name;
  std::string* value;
  Need need;
};

// A command: a CLI11 subcommand whose positionals are its operands, in order (the required ones
// first; an optional one is filled only after those before it), then `extra`, which takes the
// operands past the last so that the usage error can count them.
struct Command {
  CLI::App* app = nullptr;
  KiqctlCommand kind = KiqctlCommand::kHelp;  // metadata: kNodes, refined by the operands
  std::vector<const CLI::Option*> operands;
  const CLI::Option* extra = nullptr;

  // How many operands were given, extra ones included.
  size_t Given() const {
    size_t given = extra->count();
    for (const CLI::Option* operand : operands) given += operand->count();
    return given;
  }

  // "get wants STORE KEY, got 1 argument"; the optional operands nest: "[STORE [KEY]]".
  absl::Status CountError() const {
    std::vector<std::string> names;
    std::string closing;
    for (const CLI::Option* operand : operands) {
      if (operand->get_required()) {
        names.push_back(operand->get_name());
      } else {
        names.push_back(absl::StrCat("[", operand->get_name()));
        closing += "]";
      }
    }
    const size_t given = Given();
    return UsageError(absl::StrCat(app->get_name(), " wants ", absl::StrJoin(names, " "), closing,
                                   ", got ", given, given == 1 ? " argument" : " arguments"));
  }
};

// kiqctl's command line for CLI11, and what CLI11 collects with it. CLI11 sorts the arguments
// into flags, the command and its operands; Parse then checks and converts the values, so that
// every usage error is one line in kiq's words (CLI11's own errors are translated where it
// throws them). Every flag is an option of the top-level app, which the commands fall through
// to: a flag may come before or after the command, and a scan or subscribe flag given to
// another command is refused by name instead of as unknown. Not thread-safe; one per parse.
class CommandLine {
 public:
  // Operands go straight into `args`, which must outlive this; flags once Parse checked them.
  explicit CommandLine(KiqctlArgs& args);

  CommandLine(const CommandLine&) = delete;
  CommandLine& operator=(const CommandLine&) = delete;

  // Parses kiqctl's arguments (without the program name) into the KiqctlArgs given.
  absl::Status Parse(const std::vector<std::string>& args);

 private:
  void AddCommand(const std::string& name, KiqctlCommand kind, std::vector<Operand> operands);

  // Whether `arg` names a flag that takes a value ("--timeout").
  bool IsValueFlag(absl::string_view arg) const;

  // CLI11 2.1 reads "--name=" like "--name" and takes the next argument as the value; kiqctl
  // means an empty value (--page-token=), so such an argument becomes "--name" and "". Flag
  // values and what follows "--" are left as they are.
  std::vector<std::string> SplitEmptyValues(const std::vector<std::string>& args) const;

  // The command CLI11 found, or null.
  const Command* ParsedCommand() const;

  // After CLI11: unknown flags refused, flag values checked and converted into args_.
  absl::Status CheckFlags();
  // After CheckFlags: the command and its operands checked, and misplaced flags refused.
  absl::Status CheckCommand();

  KiqctlArgs& args_;
  CLI::App app_{"kiqctl"};

  // Flag values as given (the last one of a repeated flag); --page-token goes straight to args_.
  std::string target_, token_file_, timeout_, page_size_, limit_, key_, prefix_, max_lag_;
  std::string tls_ca_file_, tls_cert_file_, tls_key_file_;
  CLI::Option* tls_flag_;
  CLI::Option* tls_ca_file_flag_;
  CLI::Option* tls_cert_file_flag_;
  CLI::Option* tls_key_file_flag_;
  CLI::Option* target_flag_;
  CLI::Option* token_file_flag_;
  CLI::Option* timeout_flag_;
  CLI::Option* page_size_flag_;
  CLI::Option* page_token_flag_;
  CLI::Option* limit_flag_;
  CLI::Option* key_flag_;
  CLI::Option* prefix_flag_;
  CLI::Option* json_flag_;
  CLI::Option* snapshot_flag_;
  CLI::Option* coalesce_flag_;
  CLI::Option* stale_flag_;
  CLI::Option* max_lag_flag_;
  std::vector<const CLI::Option*> scan_flags_;       // range and all only
  std::vector<const CLI::Option*> subscribe_flags_;  // subscribe only
  std::vector<const CLI::Option*> stale_flags_;      // reads only

  std::vector<Command> commands_;
  std::string window_from_, window_to_;      // window-fetch's FROM and TO operands
  std::vector<std::string> extra_operands_;  // What a command's `extra` takes; only counted.
  // The arguments before a command that are not flags: an unknown command and its operands.
  std::vector<std::string> not_a_command_;
};

CommandLine::CommandLine(KiqctlArgs& args) : args_(args) {
  // A repeated flag: the last one wins (CLI11 would refuse it).
  app_.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  // Unknown flags are kept in remaining() for CheckFlags to name; the commands inherit this and
  // find the flags in the top-level app.
  app_.allow_extras();
  app_.fallthrough();
  // At most one command: a command name after it is an operand ("get orders count").
  app_.require_subcommand(0, 1);

  target_flag_ = app_.add_option("--target", target_);
  token_file_flag_ = app_.add_option("--token-file", token_file_);
  timeout_flag_ = app_.add_option("--timeout", timeout_);
  page_size_flag_ = app_.add_option("--page-size", page_size_);
  page_token_flag_ = app_.add_option("--page-token", args.scan.page_token);
  limit_flag_ = app_.add_option("--limit", limit_);
  key_flag_ = app_.add_option("--key", key_);
  prefix_flag_ = app_.add_option("--prefix", prefix_);
  key_flag_->excludes(prefix_flag_);
  json_flag_ = app_.add_flag("--json");
  snapshot_flag_ = app_.add_flag("--snapshot");
  coalesce_flag_ = app_.add_flag("--coalesce");
  stale_flag_ = app_.add_flag("--stale");
  max_lag_flag_ = app_.add_option("--max-lag", max_lag_);
  tls_flag_ = app_.add_flag("--tls");
  tls_ca_file_flag_ = app_.add_option("--tls-ca-file", tls_ca_file_);
  tls_cert_file_flag_ = app_.add_option("--tls-cert-file", tls_cert_file_);
  tls_key_file_flag_ = app_.add_option("--tls-key-file", tls_key_file_);
  scan_flags_ = {page_size_flag_, page_token_flag_, limit_flag_};
  subscribe_flags_ = {key_flag_, prefix_flag_, snapshot_flag_, coalesce_flag_};
  stale_flags_ = {stale_flag_, max_lag_flag_};
  // Only an unknown command (and what follows it) gets here: a known one is a subcommand.
  app_.add_option("COMMAND", not_a_command_);

  using KC = KiqctlCommand;
  constexpr Need kRequired = Need::kRequired;
  constexpr Need kOptional = Need::kOptional;
  AddCommand("get", KC::kGet, {{"STORE", &args.store, kRequired}, {"KEY", &args.key, kRequired}});
  AddCommand("get-many", KC::kGetMany,
             {{"STORE", &args.store, kRequired}, {"KEY", &args.key, kRequired}});
  AddCommand("range", KC::kRange,
             {{"STORE", &args.store, kRequired},
              {"FROM", &args.from, kRequired},
              {"TO", &args.to, kRequired}});
  AddCommand("all", KC::kAll, {{"STORE", &args.store, kRequired}});
  AddCommand("count", KC::kCount, {{"STORE", &args.store, kRequired}});
  AddCommand("window-fetch", KC::kWindowFetch,
             {{"STORE", &args.store, kRequired},
              {"KEY", &args.key, kRequired},
              {"FROM", &window_from_, kOptional},
              {"TO", &window_to_, kOptional}});
  AddCommand("metadata", KC::kNodes,
             {{"STORE", &args.store, kOptional}, {"KEY", &args.key, kOptional}});
  AddCommand("subscribe", KC::kSubscribe, {{"STORE", &args.store, kRequired}});
  AddCommand("help", KC::kHelp, {});
}

void CommandLine::AddCommand(const std::string& name, KiqctlCommand kind,
                             std::vector<Operand> operands) {
  Command c;
  c.app = app_.add_subcommand(name);
  c.kind = kind;
  for (const Operand& operand : operands) {
    CLI::Option* option = c.app->add_option(operand.name, *operand.value);
    if (operand.need == Need::kRequired) option->required();
    c.operands.push_back(option);
  }
  c.extra = c.app->add_option("EXTRA", extra_operands_);
  commands_.push_back(std::move(c));
}

bool CommandLine::IsValueFlag(absl::string_view arg) const {
  if (!absl::StartsWith(arg, "--")) return false;
  const CLI::Option* option = app_.get_option_no_throw(std::string(arg));
  return option != nullptr && option->get_items_expected_min() > 0;
}

std::vector<std::string> CommandLine::SplitEmptyValues(const std::vector<std::string>& args) const {
  std::vector<std::string> split;
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--") {
      split.insert(split.end(), args.begin() + i, args.end());
      break;
    }
    absl::string_view name = args[i];
    const bool empty_value = absl::ConsumeSuffix(&name, "=");
    if (!IsValueFlag(name)) {
      split.push_back(args[i]);
      continue;
    }
    split.emplace_back(name);
    if (empty_value) {
      split.emplace_back();
    } else if (i + 1 < args.size()) {
      split.push_back(args[++i]);  // The value, even if it is "--" or looks like "--name=".
    }
  }
  return split;
}

const Command* CommandLine::ParsedCommand() const {
  for (const Command& command : commands_) {
    if (command.app->parsed()) return &command;
  }
  return nullptr;
}

// CLI11 throws its errors; they become kiq's usage errors here, in kiq's words where a script
// or a test relies on them, else in CLI11's.
absl::Status CommandLine::Parse(const std::vector<std::string>& args) {
  const std::vector<std::string> split = SplitEmptyValues(args);
  try {
    app_.parse(std::vector<std::string>(split.rbegin(), split.rend()));  // CLI11 wants reversed.
  } catch (const CLI::CallForHelp&) {
    // -h or --help, anywhere.
    args_.command = KiqctlCommand::kHelp;
    return absl::OkStatus();
  } catch (const CLI::RequiredError& e) {
    // Only operands are required.
    const Command* command = ParsedCommand();
    return command != nullptr ? command->CountError() : UsageError(e.what());
  } catch (const CLI::ExcludesError&) {
    // The only exclusion.
    return UsageError("subscribe: give --key or --prefix, not both");
  } catch (const CLI::ArgumentMismatch& e) {
    // CLI11 takes any next argument as a flag's value: one is missing only after the last.
    if (!split.empty() && IsValueFlag(split.back())) {
      return UsageError(absl::StrCat(split.back(), " needs a value"));
    }
    return UsageError(e.what());
  } catch (const CLI::ParseError& e) {
    return UsageError(e.what());
  }
  if (absl::Status s = CheckFlags(); !s.ok()) return s;
  return CheckCommand();
}

absl::Status CommandLine::CheckFlags() {
  for (const std::string& arg : app_.remaining()) {
    if (arg == "--") continue;
    return UsageError(
        absl::StrCat("unknown flag \"", EscapeForTerminal(arg.substr(0, arg.find('='))), "\""));
  }
  for (const CLI::Option* flag :
       {json_flag_, snapshot_flag_, coalesce_flag_, stale_flag_, tls_flag_}) {
    // CLI11 records a flag given without a value as "true".
    for (const std::string& value : flag->results()) {
      if (value != "true") return UsageError(absl::StrCat(flag->get_name(), " takes no value"));
    }
  }
  args_.json = json_flag_->count() > 0;
  args_.snapshot = snapshot_flag_->count() > 0;
  args_.coalesce = coalesce_flag_->count() > 0;
  args_.allow_stale = stale_flag_->count() > 0;
  if (max_lag_flag_->count() > 0) {
    if (!args_.allow_stale) return UsageError("--max-lag needs --stale");
    if (!absl::SimpleAtoi(max_lag_, &args_.max_lag_records) || args_.max_lag_records <= 0) {
      return UsageError(
          absl::StrCat("--max-lag wants a positive number of records, got \"", max_lag_, "\""));
    }
  }
  if (target_flag_->count() > 0) {
    if (target_.empty()) return UsageError("--target must not be empty");
    args_.target = target_;
  }
  if (token_file_flag_->count() > 0) {
    if (token_file_.empty()) return UsageError("--token-file must not be empty");
    args_.token_file = token_file_;
  }
  if (timeout_flag_->count() > 0) {
    absl::Duration timeout;
    if (!absl::ParseDuration(timeout_, &timeout) || timeout <= absl::ZeroDuration()) {
      return UsageError(absl::StrCat(
          "--timeout wants a positive duration such as 500ms, 5s or 1m, got \"", timeout_, "\""));
    }
    args_.timeout = timeout;
  }
  if (page_size_flag_->count() > 0) {
    int32_t page_size = 0;
    if (!absl::SimpleAtoi(page_size_, &page_size) || page_size <= 0) {
      return UsageError(
          absl::StrCat("--page-size wants a positive integer, got \"", page_size_, "\""));
    }
    args_.scan.page_size = page_size;
  }
  if (limit_flag_->count() > 0) {
    int64_t limit = 0;
    if (!absl::SimpleAtoi(limit_, &limit) || limit <= 0) {
      return UsageError(absl::StrCat("--limit wants a positive integer, got \"", limit_, "\""));
    }
    args_.scan.limit = limit;
  }
  for (const auto& [flag, value] : {std::pair{tls_ca_file_flag_, &tls_ca_file_},
                                    std::pair{tls_cert_file_flag_, &tls_cert_file_},
                                    std::pair{tls_key_file_flag_, &tls_key_file_}}) {
    if (flag->count() == 0) continue;
    if (value->empty()) return UsageError(absl::StrCat(flag->get_name(), " must not be empty"));
    args_.tls.enabled = true;
  }
  if (tls_flag_->count() > 0) args_.tls.enabled = true;
  args_.tls.ca_file = tls_ca_file_;
  args_.tls.cert_file = tls_cert_file_;
  args_.tls.key_file = tls_key_file_;
  if (args_.tls.cert_file.empty() != args_.tls.key_file.empty()) {
    return UsageError(args_.tls.cert_file.empty() ? "--tls-key-file needs --tls-cert-file"
                                                  : "--tls-cert-file needs --tls-key-file");
  }
  if (key_flag_->count() > 0) args_.subscribe_key = key_;
  if (prefix_flag_->count() > 0) args_.subscribe_prefix = prefix_;
  return absl::OkStatus();
}

absl::Status CommandLine::CheckCommand() {
  if (!not_a_command_.empty()) {
    return UsageError(
        absl::StrCat("unknown command \"", EscapeForTerminal(not_a_command_.front()), "\""));
  }
  const Command* command = ParsedCommand();
  if (command == nullptr) {
    return UsageError(
        "missing command (get, get-many, range, all, count, window-fetch, subscribe or "
        "metadata)");
  }
  args_.command = command->kind;
  if (args_.command == KiqctlCommand::kHelp) return absl::OkStatus();
  // get-many takes every operand after STORE as a key; the others count theirs.
  if (args_.command == KiqctlCommand::kGetMany) {
    if (command->operands[1]->count() == 0) return command->CountError();
    args_.keys.push_back(args_.key);
    args_.keys.insert(args_.keys.end(), extra_operands_.begin(), extra_operands_.end());
  } else if (command->extra->count() > 0) {
    return command->CountError();
  }
  const size_t given = command->Given();
  const std::string& name = command->app->get_name();
  if (args_.command == KiqctlCommand::kNodes && given > 0) {
    args_.command = given == 1 ? KiqctlCommand::kNodesForStore : KiqctlCommand::kNodeForKey;
  }
  // Every command's first operand is the store.
  if (given > 0 && args_.store.empty()) return UsageError(absl::StrCat(name, ": STORE is empty"));
  if (args_.command == KiqctlCommand::kWindowFetch) {
    if (given >= 3) {
      absl::StatusOr<int64_t> from = ParseTimeBound(window_from_, "FROM");
      if (!from.ok()) return from.status();
      args_.time_from = *from;
    }
    if (given == 4) {
      absl::StatusOr<int64_t> to = ParseTimeBound(window_to_, "TO");
      if (!to.ok()) return to.status();
      args_.time_to = *to;
    }
  }
  const bool scans = args_.command == KiqctlCommand::kRange || args_.command == KiqctlCommand::kAll;
  const bool subscribes = args_.command == KiqctlCommand::kSubscribe;
  const bool reads = args_.command == KiqctlCommand::kGet ||
                     args_.command == KiqctlCommand::kGetMany ||
                     args_.command == KiqctlCommand::kWindowFetch || scans ||
                     args_.command == KiqctlCommand::kCount;
  const auto is_in = [](const std::vector<const CLI::Option*>& flags, const CLI::Option* flag) {
    return std::find(flags.begin(), flags.end(), flag) != flags.end();
  };
  // The first misplaced flag, in the order given.
  for (const CLI::Option* flag : app_.parse_order()) {
    if (!scans && is_in(scan_flags_, flag)) {
      return UsageError(
          absl::StrCat(flag->get_name(), " applies only to range and all, not ", name));
    }
    if (!subscribes && is_in(subscribe_flags_, flag)) {
      return UsageError(absl::StrCat(flag->get_name(), " applies only to subscribe, not ", name));
    }
    if (!reads && is_in(stale_flags_, flag)) {
      return UsageError(absl::StrCat(flag->get_name(),
                                     " applies only to get, get-many, window-fetch, range, all and "
                                     "count, "
                                     "not ",
                                     name));
    }
  }
  return absl::OkStatus();
}

// One line for stderr: `<doing>: <CODE>: <server message>`, the code placed after what we were
// doing (the prefix FromGrpcStatus added) so the line reads left to right.
std::string ErrorLine(const absl::Status& status, absl::string_view doing) {
  const std::string code = absl::StatusCodeToString(status.code());
  absl::string_view message = status.message();
  std::string line;
  if (!doing.empty() && message == doing) {
    line = absl::StrCat(doing, ": ", code);
  } else if (!doing.empty() && absl::ConsumePrefix(&message, absl::StrCat(doing, ": "))) {
    line = absl::StrCat(doing, ": ", code, ": ", message);
  } else {
    line = absl::StrCat(code, ": ", status.message());
  }
  // A server message could span lines; the error must stay one line.
  return absl::StrReplaceAll(line, {{"\r", "\\r"}, {"\n", "\\n"}});
}

int Fail(std::ostream& err, const absl::Status& status, absl::string_view doing) {
  err << "kiqctl: " << ErrorLine(status, doing) << "\n";
  return kExitError;
}

// Prints `message` as JSON, or fails if it cannot be JSON.
int PrintJson(const google::protobuf::Message& message, std::ostream& out, std::ostream& err,
              int exit_code) {
  absl::StatusOr<std::string> json = RenderJson(message);
  if (!json.ok()) return Fail(err, json.status(), "");
  out << *json;
  return exit_code;
}

int RunWindowFetch(const Client& client, const KiqctlArgs& args, std::ostream& out,
                   std::ostream& err) {
  absl::StatusOr<kiq::v1::WindowFetchResponse> response =
      client.WindowFetch(args.store, args.key, args.time_from, args.time_to);
  if (!response.ok()) {
    return Fail(err, response.status(), DescribeWindowFetch(args.store, args.key));
  }
  if (args.json) return PrintJson(*response, out, err, kExitOk);
  out << RenderWindowsTable(*response);
  return kExitOk;
}

int RunGet(const Client& client, const KiqctlArgs& args, std::ostream& out, std::ostream& err) {
  absl::StatusOr<kiq::v1::GetResponse> response = client.Get(args.store, args.key);
  if (!response.ok()) return Fail(err, response.status(), DescribeGet(args.store, args.key));
  const int exit_code = response->found() ? kExitOk : kExitNotFound;
  if (args.json) return PrintJson(*response, out, err, exit_code);
  out << RenderGetTable(*response);
  return exit_code;
}

int RunGetMany(const Client& client, const KiqctlArgs& args, std::ostream& out, std::ostream& err) {
  absl::StatusOr<kiq::v1::GetManyResponse> response = client.GetMany(args.store, args.keys);
  if (!response.ok()) return Fail(err, response.status(), DescribeGetMany(args.store, args.keys));
  // Like get: 1 when a key is missing, so a script can tell without parsing.
  const bool all_found = std::all_of(response->results().begin(), response->results().end(),
                                     [](const kiq::v1::GetResponse& r) { return r.found(); });
  const int exit_code = all_found ? kExitOk : kExitNotFound;
  if (args.json) return PrintJson(*response, out, err, exit_code);
  out << RenderGetManyTable(*response);
  return exit_code;
}

int RunNodes(const Client& client, const KiqctlArgs& args, const Clock& clock, std::ostream& out,
             std::ostream& err) {
  const bool for_store = args.command == KiqctlCommand::kNodesForStore;
  absl::StatusOr<kiq::v1::NodesResponse> response =
      for_store ? client.NodesForStore(args.store) : client.AllNodes();
  if (!response.ok()) {
    return Fail(err, response.status(),
                for_store ? DescribeNodesForStore(args.store) : DescribeAllNodes());
  }
  if (args.json) return PrintJson(*response, out, err, kExitOk);
  out << RenderNodesTable(*response, clock());
  return kExitOk;
}

int RunNodeForKey(const Client& client, const KiqctlArgs& args, std::ostream& out,
                  std::ostream& err) {
  absl::StatusOr<kiq::v1::NodeForKeyResponse> response = client.NodeForKey(args.store, args.key);
  if (!response.ok()) {
    return Fail(err, response.status(), DescribeNodeForKey(args.store, args.key));
  }
  // Like get's missing key: a script can wait for an owner on the exit code alone.
  const int exit_code = response->owner().node_id().empty() ? kExitNotFound : kExitOk;
  if (args.json) return PrintJson(*response, out, err, exit_code);
  out << RenderNodeForKeyText(args.store, args.key, *response);
  return exit_code;
}

int RunCount(const Client& client, const KiqctlArgs& args, std::ostream& out, std::ostream& err) {
  absl::StatusOr<kiq::v1::CountResponse> response = client.Count(args.store);
  if (!response.ok()) return Fail(err, response.status(), DescribeCount(args.store));
  if (args.json) return PrintJson(*response, out, err, kExitOk);
  out << RenderCountText(*response);
  return kExitOk;
}

// range and all: every page is read before anything is printed, because the table is aligned
// over all rows and --json prints one document. --limit bounds what is held.
int RunScan(const Client& client, const KiqctlArgs& args, std::ostream& out, std::ostream& err) {
  kiq::v1::ScanResponse merged;
  const PageCallback on_page = [&merged](const kiq::v1::ScanResponse& page) {
    MergePage(page, &merged);
    return true;
  };
  const bool is_range = args.command == KiqctlCommand::kRange;
  absl::StatusOr<std::string> next_page_token =
      is_range ? client.ForEachRangePage(args.store, args.from, args.to, args.scan, on_page)
               : client.ForEachAllPage(args.store, args.scan, on_page);
  if (!next_page_token.ok()) {
    return Fail(err, next_page_token.status(),
                is_range ? DescribeRange(args.store, args.from, args.to) : DescribeAll(args.store));
  }
  merged.set_next_page_token(*next_page_token);
  if (args.json) return PrintJson(merged, out, err, kExitOk);
  out << RenderEntriesTable(merged.entries());
  err << StandbyReadsText(merged.standby_reads());
  if (!merged.missing_partitions().empty()) {
    err << "kiqctl: warning: partial answer, partitions "
        << absl::StrJoin(merged.missing_partitions(), ",") << " missing\n";
  }
  if (!next_page_token->empty()) err << "next page token: " << *next_page_token << "\n";
  return kExitOk;
}

// One line per event; flushed, so that a pipe sees each change as it comes.
int RunSubscribe(const Client& client, const KiqctlArgs& args, std::ostream& out,
                 std::ostream& err) {
  kiq::v1::SubscribeRequest request;
  request.set_store(args.store);
  if (args.subscribe_key) {
    request.set_key(*args.subscribe_key);
  } else if (args.subscribe_prefix) {
    request.set_key_prefix(*args.subscribe_prefix);
  } else {
    request.set_all(true);
  }
  request.set_from(args.snapshot ? kiq::v1::SubscribeRequest::FROM_SNAPSHOT
                                 : kiq::v1::SubscribeRequest::FROM_NOW);
  request.set_on_overflow(args.coalesce ? kiq::v1::SubscribeRequest::OVERFLOW_COALESCE
                                        : kiq::v1::SubscribeRequest::OVERFLOW_FAIL);
  absl::Status render_error;
  absl::Status status = client.Subscribe(request, [&](const kiq::v1::SubscribeResponse& event) {
    if (args.json) {
      absl::StatusOr<std::string> json = RenderJson(event);
      if (!json.ok()) {
        render_error = json.status();
        return false;
      }
      out << *json;
      if (json->empty() || json->back() != '\n') out << "\n";
      out << std::flush;
      return true;
    }
    const kiq::v1::Entry& e = event.entry();
    switch (event.type()) {
      case kiq::v1::SubscribeResponse::SNAPSHOT:
        out << "SNAPSHOT " << EntryKeyText(e) << " " << EntryValueText(e)
            << " partition=" << e.partition();
        break;
      case kiq::v1::SubscribeResponse::SNAPSHOT_END:
        out << "SNAPSHOT_END";
        break;
      default: {
        out << (event.deleted() ? "DELETE " : "CHANGE ") << EntryKeyText(e);
        if (!event.deleted()) out << " " << EntryValueText(e);
        if (event.has_old_value()) {
          kiq::v1::Entry old;
          old.set_value(event.old_value());
          if (event.has_old_json()) *old.mutable_json() = event.old_json();
          out << " (was " << EntryValueText(old) << ")";
        }
        out << " partition=" << e.partition() << " " << EscapeForTerminal(event.topic()) << "@"
            << event.offset();
      }
    }
    out << "\n" << std::flush;
    return true;
  });
  if (!render_error.ok()) return Fail(err, render_error, "");
  if (!status.ok()) return Fail(err, status, DescribeSubscribe(args.store));
  return kExitOk;
}

}  // namespace

std::string KiqctlUsage() { return kUsage; }

absl::StatusOr<KiqctlArgs> ParseKiqctlArgs(const std::vector<std::string>& args,
                                           std::string_view env_target) {
  KiqctlArgs parsed;
  if (!env_target.empty()) parsed.target = std::string(env_target);
  CommandLine command_line(parsed);
  if (absl::Status s = command_line.Parse(args); !s.ok()) return s;
  return parsed;
}

int RunKiqctl(const std::vector<std::string>& args, std::ostream& out, std::ostream& err,
              const ClientFactory& client_factory, std::string_view env_target,
              const Clock& clock, std::string_view env_token) {
  absl::StatusOr<KiqctlArgs> parsed = ParseKiqctlArgs(args, env_target);
  if (!parsed.ok()) {
    err << "kiqctl: " << parsed.status().message() << " (see kiqctl --help)\n";
    return kExitUsage;
  }
  if (parsed->command == KiqctlCommand::kHelp) {
    out << KiqctlUsage();
    return kExitOk;
  }
  ClientOptions options;
  options.timeout = parsed->timeout;
  options.allow_stale = parsed->allow_stale;
  options.max_lag_records = parsed->max_lag_records;
  options.tls = parsed->tls;
  options.token =
      std::string(absl::StripAsciiWhitespace(absl::string_view(env_token.data(), env_token.size())));
  if (!parsed->token_file.empty()) {
    std::ifstream in(parsed->token_file, std::ios::binary);
    std::ostringstream text;
    text << in.rdbuf();
    if (!in) {
      err << "kiqctl: --token-file: cannot read " << parsed->token_file << "\n";
      return kExitUsage;
    }
    // A file written by `echo` ends with a newline that is not part of the token.
    options.token = std::string(absl::StripAsciiWhitespace(text.str()));
  }
  absl::StatusOr<std::unique_ptr<Client>> client = client_factory(parsed->target, options);
  if (!client.ok()) return Fail(err, client.status(), "");
  switch (parsed->command) {
    case KiqctlCommand::kGet:
      return RunGet(**client, *parsed, out, err);
    case KiqctlCommand::kGetMany:
      return RunGetMany(**client, *parsed, out, err);
    case KiqctlCommand::kCount:
      return RunCount(**client, *parsed, out, err);
    case KiqctlCommand::kWindowFetch:
      return RunWindowFetch(**client, *parsed, out, err);
    case KiqctlCommand::kRange:
    case KiqctlCommand::kAll:
      return RunScan(**client, *parsed, out, err);
    case KiqctlCommand::kNodes:
    case KiqctlCommand::kNodesForStore:
      return RunNodes(**client, *parsed, clock, out, err);
    case KiqctlCommand::kNodeForKey:
      return RunNodeForKey(**client, *parsed, out, err);
    case KiqctlCommand::kSubscribe:
      return RunSubscribe(**client, *parsed, out, err);
    case KiqctlCommand::kHelp:
      break;
  }
  out << KiqctlUsage();
  return kExitOk;
}

}  // namespace kiq::client
