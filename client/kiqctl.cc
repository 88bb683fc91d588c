#include "client/kiqctl.h"

#include <cstdint>
#include <optional>
#include <utility>

#include "absl/status/status.h"
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
  range STORE FROM TO    The entries with FROM <= key <= TO (both inclusive; "" is an open
                         bound), in byte order of the key.
  all STORE              Every entry of STORE, in byte order of the key.
  count STORE            The approximate number of entries in STORE.
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
  --json                 Print JSON instead of a table (see Output).
  --timeout DURATION     Deadline of each RPC, e.g. 500ms, 5s, 1m (default: 10s).
  --page-size N          range, all: entries per RPC (default: the server's).
  --page-token TOKEN     range, all: start at TOKEN, a next page token printed by an earlier
                         range/all stopped by --limit.
  --limit N              range, all: stop after N entries; if more may follow, print the next
                         page token to resume from.
  --key K, --prefix P    subscribe: only key K, or keys starting with P.
  --snapshot, --coalesce subscribe: see above.
  -h, --help             Print this help.
  --                     End of flags: later arguments are operands even if they start with --.
  Flags take their value as the next argument or after '=' (--timeout=5s).

Output:
  Table (default): columns KEY, VALUE, PARTITION. A value is shown as JSON for JSON and numeric
  stores, else as text; bytes that are not UTF-8, control characters and backslash are escaped
  (\xNN, \n, \\). get prints "not found" for a missing key; count prints "count: N
  (approximate)". Entries of windowed stores have WINDOW_START and WINDOW_END columns
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
  1  get: the key was not found; metadata STORE KEY: no live node owns its partition
  2  usage error
  3  RPC or server error (e.g. unknown store, server unreachable, deadline exceeded)
)usage";

// Flags that take a value.
constexpr absl::string_view kTarget = "target";
constexpr absl::string_view kTimeout = "timeout";
constexpr absl::string_view kPageSize = "page-size";
constexpr absl::string_view kPageToken = "page-token";
constexpr absl::string_view kLimit = "limit";
constexpr absl::string_view kKey = "key";
constexpr absl::string_view kPrefix = "prefix";

bool IsFlag(absl::string_view arg) { return arg == "-h" || absl::StartsWith(arg, "--"); }

absl::Status UsageError(absl::string_view message) { return absl::InvalidArgumentError(message); }

absl::Status ApplyValueFlag(absl::string_view name, const std::string& value, KiqctlArgs* args) {
  if (name == kTarget) {
    if (value.empty()) return UsageError("--target must not be empty");
    args->target = value;
  } else if (name == kTimeout) {
    absl::Duration timeout;
    if (!absl::ParseDuration(value, &timeout) || timeout <= absl::ZeroDuration()) {
      return UsageError(absl::StrCat(
          "--timeout wants a positive duration such as 500ms, 5s or 1m, got \"", value, "\""));
    }
    args->timeout = timeout;
  } else if (name == kPageSize) {
    int32_t page_size = 0;
    if (!absl::SimpleAtoi(value, &page_size) || page_size <= 0) {
      return UsageError(absl::StrCat("--page-size wants a positive integer, got \"", value, "\""));
    }
    args->scan.page_size = page_size;
  } else if (name == kPageToken) {
    args->scan.page_token = value;
  } else if (name == kKey) {
    args->subscribe_key = value;
  } else if (name == kPrefix) {
    args->subscribe_prefix = value;
  } else if (name == kLimit) {
    int64_t limit = 0;
    if (!absl::SimpleAtoi(value, &limit) || limit <= 0) {
      return UsageError(absl::StrCat("--limit wants a positive integer, got \"", value, "\""));
    }
    args->scan.limit = limit;
  }
  return absl::OkStatus();
}

// A command's operands after its name: how many, and how they are named in messages. The
// command run is commands[number of operands - min_operands].
struct CommandSpec {
  absl::string_view name;
  size_t min_operands;
  size_t max_operands;
  KiqctlCommand commands[3];
  absl::string_view operand_names;
};

