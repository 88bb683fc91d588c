#include "router/request_limits.h"

#include <initializer_list>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace kiq::router {
namespace {

using Field = std::pair<absl::string_view, const std::string*>;

absl::Status TooLong(absl::string_view field, size_t size, size_t limit) {
  return absl::InvalidArgumentError(
      absl::StrCat(field, " is ", size, " bytes, over the limit of ", limit));
}

absl::Status CheckSizes(absl::string_view store, std::initializer_list<Field> keys,
                        const std::string* page_token = nullptr) {
  if (store.size() > kMaxStoreNameBytes) return TooLong("store", store.size(), kMaxStoreNameBytes);
  for (const auto& [name, value] : keys) {
    if (value->size() > kMaxKeyBytes) return TooLong(name, value->size(), kMaxKeyBytes);
  }
  if (page_token != nullptr && page_token->size() > kMaxPageTokenBytes) {
    return TooLong("page_token", page_token->size(), kMaxPageTokenBytes);
  }
  return absl::OkStatus();
}

absl::Status CheckPosition(const kiq::v1::Position& position) {
  if (position.offsets_size() > kMaxPositionEntries) {
    return absl::InvalidArgumentError(absl::StrCat("min_position has ", position.offsets_size(),
                                                   " entries, over the limit of ",
                                                   kMaxPositionEntries));
  }
  for (const kiq::v1::PartitionOffset& po : position.offsets()) {
    if (po.topic().size() > kMaxStoreNameBytes) {
      return TooLong("min_position.offsets.topic", po.topic().size(), kMaxStoreNameBytes);
    }
  }
  return absl::OkStatus();
}

absl::Status CheckPartitions(int count) {
  if (count <= kMaxRequestPartitions) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      "partitions has ", count, " entries, over the limit of ", kMaxRequestPartitions));
}

}  // namespace

absl::Status CheckRequest(const kiq::v1::GetRequest& request) {
  if (absl::Status s = CheckSizes(request.store(),
                                  {{"key", &request.key()}, {"key_bytes", &request.key_bytes()}});
      !s.ok()) {
    return s;
  }
  return CheckPosition(request.min_position());
}

absl::Status CheckRequest(const kiq::v1::GetManyRequest& request) {
  if (absl::Status s = CheckSizes(request.store(), {}); !s.ok()) return s;
  if (request.keys().empty()) return absl::InvalidArgumentError("keys is required (at least one)");
  if (request.keys_size() > kMaxGetManyKeys) {
    return absl::InvalidArgumentError(absl::StrCat("keys has ", request.keys_size(),
                                                   " entries, over the limit of ", kMaxGetManyKeys,
                                                   " (kMaxGetManyKeys)"));
  }
  for (int i = 0; i < request.keys_size(); ++i) {
    if (request.keys(i).size() > kMaxKeyBytes) {
      return TooLong(absl::StrCat("keys[", i, "]"), request.keys(i).size(), kMaxKeyBytes);
    }
  }
  return CheckPosition(request.min_position());
}

absl::Status CheckRequest(const kiq::v1::RangeRequest& request) {
  if (absl::Status s = CheckSizes(request.store(),
                                  {{"from", &request.from()},
                                   {"to", &request.to()},
                                   {"from_bytes", &request.from_bytes()},
                                   {"to_bytes", &request.to_bytes()}},
                                  &request.page_token());
      !s.ok()) {
    return s;
  }
  return CheckPosition(request.min_position());
}

absl::Status CheckRequest(const kiq::v1::AllRequest& request) {
  if (absl::Status s = CheckSizes(request.store(), {}, &request.page_token()); !s.ok()) return s;
  return CheckPosition(request.min_position());
}

absl::Status CheckRequest(const kiq::v1::CountRequest& request) {
  if (absl::Status s = CheckSizes(request.store(), {}); !s.ok()) return s;
  return CheckPosition(request.min_position());
}

absl::Status CheckRequest(const kiq::v1::WindowFetchRequest& request) {
  if (absl::Status s = CheckSizes(request.store(),
                                  {{"key", &request.key()}, {"key_bytes", &request.key_bytes()}});
      !s.ok()) {
    return s;
  }
  return CheckPosition(request.min_position());
}

absl::Status CheckRequest(const kiq::v1::SubscribeRequest& request) {
  return CheckSizes(request.store(),
                    {{"key", &request.key()}, {"key_prefix", &request.key_prefix()}});
}

absl::Status CheckRequest(const kiq::v1::ScanPartitionsRequest& request) {
  if (absl::Status s = CheckSizes(request.store(), {{"from", &request.from().value()},
                                                    {"to", &request.to().value()},
                                                    {"after", &request.after().value()}});
      !s.ok()) {
    return s;
  }
  if (absl::Status s = CheckPartitions(request.partitions_size()); !s.ok()) return s;
  return CheckPosition(request.min_position());
}

absl::Status CheckRequest(const kiq::v1::CountPartitionsRequest& request) {
  if (absl::Status s = CheckSizes(request.store(), {}); !s.ok()) return s;
  if (absl::Status s = CheckPartitions(request.partitions_size()); !s.ok()) return s;
  return CheckPosition(request.min_position());
}

absl::Status CheckRequest(const kiq::v1::SubscribePartitionsRequest& request) {
  if (absl::Status s = CheckSizes(request.store(),
                                  {{"key", &request.key()}, {"key_prefix", &request.key_prefix()}});
      !s.ok()) {
    return s;
  }
  if (absl::Status s = CheckPartitions(request.partitions_size()); !s.ok()) return s;
  if (request.resume_size() > kMaxRequestPartitions) return CheckPartitions(request.resume_size());
  return absl::OkStatus();
}

}  // namespace kiq::router
