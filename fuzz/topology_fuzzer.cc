// The topology loader: YAML text through ParseTopology (yaml-cpp, the YAML → proto mapping,
// validation) and, when it is valid, TopologyPlan::Build with every source at 4 partitions and
// the plan's derived views. Property: no crash; a valid topology always builds a plan.
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/container/flat_hash_map.h"
#include "common/logging.h"
#include "common/topology/plan.h"
#include "common/topology/topology_config.h"
#include "fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  kiq::fuzz::QuietLogs();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<kiq::v1::Topology> topology = kiq::ParseTopology(text, "fuzz.yaml");
  if (!topology.ok()) {
    KIQ_FUZZ_CHECK(!topology.status().message().empty());
    return 0;
  }
  absl::flat_hash_map<std::string, int32_t> counts;
  for (const kiq::v1::Source& source : topology->sources()) counts[source.topic()] = 4;
  absl::StatusOr<kiq::TopologyPlan> plan = kiq::TopologyPlan::Build(*topology, counts);
  KIQ_FUZZ_CHECK(plan.ok());
  (void)plan->InternalTopics();
  (void)plan->QueryableStores();
  for (const kiq::SourcePlan& source : plan->sources()) {
    const kiq::PartitionId p = kiq::TopologyPlan::ExpectedPartition(source, "key");
    KIQ_FUZZ_CHECK(p.value() >= 0 && p.value() < 4);
  }
  return 0;
}
