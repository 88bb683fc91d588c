// The ingest loop end to end on an in-process DevKafka (librdkafka's mock cluster, real Kafka
// protocol on 127.0.0.1): an Ingestor consumes a JSON topic into a table and a count store of a
// StoreEngine in a temp dir (optionally on a FaultEnv), writes the count's changelog ahead of
// each commit, dead-letters bad records, restores from the changelog on a fresh disk, and stops
// on its own when the disk fails. Every expectation is recomputed from what the test produced
// (partition and offset of each record, as the broker acknowledged them).
#include "node/ingest/ingestor.h"

#include <stdlib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <future>
#include <limits>
#include <map>
#include <memory>
#include <numeric>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <librdkafka/rdkafkacpp.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/substitute.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/kafka/client_config.h"
#include "common/kafka/dead_letter_queue.h"
#include "common/kafka/dev_kafka.h"
#include "common/topology/json_value.h"
#include "common/topology/partitioner.h"
#include "common/topology/topology_config.h"
#include "common/topology/value_codec.h"
#include "common/types.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "node/ingest/record_headers.h"
#include "node/local_stores_impl.h"
#include "node/process/compiled_topology.h"
#include "node/push/subscription_hub.h"
#include "node/store/partition_states.h"
#include "node/store/position_tracker.h"
#include "node/store/store_engine.h"
#include "tests/testing/deep_json.h"
#include "tests/testing/fault_env.h"
#include "tests/testing/status_matchers.h"

namespace kiq::node {
namespace {

using ::kiq::testing::DbFile;
using ::kiq::testing::FaultEnv;
using ::kiq::testing::FileOp;
using ::kiq::testing::StatusIs;
using ::testing::HasSubstr;

constexpr absl::Duration kWait = absl::Seconds(20);
constexpr int32_t kPartitions = 3;
constexpr char kTable[] = "latest";
constexpr char kCount[] = "counts";

// A JSON source feeding a table (latest value per key, rebuilt from the source) and a count
// (an aggregate, restored from its changelog). $0: the application id, $1: the source topic.
constexpr char kTopologyYaml[] = R"(
application_id: $0
sources:
  - topic: $1
    value_format: json
stores:
  - name: latest
    source: $1
    table: {}
  - name: counts
    source: $1
    count: {}
)";

// The Kafka names of one test: its own application (consumer group) and topics, so that tests
// can share one broker.
struct Names {
  std::string app;
  std::string topic;
  std::string changelog;  // of the count store
  std::string dlq;
};

Names NamesFor(int test) {
  Names n;
  n.app = absl::StrCat("ingest-test-", test);
  n.topic = absl::StrCat("events-", test);
  n.changelog = absl::StrCat(n.app, "-", kCount, "-changelog");
  n.dlq = absl::StrCat(n.app, "-dlq");
  return n;
}

// Short group timeouts: the mock cluster waits session.timeout.ms - 1 s for members to rejoin a
// rebalance (a first join waits 3 s, whatever the timeout).
constexpr int kSessionTimeoutMs = 4000;
const KafkaProperties kGroupTimeouts = {{"session.timeout.ms", absl::StrCat(kSessionTimeoutMs)},
                                        {"heartbeat.interval.ms", "400"}};

// Polls `done` until it holds or `timeout` passes.
bool WaitUntil(const std::function<bool()>& done, absl::Duration timeout = kWait) {
  const absl::Time deadline = absl::Now() + timeout;
  while (!done()) {
    if (absl::Now() >= deadline) return false;
    absl::SleepFor(absl::Milliseconds(5));
  }
  return true;
}

// One record to produce. `valid`: its value is JSON (or null), i.e. the source can decode it.
struct Input {
  std::string key;
  std::optional<std::string> value;
  bool valid = true;
  int32_t partition = -1;  // where to produce it; -1: where the partitioner puts its key
};

// An input as the broker acknowledged it.
struct Produced {
  Input in;
  int32_t partition = -1;
  int64_t offset = -1;
  RdKafka::ErrorCode err = RdKafka::ERR__IN_PROGRESS;
};

// `n` records over `keys` keys, numbered from `first`; every `tombstone_every`-th is a null value
// (deletes the table's key; a bad record for the count).
std::vector<Input> MakeInputs(int first, int n, int keys, int tombstone_every = 0) {
  std::vector<Input> out;
  for (int i = first; i < first + n; ++i) {
    Input in;
    in.key = absl::StrCat("k", (i * 7) % keys);
    if (tombstone_every == 0 || i % tombstone_every != tombstone_every - 1) {
      in.value = absl::StrCat(R"({"i":)", i, R"(,"key":")", in.key, R"("})");
    }
    out.push_back(std::move(in));
  }
  return out;
}

// Produces with Kafka's Java partitioner (what the topology's murmur2 source expects) and
// reports where each record landed. Not thread-safe.
class RecordProducer : public RdKafka::DeliveryReportCb {
 public:
  static std::unique_ptr<RecordProducer> Create(const std::string& bootstrap) {
    std::unique_ptr<RdKafka::Conf> conf(RdKafka::Conf::create(RdKafka::Conf::CONF_GLOBAL));
    std::unique_ptr<RecordProducer> out(new RecordProducer());
    std::string err;
    if (conf->set("bootstrap.servers", bootstrap, err) != RdKafka::Conf::CONF_OK ||
        conf->set("partitioner", "murmur2_random", err) != RdKafka::Conf::CONF_OK ||
        conf->set("linger.ms", "1", err) != RdKafka::Conf::CONF_OK ||
        conf->set("dr_cb", static_cast<RdKafka::DeliveryReportCb*>(out.get()), err) !=
            RdKafka::Conf::CONF_OK) {
      ADD_FAILURE() << "producer config: " << err;
      return nullptr;
    }
    out->producer_.reset(RdKafka::Producer::create(conf.get(), err));
    if (!out->producer_) {
      ADD_FAILURE() << "create producer: " << err;
      return nullptr;
    }
    return out;
  }

  // Fetches the metadata of `topic` now, so that the first Produce need not wait for the
  // producer's periodic refresh (about a second) to learn its partitions.
  absl::Status Warm(const std::string& topic) {
    std::string err;
    std::unique_ptr<RdKafka::Topic> handle(
        RdKafka::Topic::create(producer_.get(), topic, nullptr, err));
    if (!handle) return absl::InternalError(absl::StrCat("topic handle: ", err));
    RdKafka::Metadata* metadata = nullptr;
    RdKafka::ErrorCode code = producer_->metadata(false, handle.get(), &metadata, 5000);
    delete metadata;
    if (code != RdKafka::ERR_NO_ERROR) {
      return absl::UnavailableError(absl::StrCat("metadata: ", RdKafka::err2str(code)));
    }
    return absl::OkStatus();
  }

  // Produces `inputs` to `topic` in order and waits until every one is acknowledged.
  absl::StatusOr<std::vector<Produced>> Produce(const std::string& topic,
                                                const std::vector<Input>& inputs) {
    std::vector<Produced> out(inputs.size());
    for (size_t i = 0; i < inputs.size(); ++i) {
      out[i].in = inputs[i];
      const Input& in = out[i].in;
      while (true) {
        RdKafka::ErrorCode err = producer_->produce(
            topic, in.partition >= 0 ? in.partition : RdKafka::Topic::PARTITION_UA,
            RdKafka::Producer::RK_MSG_COPY,
            in.value ? const_cast<char*>(in.value->data()) : nullptr,
            in.value ? in.value->size() : 0, in.key.data(), in.key.size(), 0, &out[i]);
        if (err == RdKafka::ERR_NO_ERROR) break;
        if (err != RdKafka::ERR__QUEUE_FULL) {
          return absl::UnavailableError(absl::StrCat("produce: ", RdKafka::err2str(err)));
        }
        producer_->poll(10);
      }
    }
    if (producer_->flush(10000) != RdKafka::ERR_NO_ERROR) {
      return absl::DeadlineExceededError("producer flush timed out");
    }
    for (const Produced& p : out) {
      if (p.err != RdKafka::ERR_NO_ERROR) {
        return absl::UnavailableError(absl::StrCat("delivery: ", RdKafka::err2str(p.err)));
      }
    }
    return out;
  }

  void dr_cb(RdKafka::Message& message) override {
    auto* out = static_cast<Produced*>(message.msg_opaque());
    out->err = message.err();
    out->partition = message.partition();
    out->offset = message.offset();
  }

