#pragma once

namespace kiq {

// Routes libprotobuf's log lines (e.g. "String field ... contains invalid UTF-8 data when
// parsing a protocol buffer", one per bad request) into kiq's logger, rate-limited: at most
// kProtobufLogLinesPerMinute a minute, the next one saying how many were held back. A request
// that fails to parse is answered by gRPC itself, before any kiq handler runs. Call once from
// main, before serving (protobuf's SetLogHandler is not thread-safe).
inline constexpr int kProtobufLogLinesPerMinute = 10;
void RouteProtobufLogs();

}  // namespace kiq
