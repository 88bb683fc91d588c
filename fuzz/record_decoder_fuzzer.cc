// Record decoders: a record of any source of fuzz/record_topology.yaml (every store kind, a
// join, a group_by, windows; JSON, STRING and BYTES formats) goes through the ingestor's decode
// path, CompiledTopology::DecodeError then Process into every store of its source, into a
// StagedBatch that is never committed. Properties: no crash; a store fails only with
// INVALID_ARGUMENT (a bad record); an accepted JSON value renders to JSON text that parses
// again within the same limits.
#include <fuzzer/FuzzedDataProvider.h>
#include <stdlib.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>

#include <rapidjson/document.h>

#include "absl/container/flat_hash_map.h"
#include "common/kafka/record.h"
#include "common/logging.h"
#include "common/topology/json_value.h"
#include "common/topology/topology_config.h"
#include "fuzz/fuzz_util.h"
#include "node/process/compiled_topology.h"
#include "node/store/staged_batch.h"
#include "node/store/store_engine.h"

namespace kiq::fuzz {
namespace {

constexpr int32_t kPartitions = 4;

struct Fixture {
  std::string dir;
  std::unique_ptr<node::StoreEngine> engine;
  std::unique_ptr<node::CompiledTopology> topology;
  int64_t offset = 0;
};

Fixture* fixture = nullptr;

void RemoveDir() {
  std::error_code ec;
  if (fixture != nullptr) std::filesystem::remove_all(fixture->dir, ec);
}

}  // namespace
}  // namespace kiq::fuzz

using namespace kiq;  // NOLINT: fuzz entry points are global.

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  kiq::fuzz::QuietLogs();
  auto* f = new fuzz::Fixture();
  absl::StatusOr<kiq::v1::Topology> topology =
      LoadTopologyFile(KIQ_FUZZ_DIR "/record_topology.yaml");
  KIQ_FUZZ_CHECK(topology.ok());
  std::string tmpl = (std::filesystem::temp_directory_path() / "kiq-fuzz-XXXXXX").string();
  KIQ_FUZZ_CHECK(mkdtemp(tmpl.data()) != nullptr);
  f->dir = tmpl;
  fuzz::fixture = f;
  std::atexit(fuzz::RemoveDir);
  std::vector<std::string> names;
  for (const kiq::v1::Store& store : topology->stores()) names.push_back(store.name());
  absl::StatusOr<std::unique_ptr<node::StoreEngine>> engine =
      node::StoreEngine::Open(f->dir + "/stores", names);
  KIQ_FUZZ_CHECK(engine.ok());
  f->engine = std::move(*engine);
  absl::flat_hash_map<std::string, int32_t> counts;
  for (const kiq::v1::Source& source : topology->sources()) {
    counts[source.topic()] = fuzz::kPartitions;
  }
  absl::StatusOr<std::unique_ptr<node::CompiledTopology>> compiled =
      node::CompiledTopology::Compile(*topology, *f->engine, counts);
  KIQ_FUZZ_CHECK(compiled.ok());
  f->topology = std::move(*compiled);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::Fixture& f = *fuzz::fixture;
  FuzzedDataProvider in(data, size);
  const auto& sources = f.topology->sources();
  const node::CompiledSource& source =
      sources[in.ConsumeIntegralInRange<size_t>(0, sources.size() - 1)];
  const bool has_key = in.ConsumeBool();
  const bool has_value = in.ConsumeBool();
  const int64_t timestamp_ms = in.ConsumeIntegral<int64_t>();
  const std::string key = in.ConsumeRandomLengthString(256);
  const std::string value = in.ConsumeRemainingBytesAsString();

  Record record;
  record.topic = source.spec.topic();
  record.partition =
      has_key ? node::CompiledTopology::ExpectedPartition(source, key) : PartitionId(0);
  record.offset = Offset(f.offset++);
  record.timestamp_ms = timestamp_ms;
  if (has_key) record.key.emplace(key);
  if (has_value) record.value.emplace(value);

  node::StagedBatch batch(*f.engine);
  batch.SetSource(source.spec.topic(), record.offset);
  const std::optional<std::string> bad = f.topology->DecodeError(record, source);
  if (bad) return 0;
  if (has_value && source.spec.value_format() == kiq::v1::FORMAT_JSON) {
    // What was accepted renders and parses back (what Latest stores, what Entry.json reads).
    rapidjson::Document doc;
    KIQ_FUZZ_CHECK(ParseJson(value, f.topology->json_limits(), "value", &doc).ok());
    const std::string text = ToJsonText(doc);
    rapidjson::Document again;
    KIQ_FUZZ_CHECK(ParseJson(text, f.topology->json_limits(), "value", &again).ok());
    KIQ_FUZZ_CHECK(ToJsonText(again) == text);
  }
  for (int index : source.stores) {
    const absl::Status s = f.topology->Process(record, index, batch);
    KIQ_FUZZ_CHECK(s.ok() || absl::IsInvalidArgument(s));
  }
  return 0;
}
