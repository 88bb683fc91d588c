#include "client/output.h"

#include <algorithm>
#include <cstddef>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <google/protobuf/util/json_util.h>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "client/text.h"

namespace kiq::client {
namespace {

// Cells of one table row; every row of a table has as many as its header.
using Row = std::vector<std::string>;

const Row& EntriesHeader() {
  static const Row* const header = new Row{"KEY", "VALUE", "PARTITION"};
  return *header;
}

void AppendPadded(const std::string& cell, size_t width, std::string* out) {
  out->append(cell);
  out->append(width - DisplayWidth(cell), ' ');
}

// Columns aligned, two spaces apart.
std::string RenderTable(const Row& header, const std::vector<Row>& rows) {
  std::vector<size_t> widths(header.size());
  for (size_t c = 0; c < widths.size(); ++c) widths[c] = DisplayWidth(header[c]);
  for (const Row& row : rows) {
    for (size_t c = 0; c < widths.size(); ++c) {
      widths[c] = std::max(widths[c], DisplayWidth(row[c]));
    }
  }
  std::string out;
  const auto append_row = [&](const Row& row) {
    for (size_t c = 0; c + 1 < row.size(); ++c) {
      AppendPadded(row[c], widths[c], &out);
      out.append("  ");
    }
    // The last column is not padded: no trailing spaces.
    out.append(row.back());
    out.push_back('\n');
  };
  append_row(header);
  for (const Row& row : rows) append_row(row);
  return out;
}

Row EntryRow(const kiq::v1::Entry& entry) {
  return {EntryKeyText(entry), EntryValueText(entry), absl::StrCat(entry.partition())};
}

const Row& WindowEntriesHeader() {
  static const Row* const header =
      new Row{"KEY", "WINDOW_START", "WINDOW_END", "VALUE", "PARTITION"};
  return *header;
}

Row WindowEntryRow(const kiq::v1::Entry& entry) {
  return {EntryKeyText(entry), WindowTimeText(entry.window().start_ms()),
          WindowTimeText(entry.window().end_ms()), EntryValueText(entry),
          absl::StrCat(entry.partition())};
}

// host:port; an IPv6 address is bracketed so the port stays readable.
std::string EndpointText(const kiq::v1::NodeInfo& node) {
  if (node.host().empty() && node.port() == 0) return "-";
  const std::string host = EscapeForTerminal(node.host());
  if (host.find(':') != std::string::npos) return absl::StrCat("[", host, "]:", node.port());
  return absl::StrCat(host, ":", node.port());
}

std::string NodeIdText(const std::string& node_id) {
  return node_id.empty() ? "-" : EscapeForTerminal(node_id);
}

std::string StoresText(const google::protobuf::RepeatedPtrField<std::string>& stores) {
  if (stores.empty()) return "-";
  std::vector<std::string> escaped;
  escaped.reserve(stores.size());
  for (const std::string& store : stores) escaped.push_back(EscapeForTerminal(store));
  return absl::StrJoin(escaped, ",");
}

}  // namespace

std::string EntryKeyText(const kiq::v1::Entry& entry) {
  return EscapeForTerminal(entry.key_bytes().empty() ? entry.key() : entry.key_bytes());
}

std::string EntryValueText(const kiq::v1::Entry& entry) {
  if (entry.has_json()) {
    std::string json;
    // JSON text has no raw control characters, so it is shown as is. A Value with no kind
    // set prints as nothing; then the bytes still say what is stored.
    if (google::protobuf::util::MessageToJsonString(entry.json(), &json).ok() && !json.empty()) {
      return json;
    }
  }
  return EscapeForTerminal(entry.value());
}

std::string RenderEntriesTable(const google::protobuf::RepeatedPtrField<kiq::v1::Entry>& entries) {
  if (entries.empty()) return "no entries\n";
  const bool windowed = std::any_of(entries.begin(), entries.end(),
                                    [](const kiq::v1::Entry& e) { return e.has_window(); });
  std::vector<Row> rows;
  rows.reserve(entries.size());
  for (const kiq::v1::Entry& entry : entries) {
    rows.push_back(windowed ? WindowEntryRow(entry) : EntryRow(entry));
  }
  return RenderTable(windowed ? WindowEntriesHeader() : EntriesHeader(), rows);
}

std::string WindowTimeText(int64_t ms) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::FromUnixMillis(ms), absl::UTCTimeZone());
}

