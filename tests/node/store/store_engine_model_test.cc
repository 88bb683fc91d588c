// A randomized model test of StoreEngine (and StagedBatch over it), LevelDB-style: random
// sequences of batches, partition drops and offset changes are applied both to the engine and to
// a std::map model, and every read the engine offers is compared with the model, also after
// closing and reopening the engine from the same directory. Seeds are fixed, one test per seed,
// so that a failure names its seed and step and reproduces.
//
// store_engine_test.cc's StoreEngineModelTest drives StoreEngine::Batch alone over two stores.
// This one mixes in StagedBatch commits (its reads, Changes(), the changes Commit reports with
// and without TrackWrites, Clear, the entry counts it derives), three stores reopened in a
// shuffled order, scans through an older snapshot and scans paged with `after`.
#include <stdlib.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "common/types.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "node/store/staged_batch.h"
#include "node/store/store_engine.h"
#include "router/port/local_stores.h"
#include "tests/testing/status_matchers.h"

namespace kiq::node {
namespace {

using Opt = std::optional<std::string>;

constexpr int kSteps = 500;
constexpr int kFullCheckEvery = 25;
constexpr int kReopenEvery = 100;  // a reopen costs fsyncs: the bulk of the test's time

const std::vector<std::string> kStores = {"s0", "s1", "s2"};
// 0 and 1 are neighbours; 0x7fffffff's upper bound is 0x80000000 (no int32 overflow); -1 is the
// last prefix, ff ff ff ff, which has no finite upper bound (DropPartition takes another path).
const std::vector<int32_t> kPartitions = {0, 1, 0x7fffffff, -1};
const std::vector<std::string> kTopics = {"t0", "t1"};
// Keys of up to 3 bytes over these 4 (NUL and 0xff included): 85 keys per store partition, so
// batches often overwrite and delete existing keys, and a full check can Get every key.
const std::vector<char> kKeyBytes = {'\0', 'a', '\x80', '\xff'};
constexpr int kMaxKeyLength = 3;

// (store name, partition, key) → value; std::string orders keys by unsigned bytes, as RocksDB's
// bytewise comparator does.
using ModelKey = std::tuple<std::string, int32_t, std::string>;
using Model = std::map<ModelKey, std::string>;
// (topic, partition) → next offset.
using Offsets = std::map<std::pair<std::string, int32_t>, int64_t>;
// (store name, partition, key, old value, new value): a Change that prints and compares.
using ChangeRow = std::tuple<std::string, int32_t, std::string, Opt, Opt>;
using Entries = std::vector<std::pair<std::string, std::string>>;

std::vector<std::string> AllKeys() {
  std::vector<std::string> keys = {""};
  for (size_t begin = 0, end = 1, len = 1; len <= kMaxKeyLength; ++len) {
    for (size_t i = begin; i < end; ++i) {
      for (char c : kKeyBytes) keys.push_back(keys[i] + c);
    }
    begin = end;
    end = keys.size();
  }
  return keys;
}

std::string Printable(const Opt& v) { return v ? absl::CHexEscape(*v) : "<none>"; }

class StoreEngineMixedBatchModelTest : public ::testing::TestWithParam<uint32_t> {
 protected:
  void SetUp() override {
    std::string tmpl = ::testing::TempDir() + "store_engine_model_test.XXXXXX";
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr) << "mkdtemp " << tmpl;
    dir_ = tmpl;
    path_ = dir_ + "/db";
    rng_.seed(GetParam());
    Reopen();
  }

