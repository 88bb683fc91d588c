#include "common/topology/store_info.h"

#include "common/topology/formats.h"

namespace kiq {

kiq::v1::NumberType NumberTypeOf(const kiq::v1::Store& store) {
  switch (store.kind_case()) {
    case kiq::v1::Store::kSum:
      return store.sum().type();
    case kiq::v1::Store::kMin:
      return store.min().type();
    case kiq::v1::Store::kMax:
      return store.max().type();
    default:
      return kiq::v1::NUMBER_TYPE_UNSPECIFIED;
  }
}

ValueKind ValueKindOf(const kiq::v1::Store& store, const kiq::v1::Source& source) {
  if (store.has_count()) return ValueKind::kInt64;
  if (store.has_sum() || store.has_min() || store.has_max()) {
    return NumberTypeOf(store) == kiq::v1::NUMBER_TYPE_DOUBLE ? ValueKind::kDouble
                                                              : ValueKind::kInt64;
  }
  if (store.has_aggregate()) return ValueKind::kRow;
  if (store.has_latest() || store.has_join()) return ValueKind::kJson;
  switch (DecodedFormat(source.value_format())) {
    case kiq::v1::FORMAT_JSON:
      return ValueKind::kJson;
    case kiq::v1::FORMAT_BYTES:
      return ValueKind::kBytes;
    default:
      return ValueKind::kString;
  }
}

std::string StoreKindName(const kiq::v1::Store& store) {
  switch (store.kind_case()) {
    case kiq::v1::Store::kTable:
      return "table";
    case kiq::v1::Store::kCount:
      return "count";
    case kiq::v1::Store::kSum:
      return "sum";
    case kiq::v1::Store::kMin:
      return "min";
    case kiq::v1::Store::kMax:
      return "max";
    case kiq::v1::Store::kLatest:
      return "latest";
    case kiq::v1::Store::kAggregate:
      return "aggregate";
    case kiq::v1::Store::KIND_NOT_SET:
      break;
  }
  return "unknown";
}

}  // namespace kiq