constexpr CommandSpec kCommands[] = {
    {"get", 2, 2, {KiqctlCommand::kGet}, "STORE KEY"},
    {"range", 3, 3, {KiqctlCommand::kRange}, "STORE FROM TO"},
    {"all", 1, 1, {KiqctlCommand::kAll}, "STORE"},
    {"count", 1, 1, {KiqctlCommand::kCount}, "STORE"},
    {"window-fetch",
     2,
     4,
     {KiqctlCommand::kWindowFetch, KiqctlCommand::kWindowFetch, KiqctlCommand::kWindowFetch},
     "STORE KEY [FROM [TO]]"},
    {"subscribe", 1, 1, {KiqctlCommand::kSubscribe}, "STORE"},
    {"metadata",
     0,
     2,
     {KiqctlCommand::kNodes, KiqctlCommand::kNodesForStore, KiqctlCommand::kNodeForKey},
     "[STORE [KEY]]"},
};

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
  std::vector<std::string> positional;
  std::vector<std::string> scan_flags;  // Given scan-only flags, to reject them for get/count.
  std::vector<std::string> subscribe_flags;  // Likewise for subscribe's flags.
  bool flags_ended = false;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (flags_ended || !IsFlag(arg)) {
      positional.push_back(arg);
      continue;
    }
    if (arg == "--") {
      flags_ended = true;
      continue;
    }
    if (arg == "-h" || arg == "--help") {
      parsed.command = KiqctlCommand::kHelp;
      return parsed;
    }
    absl::string_view name = arg;
    name.remove_prefix(2);
    std::optional<std::string> value;
    if (const size_t eq = name.find('='); eq != absl::string_view::npos) {
      value = std::string(name.substr(eq + 1));
      name = name.substr(0, eq);
    }
    if (name == "json" || name == "snapshot" || name == "coalesce") {
      if (value.has_value()) return UsageError(absl::StrCat("--", name, " takes no value"));
      (name == "json" ? parsed.json : name == "snapshot" ? parsed.snapshot : parsed.coalesce) = true;
      if (name != "json") subscribe_flags.push_back(absl::StrCat("--", name));
      continue;
    }
    if (name != kTarget && name != kTimeout && name != kPageSize && name != kPageToken &&
        name != kLimit && name != kKey && name != kPrefix) {
      return UsageError(absl::StrCat("unknown flag \"--", name, "\""));
    }
    if (!value.has_value()) {
      // The next argument is the value even if it starts with '-': page tokens can.
      if (i + 1 == args.size()) return UsageError(absl::StrCat("--", name, " needs a value"));
      value = args[++i];
    }
    if (absl::Status s = ApplyValueFlag(name, *value, &parsed); !s.ok()) return s;
    if (name == kPageSize || name == kPageToken || name == kLimit) {
      scan_flags.push_back(absl::StrCat("--", name));
    }
    if (name == kKey || name == kPrefix) subscribe_flags.push_back(absl::StrCat("--", name));
  }

  if (positional.empty()) {
    return UsageError("missing command (get, range, all, count, window-fetch, subscribe or metadata)");
  }
  const std::string& command = positional[0];
  if (command == "help") {
    parsed.command = KiqctlCommand::kHelp;
    return parsed;
  }
  const CommandSpec* spec = nullptr;
  for (const CommandSpec& candidate : kCommands) {
    if (command == candidate.name) spec = &candidate;
  }
  if (spec == nullptr) {
    return UsageError(absl::StrCat("unknown command \"", EscapeForTerminal(command), "\""));
  }
  const size_t operands = positional.size() - 1;
  if (operands < spec->min_operands || operands > spec->max_operands) {
    return UsageError(absl::StrCat(spec->name, " wants ", spec->operand_names, ", got ", operands,
                                   operands == 1 ? " argument" : " arguments"));
  }
  parsed.command = spec->commands[operands - spec->min_operands];
  if (operands > 0) {
    // Every command's first operand is the store.
    parsed.store = positional[1];
    if (parsed.store.empty()) return UsageError(absl::StrCat(spec->name, ": STORE is empty"));
  }
  switch (parsed.command) {
    case KiqctlCommand::kGet:
    case KiqctlCommand::kNodeForKey:
      parsed.key = positional[2];
      break;
    case KiqctlCommand::kRange:
      parsed.from = positional[2];
      parsed.to = positional[3];
      break;
    case KiqctlCommand::kWindowFetch: {
      parsed.key = positional[2];
      if (operands >= 3) {
        absl::StatusOr<int64_t> from = ParseTimeBound(positional[3], "FROM");
        if (!from.ok()) return from.status();
        parsed.time_from = *from;
      }
      if (operands == 4) {
        absl::StatusOr<int64_t> to = ParseTimeBound(positional[4], "TO");
        if (!to.ok()) return to.status();
        parsed.time_to = *to;
      }
      break;
    }
    default:
      break;
  }
  const bool scans =
      parsed.command == KiqctlCommand::kRange || parsed.command == KiqctlCommand::kAll;
  if (!scans && !scan_flags.empty()) {
    return UsageError(
        absl::StrCat(scan_flags.front(), " applies only to range and all, not ", spec->name));
  }
  if (parsed.command != KiqctlCommand::kSubscribe && !subscribe_flags.empty()) {
    return UsageError(
        absl::StrCat(subscribe_flags.front(), " applies only to subscribe, not ", spec->name));
  }
  if (parsed.subscribe_key && parsed.subscribe_prefix) {
    return UsageError("subscribe: give --key or --prefix, not both");
  }
  return parsed;
}

int RunKiqctl(const std::vector<std::string>& args, std::ostream& out, std::ostream& err,
              const ClientFactory& client_factory, std::string_view env_target,
              const Clock& clock) {
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
  absl::StatusOr<std::unique_ptr<Client>> client = client_factory(parsed->target, options);
  if (!client.ok()) return Fail(err, client.status(), "");
  switch (parsed->command) {
    case KiqctlCommand::kGet:
      return RunGet(**client, *parsed, out, err);
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
