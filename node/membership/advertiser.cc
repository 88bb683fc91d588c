#include "node/membership/advertiser.h"

#include "absl/time/clock.h"
#include "common/logging.h"
#include "common/thread_name.h"

namespace kiq::node {
namespace {

kiq::v1::PartitionState ToProto(PartitionState s) {
  switch (s) {
    case PartitionState::kRestoring:
      return kiq::v1::PARTITION_STATE_RESTORING;
    case PartitionState::kActive:
      return kiq::v1::PARTITION_STATE_ACTIVE;
    case PartitionState::kFailed:
      return kiq::v1::PARTITION_STATE_FAILED;
  }
  return kiq::v1::PARTITION_STATE_UNSPECIFIED;
}

}  // namespace

Advertiser::Advertiser(Options options, const CompiledTopology& topology,
                       const PartitionStates& states, const PositionTracker& positions,
                       std::function<Generation()> generation, MembershipPublisher& publisher,
                       const StandbyPartitions* standby)
    : options_(std::move(options)),
      topology_(topology),
      states_(states),
      positions_(positions),
      standby_(standby),
      generation_(std::move(generation)),
      publisher_(publisher) {}

Advertiser::~Advertiser() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

void Advertiser::Start() {
  thread_ = std::thread([this] {
    NameThisThread("kiq-advertiser");
    Run();
  });
}

void Advertiser::Notify() {
  absl::MutexLock lock(&mu_);
  dirty_ = true;
}

void Advertiser::AddOffsets(const PositionTracker& positions, PartitionId p,
                            kiq::v1::OwnedPartition* owned) const {
  // Per source topic, the smallest next offset among its stores: everything below it is
  // materialized in every store of this partition.
  for (const CompiledSource& source : topology_.sources()) {
    std::optional<int64_t> lowest;
    for (int index : source.stores) {
      std::optional<Offset> next =
          positions.Get(topology_.stores()[index].info.name, source.spec.topic(), p);
      if (next) lowest = lowest ? std::min(*lowest, next->value()) : next->value();
    }
    if (!lowest) continue;
    kiq::v1::PartitionOffset* po = owned->add_offsets();
    po->set_topic(source.spec.topic());
    po->set_partition(p.value());
    po->set_offset(*lowest);
  }
}

kiq::v1::MemberRecord Advertiser::BuildRecord() const {
  kiq::v1::MemberRecord record;
  record.set_node_id(options_.node_id);
  record.set_application_id(options_.application_id);
  record.set_grpc_endpoint(options_.grpc_endpoint);
  record.set_http_endpoint(options_.http_endpoint);
  for (const CompiledStore& store : topology_.stores()) {
    if (!store.internal) record.add_stores(store.info.name);
  }
  for (const auto& [p, state] : states_.Snapshot()) {
    kiq::v1::OwnedPartition* owned = record.add_partitions();
    owned->set_partition(p.value());
    owned->set_state(ToProto(state));
    AddOffsets(positions_, p, owned);
  }
  if (standby_ != nullptr) {
    for (const StandbyPartitions::Replica& replica : standby_->Snapshot()) {
      // A replica still being built is not advertised: no router sends it a read.
      if (!replica.serving) continue;
      kiq::v1::OwnedPartition* owned = record.add_partitions();
      owned->set_partition(replica.partition.value());
      owned->set_state(kiq::v1::PARTITION_STATE_STANDBY);
      owned->set_lag_records(replica.lag);
      AddOffsets(standby_->positions(), replica.partition, owned);
    }
  }
  record.set_generation(generation_().value());
  const absl::Time now = absl::Now();
  record.set_written_at_ms(absl::ToUnixMillis(now));
  record.set_lease_expiry_ms(absl::ToUnixMillis(now + options_.lease));
  return record;
}

void Advertiser::Run() {
  absl::Time next_renewal = absl::InfinitePast();
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      auto wake = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return dirty_ || stopping_; };
      mu_.AwaitWithDeadline(absl::Condition(&wake), next_renewal);
      if (stopping_) return;
      dirty_ = false;
    }
    publisher_.Publish(BuildRecord());
    publisher_.Poll();
    next_renewal = absl::Now() + options_.interval;
  }
}

void Advertiser::StopWithTombstone(absl::Duration timeout) {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
  if (absl::Status s = publisher_.PublishTombstone(timeout); !s.ok()) {
    spdlog::warn("membership tombstone not acknowledged: {}", s.ToString());
  } else {
    spdlog::info("membership tombstone written to {}", publisher_.topic());
  }
}

}  // namespace kiq::node