std::string StandbyReadsText(
    const google::protobuf::RepeatedPtrField<kiq::v1::StandbyRead>& reads) {
  std::string out;
  for (const kiq::v1::StandbyRead& read : reads) {
    absl::StrAppend(&out, "stale: partition ", read.partition(), " read from a standby replica on ",
                    NodeIdText(read.node_id()), ", ", read.lag_records(), " records behind\n");
  }
  return out;
}

std::string RenderWindowsTable(const kiq::v1::WindowFetchResponse& response) {
  if (response.entries().empty()) return "no windows\n";
  std::vector<Row> rows;
  for (const kiq::v1::Entry& entry : response.entries()) rows.push_back(WindowEntryRow(entry));
  return absl::StrCat(RenderTable(WindowEntriesHeader(), rows),
                      StandbyReadsText(response.standby_reads()));
}

std::string RenderGetTable(const kiq::v1::GetResponse& response) {
  if (!response.found()) {
    return absl::StrCat("not found\n", StandbyReadsText(response.standby_reads()));
  }
  return absl::StrCat(RenderTable(EntriesHeader(), {EntryRow(response.entry())}),
                      StandbyReadsText(response.standby_reads()));
}

std::string RenderGetManyTable(const kiq::v1::GetManyResponse& response) {
  std::vector<Row> rows;
  std::vector<std::string> missing;
  google::protobuf::RepeatedPtrField<kiq::v1::StandbyRead> stale;
  std::set<int32_t> stale_partitions;
  for (const kiq::v1::GetResponse& result : response.results()) {
    if (result.found()) {
      rows.push_back(EntryRow(result.entry()));
    } else {
      const kiq::v1::Entry& e = result.entry();
      missing.push_back(QuoteForMessage(e.key_bytes().empty() ? e.key() : e.key_bytes()));
    }
    for (const kiq::v1::StandbyRead& read : result.standby_reads()) {
      if (stale_partitions.insert(read.partition()).second) *stale.Add() = read;
    }
  }
  std::string out = rows.empty() ? "" : RenderTable(EntriesHeader(), rows);
  if (!missing.empty()) absl::StrAppend(&out, "not found: ", absl::StrJoin(missing, ", "), "\n");
  return absl::StrCat(out, StandbyReadsText(stale));
}

std::string RenderCountText(const kiq::v1::CountResponse& response) {
  const std::string stale = StandbyReadsText(response.standby_reads());
  if (response.missing_partitions().empty()) {
    return absl::StrCat("count: ", response.count(), "\n", stale);
  }
  return absl::StrCat("count: ", response.count(), " (partial: partitions ",
                      absl::StrJoin(response.missing_partitions(), ","), " missing)\n", stale);
}

std::string PartitionStateName(kiq::v1::PartitionState state) {
  switch (state) {
    case kiq::v1::PARTITION_STATE_UNSPECIFIED:
      return "UNSPECIFIED";
    case kiq::v1::PARTITION_STATE_RESTORING:
      return "RESTORING";
    case kiq::v1::PARTITION_STATE_ACTIVE:
      return "ACTIVE";
    case kiq::v1::PARTITION_STATE_FAILED:
      return "FAILED";
    case kiq::v1::PARTITION_STATE_STANDBY:
      return "STANDBY";
    default:
      // proto3 enums are open: a newer server may send a state this client does not know.
      return absl::StrCat("UNKNOWN(", static_cast<int>(state), ")");
  }
}

