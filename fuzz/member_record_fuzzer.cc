// The membership-record decoder (router/membership_tailer.cc): any key and value of the members
// topic through DecodeMemberRecord, then into a RoutingTable (fresh per input, one known member
// already in it) and every lookup the router makes. Properties: no crash; an applied record
// names its key; lookups answer for every partition.
#include <fuzzer/FuzzedDataProvider.h>

#include <cstdint>
#include <optional>
#include <string>

#include "absl/time/time.h"
#include "common/logging.h"
#include "fuzz/fuzz_util.h"
#include "kiq/v1/membership.pb.h"
#include "router/membership_tailer.h"
#include "router/routing_table.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  kiq::fuzz::QuietLogs();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider in(data, size);
  std::optional<std::string> key;
  if (in.ConsumeBool()) key = in.ConsumeRandomLengthString(64);
  const bool has_value = in.ConsumeBool();
  const std::string value = in.ConsumeRemainingBytesAsString();

  const kiq::router::MemberUpdate update = kiq::router::DecodeMemberRecord(
      key ? &*key : nullptr, has_value ? value.data() : nullptr, value.size());

  kiq::router::RoutingTable table([] { return absl::FromUnixMillis(1'700'000'000'000); });
  kiq::v1::MemberRecord known;
  known.set_node_id("n1");
  known.set_lease_expiry_ms(1'800'000'000'000);
  table.Apply(known);
  switch (update.kind) {
    case kiq::router::MemberUpdate::Kind::kApply:
      KIQ_FUZZ_CHECK(key && *key == update.record.node_id());
      table.Apply(update.record);
      break;
    case kiq::router::MemberUpdate::Kind::kRemove:
      KIQ_FUZZ_CHECK(key && *key == update.node_id);
      table.Remove(update.node_id);
      break;
    case kiq::router::MemberUpdate::Kind::kSkip:
      KIQ_FUZZ_CHECK(!update.why.empty());
      break;
  }
  for (int32_t p = -1; p < 8; ++p) {
    (void)table.OwnerOf(p);
    (void)table.ActiveOwner(p, "n1");
  }
  (void)table.AllNodes();
  (void)table.NodesForStore("s");
  if (update.kind == kiq::router::MemberUpdate::Kind::kApply) {
    (void)table.Node(update.record.node_id());
  }
  return 0;
}
