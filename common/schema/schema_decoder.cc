#include "common/schema/schema_decoder.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/schema/wire_format.h"
#include "common/thread_name.h"

namespace kiq::schema {

absl::string_view WireFormatName(kiq::v1::Format format) {
  switch (format) {
    case kiq::v1::FORMAT_AVRO:
      return "avro";
    case kiq::v1::FORMAT_PROTOBUF:
      return "protobuf";
    case kiq::v1::FORMAT_JSON_SR:
      return "json_sr";
    default:
      return "?";
  }
}

SchemaDecoder::SchemaDecoder(std::unique_ptr<RegistryClient> client, Options options)
    : client_(std::move(client)), options_(options) {
  fetcher_ = std::thread([this] {
    NameThisThread("kiq-schema");
    RunFetcher();
  });
}

SchemaDecoder::~SchemaDecoder() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  // A fetch in progress ends within the client's request timeout; queued ones are dropped.
  fetcher_.join();
}

size_t SchemaDecoder::cached() const {
  absl::MutexLock lock(&mu_);
  return cache_.size();
}

void SchemaDecoder::Put(int32_t id, std::shared_ptr<const Writer> writer) {
  auto [it, inserted] = cache_.try_emplace(id, writer);
  if (!inserted) {
    it->second = std::move(writer);  // a refusal that expired, fetched again
    return;
  }
  order_.push_back(id);
  while (cache_.size() > options_.max_schemas && !order_.empty()) {
    cache_.erase(order_.front());
    order_.pop_front();
    stats_.evictions.fetch_add(1, std::memory_order_relaxed);
  }
}

std::shared_ptr<const SchemaDecoder::Writer> SchemaDecoder::Cached(int32_t id) {
  auto it = cache_.find(id);
  if (it == cache_.end()) return nullptr;
  if (it->second->refused.ok() || absl::Now() < it->second->refused_until) return it->second;
  return nullptr;  // a refusal that expired: ask again
}

void SchemaDecoder::StartFetch(int32_t id) {
  if (stopping_ || !in_flight_.insert(id).second) return;
  queue_.push_back(id);
}

void SchemaDecoder::Fetch(int32_t id) {
  absl::MutexLock lock(&mu_);
  if (Cached(id) == nullptr) StartFetch(id);
}

SchemaDecoder::FetchState SchemaDecoder::Poll(int32_t id, absl::Status* error) {
  absl::MutexLock lock(&mu_);
  if (Cached(id) != nullptr) return FetchState::kCached;
  if (in_flight_.contains(id)) return FetchState::kInFlight;
  if (error != nullptr) {
    auto failed = failed_.find(id);
    *error = failed != failed_.end()
                 ? failed->second
                 : absl::UnavailableError(absl::StrCat("schema id ", id, " is not cached"));
  }
  return FetchState::kFailed;
}

void SchemaDecoder::RunFetcher() {
  while (true) {
    int32_t id = 0;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(this, &SchemaDecoder::HasWork));
      if (stopping_) return;
      id = queue_.front();
      queue_.pop_front();
    }
    // Outside the lock: an HTTP call, bounded by the client's timeouts.
    absl::StatusOr<std::shared_ptr<const Writer>> writer = FetchNow(id);
    absl::MutexLock lock(&mu_);
    in_flight_.erase(id);
    if (writer.ok()) {
      failed_.erase(id);
      Put(id, *std::move(writer));
    } else {
      failed_[id] = writer.status();
    }
  }
}

absl::StatusOr<std::shared_ptr<const SchemaDecoder::Writer>> SchemaDecoder::FetchNow(int32_t id) {
  absl::StatusOr<RegisteredSchema> answer = client_->SchemaById(id);
  if (!answer.ok() && absl::IsUnavailable(answer.status())) {
    stats_.fetch_failures.fetch_add(1, std::memory_order_relaxed);
    return answer.status();
  }
  stats_.fetches.fetch_add(1, std::memory_order_relaxed);
  auto writer = std::make_shared<Writer>();
  if (!answer.ok()) {
    writer->refused = absl::InvalidArgumentError(
        absl::IsNotFound(answer.status())
            ? absl::StrCat("unknown schema id ", id, " (", answer.status().message(), ")")
            : std::string(answer.status().message()));
  } else {
    writer->type = answer->type;
    absl::Status parsed;
    if (answer->type == SchemaType::kAvro) {
      absl::StatusOr<std::unique_ptr<AvroSchema>> avro = AvroSchema::Parse(answer->text);
      if (avro.ok()) writer->avro = std::move(*avro);
      parsed = avro.status();
    } else if (answer->type == SchemaType::kProtobuf) {
      absl::StatusOr<std::unique_ptr<ProtobufSchema>> protobuf =
          ProtobufSchema::Parse(answer->text);
      if (protobuf.ok()) writer->protobuf = std::move(*protobuf);
      parsed = protobuf.status();
    }
    if (!parsed.ok()) {
      writer->refused = absl::InvalidArgumentError(
          absl::StrCat("schema id ", id, " (", SchemaTypeName(answer->type), "): ", parsed.message()));
    }
  }
  if (!writer->refused.ok()) writer->refused_until = absl::Now() + options_.negative_ttl;
  return std::shared_ptr<const Writer>(std::move(writer));
}

absl::Status SchemaDecoder::Decode(kiq::v1::Format format, absl::string_view bytes,
                                   absl::string_view what, const JsonLimits& limits,
                                   std::string* json, int32_t* schema_id) {
  absl::StatusOr<WireValue> wire =
      ParseWireFormat(bytes, format == kiq::v1::FORMAT_PROTOBUF, what);
  if (!wire.ok()) return wire.status();
  if (schema_id != nullptr) *schema_id = wire->schema_id;
  std::shared_ptr<const Writer> writer;
  {
    absl::MutexLock lock(&mu_);
    writer = Cached(wire->schema_id);
    if (writer == nullptr) {
      StartFetch(wire->schema_id);
      std::string why =
          absl::StrCat(what, " has schema id ", wire->schema_id,
                       ", not cached yet: it is being fetched from the schema registry");
      if (auto failed = failed_.find(wire->schema_id); failed != failed_.end()) {
        absl::StrAppend(&why, " (last attempt: ", failed->second.message(), ")");
      }
      return absl::UnavailableError(why);
    }
  }
  const Writer& w = *writer;
  if (!w.refused.ok()) return absl::InvalidArgumentError(absl::StrCat(what, ": ", w.refused.message()));
  const SchemaType expected = format == kiq::v1::FORMAT_AVRO       ? SchemaType::kAvro
                              : format == kiq::v1::FORMAT_PROTOBUF ? SchemaType::kProtobuf
                                                                   : SchemaType::kJson;
  if (w.type != expected) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " has schema id ", wire->schema_id, ", a ", SchemaTypeName(w.type),
                     " schema; the topology says ", WireFormatName(format)));
  }
  absl::Status s;
  switch (w.type) {
    case SchemaType::kAvro:
      s = w.avro->Decode(wire->payload, limits, json);
      break;
    case SchemaType::kProtobuf:
      s = w.protobuf->Decode(wire->payload, wire->message_indexes, limits, json);
      break;
    case SchemaType::kJson:
      // The JSON text itself; the JSON parser that follows checks it (UTF-8, depth, syntax).
      json->assign(wire->payload.data(), wire->payload.size());
      break;
  }
  if (!s.ok() && what != "value" && absl::StartsWith(s.message(), "value")) {
    return absl::Status(s.code(), absl::StrCat(what, s.message().substr(5)));
  }
  return s;
}

}  // namespace kiq::schema
