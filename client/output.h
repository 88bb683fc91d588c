#pragma once

#include <string>

#include <google/protobuf/message.h>
#include <google/protobuf/repeated_ptr_field.h>

#include "absl/status/statusor.h"
#include "kiq/v1/query.pb.h"

// How kiqctl shows answers: aligned tables for people, JSON for scripts. Pure functions from
// responses to text, so every format is unit tested without a server.
namespace kiq::client {

// The key of an entry as terminal text: `key`, or `key_bytes` escaped (\xNN) when the key is
// not UTF-8.
std::string EntryKeyText(const kiq::v1::Entry& entry);

// The value of an entry as terminal text: the JSON of `entry.json` when it is set (JSON and
// numeric stores), else the value bytes as text, escaped (\xNN) where they are not UTF-8 and
// for control characters and backslash (see EscapeForTerminal).
std::string EntryValueText(const kiq::v1::Entry& entry);

// A table with columns KEY, VALUE, PARTITION, aligned with two spaces between columns, one
// line per entry; "no entries\n" when there are none.
std::string RenderEntriesTable(const google::protobuf::RepeatedPtrField<kiq::v1::Entry>& entries);

// The one-row table of a found key, or "not found\n".
std::string RenderGetTable(const kiq::v1::GetResponse& response);

// "count: N (approximate)\n", naming the partitions left out of a partial answer.
std::string RenderCountText(const kiq::v1::CountResponse& response);

// One line of JSON (proto3 JSON mapping, lowerCamelCase names, bytes as base64, int64 as a
// string) with every field present, defaults included, so scripts see a stable shape; ends in
// "\n". Fails only if the message cannot be JSON (e.g. an Any of an unknown type).
absl::StatusOr<std::string> RenderJson(const google::protobuf::Message& message);

// Accumulates the pages of a scan into one ScanResponse, so a multi-page scan is shown (and
// printed as JSON) like a single answer: entries appended in order, next_page_token, position
// from the latest page, missing partitions from all of them without duplicates.
void MergePage(const kiq::v1::ScanResponse& page, kiq::v1::ScanResponse* merged);

}  // namespace kiq::client