  void TearDown() override {
    engine_.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  // Closes the engine and opens the directory again, naming the stores in a random order:
  // handles follow names, not the order in which the column families were created.
  void Reopen() {
    engine_.reset();
    std::vector<std::string> order = kStores;
    std::shuffle(order.begin(), order.end(), rng_);
    absl::StatusOr<std::unique_ptr<StoreEngine>> opened = StoreEngine::Open(path_, order);
    ASSERT_OK(opened);
    engine_ = std::move(*opened);
  }

  // --- Random choices.
  size_t Uniform(size_t n) { return std::uniform_int_distribution<size_t>(0, n - 1)(rng_); }
  bool OneIn(size_t n) { return Uniform(n) == 0; }
  template <typename T>
  const T& Pick(const std::vector<T>& v) {
    return v[Uniform(v.size())];
  }
  std::string RandomKey() {
    std::string key;
    for (size_t n = Uniform(kMaxKeyLength + 1); n > 0; --n) key.push_back(Pick(kKeyBytes));
    return key;
  }
  std::string RandomValue() {
    if (OneIn(8)) return "";  // an empty value is a value, not an absence
    std::string value = absl::StrCat("v", step_, ".", Uniform(1000));
    if (OneIn(4)) value.push_back('\0');
    return value;
  }
  ModelKey RandomModelKey() { return {Pick(kStores), Pick(kPartitions), RandomKey()}; }

  StoreHandle H(const std::string& store) {
    absl::StatusOr<StoreHandle> h = engine_->Handle(store);
    EXPECT_OK(h);
    return h.ok() ? *h : StoreHandle{};
  }

  // --- The model.
  Opt ModelGet(const ModelKey& key) const {
    auto it = model_.find(key);
    return it == model_.end() ? Opt() : Opt(it->second);
  }
  int64_t ModelCount(const std::string& store, int32_t p) const {
    int64_t n = 0;
    for (auto it = model_.lower_bound({store, p, ""});
         it != model_.end() && std::get<0>(it->first) == store && std::get<1>(it->first) == p;
         ++it) {
      ++n;
    }
    return n;
  }
  // What Scan must return: the partition's keys in byte order that are in [from, to] and after
  // `after`, at most `limit` of them.
  Entries ModelScan(const Model& model, const std::string& store, int32_t p,
                    const router::KeyRange& range, const Opt& after, size_t limit) const {
    Entries out;
    for (auto it = model.lower_bound({store, p, range.from.value_or("")});
         it != model.end() && std::get<0>(it->first) == store && std::get<1>(it->first) == p &&
         out.size() < limit;
         ++it) {
      const std::string& key = std::get<2>(it->first);
      if (range.to && key > *range.to) break;
      if (after && key <= *after) continue;
      out.emplace_back(key, it->second);
    }
    return out;
  }
  void ApplyToModel(const std::map<ModelKey, Opt>& writes, const Offsets& offsets) {
    for (const auto& [key, value] : writes) {
      if (value) {
        model_[key] = *value;
      } else {
        model_.erase(key);
      }
    }
    for (const auto& [tp, next] : offsets) offsets_[tp] = next;
  }

  // --- Steps that change the store.

  // A StagedBatch of random reads, writes, deletes and offsets; committed (or, sometimes,
  // cleared). Its reads, its Changes() and the changes its Commit reports are checked too.
  void StagedBatchStep() {
    StagedBatch batch(*engine_);
    const bool track = OneIn(3);
    batch.TrackWrites(track);
    std::map<ModelKey, Opt> staged;  // the batch's view over model_
    Offsets offsets;
    std::vector<ChangeRow> log;  // with track: every effective write, in order
    auto view = [&](const ModelKey& key) {
      auto it = staged.find(key);
      return it != staged.end() ? it->second : ModelGet(key);
    };
    for (size_t n = 1 + Uniform(24); n > 0; --n) {
      const size_t what = Uniform(20);
      if (what < 3) {
        const ModelKey key = RandomModelKey();
        const auto& [store, p, k] = key;
        absl::StatusOr<const Opt*> read = batch.Read(H(store), PartitionId(p), k);
        ASSERT_OK(read);
        EXPECT_EQ(**read, view(key)) << store << "/" << p << "/" << absl::CHexEscape(k);
      } else if (what < 17) {
        const ModelKey key = RandomModelKey();
        const auto& [store, p, k] = key;
        const Opt value = what < 12 ? Opt(RandomValue()) : Opt();
        const Opt old = view(key);
        if (old != value) log.emplace_back(store, p, k, old, value);
        ASSERT_OK(batch.Write(H(store), PartitionId(p), k, value));
        staged[key] = value;
      } else {
        const std::pair<std::string, int32_t> tp = {Pick(kTopics), Pick(kPartitions)};
        const int64_t next = static_cast<int64_t>(Uniform(1'000'000'000'000));
        batch.SetOffset(tp.first, PartitionId(tp.second), Offset(next));
        offsets[tp] = next;
      }
    }
    // Folded: one change per key whose value differs from the stored one.
    std::vector<ChangeRow> folded;
    for (const auto& [key, value] : staged) {
      const Opt old = ModelGet(key);
      if (old != value) {
        folded.emplace_back(std::get<0>(key), std::get<1>(key), std::get<2>(key), old, value);
      }
    }
    EXPECT_EQ(Rows(batch.Changes(), /*sort=*/true), folded);

    if (OneIn(10)) {
      batch.Clear();  // nothing reaches the store
      EXPECT_TRUE(batch.empty());
      return;
    }
    std::vector<Change> changes;
    ASSERT_OK(batch.Commit(&changes));
    EXPECT_TRUE(batch.empty());
    if (track) {
      EXPECT_EQ(Rows(changes, /*sort=*/false), log);
    } else {
      EXPECT_EQ(Rows(changes, /*sort=*/true), folded);
    }
    ApplyToModel(staged, offsets);
  }

  // A StoreEngine::Batch of random puts, deletes and offsets (later operations win), with the
  // entry counts of the partitions it touches set to their true value, as a writer must.
  void DirectBatchStep() {
    StoreEngine::Batch batch = engine_->NewBatch();
    std::map<ModelKey, Opt> writes;
    Offsets offsets;
    for (size_t n = 1 + Uniform(16); n > 0; --n) {
      const size_t what = Uniform(10);
      if (what < 8) {
        const ModelKey key = RandomModelKey();
        const auto& [store, p, k] = key;
        if (what < 5) {
          const std::string value = RandomValue();
          batch.Put(H(store), PartitionId(p), k, value);
          writes[key] = value;
        } else {
          batch.Delete(H(store), PartitionId(p), k);
          writes[key] = std::nullopt;
        }
      } else {
        const std::pair<std::string, int32_t> tp = {Pick(kTopics), Pick(kPartitions)};
        const int64_t next = static_cast<int64_t>(Uniform(1'000'000'000'000));
        batch.SetOffset(tp.first, PartitionId(tp.second), Offset(next));
        offsets[tp] = next;
      }
    }
    Model before = model_;
    ApplyToModel(writes, offsets);
    std::map<std::pair<std::string, int32_t>, bool> touched;
    for (const auto& [key, value] : writes) touched[{std::get<0>(key), std::get<1>(key)}] = true;
    for (const auto& [sp, unused] : touched) {
      batch.SetEntryCount(H(sp.first), PartitionId(sp.second), ModelCount(sp.first, sp.second));
    }
    const absl::Status applied = engine_->Apply(batch);
    if (!applied.ok()) model_ = std::move(before);
    ASSERT_OK(applied);
  }

  void DropPartitionStep() {
    const std::string& store = Pick(kStores);
    const int32_t p = Pick(kPartitions);
    ASSERT_OK(engine_->DropPartition(H(store), PartitionId(p)));
    for (auto it = model_.lower_bound({store, p, ""});
         it != model_.end() && std::get<0>(it->first) == store && std::get<1>(it->first) == p;) {
      it = model_.erase(it);
    }
  }

  void ClearOffsetStep() {
    const std::string& topic = Pick(kTopics);
    const int32_t p = Pick(kPartitions);
    ASSERT_OK(engine_->ClearOffset(topic, PartitionId(p)));
    offsets_.erase({topic, p});
  }

  // --- Checks.

  std::vector<ChangeRow> Rows(const std::vector<Change>& changes, bool sort) {
    std::vector<ChangeRow> rows;
    for (const Change& c : changes) {
      rows.emplace_back(engine_->StoreName(c.store), c.partition.value(), c.key, c.old_value,
                        c.new_value);
    }
    if (sort) std::sort(rows.begin(), rows.end());
    return rows;
  }

  void CheckGet(const ModelKey& key) {
    const auto& [store, p, k] = key;
    absl::StatusOr<Opt> got = engine_->Get(H(store), PartitionId(p), k);
    ASSERT_OK(got);
    EXPECT_EQ(*got, ModelGet(key))
        << "Get " << store << "/" << p << "/" << absl::CHexEscape(k) << ": engine "
        << Printable(*got) << ", model " << Printable(ModelGet(key));
  }

  void CheckScan(const std::string& store, int32_t p, const router::KeyRange& range,
                 const Opt& after, size_t limit, const rocksdb::Snapshot* snapshot = nullptr,
                 const Model* model = nullptr) {
    absl::StatusOr<std::vector<router::KeyValue>> kvs =
        engine_->Scan(H(store), PartitionId(p), range, after, limit, snapshot);
    ASSERT_OK(kvs);
    Entries got;
    for (const router::KeyValue& kv : *kvs) {
      EXPECT_EQ(kv.partition, PartitionId(p));
      got.emplace_back(kv.key, kv.value);
    }
    EXPECT_EQ(got, ModelScan(model != nullptr ? *model : model_, store, p, range, after, limit))
        << "Scan " << store << "/" << p << " from " << Printable(range.from) << " to "
        << Printable(range.to) << " after " << Printable(after) << " limit " << limit;
  }

  void CheckRandomScan(const rocksdb::Snapshot* snapshot = nullptr, const Model* model = nullptr) {
    router::KeyRange range;
    if (!OneIn(3)) range.from = RandomKey();
    if (!OneIn(3)) range.to = RandomKey();
    const Opt after = OneIn(2) ? Opt() : Opt(RandomKey());
    static const std::vector<size_t> kLimits = {0, 1, 2, 3, 7, 1000};
    CheckScan(Pick(kStores), Pick(kPartitions), range, after, Pick(kLimits), snapshot, model);
  }

  void CheckOffsets() {
    for (const std::string& topic : kTopics) {
      for (int32_t p : kPartitions) {
        absl::StatusOr<std::optional<Offset>> got = engine_->ReadOffset(topic, PartitionId(p));
        ASSERT_OK(got);
        auto it = offsets_.find({topic, p});
        const std::optional<Offset> want = it == offsets_.end()
                                               ? std::optional<Offset>()
                                               : std::optional<Offset>(Offset(it->second));
        EXPECT_EQ(*got, want) << "ReadOffset " << topic << "/" << p;
      }
    }
  }

  // Every key of every store partition, whole-partition scans, paging with `after`, the entry
  // counts and the offsets.
  void CheckAll() {
    for (const std::string& store : kStores) {
      for (int32_t p : kPartitions) {
        for (const std::string& key : all_keys_) {
          CheckGet({store, p, key});
          if (HasFailure()) return;
        }
        CheckScan(store, p, {}, std::nullopt, 1000000);
        // Paging three at a time, resuming after the last key, reassembles the partition.
        Entries paged;
        Opt after;
        for (;;) {
          absl::StatusOr<std::vector<router::KeyValue>> page =
              engine_->Scan(H(store), PartitionId(p), {}, after, 3);
          ASSERT_OK(page);
          for (const router::KeyValue& kv : *page) paged.emplace_back(kv.key, kv.value);
          if (page->size() < 3) break;
          after = page->back().key;
        }
        EXPECT_EQ(paged, ModelScan(model_, store, p, {}, std::nullopt, 1000000))
            << "paged scan " << store << "/" << p;
        EXPECT_THAT(engine_->EntryCount(H(store), PartitionId(p)),
                    ::kiq::testing::IsOkAndHolds(ModelCount(store, p)))
            << "EntryCount " << store << "/" << p;
      }
    }
    CheckOffsets();
  }

  std::string dir_;
  std::string path_;
  std::mt19937 rng_;
  const std::vector<std::string> all_keys_ = AllKeys();
  std::unique_ptr<StoreEngine> engine_;
  Model model_;
  Offsets offsets_;
  int step_ = 0;
};

TEST_P(StoreEngineMixedBatchModelTest, AgreesWithAMapModelAcrossBatchesDropsAndReopens) {
  SCOPED_TRACE(absl::StrCat("seed ", GetParam()));
  ASSERT_EQ(all_keys_.size(), 85u);
  // A snapshot taken at some step, and the model as of then: scans through it must keep seeing
  // that state while later steps change the store.
  std::shared_ptr<const rocksdb::Snapshot> snapshot;
  Model snapshot_model;
  for (step_ = 1; step_ <= kSteps; ++step_) {
    SCOPED_TRACE(absl::StrCat("step ", step_));
    const size_t what = Uniform(100);
    bool changed = true;
    if (what < 45) {
      StagedBatchStep();
    } else if (what < 75) {
      DirectBatchStep();
    } else if (what < 80) {
      DropPartitionStep();
    } else if (what < 83) {
      ClearOffsetStep();
    } else {
      changed = false;
      for (int i = 0; i < 4; ++i) CheckGet(RandomModelKey());
      CheckRandomScan();
    }
    if (HasFailure()) return;
    if (changed) {
      CheckOffsets();
      CheckGet(RandomModelKey());
      CheckRandomScan();
    }
    if (snapshot != nullptr) CheckRandomScan(snapshot.get(), &snapshot_model);
    if (OneIn(20)) {
      snapshot = engine_->NewSnapshot();
      snapshot_model = model_;
    }
    if (step_ % kFullCheckEvery == 0) CheckAll();
    if (step_ % kReopenEvery == 0) {
      snapshot.reset();  // a snapshot must not outlive its engine
      Reopen();
      CheckAll();
    }
    if (HasFailure()) return;
  }
  static_assert(kSteps % kReopenEvery == 0, "the last step reopens and checks everything");
}

INSTANTIATE_TEST_SUITE_P(StoreEngineMixedBatchModelSeeds, StoreEngineMixedBatchModelTest,
                         ::testing::Values(1u, 2u, 3u, 1234567u, 0xdeadbeefu),
                         [](const ::testing::TestParamInfo<uint32_t>& info) {
                           return absl::StrCat("Seed", info.param);
                         });

}  // namespace
}  // namespace kiq::node