 private:
  RecordProducer() = default;
  std::unique_ptr<RdKafka::Producer> producer_;
};

// What one partition of the stores must hold.
struct PartitionTruth {
  std::map<std::string, std::string> table;
  std::map<std::string, int64_t> counts;
};

// The state of partition `p` after every record of it below offset `below`, applied one by one:
// the table keeps the latest value (a null deletes), the count counts non-null values, records
// the source cannot decode change nothing.
PartitionTruth TruthOf(const std::vector<Produced>& produced, int32_t p,
                       int64_t below = std::numeric_limits<int64_t>::max()) {
  std::vector<const Produced*> records;
  for (const Produced& r : produced) {
    if (r.partition == p && r.offset < below) records.push_back(&r);
  }
  std::sort(records.begin(), records.end(),
            [](const Produced* a, const Produced* b) { return a->offset < b->offset; });
  PartitionTruth truth;
  for (const Produced* r : records) {
    if (!r->in.valid) continue;
    if (!r->in.value) {
      truth.table.erase(r->in.key);
      continue;
    }
    truth.table[r->in.key] = *r->in.value;
    ++truth.counts[r->in.key];
  }
  return truth;
}

// The keys whose count records of partition p in [from, to) change.
std::set<std::string> CountedKeys(const std::vector<Produced>& produced, int32_t p, int64_t from,
                                  int64_t to) {
  std::set<std::string> keys;
  for (const Produced& r : produced) {
    if (r.partition == p && r.offset >= from && r.offset < to && r.in.valid && r.in.value) {
      keys.insert(r.in.key);
    }
  }
  return keys;
}

// The next offset of each partition after the produced records (its high watermark, as nothing
// else writes the topic).
std::vector<int64_t> EndOffsets(const std::vector<Produced>& produced) {
  std::vector<int64_t> end(kPartitions, 0);
  for (const Produced& r : produced) end[r.partition] = std::max(end[r.partition], r.offset + 1);
  return end;
}

void Append(std::vector<Produced>& all, const std::vector<Produced>& more) {
  all.insert(all.end(), more.begin(), more.end());
}

// A record read back from one of kiq's own topics.
struct ReadRecord {
  std::string key;
  std::optional<std::string> value;
  int32_t partition = -1;
  int64_t offset = -1;
  std::vector<std::pair<std::string, std::string>> headers;

  std::optional<std::string> Header(const std::string& name) const {
    for (const auto& [k, v] : headers) {
      if (k == name) return v;
    }
    return std::nullopt;
  }
  int HeaderCount(const std::string& name) const {
    return static_cast<int>(std::count_if(headers.begin(), headers.end(),
                                          [&](const auto& h) { return h.first == name; }));
  }
};

// Every record of `topic` (partitions 0..partitions-1), each partition in offset order, once the
// topic holds at least `at_least` records; by explicit assignment (no group).
std::vector<ReadRecord> ReadTopic(const std::string& bootstrap, const std::string& topic,
                                  int32_t partitions, int64_t at_least = 0) {
  std::vector<ReadRecord> out;
  std::unique_ptr<RdKafka::Conf> conf(RdKafka::Conf::create(RdKafka::Conf::CONF_GLOBAL));
  std::string err;
  conf->set("bootstrap.servers", bootstrap, err);
  conf->set("group.id", "ingest-test-reader", err);
  conf->set("enable.auto.commit", "false", err);
  conf->set("enable.partition.eof", "false", err);
  std::unique_ptr<RdKafka::KafkaConsumer> consumer(RdKafka::KafkaConsumer::create(conf.get(), err));
  if (!consumer) {
    ADD_FAILURE() << "create reader: " << err;
    return out;
  }
  std::vector<int64_t> low(partitions, 0);
  std::vector<int64_t> high(partitions, 0);
  const bool enough = WaitUntil([&] {
    int64_t total = 0;
    for (int32_t p = 0; p < partitions; ++p) {
      if (consumer->query_watermark_offsets(topic, p, &low[p], &high[p], 5000) !=
          RdKafka::ERR_NO_ERROR) {
        return false;
      }
      total += high[p] - low[p];
    }
    return total >= at_least;
  });
  EXPECT_TRUE(enough) << topic << " never held " << at_least << " records";
  std::vector<RdKafka::TopicPartition*> assign;
  std::vector<int64_t> next = low;
  for (int32_t p = 0; p < partitions; ++p) {
    if (high[p] > low[p]) assign.push_back(RdKafka::TopicPartition::create(topic, p, low[p]));
  }
  consumer->assign(assign);
  RdKafka::TopicPartition::destroy(assign);
  auto done = [&] {
    for (int32_t p = 0; p < partitions; ++p) {
      if (next[p] < high[p]) return false;
    }
    return true;
  };
  const absl::Time deadline = absl::Now() + kWait;
  while (!done() && absl::Now() < deadline) {
    std::unique_ptr<RdKafka::Message> m(consumer->consume(100));
    if (m->err() != RdKafka::ERR_NO_ERROR) continue;
    ReadRecord r;
    if (m->key_pointer() != nullptr) {
      r.key.assign(static_cast<const char*>(m->key_pointer()), m->key_len());
    }
    if (m->payload() != nullptr) r.value.emplace(static_cast<const char*>(m->payload()), m->len());
    r.partition = m->partition();
    r.offset = m->offset();
    if (RdKafka::Headers* headers = m->headers(); headers != nullptr) {
      for (const RdKafka::Headers::Header& h : headers->get_all()) {
        r.headers.emplace_back(h.key(),
                               std::string(static_cast<const char*>(h.value()), h.value_size()));
      }
    }
    next[r.partition] = r.offset + 1;
    out.push_back(std::move(r));
  }
  EXPECT_TRUE(done()) << "timed out reading " << topic;
  consumer->close();
  std::stable_sort(out.begin(), out.end(), [](const ReadRecord& a, const ReadRecord& b) {
    return a.partition != b.partition ? a.partition < b.partition : a.offset < b.offset;
  });
  return out;
}

// What the ownership callback saw: every partition's state and each store's position.
struct Observation {
  std::vector<std::pair<PartitionId, PartitionState>> states;
  std::map<std::pair<std::string, int32_t>, int64_t> positions;  // (store, partition) → next
};

// The node side of the test: a StoreEngine in `dir`, the topology compiled on it, partition
// states, positions, a subscription hub and the Ingestor over them. Destroyed in reverse order
// (the Ingestor first).
class TestNode {
 public:
  static std::unique_ptr<TestNode> Open(
      const std::string& bootstrap, const Names& names, const std::string& dir,
      const std::string& node_id, rocksdb::Env* env = nullptr, const JsonLimits& json_limits = {},
      const KafkaProperties& kafka_properties = {},
      const std::function<void(IngestorOptions&)>& configure = {}) {
    std::unique_ptr<TestNode> node(new TestNode(names.topic));
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    EXPECT_FALSE(ec) << "create " << dir << ": " << ec.message();
    absl::StatusOr<kiq::v1::Topology> topology =
        ParseTopology(absl::Substitute(kTopologyYaml, names.app, names.topic), "ingestor_test");
    EXPECT_OK(topology);
    if (!topology.ok()) return nullptr;
    absl::StatusOr<std::unique_ptr<StoreEngine>> engine =
        StoreEngine::Open(dir + "/stores", {kTable, kCount}, env);
    EXPECT_OK(engine);
    if (!engine.ok()) return nullptr;
    node->engine_ = std::move(*engine);
    absl::StatusOr<std::unique_ptr<CompiledTopology>> compiled = CompiledTopology::Compile(
        *topology, *node->engine_, {{names.topic, kPartitions}}, json_limits);
    EXPECT_OK(compiled);
    if (!compiled.ok()) return nullptr;
    node->topology_ = std::move(*compiled);

    IngestorOptions options;
    KafkaProperties properties = kGroupTimeouts;
    properties.insert(properties.end(), kafka_properties.begin(), kafka_properties.end());
    options.kafka = KafkaClientConfig(bootstrap, properties);
    options.node_id = node_id;
    options.hub = &node->hub_;
    TestNode* raw = node.get();
    options.on_ownership_change = [raw] { raw->Observe(); };
    if (configure) configure(options);
    absl::StatusOr<std::unique_ptr<Ingestor>> ingestor = Ingestor::Create(
        *node->topology_, *node->engine_, node->states_, node->positions_, std::move(options));
    EXPECT_OK(ingestor);
    if (!ingestor.ok()) return nullptr;
    node->ingestor_ = std::move(*ingestor);
    return node;
  }

  Ingestor& ingestor() { return *ingestor_; }
  StoreEngine& engine() { return *engine_; }
  PartitionStates& states() { return states_; }
  PositionTracker& positions() { return positions_; }
  SubscriptionHub& hub() { return hub_; }
  const CompiledStore& store(const char* name) const { return *topology_->FindStore(name); }
  // The stores as the router reads them.
  LocalStoresImpl local_stores() const {
    return LocalStoresImpl(*topology_, *engine_, states_, positions_);
  }

  std::optional<int64_t> Position(const char* store, int32_t p) const {
    std::optional<Offset> at = positions_.Get(store, topic_, PartitionId(p));
    return at ? std::optional<int64_t>(at->value()) : std::nullopt;
  }
  // The next source offset the engine holds for `store` in partition p (-1: none).
  int64_t StoredOffset(const char* name, int32_t p) const {
    absl::StatusOr<std::optional<Offset>> at =
        engine_->ReadOffset(store(name).source_stream, PartitionId(p));
    EXPECT_OK(at);
    return at.ok() && *at ? (*at)->value() : -1;
  }
  // Every partition owned and ACTIVE, and both stores' committed positions at `end`.
  bool CaughtUp(const std::vector<int64_t>& end) const {
    for (int32_t p = 0; p < kPartitions; ++p) {
      if (states_.StateOf(PartitionId(p)) != PartitionState::kActive) return false;
      if (Position(kTable, p) != end[p] || Position(kCount, p) != end[p]) return false;
    }
    return true;
  }

