// Restorer::RestoreAll on an in-process DevKafka: changelog batches are written by the test
// (as ChangelogWriter writes them: records of a batch, the last one marked with the source
// offset it ends at), several partitions of several stores are restored with one call, and
// every expectation is recomputed from what the test wrote (the batches, and the offsets the
// broker acknowledged for them).
#include "node/ingest/restorer.h"

#include <stdlib.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <librdkafka/rdkafkacpp.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/substitute.h"
#include "common/kafka/client_config.h"
#include "common/kafka/dev_kafka.h"
#include "common/topology/topology_config.h"
#include "common/types.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "node/ingest/record_headers.h"
#include "node/process/compiled_topology.h"
#include "node/store/store_engine.h"
#include "tests/testing/status_matchers.h"

namespace kiq::node {
namespace {

using ::kiq::testing::StatusIs;
using ::testing::HasSubstr;

constexpr int32_t kPartitions = 3;
constexpr char kSource[] = "events";

// Two aggregates, each with its own changelog. $0: the application id, $1: the source topic.
constexpr char kTopologyYaml[] = R"(
application_id: $0
sources:
  - topic: $1
    value_format: json
stores:
  - name: counts
    source: $1
    count: {}
  - name: totals
    source: $1
    count: {}
)";

// One changelog write: `key` set to `value` (nullopt: deleted).
struct Write {
  std::string key;
  std::optional<std::string> value;
};

// One batch of one store partition. `complete`: its last record carries the batch-end mark
// and `source_next` (else its writer died before the flush: a restore must never apply it).
struct Batch {
  std::vector<Write> writes;
  int64_t source_next = 0;
  bool complete = true;
};

// Batch b of a store partition: a few writes over 5 keys, some of them deletes, ending at
// source offset 10 * (b + 1).
Batch MakeBatch(int store, int32_t p, int b, int writes) {
  Batch batch;
  for (int i = 0; i < writes; ++i) {
    Write w;
    w.key = absl::StrCat("k", (b * 3 + i) % 5);
    if ((b + i) % 4 != 3) w.value = absl::StrCat("s", store, "p", p, "b", b, "i", i);
    batch.writes.push_back(std::move(w));
  }
  batch.source_next = 10 * (b + 1);
  return batch;
}

// What a store partition must hold after a restore of `batches`: the complete ones applied in
// order, up to the first incomplete one (nothing after a batch whose end never came).
struct Truth {
  std::map<std::string, std::string> entries;
  int64_t applied = 0;                 // changelog records of the complete batches
  std::optional<int64_t> source_next;  // of the last complete batch
  std::optional<int64_t> checkpoint;   // changelog offset after the last complete batch
};

Truth TruthOf(const std::vector<Batch>& batches, const std::vector<int64_t>& end_offsets) {
  Truth t;
  for (size_t b = 0; b < batches.size() && batches[b].complete; ++b) {
    for (const Write& w : batches[b].writes) {
      if (w.value) {
        t.entries[w.key] = *w.value;
      } else {
        t.entries.erase(w.key);
      }
    }
    t.applied += static_cast<int64_t>(batches[b].writes.size());
    t.source_next = batches[b].source_next;
    t.checkpoint = end_offsets[b] + 1;
  }
  return t;
}

// Writes changelog batches and reports the offset the broker gave each batch's last record.
class ChangelogProducer : public RdKafka::DeliveryReportCb {
 public:
  static std::unique_ptr<ChangelogProducer> Create(const std::string& bootstrap) {
    std::unique_ptr<RdKafka::Conf> conf(RdKafka::Conf::create(RdKafka::Conf::CONF_GLOBAL));
    std::unique_ptr<ChangelogProducer> out(new ChangelogProducer());
    std::string err;
    if (conf->set("bootstrap.servers", bootstrap, err) != RdKafka::Conf::CONF_OK ||
        conf->set("linger.ms", "1", err) != RdKafka::Conf::CONF_OK ||
        conf->set("queue.buffering.max.messages", "1000000", err) != RdKafka::Conf::CONF_OK ||
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

  // Writes `batches` to `topic`/`p` in order; the offset of each batch's last record.
  absl::StatusOr<std::vector<int64_t>> Produce(const std::string& topic, int32_t p,
                                               const std::vector<Batch>& batches) {
    std::vector<Delivery> deliveries;
    for (const Batch& batch : batches) {
      for (size_t i = 0; i < batch.writes.size(); ++i) deliveries.emplace_back();
    }
    size_t next = 0;
    for (const Batch& batch : batches) {
      for (size_t i = 0; i < batch.writes.size(); ++i) {
        const Write& w = batch.writes[i];
        RdKafka::Headers* headers = RdKafka::Headers::create();
        if (batch.complete && i + 1 == batch.writes.size()) {
          headers->add(kSourceOffsetHeader, absl::StrCat(batch.source_next));
          headers->add(kBatchEndHeader, "1");
        }
        RdKafka::ErrorCode err = producer_->produce(
            topic, p, RdKafka::Producer::RK_MSG_COPY,
            w.value ? const_cast<char*>(w.value->data()) : nullptr, w.value ? w.value->size() : 0,
            w.key.data(), w.key.size(), 0, headers, &deliveries[next++]);
        if (err != RdKafka::ERR_NO_ERROR) {
          delete headers;  // owned by librdkafka only once produced
          return absl::UnavailableError(absl::StrCat("produce: ", RdKafka::err2str(err)));
        }
      }
    }
    if (producer_->flush(10000) != RdKafka::ERR_NO_ERROR) {
      return absl::DeadlineExceededError("producer flush timed out");
    }
    std::vector<int64_t> ends;
    next = 0;
    for (const Batch& batch : batches) {
      next += batch.writes.size();
      const Delivery& last = deliveries[next - 1];
      if (last.err != RdKafka::ERR_NO_ERROR) {
        return absl::UnavailableError(absl::StrCat("delivery: ", RdKafka::err2str(last.err)));
      }
      ends.push_back(last.offset);
    }
    return ends;
  }

  void dr_cb(RdKafka::Message& message) override {
    auto* out = static_cast<Delivery*>(message.msg_opaque());
    out->err = message.err();
    out->offset = message.offset();
  }

 private:
  struct Delivery {
    RdKafka::ErrorCode err = RdKafka::ERR__IN_PROGRESS;
    int64_t offset = -1;
  };
  ChangelogProducer() = default;
  std::unique_ptr<RdKafka::Producer> producer_;
};

// One broker for the suite; each test has its own application (so its own changelog topics),
// temp dir and StoreEngine.
class RestorerTest : public ::testing::Test {
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
    app_ = absl::StrCat("restore-test-", ++tests);
    std::string tmpl = ::testing::TempDir() + "restorer_test.XXXXXX";
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr) << "mkdtemp " << tmpl;
    dir_ = tmpl;
    source_ = absl::StrCat(kSource, "-", tests);
    ASSERT_OK(kafka_->CreateTopic(source_, kPartitions));
    for (const char* store : {"counts", "totals"}) {
      ASSERT_OK(kafka_->CreateTopic(Changelog(store), kPartitions));
    }
    absl::StatusOr<kiq::v1::Topology> topology =
        ParseTopology(absl::Substitute(kTopologyYaml, app_, source_), "restorer_test");
    ASSERT_OK(topology);
    absl::StatusOr<std::unique_ptr<StoreEngine>> engine =
        StoreEngine::Open(dir_ + "/stores", {"counts", "totals"}, nullptr);
    ASSERT_OK(engine);
    engine_ = std::move(*engine);
    absl::StatusOr<std::unique_ptr<CompiledTopology>> compiled =
        CompiledTopology::Compile(*topology, *engine_, {{source_, kPartitions}}, {});
    ASSERT_OK(compiled);
    topology_ = std::move(*compiled);
    absl::StatusOr<std::unique_ptr<Restorer>> restorer = Restorer::Create(
        KafkaClientConfig(kafka_->bootstrap_servers()), app_ + "-restore", "restorer-test");
    ASSERT_OK(restorer);
    restorer_ = std::move(*restorer);
    producer_ = ChangelogProducer::Create(kafka_->bootstrap_servers());
    ASSERT_NE(producer_, nullptr);
  }

