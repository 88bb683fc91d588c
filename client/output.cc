#include "client/output.h"

#include <algorithm>
#include <array>
#include <cstddef>
#include <vector>

#include <google/protobuf/util/json_util.h>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "client/text.h"

namespace kiq::client {
namespace {

using Row = std::array<std::string, 3>;

void AppendPadded(const std::string& cell, size_t width, std::string* out) {
  out->append(cell);
  out->append(width - DisplayWidth(cell), ' ');
}

std::string RenderTable(const std::vector<Row>& rows) {
  const Row header = {"KEY", "VALUE", "PARTITION"};
  std::array<size_t, 3> widths{};
  for (size_t c = 0; c < widths.size(); ++c) widths[c] = DisplayWidth(header[c]);
  for (const Row& row : rows) {
    for (size_t c = 0; c < widths.size(); ++c) {
      widths[c] = std::max(widths[c], DisplayWidth(row[c]));
    }
  }
  std::string out;
  const auto append_row = [&](const Row& row) {
    AppendPadded(row[0], widths[0], &out);
    out.append("  ");
    AppendPadded(row[1], widths[1], &out);
    out.append("  ");
    // The last column is not padded: no trailing spaces.
    out.append(row[2]);
    out.push_back('\n');
  };
  append_row(header);
  for (const Row& row : rows) append_row(row);
  return out;
}

Row EntryRow(const kiq::v1::Entry& entry) {
  return {EntryKeyText(entry), EntryValueText(entry), absl::StrCat(entry.partition())};
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
  std::vector<Row> rows;
  rows.reserve(entries.size());
  for (const kiq::v1::Entry& entry : entries) rows.push_back(EntryRow(entry));
  return RenderTable(rows);
}

std::string RenderGetTable(const kiq::v1::GetResponse& response) {
  if (!response.found()) return "not found\n";
  return RenderTable({EntryRow(response.entry())});
}

std::string RenderCountText(const kiq::v1::CountResponse& response) {
  if (response.missing_partitions().empty()) {
    return absl::StrCat("count: ", response.count(), " (approximate)\n");
  }
  return absl::StrCat("count: ", response.count(), " (approximate; partial: partitions ",
                      absl::StrJoin(response.missing_partitions(), ","), " missing)\n");
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
}

}  // namespace kiq::client