  std::vector<Observation> observations() const {
    absl::MutexLock lock(&mu_);
    return observed_;
  }

  // Partition p of both stores equals `truth`, entry for entry (a scan, so nothing extra).
  void ExpectHolds(int32_t p, const PartitionTruth& truth) const {
    SCOPED_TRACE(absl::StrCat("partition ", p));
    absl::StatusOr<std::vector<router::KeyValue>> table =
        engine_->Scan(store(kTable).handle, PartitionId(p), {}, std::nullopt, 100000);
    ASSERT_OK(table);
    std::map<std::string, std::string> table_seen;
    for (const router::KeyValue& kv : *table) table_seen[kv.key] = kv.value;
    EXPECT_EQ(table_seen, truth.table);
    absl::StatusOr<std::vector<router::KeyValue>> counts =
        engine_->Scan(store(kCount).handle, PartitionId(p), {}, std::nullopt, 100000);
    ASSERT_OK(counts);
    std::map<std::string, int64_t> counts_seen;
    for (const router::KeyValue& kv : *counts) {
      std::optional<int64_t> n = DecodeInt64(kv.value);
      ASSERT_TRUE(n.has_value()) << "count of " << kv.key << " is not 8 bytes";
      counts_seen[kv.key] = *n;
    }
    EXPECT_EQ(counts_seen, truth.counts);
    EXPECT_THAT(engine_->EntryCount(store(kTable).handle, PartitionId(p)),
                ::kiq::testing::IsOkAndHolds(static_cast<int64_t>(truth.table.size())));
    EXPECT_THAT(engine_->EntryCount(store(kCount).handle, PartitionId(p)),
                ::kiq::testing::IsOkAndHolds(static_cast<int64_t>(truth.counts.size())));
  }

 private:
  explicit TestNode(std::string topic) : topic_(std::move(topic)) {}

  // On the ingestion thread, whenever ownership or states change.
  void Observe() {
    Observation o;
    o.states = states_.Snapshot();
    for (const auto& [p, state] : o.states) {
      for (const char* name : {kTable, kCount}) {
        if (std::optional<int64_t> at = Position(name, p.value())) {
          o.positions[{name, p.value()}] = *at;
        }
      }
    }
    absl::MutexLock lock(&mu_);
    observed_.push_back(std::move(o));
  }

  const std::string topic_;
  std::unique_ptr<StoreEngine> engine_;
  std::unique_ptr<CompiledTopology> topology_;
  PartitionStates states_;
  PositionTracker positions_;
  SubscriptionHub hub_;
  mutable absl::Mutex mu_;
  std::vector<Observation> observed_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<Ingestor> ingestor_;  // last: stopped and destroyed first
};

// One broker for the suite (starting and stopping one costs about a second); each test has its
// own consumer group, topics and temp dir.
class IngestorTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    absl::StatusOr<std::unique_ptr<DevKafka>> kafka = DevKafka::Start(1);
    ASSERT_OK(kafka);
    kafka_ = kafka->release();
  }

  static void TearDownTestSuite() {
    delete kafka_;
    kafka_ = nullptr;
  }

  void SetUp() override {
    ASSERT_NE(kafka_, nullptr);
    static int tests = 0;
    names_ = NamesFor(++tests);
    std::string tmpl = ::testing::TempDir() + "ingestor_test.XXXXXX";
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr) << "mkdtemp " << tmpl;
    dir_ = tmpl;
    ASSERT_OK(kafka_->CreateTopic(names_.topic, kPartitions));
    ASSERT_OK(kafka_->CreateTopic(names_.changelog, kPartitions));
    ASSERT_OK(kafka_->CreateTopic(names_.dlq, 1));
    producer_ = RecordProducer::Create(kafka_->bootstrap_servers());
    ASSERT_NE(producer_, nullptr);
    ASSERT_OK(producer_->Warm(names_.topic));
  }

  void TearDown() override {
    producer_.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  std::unique_ptr<TestNode> OpenNode(const std::string& data, const std::string& node_id = "n1",
                                     rocksdb::Env* env = nullptr) {
    return TestNode::Open(kafka_->bootstrap_servers(), names_, absl::StrCat(dir_, "/", data),
                          node_id, env);
  }

  std::unique_ptr<TestNode> OpenNodeWith(const JsonLimits& json_limits,
                                         const KafkaProperties& kafka_properties = {}) {
    return TestNode::Open(kafka_->bootstrap_servers(), names_, absl::StrCat(dir_, "/n1"), "n1",
                          nullptr, json_limits, kafka_properties);
  }

  std::unique_ptr<TestNode> OpenNodeConfigured(
      const std::string& data, const std::function<void(IngestorOptions&)>& configure,
      const KafkaProperties& kafka_properties = {}) {
    return TestNode::Open(kafka_->bootstrap_servers(), names_, absl::StrCat(dir_, "/", data), "n1",
                          nullptr, {}, kafka_properties, configure);
  }

  // Runs a node until it has consumed everything produced; then checks that it holds exactly
  // the valid records, and returns the dead letters (`letters` of them expected).
  std::vector<ReadRecord> IngestAndReadDeadLetters(TestNode& node, size_t letters) {
    const std::vector<int64_t> end = EndOffsets(produced_);
    EXPECT_TRUE(WaitUntil([&] { return node.CaughtUp(end); }));
    ExpectHoldsEverythingProduced(node);
    std::vector<ReadRecord> dlq = Read(names_.dlq, 1, static_cast<int64_t>(letters));
    EXPECT_EQ(dlq.size(), letters);
    return dlq;
  }

  // The produced record a dead letter names (by its kiq.partition and kiq.offset headers).
  const Produced* OriginalOf(const ReadRecord& letter) const {
    int32_t partition = -1;
    int64_t offset = -1;
    if (!absl::SimpleAtoi(letter.Header("kiq.partition").value_or(""), &partition) ||
        !absl::SimpleAtoi(letter.Header("kiq.offset").value_or(""), &offset)) {
      return nullptr;
    }
    for (const Produced& r : produced_) {
      if (r.partition == partition && r.offset == offset) return &r;
    }
    return nullptr;
  }

  std::vector<ReadRecord> Read(const std::string& topic, int32_t partitions, int64_t at_least = 0) {
    return ReadTopic(kafka_->bootstrap_servers(), topic, partitions, at_least);
  }

  // Produces `inputs` to the source topic and adds them to produced_.
  void Produce(const std::vector<Input>& inputs) {
    absl::StatusOr<std::vector<Produced>> out = producer_->Produce(names_.topic, inputs);
    ASSERT_OK(out);
    Append(produced_, *out);
  }

  void ExpectHoldsEverythingProduced(const TestNode& node) const {
    for (int32_t p = 0; p < kPartitions; ++p) node.ExpectHolds(p, TruthOf(produced_, p));
  }

  static DevKafka* kafka_;
  Names names_;
  std::string dir_;
  std::unique_ptr<RecordProducer> producer_;
  std::vector<Produced> produced_;
};

DevKafka* IngestorTest::kafka_ = nullptr;

