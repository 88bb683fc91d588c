#include "tests/testing/kafka_fixture.h"

#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"

namespace kiq::testing {
namespace {

constexpr absl::Duration kAdminTimeout = absl::Seconds(60);
// Between admin requests that wait for the broker (each is a new client and connection).
constexpr absl::Duration kAdminRetryInterval = absl::Milliseconds(250);
// Keeps topic names readable (and far below Kafka's 249 characters).
constexpr size_t kMaxTestNameLength = 40;

// "-<test suite>-<test name>-<pid><random>", in topic characters ([A-Za-z0-9-]).
std::string UniqueSuffix() {
  const ::testing::TestInfo* info = ::testing::UnitTest::GetInstance()->current_test_info();
  const std::string full =
      info == nullptr ? "test" : absl::StrCat(info->test_suite_name(), "-", info->name());
  std::string name;
  for (char c : full) {
    const bool keep = absl::ascii_isalnum(static_cast<unsigned char>(c));
    if (keep) {
      name.push_back(c);
    } else if (!name.empty() && name.back() != '-') {
      name.push_back('-');
    }
  }
  if (name.size() > kMaxTestNameLength) name.resize(kMaxTestNameLength);
  while (!name.empty() && name.back() == '-') name.pop_back();
  std::random_device random;
  return absl::StrCat("-", name, "-", absl::Hex(getpid()),
                      absl::Hex(random() & 0xffff, absl::kZeroPad4));
}

// The application ids of examples/*/topology.yaml, longest first.
std::vector<std::string> ExampleApplicationIds() {
  std::vector<std::string> ids;
  std::error_code ignored;
  for (const auto& entry :
       std::filesystem::directory_iterator(std::string(kSourceDir) + "/examples", ignored)) {
    const std::filesystem::path file = entry.path() / "topology.yaml";
    if (!std::filesystem::exists(file, ignored)) continue;
    try {
      const YAML::Node root = YAML::LoadFile(file.string());
      if (root["application_id"]) ids.push_back(root["application_id"].as<std::string>());
    } catch (const YAML::Exception&) {
      // Not an example to learn from; its own test reports it.
    }
  }
  return ids;
}

void SortLongestFirst(std::vector<std::string>* ids) {
  std::sort(ids->begin(), ids->end(), [](const std::string& a, const std::string& b) {
    return a.size() != b.size() ? a.size() > b.size() : a < b;
  });
}

}  // namespace

std::string ExternalBootstrapServers() {
  const char* servers = std::getenv("KIQ_TEST_BOOTSTRAP_SERVERS");
  return servers == nullptr ? std::string() : std::string(absl::StripAsciiWhitespace(servers));
}

KafkaFixture::KafkaFixture() {
  if (ExternalBootstrapServers().empty()) return;
  unique_ = UniqueSuffix();
  application_ids_ = ExampleApplicationIds();
  SortLongestFirst(&application_ids_);
}

KafkaFixture::~KafkaFixture() {
  if (external_kafka() && kafka_ != nullptr) {
    std::vector<std::string> topics = ListTestTopics();
    for (const TopicSpec& t : created_) {
      if (std::find(topics.begin(), topics.end(), t.name) == topics.end()) topics.push_back(t.name);
    }
    if (HasFailure()) {
      std::fprintf(stderr, "[   KEPT   ] topics of the failed test on %s: %s\n",
                   bootstrap_servers().c_str(), absl::StrJoin(topics, " ").c_str());
    } else {
      if (absl::Status s = DeleteTopics(bootstrap_servers(), topics, kAdminTimeout); !s.ok()) {
        std::fprintf(stderr, "[ WARNING  ] %s\n", s.ToString().c_str());
      }
      // The consumer groups too, as a courtesy to whoever shares the cluster. Best effort: a
      // group whose static members were killed is not empty until their sessions expire.
      std::vector<std::string> groups;
      for (const std::string& app : application_ids_) groups.push_back(ApplicationId(app));
      DeleteGroups(bootstrap_servers(), groups, absl::Seconds(10)).IgnoreError();
    }
  }
  if (!dir_.empty() && !HasFailure()) {
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }
}

void KafkaFixture::StartKafka(const std::string& name,
                              const std::vector<std::pair<std::string, int>>& topics) {
  dir_ = MakeTempDir(name);
  plain_topics_ = topics;
  if (external_kafka()) {
    kafka_ = DevKafkaProcess::External(ExternalBootstrapServers());
    std::vector<TopicSpec> specs;
    for (const auto& [plain, partitions] : topics) {
      specs.push_back(TopicSpec{Topic(plain), partitions, absl::EndsWith(plain, "-changelog")});
    }
    ASSERT_OK(CreateTestTopics(specs));
  } else {
    auto kafka = DevKafkaProcess::Start(dir_, topics);
    ASSERT_OK(kafka);
    kafka_ = std::move(*kafka);
  }
  auto producer = TestProducer::Create(kafka_->bootstrap_servers());
  ASSERT_OK(producer);
  producer_ = std::move(*producer);
}

std::string KafkaFixture::Topic(const std::string& plain) const {
  if (unique_.empty()) return plain;
  for (const std::string& app : application_ids_) {
    if (plain.size() > app.size() + 1 && absl::StartsWith(plain, app) && plain[app.size()] == '-') {
      return absl::StrCat(app, unique_, plain.substr(app.size()));
    }
  }
  return plain + unique_;
}

std::string KafkaFixture::ApplicationId(const std::string& plain) const { return plain + unique_; }

absl::StatusOr<std::unique_ptr<NodeProcess>> KafkaFixture::LaunchNode(
    const std::string& config, const std::string& node_id, std::vector<std::string> extra_flags,
    bool default_group_timeouts) {
  absl::StatusOr<std::string> topology = TopologyFor(config);
  if (!topology.ok()) return topology.status();
  NodeProcess::Options options;
  options.config = *topology;
  options.bootstrap_servers = kafka_->bootstrap_servers();
  options.node_id = node_id;
  options.data_dir = dir_ + "/data-" + node_id;
  options.extra_flags = std::move(extra_flags);
  options.default_group_timeouts = default_group_timeouts;
  return NodeProcess::Start(dir_, std::move(options));
}

absl::StatusOr<std::unique_ptr<NodeProcess>> KafkaFixture::LaunchRouter(
    const std::string& config, const std::vector<std::string>& extra_flags) {
  absl::StatusOr<std::string> topology = TopologyFor(config);
  if (!topology.ok()) return topology.status();
  return NodeProcess::StartRouter(dir_, *topology, kafka_->bootstrap_servers(), extra_flags);
}

void KafkaFixture::RestartKafkaEmpty() {
  if (external_kafka()) {
    std::vector<std::string> topics = ListTestTopics();
    ASSERT_OK(DeleteTopics(bootstrap_servers(), topics, kAdminTimeout));
    std::vector<std::string> left;
    ASSERT_TRUE(WaitFor(
        [&] {
          left.clear();
          for (const std::string& t : ListTestTopics()) {
            if (std::find(topics.begin(), topics.end(), t) != topics.end()) left.push_back(t);
          }
          if (!left.empty()) absl::SleepFor(kAdminRetryInterval);
          return left.empty();
        },
        kAdminTimeout))
        << "topics still listed after their deletion: " << absl::StrJoin(left, " ");
    // The broker may still be removing their logs: "already exists" until it is done. One
    // topic at a time, so that a retry never meets a topic it has just created.
    for (const TopicSpec& topic : created_) {
      absl::Status created;
      ASSERT_TRUE(WaitFor(
          [&] {
            created = CreateTopics(bootstrap_servers(), {topic}, kAdminTimeout);
            if (created.code() != absl::StatusCode::kAlreadyExists) return true;
            absl::SleepFor(kAdminRetryInterval);
            return false;
          },
          kAdminTimeout))
          << created;
      ASSERT_OK(created);
    }
  } else {
    kafka_->process().Kill();
    auto kafka = DevKafkaProcess::Start(dir_, plain_topics_);
    ASSERT_OK(kafka);
    kafka_ = std::move(*kafka);
  }
  auto producer = TestProducer::Create(kafka_->bootstrap_servers());
  ASSERT_OK(producer);
  producer_ = std::move(*producer);
}

TestProducer::Delivered KafkaFixture::ProduceAndTrack(const std::string& topic,
                                                      const std::string& key,
                                                      const std::optional<std::string>& value,
                                                      int64_t timestamp_ms) {
  const std::string name = Topic(topic);
  auto delivered = producer_->Produce(name, key, value, timestamp_ms);
  if (!delivered.ok()) {
    ADD_FAILURE() << "produce to " << name << ": " << delivered.status();
    return {};
  }
  int64_t& next = produced_[{name, delivered->partition}];
  next = std::max(next, delivered->offset + 1);
  return *delivered;
}

absl::StatusOr<std::string> KafkaFixture::TopologyFor(const std::string& config) {
  if (!external_kafka()) return config;
  if (auto it = topologies_.find(config); it != topologies_.end()) return it->second;
  YAML::Node root;
  std::string app;
  try {
    root = YAML::LoadFile(config);
    if (!root["application_id"]) {
      return absl::InvalidArgumentError(absl::StrCat(config, ": no application_id to rename"));
    }
    app = root["application_id"].as<std::string>();
    if (std::find(application_ids_.begin(), application_ids_.end(), app) ==
        application_ids_.end()) {
      application_ids_.push_back(app);
      SortLongestFirst(&application_ids_);
    }
    root["application_id"] = ApplicationId(app);
    for (YAML::Node source : root["sources"]) {
      if (source["topic"]) source["topic"] = Topic(source["topic"].as<std::string>());
    }
    for (YAML::Node store : root["stores"]) {
      if (store["source"]) store["source"] = Topic(store["source"].as<std::string>());
    }
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(config, ": cannot rewrite: ", e.what()));
  }
  YAML::Emitter emitter;
  emitter << root;
  const std::string path =
      absl::StrCat(dir_, "/topology-", topologies_.size() + 1, "-", app, ".yaml");
  {
    std::ofstream out(path);
    out << "# " << config << " with this test's topic names on " << bootstrap_servers() << "\n"
        << emitter.c_str() << "\n";
    if (!out) return absl::InternalError(absl::StrCat("cannot write ", path));
  }
  topologies_[config] = path;
  return path;
}

std::string KafkaFixture::WriteFile(const std::string& name, const std::string& text) const {
  const std::string path = absl::StrCat(dir_, "/", name);
  std::ofstream out(path);
  out << text;
  out.close();
  EXPECT_TRUE(out.good()) << "cannot write " << path;
  return path;
}

absl::Status KafkaFixture::CreateTestTopics(const std::vector<TopicSpec>& topics) {
  created_.insert(created_.end(), topics.begin(), topics.end());
  return CreateTopics(bootstrap_servers(), topics, kAdminTimeout);
}

std::vector<std::string> KafkaFixture::ListTestTopics() const {
  std::vector<std::string> out;
  absl::StatusOr<std::map<std::string, int>> topics =
      ListTopics(bootstrap_servers(), absl::Seconds(10));
  if (!topics.ok()) return out;
  for (const auto& [name, partitions] : *topics) {
    if (absl::StrContains(name, unique_)) out.push_back(name);
  }
  return out;
}

}  // namespace kiq::testing
