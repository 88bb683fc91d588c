// The page-token decoder (router/page_token.cc): any token against any store and range.
// Properties: no crash; a bad token is INVALID_ARGUMENT; every token
// EncodePageToken makes (for a real store name) decodes back to its key for its own request
// only.
#include <fuzzer/FuzzedDataProvider.h>

#include <cstdint>
#include <optional>
#include <string>

#include "common/utf8.h"
#include "fuzz/fuzz_util.h"
#include "router/page_token.h"

namespace {

std::optional<std::string> MaybeString(FuzzedDataProvider& in) {
  if (!in.ConsumeBool()) return std::nullopt;
  return in.ConsumeRandomLengthString(64);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  kiq::fuzz::QuietLogs();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider in(data, size);
  const std::string store = in.ConsumeRandomLengthString(64);
  kiq::router::KeyRange range;
  range.from = MaybeString(in);
  range.to = MaybeString(in);
  const std::string after = in.ConsumeRandomLengthString(64);
  const std::string token = in.ConsumeRemainingBytesAsString();

  absl::StatusOr<std::optional<std::string>> decoded =
      kiq::router::DecodePageToken(token, store, range);
  // Only the empty token is the first page.
  KIQ_FUZZ_CHECK(!decoded.ok() || decoded->has_value() == !token.empty());
  KIQ_FUZZ_CHECK(decoded.ok() || absl::IsInvalidArgument(decoded.status()));

  // A request's store is a known store's name: not empty, UTF-8 (a proto3 string field).
  if (store.empty() || !kiq::IsValidUtf8(store)) return 0;
  const std::string made = kiq::router::EncodePageToken(store, range, after);
  absl::StatusOr<std::optional<std::string>> back =
      kiq::router::DecodePageToken(made, store, range);
  KIQ_FUZZ_CHECK(back.ok() && back->has_value() && **back == after);
  kiq::router::KeyRange other = range;
  other.to = range.to ? std::nullopt : std::optional<std::string>("");
  KIQ_FUZZ_CHECK(!kiq::router::DecodePageToken(made, store, other).ok());
  return 0;
}