TEST_F(IngestorTest, MaterializesTableAndCountExactlyAndGoesFromRestoringToActive) {
  // Written before the node starts: its partitions are behind at assignment (RESTORING).
  ASSERT_NO_FATAL_FAILURE(Produce(MakeInputs(0, 90, 10, /*tombstone_every=*/9)));
  const std::vector<int64_t> at_assignment = EndOffsets(produced_);
  for (int32_t p = 0; p < kPartitions; ++p) {
    ASSERT_GT(at_assignment[p], 0) << "partition " << p << " got no records; change the keys";
  }

  std::unique_ptr<TestNode> node = OpenNode("n1");
  ASSERT_NE(node, nullptr);
  EXPECT_FALSE(node->ingestor().joined());
  node->ingestor().Start();
  ASSERT_TRUE(WaitUntil([&] { return node->CaughtUp(at_assignment); }))
      << "never caught up with the records produced before the start";
  EXPECT_TRUE(node->ingestor().joined());
  EXPECT_GT(node->ingestor().generation().value(), 0);

  // And while it runs.
  ASSERT_NO_FATAL_FAILURE(Produce(MakeInputs(90, 60, 10, /*tombstone_every=*/9)));
  const std::vector<int64_t> end = EndOffsets(produced_);
  ASSERT_TRUE(WaitUntil([&] { return node->CaughtUp(end); }));

  ExpectHoldsEverythingProduced(*node);
  for (int32_t p = 0; p < kPartitions; ++p) {
    EXPECT_EQ(node->StoredOffset(kTable, p), end[p]) << "partition " << p;
    EXPECT_EQ(node->StoredOffset(kCount, p), end[p]) << "partition " << p;
    EXPECT_EQ(node->ingestor().CachedHighWatermark(names_.topic, PartitionId(p)), end[p]);
  }

  const IngestStats& stats = node->ingestor().stats();
  const int64_t tombstones =
      std::count_if(produced_.begin(), produced_.end(),
                    [](const Produced& r) { return !r.in.value.has_value(); });
  ASSERT_GT(tombstones, 0);
  EXPECT_EQ(stats.records.load(), static_cast<int64_t>(produced_.size()));
  // A null value is a bad record for the count (not for the table, where it deletes).
  EXPECT_EQ(stats.bad_records.load(), tombstones);
  EXPECT_EQ(stats.wrong_partition.load(), 0);
  EXPECT_EQ(stats.restored_records.load(), 0);
  // At least one batch for the records before the start and one for those after.
  EXPECT_GE(stats.batches.load(), 2);

  // Every partition was advertised RESTORING first and turned ACTIVE only once its committed
  // state reached the high watermark seen at assignment; none failed.
  const std::vector<Observation> seen = node->observations();
  ASSERT_FALSE(seen.empty());
  for (int32_t p = 0; p < kPartitions; ++p) {
    SCOPED_TRACE(absl::StrCat("partition ", p));
    std::vector<PartitionState> states;
    for (const Observation& o : seen) {
      for (const auto& [q, state] : o.states) {
        if (q.value() != p) continue;
        if (states.empty() || states.back() != state) states.push_back(state);
        if (state == PartitionState::kActive) {
          for (const char* store : {kTable, kCount}) {
            auto at = o.positions.find({store, p});
            ASSERT_NE(at, o.positions.end()) << store << " has no position while ACTIVE";
            EXPECT_GE(at->second, at_assignment[p])
                << store << " was ACTIVE with committed state behind the watermark at assignment";
          }
        }
      }
    }
    EXPECT_EQ(states,
              (std::vector<PartitionState>{PartitionState::kRestoring, PartitionState::kActive}));
  }
  node->ingestor().Stop();
  EXPECT_OK(node->ingestor().Wait());
}

// A read answers with the position it reflects exactly, while batches commit under it: the
// count of a key equals the number of its records before that position. (Before: the position
// was read before the value, and a batch committed in between made the value newer.)
TEST_F(IngestorTest, AReadReflectsExactlyThePositionItAnswersWithWhileBatchesCommit) {
  std::unique_ptr<TestNode> node = OpenNode("n1");
  ASSERT_NE(node, nullptr);
  node->ingestor().Start();
  ASSERT_TRUE(WaitUntil([&] { return node->CaughtUp({0, 0, 0}); }));
  const LocalStoresImpl local = node->local_stores();

  struct Read {
    std::string key;
    int32_t partition;
    int64_t position;
    int64_t count;
  };
  std::vector<Read> reads;
  std::atomic<bool> stop{false};
  std::thread reader([&] {
    std::vector<std::string> keys;
    for (int k = 0; k < 4; ++k) keys.push_back(absl::StrCat("k", k));
    size_t i = 0;
    while (!stop.load()) {
      const std::string& key = keys[i++ % keys.size()];
      for (int32_t p = 0; p < kPartitions; ++p) {
        // As the router reads: only ACTIVE partitions.
        if (!local.CheckReadable(kCount, PartitionId(p)).ok()) continue;
        kiq::v1::Position position;
        absl::StatusOr<std::optional<std::string>> value;
        absl::Status s = local.ReadAt(kCount, PartitionId(p), &position, [&] {
          value = local.Get(kCount, PartitionId(p), key);
          return value.status();
        });
        if (!s.ok() || !value->has_value() || position.offsets_size() != 1) continue;
        std::optional<int64_t> n = DecodeInt64(**value);
        ASSERT_TRUE(n.has_value());
        reads.push_back(Read{key, p, position.offsets(0).offset(), *n});
      }
      absl::SleepFor(absl::Microseconds(50));  // leave the cores to ingestion
    }
  });
  // A paced stream: many small batches, a commit every few milliseconds.
  for (int round = 0; round < 200; ++round) {
    ASSERT_NO_FATAL_FAILURE(Produce(MakeInputs(round * 4, 4, 4)));
    absl::SleepFor(absl::Milliseconds(5));
  }
  ASSERT_TRUE(WaitUntil([&] { return node->CaughtUp(EndOffsets(produced_)); }));
  stop = true;
  reader.join();
  node->ingestor().Stop();
  EXPECT_OK(node->ingestor().Wait());

  ASSERT_GT(reads.size(), 100u);
  std::set<int64_t> positions_seen;
  int wrong = 0;
  std::string first_wrong;
  for (const Read& r : reads) {
    int64_t truth = 0;
    for (const Produced& rec : produced_) {
      if (rec.in.key == r.key && rec.partition == r.partition && rec.offset < r.position) ++truth;
    }
    positions_seen.insert(r.position);
    if (truth != r.count && wrong++ == 0) {
      first_wrong = absl::StrCat(r.key, " in partition ", r.partition, " at position ", r.position,
                                 ": count ", r.count, ", truth ", truth);
    }
  }
  EXPECT_EQ(wrong, 0) << wrong << " of " << reads.size() << " reads; first: " << first_wrong;
  EXPECT_GE(positions_seen.size(), 10u) << "the reads did not overlap ingestion";
}

// The race above made certain: a batch commits (as Ingestor::Flush does: bracketed, RocksDB
// first, positions after) in the middle of the read. The read is redone and answers the new
// value with the new position, never the new value with the old position.
TEST_F(IngestorTest, AReadOverlappingACommitIsRedoneAtTheNewPosition) {
  std::unique_ptr<TestNode> node = OpenNode("n1");
  ASSERT_NE(node, nullptr);
  const PartitionId p(1);
  node->states().Set(p, PartitionState::kActive);
  auto commit = [&](int64_t count) {
    node->positions().BeginCommit();
    StoreEngine::Batch batch = node->engine().NewBatch();
    batch.Put(node->store(kCount).handle, p, "k", EncodeInt64(count));
    ASSERT_OK(node->engine().Apply(batch));
    node->positions().Advance(kCount, names_.topic, p, Offset(count));
    node->positions().EndCommit();
  };
  ASSERT_NO_FATAL_FAILURE(commit(5));
  const LocalStoresImpl local = node->local_stores();
  int attempts = 0;
  kiq::v1::Position position;
  std::optional<int64_t> count;
  ASSERT_OK(local.ReadAt(kCount, p, &position, [&]() -> absl::Status {
    if (++attempts == 1) {
      std::thread ingestion([&] { commit(7); });
      ingestion.join();
    }
    absl::StatusOr<std::optional<std::string>> value = local.Get(kCount, p, "k");
    if (!value.ok()) return value.status();
    count = DecodeInt64(**value);
    return absl::OkStatus();
  }));
  EXPECT_EQ(attempts, 2);
  ASSERT_EQ(position.offsets_size(), 1);
  EXPECT_EQ(position.offsets(0).offset(), 7);
  EXPECT_EQ(count, 7);
}

