#pragma once

#include <string>

namespace kiq::v1 {
class GetResponse;
}

namespace kiq::router {

// Appends the proto3 JSON of a GetResponse to `*out`, byte for byte what the HTTP gateway's
// printer (protobuf's MessageToJsonString: lowerCamelCase names, defaults omitted) writes for
// it, without its binary round trip through a TypeResolver, which was the largest allocator of a
// local HTTP Get. Returns false, with `*out` as it was, for what it cannot promise to print the
// same: a string that is not well-formed UTF-8, a number that is not finite, a
// google.protobuf.Value with no kind, or JSON nested deeper than kMaxJsonDepth. The caller then
// prints with protobuf. Pure, thread-safe.
bool AppendGetResponseJson(const kiq::v1::GetResponse& response, std::string* out);

// google.protobuf.Value levels rendered here; deeper ones are left to protobuf's printer. Low
// enough that protobuf's own recursion limit (64 messages, and each Struct level is 3 of them)
// is never what differs.
inline constexpr int kMaxJsonDepth = 16;

}  // namespace kiq::router