  void TearDown() override {
    if (restorer_ != nullptr) restorer_->Close();
    restorer_.reset();
    topology_.reset();
    engine_.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  std::string Changelog(const std::string& store) const {
    return absl::StrCat(app_, "-", store, "-changelog");
  }
  const CompiledStore& Store(const char* name) const { return *topology_->FindStore(name); }
  RestoreTask Task(const char* store, int32_t p) const {
    return RestoreTask{&Store(store), source_, PartitionId(p)};
  }

  // Writes `batches` to the changelog of `store`, partition `p`; what a restore must build.
  Truth WriteChangelog(const char* store, int32_t p, const std::vector<Batch>& batches) {
    absl::StatusOr<std::vector<int64_t>> ends = producer_->Produce(Changelog(store), p, batches);
    EXPECT_OK(ends);
    if (!ends.ok()) return {};
    return TruthOf(batches, *ends);
  }

  // Expects `store`/`p` to hold exactly `truth`, with its offsets and entry count.
  void ExpectHolds(const char* store, int32_t p, const Truth& truth) {
    SCOPED_TRACE(absl::StrCat("store ", store, " partition ", p));
    const CompiledStore& s = Store(store);
    for (int k = 0; k < 5; ++k) {
      const std::string key = absl::StrCat("k", k);
      absl::StatusOr<std::optional<std::string>> got = engine_->Get(s.handle, PartitionId(p), key);
      ASSERT_OK(got);
      auto want = truth.entries.find(key);
      EXPECT_EQ(*got, want == truth.entries.end() ? std::nullopt
                                                  : std::optional<std::string>(want->second))
          << key;
    }
    absl::StatusOr<int64_t> count = engine_->EntryCount(s.handle, PartitionId(p));
    ASSERT_OK(count);
    EXPECT_EQ(*count, static_cast<int64_t>(truth.entries.size()));
    absl::StatusOr<std::optional<Offset>> source =
        engine_->ReadOffset(s.source_stream, PartitionId(p));
    ASSERT_OK(source);
    EXPECT_EQ(*source,
              truth.source_next ? std::optional<Offset>(Offset(*truth.source_next)) : std::nullopt);
    absl::StatusOr<std::optional<Offset>> checkpoint =
        engine_->ReadOffset(s.changelog_stream, PartitionId(p));
    ASSERT_OK(checkpoint);
    EXPECT_EQ(*checkpoint,
              truth.checkpoint ? std::optional<Offset>(Offset(*truth.checkpoint)) : std::nullopt);
  }

  static DevKafka* kafka_;
  std::string app_;
  std::string source_;
  std::string dir_;
  std::unique_ptr<StoreEngine> engine_;
  std::unique_ptr<CompiledTopology> topology_;
  std::unique_ptr<Restorer> restorer_;
  std::unique_ptr<ChangelogProducer> producer_;
};

DevKafka* RestorerTest::kafka_ = nullptr;

TEST_F(RestorerTest, RestoresEveryPartitionOfEveryStoreInOneCall) {
  std::map<std::pair<std::string, int32_t>, Truth> truth;
  std::vector<RestoreTask> tasks;
  for (const char* store : {"counts", "totals"}) {
    for (int32_t p = 0; p < kPartitions; ++p) {
      tasks.push_back(Task(store, p));
      // Partition 2 of totals has no changelog at all: restored to nothing.
      if (std::string(store) == "totals" && p == 2) continue;
      std::vector<Batch> batches;
      const int n = 3 + p * 4;  // partitions of different lengths finish at different times
      for (int b = 0; b < n; ++b)
        batches.push_back(MakeBatch(static_cast<int>(tasks.size()), p, b, 1 + b % 4));
      truth[{store, p}] = WriteChangelog(store, p, batches);
    }
  }
  std::vector<RestoreOutcome> outcomes = restorer_->RestoreAll(tasks, *engine_, nullptr);
  ASSERT_EQ(outcomes.size(), tasks.size());
  for (size_t i = 0; i < tasks.size(); ++i) {
    const std::string store = tasks[i].store->info.name;
    const int32_t p = tasks[i].partition.value();
    const Truth& want = truth[std::make_pair(store, p)];
    ASSERT_OK(outcomes[i].applied);
    EXPECT_EQ(*outcomes[i].applied, want.applied) << store << " " << p;
    ExpectHolds(store.c_str(), p, want);
  }

  // Restored up to the checkpoint: a second restore finds nothing newer; after more batches
  // it applies only those (on the same consumer, which paused each partition it finished:
  // a partition restored again must be fetched again).
  outcomes = restorer_->RestoreAll(tasks, *engine_, nullptr);
  for (const RestoreOutcome& o : outcomes) EXPECT_THAT(o.applied, ::kiq::testing::IsOkAndHolds(0));
  std::vector<Batch> more = {MakeBatch(0, 1, 20, 3), MakeBatch(0, 1, 21, 2)};
  absl::StatusOr<std::vector<int64_t>> ends = producer_->Produce(Changelog("counts"), 1, more);
  ASSERT_OK(ends);
  Truth& t = truth[{"counts", 1}];
  for (const Batch& b : more) {
    for (const Write& w : b.writes) {
      if (w.value) {
        t.entries[w.key] = *w.value;
      } else {
        t.entries.erase(w.key);
      }
    }
  }
  t.source_next = more.back().source_next;
  t.checkpoint = ends->back() + 1;
  outcomes = restorer_->RestoreAll({Task("counts", 1), Task("totals", 1)}, *engine_, nullptr);
  EXPECT_THAT(outcomes[0].applied, ::kiq::testing::IsOkAndHolds(5));
  EXPECT_THAT(outcomes[1].applied, ::kiq::testing::IsOkAndHolds(0));
  ExpectHolds("counts", 1, t);
}

TEST_F(RestorerTest, TrailingIncompleteBatchIsNeverAppliedWhileOtherPartitionsComplete) {
  std::vector<Batch> torn = {MakeBatch(0, 0, 0, 3), MakeBatch(0, 0, 1, 2), MakeBatch(0, 0, 2, 4)};
  torn.back().complete = false;  // its writer died before the flush
  std::vector<Batch> whole = {MakeBatch(1, 1, 0, 2), MakeBatch(1, 1, 1, 3)};
  std::vector<Batch> only_torn = {MakeBatch(2, 0, 0, 3)};
  only_torn.back().complete = false;
  const Truth torn_truth = WriteChangelog("counts", 0, torn);
  const Truth whole_truth = WriteChangelog("counts", 1, whole);
  const Truth nothing = WriteChangelog("totals", 0, only_torn);
  ASSERT_EQ(torn_truth.applied, 5);
  ASSERT_EQ(nothing.applied, 0);

  std::vector<RestoreOutcome> outcomes = restorer_->RestoreAll(
      {Task("counts", 0), Task("counts", 1), Task("totals", 0)}, *engine_, nullptr);
  EXPECT_THAT(outcomes[0].applied, ::kiq::testing::IsOkAndHolds(torn_truth.applied));
  EXPECT_THAT(outcomes[1].applied, ::kiq::testing::IsOkAndHolds(whole_truth.applied));
  EXPECT_THAT(outcomes[2].applied, ::kiq::testing::IsOkAndHolds(0));
  ExpectHolds("counts", 0, torn_truth);
  ExpectHolds("counts", 1, whole_truth);
  ExpectHolds("totals", 0, nothing);
}

TEST_F(RestorerTest, OneFailingPartitionDoesNotFailTheOthers) {
  const Truth t0 = WriteChangelog("counts", 0, {MakeBatch(0, 0, 0, 3), MakeBatch(0, 0, 1, 2)});
  const Truth t2 = WriteChangelog("totals", 2, {MakeBatch(1, 2, 0, 4)});
  // Partition 7 of a 3-partition changelog (a changelog created with fewer partitions than
  // the source): that task fails, naming it; the others are restored.
  std::vector<RestoreOutcome> outcomes = restorer_->RestoreAll(
      {Task("counts", 0), Task("counts", 7), Task("totals", 2)}, *engine_, nullptr);
  ASSERT_EQ(outcomes.size(), 3u);
  EXPECT_THAT(outcomes[0].applied, ::kiq::testing::IsOkAndHolds(t0.applied));
  EXPECT_FALSE(outcomes[1].applied.ok());
  EXPECT_THAT(outcomes[1].applied.status().message(),
              HasSubstr(absl::StrCat(Changelog("counts"), " partition=7")));
  EXPECT_THAT(outcomes[2].applied, ::kiq::testing::IsOkAndHolds(t2.applied));
  ExpectHolds("counts", 0, t0);
  ExpectHolds("totals", 2, t2);
}

// Many updates and tombstones per key, over more keys than one commit stages, in every
// partition of both stores restored together: every key ends as its last write (absent after
// a tombstone), the entry counts match, and the offsets are those of the last complete batch
// (a torn batch at the tail is never applied). Each partition is restored from scratch over
// two commits (22k entries: the first stages onto a partition known empty, without reading
// old values; the second must read what the first committed). KIQ_RESTORE_TEST_BATCHES
// (default 110) sizes it: batches of 200 writes per partition, so that the same test profiles
// a large restore (250: 300k changelog records; the in-process DevKafka keeps ~5 MiB per
// partition).
TEST_F(RestorerTest, ManyUpdatesAndTombstonesPerKeyRestoreToTheLastWriteOfEachKey) {
  int batches_n = 110;
  if (const char* env = getenv("KIQ_RESTORE_TEST_BATCHES"); env != nullptr) {
    batches_n = std::max(1, atoi(env));
  }
  constexpr int kWritesPerBatch = 200;
  constexpr int kKeys = 1500;
  std::vector<RestoreTask> tasks;
  std::vector<Truth> truths;
  for (const char* store : {"counts", "totals"}) {
    for (int32_t p = 0; p < kPartitions; ++p) {
      std::vector<Batch> batches;
      for (int b = 0; b < batches_n; ++b) {
        Batch batch;
        for (int i = 0; i < kWritesPerBatch; ++i) {
          const int n = b * kWritesPerBatch + i;
          Write w;
          w.key = absl::StrCat("key-", (n * 7919 + p) % kKeys);
          if (n % 5 != 4) w.value = absl::StrCat(store, "-v", n);  // every fifth a tombstone
          batch.writes.push_back(std::move(w));
        }
        batch.source_next = int64_t{100} * (b + 1);
        batches.push_back(std::move(batch));
      }
      batches.push_back(MakeBatch(0, p, 0, 3));
      batches.back().complete = false;  // its writer died before the flush: never applied
      truths.push_back(WriteChangelog(store, p, batches));
      ASSERT_EQ(truths.back().applied, int64_t{batches_n} * kWritesPerBatch);
      tasks.push_back(Task(store, p));
    }
  }

  std::vector<RestoreOutcome> outcomes = restorer_->RestoreAll(tasks, *engine_, nullptr);
  ASSERT_EQ(outcomes.size(), tasks.size());
  for (size_t t = 0; t < tasks.size(); ++t) {
    const CompiledStore& s = *tasks[t].store;
    const PartitionId p = tasks[t].partition;
    const Truth& truth = truths[t];
    SCOPED_TRACE(absl::StrCat("store ", s.info.name, " partition ", p.value()));
    ASSERT_OK(outcomes[t].applied);
    EXPECT_EQ(*outcomes[t].applied, truth.applied);
    int wrong = 0;
    for (int k = 0; k < kKeys; ++k) {
      const std::string key = absl::StrCat("key-", k);
      absl::StatusOr<std::optional<std::string>> got = engine_->Get(s.handle, p, key);
      ASSERT_OK(got);
      auto want = truth.entries.find(key);
      const std::optional<std::string> expected =
          want == truth.entries.end() ? std::nullopt : std::optional<std::string>(want->second);
      if (*got != expected && ++wrong <= 5) {
        ADD_FAILURE() << key << ": got " << got->value_or("<absent>") << ", want "
                      << expected.value_or("<absent>");
      }
    }
    EXPECT_EQ(wrong, 0);
    absl::StatusOr<int64_t> count = engine_->EntryCount(s.handle, p);
    ASSERT_OK(count);
    EXPECT_EQ(*count, static_cast<int64_t>(truth.entries.size()));
    EXPECT_THAT(engine_->ReadOffset(s.source_stream, p),
                ::kiq::testing::IsOkAndHolds(std::optional<Offset>(Offset(*truth.source_next))));
    EXPECT_THAT(engine_->ReadOffset(s.changelog_stream, p),
                ::kiq::testing::IsOkAndHolds(std::optional<Offset>(Offset(*truth.checkpoint))));
  }
}

TEST_F(RestorerTest, WatermarksOfAnswersEachPartitionAndErrorsAlone) {
  ASSERT_OK(producer_->Produce(Changelog("counts"), 1, {MakeBatch(0, 1, 0, 4)}));
  std::vector<absl::StatusOr<std::pair<int64_t, int64_t>>> marks =
      restorer_->WatermarksOf({{Changelog("counts"), PartitionId(0)},
                               {Changelog("counts"), PartitionId(1)},
                               {Changelog("counts"), PartitionId(9)}});
  ASSERT_EQ(marks.size(), 3u);
  ASSERT_OK(marks[0]);
  EXPECT_EQ(*marks[0], std::make_pair(int64_t{0}, int64_t{0}));
  ASSERT_OK(marks[1]);
  EXPECT_EQ(*marks[1], std::make_pair(int64_t{0}, int64_t{4}));
  EXPECT_FALSE(marks[2].ok());
  EXPECT_THAT(marks[2].status().message(), HasSubstr("partition=9"));
}

}  // namespace
}  // namespace kiq::node