TEST_F(IngestorTest, ChangelogIsWrittenAheadWithSourceOffsetAndBatchEndMarkers) {
  std::unique_ptr<TestNode> node = OpenNode("n1");
  ASSERT_NE(node, nullptr);
  node->ingestor().Start();
  ASSERT_TRUE(WaitUntil([&] { return node->CaughtUp(EndOffsets(produced_)); }));

  // Three rounds, each committed before the next is produced: at least one batch ends exactly
  // at each round's end.
  std::vector<std::vector<int64_t>> round_ends;
  for (int round = 0; round < 3; ++round) {
    ASSERT_NO_FATAL_FAILURE(Produce(MakeInputs(round * 40, 40, 8)));
    round_ends.push_back(EndOffsets(produced_));
    ASSERT_TRUE(WaitUntil([&] { return node->CaughtUp(round_ends.back()); })) << "round " << round;
  }
  const std::vector<int64_t> end = round_ends.back();

  const std::vector<ReadRecord> changelog = Read(names_.changelog, kPartitions);
  ASSERT_FALSE(changelog.empty());
  for (int32_t p = 0; p < kPartitions; ++p) {
    SCOPED_TRACE(absl::StrCat("changelog partition ", p));
    std::vector<const ReadRecord*> records;
    for (const ReadRecord& r : changelog) {
      if (r.partition == p) records.push_back(&r);
    }
    ASSERT_FALSE(records.empty());
    // Split into batches at the batch-end markers; replay each onto the state before it.
    std::map<std::string, int64_t> replayed;
    std::set<std::string> batch_keys;
    std::optional<int64_t> batch_offset;
    int64_t last_end = 0;
    std::set<int64_t> batch_ends;
    for (const ReadRecord* r : records) {
      SCOPED_TRACE(absl::StrCat("offset ", r->offset, " key ", r->key));
      EXPECT_EQ(r->HeaderCount(kSourceOffsetHeader), 1);
      int64_t source_next = -1;
      ASSERT_TRUE(absl::SimpleAtoi(r->Header(kSourceOffsetHeader).value_or(""), &source_next));
      // Every record of a batch names the same source offset: where that batch ends.
      if (batch_offset) {
        EXPECT_EQ(source_next, *batch_offset);
      }
      batch_offset = source_next;
      EXPECT_TRUE(batch_keys.insert(r->key).second) << "a key changed twice in one batch";
      ASSERT_TRUE(r->value.has_value()) << "a count is never deleted";
      std::optional<int64_t> n = DecodeInt64(*r->value);
      ASSERT_TRUE(n.has_value());
      replayed[r->key] = *n;
      if (r->HeaderCount(kBatchEndHeader) == 0) continue;
      EXPECT_EQ(r->HeaderCount(kBatchEndHeader), 1);
      // A complete batch: the state it leaves is exactly that of the records below its offset.
      EXPECT_GT(source_next, last_end) << "batches must move the source offset forward";
      EXPECT_LE(source_next, end[p]);
      EXPECT_EQ(replayed, TruthOf(produced_, p, source_next).counts)
          << "state after the batch ending at source offset " << source_next;
      // And it holds the entries its records changed, nothing else.
      EXPECT_EQ(batch_keys, CountedKeys(produced_, p, last_end, source_next))
          << "keys of the batch [" << last_end << ", " << source_next << ")";
      last_end = source_next;
      batch_ends.insert(source_next);
      batch_keys.clear();
      batch_offset.reset();
    }
    EXPECT_FALSE(batch_offset.has_value()) << "the last batch has no batch-end marker";
    EXPECT_EQ(last_end, end[p]);
    for (const std::vector<int64_t>& round_end : round_ends) {
      EXPECT_TRUE(batch_ends.count(round_end[p]) == 1)
          << "no batch ends at the round end " << round_end[p];
    }
    // The engine remembers how far into the changelog its state goes.
    absl::StatusOr<std::optional<Offset>> checkpoint =
        node->engine().ReadOffset(node->store(kCount).changelog_stream, PartitionId(p));
    ASSERT_OK(checkpoint);
    EXPECT_EQ(checkpoint->value_or(Offset(-1)), Offset(records.back()->offset + 1));
  }
  // Every entry above decoded as a count: the table writes no changelog (its source is one).
  ExpectHoldsEverythingProduced(*node);
  node->ingestor().Stop();
  EXPECT_OK(node->ingestor().Wait());
}

TEST_F(IngestorTest, FreshNodeRestoresCountFromChangelogAndContinuesExactly) {
  std::vector<int64_t> first_end;
  {
    std::unique_ptr<TestNode> first = OpenNode("first");
    ASSERT_NE(first, nullptr);
    ASSERT_NO_FATAL_FAILURE(Produce(MakeInputs(0, 60, 9)));
    first->ingestor().Start();
    ASSERT_TRUE(WaitUntil([&] { return first->CaughtUp(EndOffsets(produced_)); }));
    ASSERT_NO_FATAL_FAILURE(Produce(MakeInputs(60, 60, 9)));
    first_end = EndOffsets(produced_);
    ASSERT_TRUE(WaitUntil([&] { return first->CaughtUp(first_end); }));
    first->ingestor().Stop();
    ASSERT_OK(first->ingestor().Wait());
  }
  const std::vector<ReadRecord> changelog = Read(names_.changelog, kPartitions);
  ASSERT_FALSE(changelog.empty());

  // Same node id, empty disk: the count comes back from its changelog, the table from the
  // source topic.
  std::unique_ptr<TestNode> second = OpenNode("second");
  ASSERT_NE(second, nullptr);
  second->ingestor().Start();
  ASSERT_TRUE(WaitUntil([&] { return second->CaughtUp(first_end); }))
      << "the fresh node never caught up";
  const IngestStats& stats = second->ingestor().stats();
  EXPECT_GT(stats.restored_records.load(), 0);
  // Every changelog batch was complete (the first node committed all of them).
  EXPECT_EQ(stats.restored_records.load(), static_cast<int64_t>(changelog.size()));
  ExpectHoldsEverythingProduced(*second);
  for (int32_t p = 0; p < kPartitions; ++p) {
    EXPECT_EQ(second->StoredOffset(kCount, p), first_end[p]) << "partition " << p;
    EXPECT_EQ(second->StoredOffset(kTable, p), first_end[p]) << "partition " << p;
  }

  // New records after the restore are counted once, on top of the restored counts.
  ASSERT_NO_FATAL_FAILURE(Produce(MakeInputs(120, 45, 9)));
  const std::vector<int64_t> end = EndOffsets(produced_);
  ASSERT_TRUE(WaitUntil([&] { return second->CaughtUp(end); }));
  ExpectHoldsEverythingProduced(*second);
  for (int32_t p = 0; p < kPartitions; ++p) {
    EXPECT_EQ(second->StoredOffset(kCount, p), end[p]) << "partition " << p;
  }
  EXPECT_EQ(stats.bad_records.load(), 0);
  second->ingestor().Stop();
  EXPECT_OK(second->ingestor().Wait());
}

// While someone subscribes to an aggregate, each batch's changelog holds every write in order,
// each naming the source record that made it (not one folded write per key). A node that
// restores the partition (after its owner died, say) keeps those changes in its replay log, so
// a subscription that the owner served up to any offset resumes there with the same changes.
TEST_F(IngestorTest, WhileSomeoneSubscribesTheChangelogHoldsEveryWriteAndARestoreReplaysThem) {
  std::vector<int64_t> before;
  std::vector<int64_t> end;
  {
    std::unique_ptr<TestNode> first = OpenNode("first");
    ASSERT_NE(first, nullptr);
    ASSERT_NO_FATAL_FAILURE(Produce(MakeInputs(0, 30, 6)));  // nobody subscribes: folded
    first->ingestor().Start();
    before = EndOffsets(produced_);
    ASSERT_TRUE(WaitUntil([&] { return first->CaughtUp(before); }));
    absl::StatusOr<std::shared_ptr<Subscriber>> sub = first->hub().Register(
        first->store(kCount).handle, kCount, router::KeyMatch{}, {0, 1, 2}, {}, 100000, false);
    ASSERT_OK(sub);
    // Six keys: most batches write a key several times.
    ASSERT_NO_FATAL_FAILURE(Produce(MakeInputs(30, 90, 6)));
    end = EndOffsets(produced_);
    ASSERT_TRUE(WaitUntil([&] { return first->CaughtUp(end); }));
    first->hub().Unregister(sub->get());
    first->ingestor().Stop();
    ASSERT_OK(first->ingestor().Wait());
  }
  const std::vector<ReadRecord> changelog = Read(names_.changelog, kPartitions);
  for (int32_t p = 0; p < kPartitions; ++p) {
    SCOPED_TRACE(absl::StrCat("changelog partition ", p));
    std::vector<int64_t> record_offsets;
    for (const ReadRecord& r : changelog) {
      if (r.partition != p) continue;
      int64_t source_next = 0;
      ASSERT_TRUE(absl::SimpleAtoi(r.Header(kSourceOffsetHeader).value_or(""), &source_next));
      std::optional<std::string> record = r.Header(kRecordOffsetHeader);
      if (!record) {
        EXPECT_LE(source_next, before[p]) << "a folded write while someone subscribed";
        continue;
      }
      int64_t o = -1;
      ASSERT_TRUE(absl::SimpleAtoi(*record, &o));
      EXPECT_GE(o, before[p]);
      EXPECT_LT(o, source_next);
      // The count right after record o, and nothing folded into it.
      ASSERT_TRUE(r.value.has_value());
      EXPECT_EQ(DecodeInt64(*r.value), TruthOf(produced_, p, o + 1).counts[r.key])
          << "key " << r.key << " at record " << o;
      record_offsets.push_back(o);
    }
    // One write per record (every record is counted), in order.
    std::vector<int64_t> want(end[p] - before[p]);
    std::iota(want.begin(), want.end(), before[p]);
    EXPECT_EQ(record_offsets, want);
  }

  // A fresh node restores the partitions and keeps the restored changes for replay.
  std::unique_ptr<TestNode> second = OpenNode("second");
  ASSERT_NE(second, nullptr);
  second->ingestor().Start();
  ASSERT_TRUE(WaitUntil([&] { return second->CaughtUp(end); }));
  const StoreHandle counts = second->store(kCount).handle;
  for (int32_t p = 0; p < kPartitions; ++p) {
    SCOPED_TRACE(absl::StrCat("partition ", p));
    const int64_t mid = before[p] + (end[p] - before[p]) / 2;
    absl::StatusOr<std::shared_ptr<Subscriber>> resumed =
        second->hub().Register(counts, kCount, router::KeyMatch{}, {p}, {{p, mid}}, 100000, false);
    ASSERT_OK(resumed);
    std::vector<router::ChangeEvent> got;
    ASSERT_OK((*resumed)->queue->Take(100000, &got, nullptr));
    second->hub().Unregister(resumed->get());
    ASSERT_EQ(got.size(), static_cast<size_t>(end[p] - mid));
    for (size_t i = 0; i < got.size(); ++i) {
      const router::ChangeEvent& c = got[i];
      EXPECT_EQ(c.offset, mid + static_cast<int64_t>(i));
      const int64_t n = TruthOf(produced_, p, c.offset + 1).counts[c.key];
      EXPECT_EQ(c.new_value, EncodeInt64(n)) << c.key << " at " << c.offset;
      EXPECT_EQ(c.old_value, n == 1 ? std::nullopt : std::optional<std::string>(EncodeInt64(n - 1)))
          << c.key << " at " << c.offset;
    }
    // Inside the folded batches: not replayable, and said so.
    if (before[p] > 0) {
      EXPECT_THAT(second->hub().Register(counts, kCount, router::KeyMatch{}, {p},
                                         {{p, before[p] - 1}}, 100000, false),
                  StatusIs(absl::StatusCode::kAborted, "cannot resume"));
    }
  }
  second->ingestor().Stop();
  EXPECT_OK(second->ingestor().Wait());
}

