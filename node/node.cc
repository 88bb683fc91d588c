#include "node/node.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include <prometheus/text_serializer.h>
#include "common/logging.h"


#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/kafka/internal_topics.h"
#include "common/kafka/metadata.h"
#include "common/topology/topology_config.h"
#include "node/membership/standby_placement.h"
#include "router/router_probe.h"

namespace kiq::node {

absl::StatusOr<std::unique_ptr<Node>> Node::Start(NodeOptions options) {
  std::unique_ptr<Node> node(new Node());
  absl::StatusOr<kiq::v1::Topology> topology = LoadTopologyFile(options.config_path);
  if (!topology.ok()) return topology.status();

  std::string bootstrap_servers = options.bootstrap_servers;
  node->data_dir_ = options.data_dir;
  if (options.bootstrap_servers.empty()) {
    absl::StatusOr<std::unique_ptr<DevKafka>> kafka = DevKafka::Start(3);
    if (!kafka.ok()) return kafka.status();
    node->embedded_kafka_ = std::move(*kafka);
    bootstrap_servers = node->embedded_kafka_->bootstrap_servers();
    for (const kiq::v1::Source& source : topology->sources()) {
      absl::Status s =
          node->embedded_kafka_->CreateTopic(source.topic(), options.embedded_partitions);
      if (!s.ok()) return s;
    }
    for (const kiq::v1::Store& store : topology->stores()) {
      if (store.has_table()) continue;
      absl::Status s = node->embedded_kafka_->CreateTopic(
          absl::StrCat(topology->application_id(), "-", store.name(), "-changelog"),
          options.embedded_partitions);
      if (!s.ok()) return s;
    }
    spdlog::warn(
        "no --bootstrap-servers: started an embedded dev Kafka at {} (in memory, keeps only about "
        "the newest 5 MiB per partition, gone when this process exits); produce into it there. "
        "Not for production.",
        bootstrap_servers);
    if (node->data_dir_.empty()) {
      // State must not outlive the log it was built from.
      std::string tmpl = (std::filesystem::temp_directory_path() / "kiq-node-XXXXXX").string();
      if (mkdtemp(tmpl.data()) == nullptr) {
        return absl::UnavailableError("cannot create a temporary data directory");
      }
      node->data_dir_ = tmpl;
      spdlog::warn("with the embedded Kafka the data dir is a fresh temporary one: {}", tmpl);
    }
  }
  node->kafka_ = KafkaClientConfig(bootstrap_servers, options.kafka_properties);
  if (node->data_dir_.empty()) node->data_dir_ = absl::StrCat("kiq-data/", options.node_id);
  std::error_code ec;
  std::filesystem::create_directories(node->data_dir_, ec);
  if (ec) {
    return absl::UnavailableError(
        absl::StrCat("--data-dir: cannot create ", node->data_dir_, ": ", ec.message()));
  }

  std::vector<std::string> store_names;
  std::vector<std::string> topics;
  for (const kiq::v1::Store& store : topology->stores()) store_names.push_back(store.name());
  for (const kiq::v1::Source& source : topology->sources()) topics.push_back(source.topic());
  absl::StatusOr<absl::flat_hash_map<std::string, int32_t>> counts =
      FetchPartitionCounts(node->kafka_, topics, options.source_wait);
  if (!counts.ok()) return counts.status();

  absl::StatusOr<std::unique_ptr<StoreEngine>> engine =
      StoreEngine::Open(absl::StrCat(node->data_dir_, "/stores"), store_names);
  if (!engine.ok()) return engine.status();
  node->engine_ = std::move(*engine);
  if (topology->has_schema_registry()) {
    absl::StatusOr<schema::RegistryConfig> registry =
        schema::ResolveRegistryConfig(topology->schema_registry(), options.schema_registry_password);
    absl::StatusOr<std::unique_ptr<schema::HttpRegistryClient>> client =
        registry.ok() ? schema::HttpRegistryClient::Create(*registry) : registry.status();
    if (!client.ok()) {
      return absl::Status(client.status().code(),
                          absl::StrCat(options.config_path, ": ", client.status().message()));
    }
    schema::SchemaDecoder::Options cache;
    if (topology->schema_registry().cache_size() > 0) {
      cache.max_schemas = static_cast<size_t>(topology->schema_registry().cache_size());
    }
    node->schemas_ = std::make_unique<schema::SchemaDecoder>(*std::move(client), cache);
    spdlog::info("schema registry {} (writer schemas cached: up to {})", registry->url,
                 cache.max_schemas);
  }
  absl::StatusOr<std::unique_ptr<CompiledTopology>> compiled = CompiledTopology::Compile(
      *topology, *node->engine_, *counts, options.json_limits, node->schemas_.get());
  if (!compiled.ok()) return compiled.status();
  node->topology_ = std::move(*compiled);
  if (absl::Status s =
          EnsureInternalTopics(node->kafka_, node->topology_->InternalTopics(), absl::Seconds(10));
      !s.ok()) {
    return s;
  }

  const std::string members_topic = node->topology_->plan().members_topic();
  absl::StatusOr<std::unique_ptr<MembershipPublisher>> publisher =
      MembershipPublisher::Create(node->kafka_, members_topic, options.node_id,
                                  options.security.cluster_secret);
  if (!publisher.ok()) return publisher.status();
  node->publisher_ = std::move(*publisher);

  node->ingest_metrics_ = std::make_unique<IngestMetrics>(node->registry_);

  SubscriptionHubOptions hub_options;
  hub_options.subscriptions = &node->ingest_metrics_->Subscriptions();
  hub_options.replay_window = options.subscribe_replay_window;
  hub_options.lanes = options.ingest_threads;
  node->hub_ = std::make_unique<SubscriptionHub>(hub_options);
  IngestorOptions ingest;
  ingest.metrics = node->ingest_metrics_.get();
  ingest.hub = node->hub_.get();
  ingest.kafka = node->kafka_;
  ingest.node_id = options.node_id;
  ingest.out_of_range = options.out_of_range;
  ingest.changelog_batches_in_flight = options.changelog_batches_in_flight;
  ingest.ingest_cache_bytes = options.ingest_cache_bytes;
  Node* raw = node.get();
  ingest.on_ownership_change = [raw] {
    if (raw->advertiser_) raw->advertiser_->Notify();
  };
  ingest.on_end = [raw](const absl::Status& status) {
    absl::MutexLock lock(&raw->ended_mu_);
    ++raw->ingestors_ended_;
    if (!status.ok() && raw->first_failure_.ok()) raw->first_failure_ = status;
  };
  node->self_id_ = options.node_id;
  node->num_standby_replicas_ = topology->num_standby_replicas();
  if (node->num_standby_replicas_ > 0) {
    // Processors are single-threaded: the replicator applies tables with its own instance.
    absl::StatusOr<std::unique_ptr<CompiledTopology>> copy =
        CompiledTopology::Compile(*topology, *node->engine_, *counts, options.json_limits,
                                  node->schemas_.get());
    if (!copy.ok()) return copy.status();
    StandbyOptions standby;
    standby.kafka = node->kafka_;
    standby.node_id = options.node_id;
    standby.metrics = node->ingest_metrics_.get();
    standby.hub = node->hub_.get();
    standby.placement = [raw] { return raw->StandbyPlacement(); };
    standby.on_change = [raw] {
      if (raw->advertiser_) raw->advertiser_->Notify();
    };
    absl::StatusOr<std::unique_ptr<StandbyReplicator>> replicator = StandbyReplicator::Create(
        *std::move(copy), *node->engine_, node->standby_partitions_, std::move(standby));
    if (!replicator.ok()) return replicator.status();
    node->standby_ = *std::move(replicator);
    ingest.standby = node->standby_.get();
  }
  if (options.ingest_threads < 1 || options.ingest_threads > kMaxIngestThreads) {
    return absl::InvalidArgumentError(absl::StrCat(
        "ingest_threads: must be 1 to ", kMaxIngestThreads, ", got ", options.ingest_threads));
  }
  for (int lane = 0; lane < options.ingest_threads; ++lane) {
    CompiledTopology* topology_of_lane = node->topology_.get();
    if (lane > 0) {
      absl::StatusOr<std::unique_ptr<CompiledTopology>> copy = CompiledTopology::Compile(
          *topology, *node->engine_, *counts, options.json_limits, node->schemas_.get());
      if (!copy.ok()) return copy.status();
      node->lane_topologies_.push_back(*std::move(copy));
      topology_of_lane = node->lane_topologies_.back().get();
    }
    IngestorOptions lane_options = ingest;
    lane_options.lane = lane;
    absl::StatusOr<std::unique_ptr<Ingestor>> ingestor =
        Ingestor::Create(*topology_of_lane, *node->engine_, node->states_, node->positions_,
                         std::move(lane_options));
    if (!ingestor.ok()) return ingestor.status();
    node->ingestors_.push_back(*std::move(ingestor));
  }

  node->local_ = std::make_unique<LocalStoresImpl>(
      *node->topology_, *node->engine_, node->states_, node->positions_, node->hub_.get(),
      node->standby_ ? &node->standby_partitions_ : nullptr);
  router::Frontend::Options serve;
  serve.self_id = options.node_id;
  serve.kafka = node->kafka_;
  serve.members_topic = members_topic;
  serve.serve_peers = true;
  serve.registry = &node->registry_;
  serve.bind_address = options.bind_address;
  serve.grpc_port = options.grpc_port;
  serve.http_port = options.http_port;
  serve.serving = options.serving;
  serve.security = options.security;
  serve.port_file = options.port_file;
  absl::StatusOr<std::unique_ptr<router::Frontend>> frontend =
      router::Frontend::Start(serve, *node->local_, [raw](router::HttpServer& http) {
        http.Get("/healthz", [] { return router::HttpServer::Reply{200, "ok\n"}; });
        http.Get("/readyz", [raw] { return raw->Readiness(); });
        http.Get("/metrics", [raw] {
          raw->UpdateGauges();
          return router::HttpServer::Reply{
              200, prometheus::TextSerializer().Serialize(raw->registry_.Collect()),
              "text/plain; version=0.0.4; charset=utf-8"};
        });
      });
  if (!frontend.ok()) return frontend.status();
  node->frontend_ = *std::move(frontend);
  node->frontend_->StartHealthUpdates([raw] { return raw->Readiness().status == 200; });

  Advertiser::Options advertise;
  advertise.node_id = options.node_id;
  advertise.application_id = node->topology_->application_id();
  advertise.grpc_endpoint =
      absl::StrCat(options.advertised_host, ":", node->frontend_->grpc_port());
  if (node->frontend_->http_port() >= 0) {
    advertise.http_endpoint =
        absl::StrCat(options.advertised_host, ":", node->frontend_->http_port());
  }
  node->advertiser_ = std::make_unique<Advertiser>(
      advertise, *node->topology_, node->states_, node->positions_,
      [raw] {
        // Every ingestion thread is a member of the same group: the newest generation.
        Generation newest(0);
        for (const auto& ingestor : raw->ingestors_) {
          if (ingestor->generation().value() > newest.value()) newest = ingestor->generation();
        }
        return newest;
      },
      *node->publisher_, node->standby_ ? &node->standby_partitions_ : nullptr);
  node->advertiser_->Start();
  for (const auto& ingestor : node->ingestors_) ingestor->Start();
  if (node->standby_) node->standby_->Start();
  spdlog::info(
      "serving kiq.v1.QueryService on {}:{} (application {}, {} stores, {} partitions, "
      "{} ingestion thread{}, data dir {})",
      options.bind_address, node->frontend_->grpc_port(), node->topology_->application_id(),
      store_names.size(), node->topology_->num_partitions(), options.ingest_threads,
      options.ingest_threads == 1 ? "" : "s", node->data_dir_);
  node->options_ = std::move(options);
  return node;
}

Node::~Node() { Shutdown(); }

absl::Status Node::Wait() {
  // Until every ingestion thread has ended, or one has failed.
  absl::Status status;
  {
    absl::MutexLock lock(&ended_mu_);
    const int threads = static_cast<int>(ingestors_.size());
    auto ended = [this, threads]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(ended_mu_) {
      return ingestors_ended_ == threads || !first_failure_.ok();
    };
    ended_mu_.Await(absl::Condition(&ended));
    status = first_failure_;
  }
  if (!status.ok()) {
    absl::MutexLock lock(&failure_mu_);
    ingestion_failure_ = status;
  }
  return status;
}

void Node::Shutdown() {
  // Readiness fails first, so that load balancers stop sending queries.
  shutting_down_.store(true);
  absl::MutexLock lock(&shutdown_mu_);
  // Push streams never finish on their own: end them so the server can drain.
  if (hub_) hub_->EndAll(absl::UnavailableError("node shutting down"));
  if (frontend_) {
    spdlog::info("shutting down: no new queries, finishing in-flight ones");
    frontend_->Shutdown(absl::Seconds(5));
  }
  if (!ingestors_.empty() && !ingestor_stopped_) {
    spdlog::info("shutting down: committing and leaving the consumer group");
    // Each thread commits and closes its consumer: stopped together, not one after another.
    for (const auto& ingestor : ingestors_) ingestor->RequestStop();
    for (const auto& ingestor : ingestors_) ingestor->Stop();
    if (standby_) standby_->Stop();
    ingestor_stopped_ = true;
    if (advertiser_) advertiser_->StopWithTombstone(absl::Seconds(5));
  }
}

void Node::UpdateGauges() {
  int64_t active = 0;
  int64_t restoring = 0;
  int64_t failed = 0;
  for (const auto& [p, state] : states_.Snapshot()) {
    switch (state) {
      case PartitionState::kActive:
        ++active;
        break;
      case PartitionState::kRestoring:
        ++restoring;
        break;
      case PartitionState::kFailed:
        ++failed;
        break;
    }
    // Lag per owned source partition: the high watermark minus the smallest next offset of
    // the stores it feeds.
    for (const CompiledSource& source : topology_->sources()) {
      std::optional<int64_t> high;
      for (const auto& ingestor : ingestors_) {
        high = ingestor->CachedHighWatermark(source.spec.topic(), p);
        if (high) break;
      }
      if (!high) continue;
      int64_t lowest_next = *high;
      for (int index : source.stores) {
        std::optional<Offset> next =
            positions_.Get(topology_->stores()[index].info.name, source.spec.topic(), p);
        lowest_next = std::min(lowest_next, next ? next->value() : 0);
      }
      ingest_metrics_->SetLag(source.spec.topic(), p.value(), *high - lowest_next);
    }
  }
  int64_t standby = 0;
  for (const StandbyPartitions::Replica& replica : standby_partitions_.Snapshot()) {
    if (replica.serving) ++standby;
  }
  ingest_metrics_->SetPartitions(active, restoring, failed, standby);
  if (num_standby_replicas_ > 0) {
    // In sync: advertised, and at most this far behind its changelogs.
    constexpr int64_t kInSyncLag = 10000;
    int64_t uncovered = 0;
    const router::RoutingTable& table = frontend_->routing_table();
    for (int32_t p = 0; p < topology_->num_partitions(); ++p) {
      const std::vector<router::StandbyReplica> replicas = table.Standbys(p);
      if (std::none_of(replicas.begin(), replicas.end(), [](const router::StandbyReplica& r) {
            return r.lag_records <= kInSyncLag;
          })) {
        ++uncovered;
      }
    }
    ingest_metrics_->SetPartitionsWithoutStandby(uncovered);
  }
  ingest_metrics_->SetKafkaConnected(frontend_->kafka_connected());
  ingest_metrics_->SetMembers(static_cast<int64_t>(frontend_->routing_table().AllNodes().size()));
  for (const CompiledStore& store : topology_->stores()) {
    if (store.internal) continue;  // no column family
    StoreEngine::StoreStats stats = engine_->Stats(store.handle);
    ingest_metrics_->SetStore(store.info.name, stats.size_bytes, stats.estimated_keys);
  }
}

std::vector<int32_t> Node::StandbyPlacement() const {
  std::vector<int32_t> out;
  if (!frontend_) return out;
  const router::RoutingTable& table = frontend_->routing_table();
  std::vector<std::string> live;
  for (const kiq::v1::NodeInfo& node : table.AllNodes()) live.push_back(node.node_id());
  live.push_back(self_id_);  // before its own record is read back
  absl::flat_hash_set<int32_t> held;
  for (const StandbyPartitions::Replica& r : standby_partitions_.Snapshot()) {
    held.insert(r.partition.value());
  }
  for (int32_t p = 0; p < topology_->num_partitions(); ++p) {
    std::optional<router::PartitionOwner> owner = table.OwnerOf(p);
    // Between owners (a cooperative move: revoked, not yet assigned) a replica stays: this
    // node may well be the one that gains the partition.
    if (!owner && held.contains(p)) {
      out.push_back(p);
      continue;
    }
    const std::vector<std::string> nodes =
        StandbyNodes(p, topology_->num_partitions(), owner ? owner->node.node_id() : "", live,
                     num_standby_replicas_);
    if (std::find(nodes.begin(), nodes.end(), self_id_) != nodes.end()) out.push_back(p);
  }
  return out;
}

router::HttpServer::Reply Node::Readiness() const {
  if (shutting_down_.load()) return router::ReadinessReply(false, "shutting down");
  {
    absl::MutexLock lock(&failure_mu_);
    if (!ingestion_failure_.ok()) {
      return router::ReadinessReply(
          false, absl::StrCat("ingestion stopped: ", ingestion_failure_.ToString(),
                              "; serving reads at the committed positions until the process "
                              "exits (data dir ",
                              data_dir_, ")"));
    }
  }
  bool lost = false;
  for (const auto& ingestor : ingestors_) {
    if (!ingestor->joined() && !ingestor->assignment_lost()) {
      return router::ReadinessReply(
          false, ingestors_.size() == 1 ? std::string("not yet a member of the consumer group")
                                        : "not every ingestion thread is a member of the "
                                          "consumer group yet");
    }
    lost = lost || ingestor->assignment_lost();
  }
  std::vector<std::string> not_active;
  for (const auto& [p, state] : states_.Snapshot()) {
    if (state != PartitionState::kActive) {
      not_active.push_back(
          absl::StrCat("partition ", p.value(), " is ", PartitionStateName(state)));
    }
  }
  if (!not_active.empty()) return router::ReadinessReply(false, absl::StrJoin(not_active, "; "));
  if (lost) {
    return router::ReadinessReply(
        true, "Kafka unreachable, serving the partitions it had at their committed positions");
  }
  if (!frontend_->kafka_connected()) return router::ReadinessReply(true, "the members topic is unreadable");
  return router::ReadinessReply(true, "ready");
}

}  // namespace kiq::node
