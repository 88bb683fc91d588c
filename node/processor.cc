#include "node/processor.h"

#include "absl/strings/str_cat.h"
#include "router/value_codec.h"

namespace kiq::node {
namespace {

// Latest value per key; a null value deletes the key (KTable semantics).
class TableProcessor final : public Processor {
 public:
  explicit TableProcessor(StoreHandle handle) : handle_(handle) {}

  absl::Status Process(const Record& record, StagedBatch& batch) override {
    if (!record.key) return absl::InvalidArgumentError("null key");
    std::optional<std::string> value;
    if (record.value) value.emplace(*record.value);
    return batch.Write(handle_, record.partition, *record.key, std::move(value));
  }

 private:
  const StoreHandle handle_;
};

// Number of records per key (groupByKey().count()). Records with a null key or value are
// skipped as bad records, as KGroupedStream ignores them.
class CountProcessor final : public Processor {
 public:
  explicit CountProcessor(StoreHandle handle) : handle_(handle) {}

  absl::Status Process(const Record& record, StagedBatch& batch) override {
    if (!record.key) return absl::InvalidArgumentError("null key");
    if (!record.value) return absl::InvalidArgumentError("null value");
    absl::StatusOr<const std::optional<std::string>*> current =
        batch.Read(handle_, record.partition, *record.key);
    if (!current.ok()) return current.status();
    int64_t count = 0;
    if (**current) {
      std::optional<int64_t> stored = DecodeInt64(***current);
      if (!stored) {
        return absl::DataLossError(absl::StrCat("count store entry is not 8 bytes (partition ",
                                                record.partition.value(), ")"));
      }
      count = *stored;
    }
    return batch.Write(handle_, record.partition, *record.key, EncodeInt64(count + 1));
  }

 private:
  const StoreHandle handle_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Processor>> MakeProcessor(const kiq::v1::Store& store,
                                                         StoreHandle handle) {
  switch (store.kind_case()) {
    case kiq::v1::Store::kTable:
      return std::make_unique<TableProcessor>(handle);
    case kiq::v1::Store::kCount:
      return std::make_unique<CountProcessor>(handle);
    case kiq::v1::Store::KIND_NOT_SET:
      break;
  }
  return absl::InvalidArgumentError(absl::StrCat("store \"", store.name(), "\" has no kind"));
}

router::ValueKind ValueKindOf(const kiq::v1::Store& store, const kiq::v1::Source& source) {
  if (store.has_count()) return router::ValueKind::kInt64;
  switch (source.value_format()) {
    case kiq::v1::FORMAT_JSON:
      return router::ValueKind::kJson;
    case kiq::v1::FORMAT_BYTES:
      return router::ValueKind::kBytes;
    default:
      return router::ValueKind::kString;
  }
}

std::string StoreKindName(const kiq::v1::Store& store) {
  switch (store.kind_case()) {
    case kiq::v1::Store::kTable:
      return "table";
    case kiq::v1::Store::kCount:
      return "count";
    case kiq::v1::Store::KIND_NOT_SET:
      break;
  }
  return "unknown";
}

}  // namespace kiq::node