TEST_F(IngestorTest, MalformedJsonIsCountedDeadLetteredAndSkipped) {
  std::vector<Input> inputs = MakeInputs(0, 30, 6);
  // Three values the JSON source cannot decode, among good ones.
  for (int i : {4, 13, 27}) {
    inputs[i].value = absl::StrCat(R"({"i":)", i, R"(, not json)");
    inputs[i].valid = false;
  }
  std::unique_ptr<TestNode> node = OpenNode("n1");
  ASSERT_NE(node, nullptr);
  node->ingestor().Start();
  ASSERT_NO_FATAL_FAILURE(Produce(inputs));
  const std::vector<int64_t> end = EndOffsets(produced_);
  ASSERT_TRUE(WaitUntil([&] { return node->CaughtUp(end); }));

  // The records around the bad ones are applied; the bad ones change nothing.
  ExpectHoldsEverythingProduced(*node);
  for (int32_t p = 0; p < kPartitions; ++p) {
    EXPECT_EQ(node->StoredOffset(kCount, p), end[p]) << "partition " << p;
    EXPECT_EQ(node->StoredOffset(kTable, p), end[p]) << "partition " << p;
  }
  std::vector<const Produced*> bad;
  for (const Produced& r : produced_) {
    if (!r.in.valid) bad.push_back(&r);
  }
  ASSERT_EQ(bad.size(), 3u);
  // A value that does not decode is bad for every store of its source: counted and
  // dead-lettered once per store.
  const IngestStats& stats = node->ingestor().stats();
  EXPECT_EQ(stats.bad_records.load(), 2 * static_cast<int64_t>(bad.size()));
  EXPECT_EQ(stats.records.load(), static_cast<int64_t>(produced_.size()));

  const std::vector<ReadRecord> dlq = Read(names_.dlq, 1, 2 * static_cast<int64_t>(bad.size()));
  ASSERT_EQ(dlq.size(), 2 * bad.size());
  std::multiset<std::tuple<std::string, std::string, int32_t, int64_t>> want;
  for (const Produced* r : bad) {
    for (const char* store : {kTable, kCount}) {
      want.emplace(store, r->in.key, r->partition, r->offset);
    }
  }
  std::multiset<std::tuple<std::string, std::string, int32_t, int64_t>> got;
  for (const ReadRecord& d : dlq) {
    SCOPED_TRACE(absl::StrCat("dead letter at ", d.offset));
    EXPECT_EQ(d.Header("kiq.reason"), "value is not JSON");
    EXPECT_EQ(d.Header("kiq.topic"), names_.topic);
    int32_t partition = -1;
    int64_t offset = -1;
    EXPECT_TRUE(absl::SimpleAtoi(d.Header("kiq.partition").value_or(""), &partition));
    EXPECT_TRUE(absl::SimpleAtoi(d.Header("kiq.offset").value_or(""), &offset));
    got.emplace(d.Header("kiq.store").value_or(""), d.key, partition, offset);
    // The original bytes, to fix and replay.
    auto original = std::find_if(bad.begin(), bad.end(), [&](const Produced* r) {
      return r->partition == partition && r->offset == offset;
    });
    ASSERT_NE(original, bad.end());
    EXPECT_EQ(d.value, (*original)->in.value);
  }
  EXPECT_EQ(got, want);
  node->ingestor().Stop();
  EXPECT_OK(node->ingestor().Wait());
}

