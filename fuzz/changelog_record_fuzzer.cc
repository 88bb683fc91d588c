// The changelog-record decoder: what the Restorer reads back from a changelog topic (headers
// through ParseChangelogHeader, node/ingest/record_headers.h) and what the router then renders
// from the restored key and value (RenderEntry: window keys, int64/double codecs, JSON into
// Entry.json) for every value kind, windowed or not. Properties: no crash; a rendered entry
// serializes and parses back (so a client can read it); Entry.json is set only for values
// within kMaxEntryJsonDepth.
#include <fuzzer/FuzzedDataProvider.h>

#include <cstdint>
#include <string>

#include "common/topology/store_info.h"
#include "fuzz/fuzz_util.h"
#include "kiq/v1/query.pb.h"
#include "node/ingest/record_headers.h"
#include "router/entry.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  kiq::fuzz::QuietLogs();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider in(data, size);
  kiq::node::ChangelogMarks marks;
  const int headers = in.ConsumeIntegralInRange<int>(0, 4);
  for (int i = 0; i < headers; ++i) {
    // Mostly kiq's own header names, sometimes any.
    std::string name;
    switch (in.ConsumeIntegralInRange<int>(0, 3)) {
      case 0:
        name = kiq::node::kSourceOffsetHeader;
        break;
      case 1:
        name = kiq::node::kBatchEndHeader;
        break;
      case 2:
        name = kiq::node::kUpstreamHeader;
        break;
      default:
        name = in.ConsumeRandomLengthString(32);
    }
    const std::string value = in.ConsumeRandomLengthString(128);
    kiq::node::ParseChangelogHeader(name, value, &marks);
  }
  for (const auto& [partition, offset] : marks.upstream) (void)partition, (void)offset;

  kiq::StoreInfo store;
  store.name = "s";
  store.value_kind = static_cast<kiq::ValueKind>(in.ConsumeIntegralInRange<int>(0, 5));
  // Sizes a topology can declare (validated: > 0); the window start comes from the key.
  store.window_size_ms =
      in.ConsumeBool() ? in.ConsumeIntegralInRange<int64_t>(1, int64_t{366} * 24 * 3600 * 1000) : 0;
  const std::string key = in.ConsumeRandomLengthString(128);
  const std::string value = in.ConsumeRemainingBytesAsString();
  kiq::v1::GetResponse response;
  *response.mutable_entry() =
      kiq::router::RenderEntry(store, kiq::router::KeyValue{key, value, kiq::PartitionId(0)});
  std::string bytes;
  KIQ_FUZZ_CHECK(response.SerializeToString(&bytes));
  kiq::v1::GetResponse back;
  KIQ_FUZZ_CHECK(back.ParseFromString(bytes));
  return 0;
}