std::string OwnedPartitionsText(
    const google::protobuf::RepeatedPtrField<kiq::v1::OwnedPartition>& partitions) {
  if (partitions.empty()) return "-";
  std::vector<const kiq::v1::OwnedPartition*> sorted;
  sorted.reserve(partitions.size());
  for (const kiq::v1::OwnedPartition& p : partitions) sorted.push_back(&p);
  std::stable_sort(sorted.begin(), sorted.end(),
                   [](const kiq::v1::OwnedPartition* a, const kiq::v1::OwnedPartition* b) {
                     return a->partition() < b->partition();
                   });
  std::vector<std::string> cells;
  cells.reserve(sorted.size());
  for (const kiq::v1::OwnedPartition* p : sorted) {
    std::string cell = absl::StrCat(p->partition());
    switch (p->state()) {
      case kiq::v1::PARTITION_STATE_ACTIVE:
        break;
      case kiq::v1::PARTITION_STATE_RESTORING:
        cell.push_back('R');
        break;
      case kiq::v1::PARTITION_STATE_FAILED:
        cell.push_back('F');
        break;
      case kiq::v1::PARTITION_STATE_STANDBY:
        cell.push_back('S');
        break;
      default:
        cell.push_back('?');
        break;
    }
    cells.push_back(std::move(cell));
  }
  return absl::StrJoin(cells, ",");
}

std::string LeaseText(int64_t lease_expiry_ms, absl::Time now) {
  if (lease_expiry_ms == 0) return "-";
  const int64_t left_ms = lease_expiry_ms - absl::ToUnixMillis(now);
  if (left_ms <= 0) return "expired";
  return absl::StrCat((left_ms + 999) / 1000, "s");
}

std::string RenderNodesTable(const kiq::v1::NodesResponse& response, absl::Time now) {
  if (response.nodes().empty()) return "no nodes\n";
  std::vector<Row> rows;
  rows.reserve(response.nodes_size());
  for (const kiq::v1::NodeInfo& node : response.nodes()) {
    rows.push_back({NodeIdText(node.node_id()), EndpointText(node), StoresText(node.stores()),
                    OwnedPartitionsText(node.partitions()),
                    LeaseText(node.lease_expiry_ms(), now)});
  }
  return RenderTable({"NODE", "ENDPOINT", "STORES", "PARTITIONS", "LEASE"}, rows);
}

std::string RenderNodeForKeyText(std::string_view store, std::string_view key,
                                 const kiq::v1::NodeForKeyResponse& response) {
  std::string line =
      absl::StrCat("key ", QuoteForMessage(key), " of store ", EscapeForTerminal(store),
                   " → partition ", response.partition(), " → ");
  const kiq::v1::NodeInfo& owner = response.owner();
  if (owner.node_id().empty()) {
    absl::StrAppend(&line, "no live owner\n");
  } else {
    absl::StrAppend(&line, "node ", EscapeForTerminal(owner.node_id()), " at ", EndpointText(owner),
                    " (", PartitionStateName(response.state()), ")\n");
  }
  return line;
}

absl::StatusOr<std::string> RenderJson(const google::protobuf::Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = false;
  options.always_print_primitive_fields = true;
  std::string json;
  const auto status = google::protobuf::util::MessageToJsonString(message, &json, options);
  if (!status.ok()) {
    // Protobuf's status codes are the canonical ones too.
    return absl::Status(static_cast<absl::StatusCode>(status.code()),
                        absl::StrCat("render ", message.GetTypeName(),
                                     " as JSON: ", std::string(status.message())));
  }
  json.push_back('\n');
  return json;
}

void MergePage(const kiq::v1::ScanResponse& page, kiq::v1::ScanResponse* merged) {
  merged->mutable_entries()->MergeFrom(page.entries());
  merged->set_next_page_token(page.next_page_token());
  *merged->mutable_position() = page.position();
  for (int32_t p : page.missing_partitions()) {
    const auto& missing = merged->missing_partitions();
    if (std::find(missing.begin(), missing.end(), p) == missing.end()) {
      merged->add_missing_partitions(p);
    }
  }
  merged->mutable_standby_reads()->MergeFrom(page.standby_reads());
}

}  // namespace kiq::client
