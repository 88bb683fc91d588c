#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include <google/protobuf/message.h>
#include <google/protobuf/repeated_ptr_field.h>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "kiq/v1/membership.pb.h"
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
// line per entry; "no entries\n" when there are none. Entries of a windowed store (with a
// window) get WINDOW_START and WINDOW_END columns after KEY.
std::string RenderEntriesTable(const google::protobuf::RepeatedPtrField<kiq::v1::Entry>& entries);

// A window bound (ms since the epoch) as ISO-8601 UTC with milliseconds:
// "2023-11-14T22:14:00.000Z".
std::string WindowTimeText(int64_t ms);

// The windows of a WindowFetch: columns KEY, WINDOW_START, WINDOW_END, VALUE, PARTITION (bounds
// as WindowTimeText; the window is [start, end)); "no windows\n" when there are none.
std::string RenderWindowsTable(const kiq::v1::WindowFetchResponse& response);

// The one-row table of a found key, or "not found\n".
std::string RenderGetTable(const kiq::v1::GetResponse& response);

// "count: N\n", naming the partitions left out of a partial answer.
// get-many: a table of the keys found, in request order, then "not found: K1, K2" (quoted,
// escaped) if any is missing, then the partitions read from standby replicas (once each).
std::string RenderGetManyTable(const kiq::v1::GetManyResponse& response);
std::string RenderCountText(const kiq::v1::CountResponse& response);
// One "stale: partition P read from a standby replica on N, L records behind" line per entry.
std::string StandbyReadsText(
    const google::protobuf::RepeatedPtrField<kiq::v1::StandbyRead>& reads);

// A partition state as shown to people: ACTIVE, RESTORING, FAILED, UNSPECIFIED, or
// UNKNOWN(<number>) for a value newer than this client.
std::string PartitionStateName(kiq::v1::PartitionState state);

// The partitions a node owns, in partition order, comma-separated, each followed by a letter
// when it is not served: R restoring, F failed, ? unspecified or unknown. E.g. "0,1,4R,5F";
// "-" when the node owns none.
std::string OwnedPartitionsText(
    const google::protobuf::RepeatedPtrField<kiq::v1::OwnedPartition>& partitions);

// Time left on a lease at `now`: whole seconds rounded up ("30s", so "0s" never means a live
// lease), "expired" once `lease_expiry_ms` has passed, "-" when it is unset (0).
std::string LeaseText(int64_t lease_expiry_ms, absl::Time now);

// A table with columns NODE, ENDPOINT (host:port, [host]:port for IPv6), STORES
// (comma-separated), PARTITIONS (see OwnedPartitionsText) and LEASE (see LeaseText, at `now`),
// one line per node in the server's order; "no nodes\n" when there are none.
std::string RenderNodesTable(const kiq::v1::NodesResponse& response, absl::Time now);

// Where a key lives, as one line:
//   key "alice" of store order_count → partition 3 → node n2 at kiq-1:7070 (ACTIVE)
//   key "carol" of store order_count → partition 6 → no live owner
// The key is escaped, quoted and clipped as in error messages (QuoteForMessage).
std::string RenderNodeForKeyText(std::string_view store, std::string_view key,
                                 const kiq::v1::NodeForKeyResponse& response);

// One line of JSON (proto3 JSON mapping, lowerCamelCase names, bytes as base64, int64 as a
// string) with every field present, defaults included, so scripts see a stable shape; ends in
// "\n". Fails only if the message cannot be JSON (e.g. an Any of an unknown type).
absl::StatusOr<std::string> RenderJson(const google::protobuf::Message& message);

// Accumulates the pages of a scan into one ScanResponse, so a multi-page scan is shown (and
// printed as JSON) like a single answer: entries appended in order, next_page_token, position
// from the latest page, missing partitions from all of them without duplicates.
void MergePage(const kiq::v1::ScanResponse& page, kiq::v1::ScanResponse* merged);

}  // namespace kiq::client