// A value nested 300,000 levels deep crashed the node (stack overflow in RapidJSON's recursive
// reader) on every restart; 20,000 levels was accepted. Both are bad records now, as are a JSON
// string that is not UTF-8 and a value over the size limit; the records around them are applied.
TEST_F(IngestorTest, RecordsPastTheJsonLimitsAreDeadLetteredWithTheirReason) {
  JsonLimits limits;
  limits.max_value_bytes = 700'000;
  std::vector<Input> inputs = MakeInputs(0, 20, 5);
  const std::string deep_object = testing::DeepJsonObject(20'000);
  const std::map<int, std::pair<std::string, std::string>> bad = {
      {3, {testing::DeepJsonArray(300'000), "value nests deeper than 64 levels"}},
      {7, {deep_object, "value nests deeper than 64 levels"}},
      {11, {"{\"s\": \"caf\xe9\"}", "value is not UTF-8 (a JSON string holds invalid UTF-8)"}},
      {15,
       {absl::StrCat("{\"s\": \"", std::string(800'000, 'a'), "\"}"),
        "value too large (800009 bytes; the limit is 700000)"}},
  };
  for (const auto& [i, value_reason] : bad) {
    inputs[i].value = value_reason.first;
    inputs[i].valid = false;
  }
  std::unique_ptr<TestNode> node = OpenNodeWith(limits);
  ASSERT_NE(node, nullptr);
  node->ingestor().Start();
  ASSERT_NO_FATAL_FAILURE(Produce(inputs));
  const std::vector<ReadRecord> dlq = IngestAndReadDeadLetters(*node, 2 * bad.size());
  EXPECT_EQ(node->ingestor().stats().bad_records.load(), 2 * static_cast<int64_t>(bad.size()));
  std::map<std::string, int> letters_per_reason;
  for (const ReadRecord& d : dlq) {
    const Produced* original = OriginalOf(d);
    ASSERT_NE(original, nullptr) << "dead letter at " << d.offset << " names no produced record";
    const auto it = std::find_if(bad.begin(), bad.end(), [&](const auto& b) {
      return b.second.first == original->in.value;
    });
    ASSERT_NE(it, bad.end()) << "a good record was dead-lettered";
    EXPECT_EQ(d.Header("kiq.reason"), it->second.second);
    EXPECT_EQ(d.value, original->in.value);  // whole: under the producer's limit
    EXPECT_EQ(d.Header("kiq.truncated"), std::nullopt);
    ++letters_per_reason[it->second.second];
  }
  EXPECT_EQ(letters_per_reason["value nests deeper than 64 levels"], 4);
  node->ingestor().Stop();
  EXPECT_OK(node->ingestor().Wait());
}

// A dead letter over the producer's message.max.bytes was refused ("Message size too large")
// and the record was in no DLQ. It goes truncated now, with headers saying so.
TEST_F(IngestorTest, DeadLetterTooLargeForTheProducerIsSentTruncated) {
  std::vector<Input> inputs = MakeInputs(0, 6, 3);
  inputs[2].key = std::string(100'000, 'k');
  inputs[2].value = std::string(150'000, 'x');  // not JSON
  inputs[2].valid = false;
  std::unique_ptr<TestNode> node = OpenNodeWith({}, {{"message.max.bytes", "200000"}});
  ASSERT_NE(node, nullptr);
  node->ingestor().Start();
  ASSERT_NO_FATAL_FAILURE(Produce(inputs));
  const std::vector<ReadRecord> dlq = IngestAndReadDeadLetters(*node, 2);
  std::set<std::string> stores;
  for (const ReadRecord& d : dlq) {
    ASSERT_EQ(OriginalOf(d), &produced_[2]);
    EXPECT_EQ(d.Header("kiq.reason"), "value is not JSON");
    EXPECT_EQ(d.Header("kiq.truncated"), "true");
    EXPECT_EQ(d.Header("kiq.original.size"), "150000");
    EXPECT_EQ(d.Header("kiq.original.key.size"), "100000");
    EXPECT_EQ(d.Header("kiq.topic"), names_.topic);
    EXPECT_EQ(d.value, std::string(DeadLetterQueue::kTruncatedBytes, 'x'));
    EXPECT_EQ(d.key, std::string(DeadLetterQueue::kTruncatedBytes, 'k'));
    stores.insert(d.Header("kiq.store").value_or(""));
  }
  EXPECT_EQ(stores, (std::set<std::string>{kTable, kCount}));
  node->ingestor().Stop();
  EXPECT_OK(node->ingestor().Wait());
}

// A record whose key maps to another partition was applied (All showed it, Get could not find
// it) and only counted. It is dead-lettered and skipped now.
TEST_F(IngestorTest, RecordInTheWrongPartitionIsDeadLetteredAndNotApplied) {
  std::vector<Input> inputs = MakeInputs(0, 12, 4);
  Input stray;
  stray.key = "stray";
  stray.value = R"({"i": 99})";
  const int32_t right = Murmur2Partition(stray.key, kPartitions);
  stray.partition = (right + 1) % kPartitions;
  stray.valid = false;
  inputs.insert(inputs.begin() + 5, stray);
  std::unique_ptr<TestNode> node = OpenNode("n1");
  ASSERT_NE(node, nullptr);
  node->ingestor().Start();
  ASSERT_NO_FATAL_FAILURE(Produce(inputs));
  const std::vector<ReadRecord> dlq = IngestAndReadDeadLetters(*node, 2);
  const IngestStats& stats = node->ingestor().stats();
  EXPECT_EQ(stats.wrong_partition.load(), 1);
  EXPECT_EQ(stats.bad_records.load(), 2);
  for (const ReadRecord& d : dlq) {
    const Produced* original = OriginalOf(d);
    ASSERT_NE(original, nullptr);
    EXPECT_EQ(original->in.key, "stray");
    EXPECT_EQ(original->partition, stray.partition);
    EXPECT_EQ(
        d.Header("kiq.reason"),
        absl::StrCat("wrong partition: the murmur2 partitioner maps the key to partition ", right));
  }
  node->ingestor().Stop();
  EXPECT_OK(node->ingestor().Wait());
}

TEST_F(IngestorTest, FailingDiskStopsIngestionWithoutHalfAppliedBatches) {
  FaultEnv fault;  // outlives the node's engine
  std::unique_ptr<TestNode> node = OpenNode("n1", "n1", fault.env());
  ASSERT_NE(node, nullptr);
  ASSERT_NO_FATAL_FAILURE(Produce(MakeInputs(0, 45, 9, /*tombstone_every=*/7)));
  const std::vector<int64_t> before_fault = EndOffsets(produced_);
  node->ingestor().Start();
  ASSERT_TRUE(WaitUntil([&] { return node->CaughtUp(before_fault); }));

  fault.Fail(DbFile::kWal, FileOp::kAppend);
  ASSERT_NO_FATAL_FAILURE(Produce(MakeInputs(45, 45, 9, /*tombstone_every=*/7)));
  const std::vector<int64_t> end = EndOffsets(produced_);

  // The ingestion thread ends on its own; until it does, no position passes what was committed
  // before the fault.
  std::future<absl::Status> waited =
      std::async(std::launch::async, [&] { return node->ingestor().Wait(); });
  std::vector<int64_t> max_position(kPartitions, 0);
  const absl::Time deadline = absl::Now() + kWait;
  // Sampled at least once: the ingestion may have ended before the first look.
  do {
    for (int32_t p = 0; p < kPartitions; ++p) {
      for (const char* store : {kTable, kCount}) {
        max_position[p] = std::max(max_position[p], node->Position(store, p).value_or(0));
      }
    }
  } while (waited.wait_for(std::chrono::milliseconds(5)) != std::future_status::ready &&
           absl::Now() < deadline);
  if (waited.wait_for(std::chrono::seconds(0)) != std::future_status::ready) {
    node->ingestor().Stop();  // lets Wait() return
    FAIL() << "ingestion went on with a failing disk";
  }
  const absl::Status status = waited.get();
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kUnavailable, "apply batch"));
  EXPECT_THAT(std::string(status.message()), HasSubstr("injected fault"));
  EXPECT_GT(fault.injected(), 0);
  for (int32_t p = 0; p < kPartitions; ++p) {
    EXPECT_EQ(max_position[p], before_fault[p])
        << "partition " << p << ": a position passed what was committed before the fault";
    // Ended, the ingestion left its partitions readable at what was committed (the node serves
    // reads until it exits), not forgotten as a revoke would.
    for (const char* store : {kTable, kCount}) {
      EXPECT_EQ(node->Position(store, p), before_fault[p]) << "partition " << p << " " << store;
    }
  }
  node->ingestor().Stop();  // joins the ended thread
  node.reset();             // closes RocksDB while the disk still fails

  // Reopened on a healthy disk: each store partition holds exactly the records below its stored
  // offset, and that offset is no further than what was committed.
  fault.StopFailing();
  absl::StatusOr<std::unique_ptr<StoreEngine>> engine =
      StoreEngine::Open(dir_ + "/n1/stores", {kTable, kCount}, fault.env());
  ASSERT_OK(engine);
  std::unique_ptr<StoreEngine> reopened = std::move(*engine);
  for (int32_t p = 0; p < kPartitions; ++p) {
    SCOPED_TRACE(absl::StrCat("partition ", p));
    for (const char* name : {kTable, kCount}) {
      SCOPED_TRACE(name);
      absl::StatusOr<StoreHandle> handle = reopened->Handle(name);
      ASSERT_OK(handle);
      // Where the engine keeps a store's next source offset (StorePlan::source_stream).
      absl::StatusOr<std::optional<Offset>> stored =
          reopened->ReadOffset(absl::StrCat(name, "/", names_.topic), PartitionId(p));
      ASSERT_OK(stored);
      ASSERT_TRUE(stored->has_value());
      const int64_t at = (*stored)->value();
      EXPECT_GE(at, before_fault[p]) << "a batch committed before the fault was lost";
      EXPECT_LE(at, end[p]);
      // Nothing commits while WAL appends fail.
      EXPECT_EQ(at, before_fault[p]);
      const PartitionTruth truth = TruthOf(produced_, p, at);
      absl::StatusOr<std::vector<router::KeyValue>> entries =
          reopened->Scan(*handle, PartitionId(p), {}, std::nullopt, 100000);
      ASSERT_OK(entries);
      if (std::string(name) == kTable) {
        std::map<std::string, std::string> seen;
        for (const router::KeyValue& kv : *entries) seen[kv.key] = kv.value;
        EXPECT_EQ(seen, truth.table);
      } else {
        std::map<std::string, int64_t> seen;
        for (const router::KeyValue& kv : *entries) seen[kv.key] = DecodeInt64(kv.value).value();
        EXPECT_EQ(seen, truth.counts);
      }
    }
  }
}

TEST_F(IngestorTest, StopIsPromptAndIdempotentAndARestartResumesFromItsStores) {
  ASSERT_NO_FATAL_FAILURE(Produce(MakeInputs(0, 30, 6)));
  const std::vector<int64_t> end = EndOffsets(produced_);
  {
    std::unique_ptr<TestNode> node = OpenNode("first");
    ASSERT_NE(node, nullptr);
    node->ingestor().Start();
    ASSERT_TRUE(WaitUntil([&] { return node->CaughtUp(end); }));

    const absl::Time started = absl::Now();
    node->ingestor().Stop();
    const absl::Duration took = absl::Now() - started;
    EXPECT_LT(took, absl::Seconds(2)) << "Stop took " << took;
    EXPECT_OK(node->ingestor().Wait());
    const absl::Time again = absl::Now();
    node->ingestor().Stop();
    EXPECT_LT(absl::Now() - again, absl::Milliseconds(100));
    EXPECT_OK(node->ingestor().Wait());
    // The final revoke gave every partition up.
    EXPECT_TRUE(node->states().Snapshot().empty());
    EXPECT_FALSE(node->ingestor().joined());
  }  // the destructor stops once more

  // The same node, restarted on its disk, gets its partitions back (a static member sends no
  // LeaveGroup; the mock cluster, which knows no static membership, reassigns them once the old
  // session has timed out) and resumes from its own stores.
  std::unique_ptr<TestNode> node = OpenNode("first");
  ASSERT_NE(node, nullptr);
  node->ingestor().Start();
  ASSERT_TRUE(WaitUntil([&] { return node->CaughtUp(end); }));
  // Nothing restored, nothing consumed twice.
  EXPECT_EQ(node->ingestor().stats().restored_records.load(), 0);
  EXPECT_EQ(node->ingestor().stats().records.load(), 0);
  ExpectHoldsEverythingProduced(*node);
}

// Many small batches, each staged while the previous one's changelog is being delivered (a
// broker RTT keeps it in flight): a key updated in consecutive batches is read through the
// batch in flight, so the counts come out exact only if N+1 sees N's staged values. The same
// with the sequential loop, which must never overlap.
TEST_F(IngestorTest, PipelinedBatchesReadThroughTheBatchInFlightAndStayExact) {
  for (int in_flight : {2, 1}) {
    SCOPED_TRACE(absl::StrCat("changelog_batches_in_flight=", in_flight));
    names_ = NamesFor(1000 + in_flight);
    produced_.clear();
    ASSERT_OK(kafka_->CreateTopic(names_.topic, kPartitions));
    ASSERT_OK(kafka_->CreateTopic(names_.changelog, kPartitions));
    ASSERT_OK(kafka_->CreateTopic(names_.dlq, 1));
    ASSERT_OK(producer_->Warm(names_.topic));
    std::unique_ptr<TestNode> node =
        OpenNodeConfigured(absl::StrCat("n", in_flight), [in_flight](IngestorOptions& o) {
          o.changelog_batches_in_flight = in_flight;
          o.max_batch_records = 5;  // many batches, so that consecutive ones share keys
        });
    ASSERT_NE(node, nullptr);
    node->ingestor().Start();
    ASSERT_TRUE(WaitUntil([&] { return node->CaughtUp({0, 0, 0}); }));
    ASSERT_OK(kafka_->SetBrokerRtt(DevKafka::kAllBrokers, absl::Milliseconds(5)));
    ASSERT_NO_FATAL_FAILURE(Produce(MakeInputs(0, 400, 4, /*tombstone_every=*/11)));
    const std::vector<int64_t> end = EndOffsets(produced_);
    const bool caught_up = WaitUntil([&] { return node->CaughtUp(end); }, absl::Seconds(60));
    ASSERT_OK(kafka_->SetBrokerRtt(DevKafka::kAllBrokers, absl::ZeroDuration()));
    ASSERT_TRUE(caught_up);
    ExpectHoldsEverythingProduced(*node);
    for (int32_t p = 0; p < kPartitions; ++p) {
      EXPECT_EQ(node->StoredOffset(kCount, p), end[p]) << "partition " << p;
    }
    const IngestStats& stats = node->ingestor().stats();
    EXPECT_EQ(stats.records.load(), static_cast<int64_t>(produced_.size()));
    EXPECT_GE(stats.batches.load(), static_cast<int64_t>(produced_.size() / 5));
    if (in_flight == 2) {
      EXPECT_GT(stats.staged_in_flight.load(), 0) << "no batch was staged on one in flight";
    } else {
      EXPECT_EQ(stats.staged_in_flight.load(), 0);
    }
    node->ingestor().Stop();
    EXPECT_OK(node->ingestor().Wait());
    // A restart on the same disk restores nothing and consumes nothing again: the stored
    // changelog and source offsets of the last commit agree with its state.
    node.reset();
    node = OpenNodeConfigured(absl::StrCat("n", in_flight), [in_flight](IngestorOptions& o) {
      o.changelog_batches_in_flight = in_flight;
    });
    ASSERT_NE(node, nullptr);
    node->ingestor().Start();
    ASSERT_TRUE(WaitUntil([&] { return node->CaughtUp(end); }));
    EXPECT_EQ(node->ingestor().stats().records.load(), 0);
    EXPECT_EQ(node->ingestor().stats().restored_records.load(), 0);
    ExpectHoldsEverythingProduced(*node);
  }
}

TEST_F(IngestorTest, ChangelogDeliveryFailureCommitsNothingOfTheBatchAndResumesExactlyOnce) {
  ASSERT_NO_FATAL_FAILURE(Produce(MakeInputs(0, 60, 6)));
  const std::vector<int64_t> committed = EndOffsets(produced_);
  const auto pipelined = [](IngestorOptions& o) {
    o.max_batch_records = 7;
    o.changelog_batches_in_flight = 2;
  };
  {
    std::unique_ptr<TestNode> node = OpenNodeConfigured("n1", pipelined);
    ASSERT_NE(node, nullptr);
    node->ingestor().Start();
    ASSERT_TRUE(WaitUntil([&] { return node->CaughtUp(committed); }));
    node->ingestor().Stop();
    ASSERT_OK(node->ingestor().Wait());
  }
  // Records the node has not seen, then a broker that refuses the next write: the node's first
  // changelog produce after its restart (nothing else produces; no bad records, no DLQ).
  ASSERT_NO_FATAL_FAILURE(Produce(MakeInputs(60, 90, 6)));
  const std::vector<int64_t> end = EndOffsets(produced_);
  constexpr int16_t kTopicAuthorizationFailed = 29;  // not retriable: the delivery fails
  ASSERT_OK(kafka_->FailNextProduces(1, kTopicAuthorizationFailed));
  {
    std::unique_ptr<TestNode> node = OpenNodeConfigured("n1", pipelined);
    ASSERT_NE(node, nullptr);
    node->ingestor().Start();
    std::future<absl::Status> waited =
        std::async(std::launch::async, [&] { return node->ingestor().Wait(); });
    if (waited.wait_for(std::chrono::seconds(60)) != std::future_status::ready) {
      node->ingestor().Stop();
      FAIL() << "ingestion went on after a changelog delivery failed";
    }
    EXPECT_THAT(waited.get(),
                StatusIs(absl::StatusCode::kUnavailable, "changelog delivery failed"));
    // Neither the failed batch nor any batch staged on it committed: every store partition
    // stands where the first run left it, with exactly that state.
    for (int32_t p = 0; p < kPartitions; ++p) {
      EXPECT_EQ(node->StoredOffset(kTable, p), committed[p]) << "partition " << p;
      EXPECT_EQ(node->StoredOffset(kCount, p), committed[p]) << "partition " << p;
      node->ExpectHolds(p, TruthOf(produced_, p, committed[p]));
    }
    node->ingestor().Stop();
  }
  // Restarted: it resumes from the committed offsets and counts every record exactly once.
  std::unique_ptr<TestNode> node = OpenNodeConfigured("n1", pipelined);
  ASSERT_NE(node, nullptr);
  node->ingestor().Start();
  ASSERT_TRUE(WaitUntil([&] { return node->CaughtUp(end); }, absl::Seconds(60)));
  ExpectHoldsEverythingProduced(*node);
  node->ingestor().Stop();
  EXPECT_OK(node->ingestor().Wait());
}

TEST_F(IngestorTest, AChangelogFailureInARevokeStopsIngestionInsteadOfLosingRecords) {
  ASSERT_NO_FATAL_FAILURE(Produce(MakeInputs(0, 60, 6)));
  // One batch that stays staged until a rebalance flushes it (the rebalance comes within a few
  // seconds; a poll then waits up to 30 s, which bounds how long Stop takes).
  const auto held = [](IngestorOptions& o) {
    o.max_batch_records = 1000000;
    o.idle_batch_delay = absl::Seconds(30);
    o.max_batch_delay = absl::Seconds(30);
    o.max_backlog_batch_delay = absl::Seconds(30);
  };
  std::unique_ptr<TestNode> n1 = OpenNodeConfigured("n1", held);
  ASSERT_NE(n1, nullptr);
  n1->ingestor().Start();
  ASSERT_TRUE(WaitUntil([&] { return n1->ingestor().stats().records.load() == 60; }));
  // The revoke's flush is the next changelog write: the broker refuses it.
  constexpr int16_t kTopicAuthorizationFailed = 29;  // not retriable: the delivery fails
  ASSERT_OK(kafka_->FailNextProduces(1, kTopicAuthorizationFailed));
  std::unique_ptr<TestNode> n2 =
      TestNode::Open(kafka_->bootstrap_servers(), names_, absl::StrCat(dir_, "/n2"), "n2");
  ASSERT_NE(n2, nullptr);
  n2->ingestor().Start();
  // n2 is given partitions only once n1 has revoked them (and its flush has failed). n1 then
  // stops at its next poll: records for the partitions it kept wake it (its poll would
  // otherwise wait out the long batch delay).
  ASSERT_TRUE(WaitUntil([&] { return n2->ingestor().stats().records.load() > 0; }));
  ASSERT_NO_FATAL_FAILURE(Produce(MakeInputs(60, 6, 6)));
  std::future<absl::Status> waited =
      std::async(std::launch::async, [&] { return n1->ingestor().Wait(); });
  if (waited.wait_for(std::chrono::seconds(60)) != std::future_status::ready) {
    n1->ingestor().Stop();
    n2->ingestor().Stop();
    FAIL() << "ingestion went on after the revoke's batch was lost";
  }
  EXPECT_THAT(waited.get(), StatusIs(absl::StatusCode::kUnavailable, "flush on revoke"));
  // Nothing of the batch committed on n1.
  for (int32_t p = 0; p < kPartitions; ++p) {
    EXPECT_EQ(n1->StoredOffset(kCount, p), -1) << "partition " << p;
  }
  n1->ingestor().Stop();
  n1.reset();
  n2->ingestor().Stop();
  ASSERT_OK(n2->ingestor().Wait());
  n2.reset();
  // n1 again, alone: every record exactly once, from the committed offsets.
  std::unique_ptr<TestNode> again = OpenNodeConfigured("n1", {});
  ASSERT_NE(again, nullptr);
  again->ingestor().Start();
  const std::vector<int64_t> end = EndOffsets(produced_);
  ASSERT_TRUE(WaitUntil([&] { return again->CaughtUp(end); }, absl::Seconds(60)));
  ExpectHoldsEverythingProduced(*again);
  again->ingestor().Stop();
  EXPECT_OK(again->ingestor().Wait());
}

}  // namespace
}  // namespace kiq::node
