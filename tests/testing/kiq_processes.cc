#include "tests/testing/kiq_processes.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace kiq::testing {

std::vector<std::pair<std::string, int>> OrdersDemoTopics(int partitions) {
  return {{"customers", partitions},
          {"orders", partitions},
          {"orders-demo-order_count-changelog", partitions}};
}

absl::StatusOr<std::unique_ptr<DevKafkaProcess>> DevKafkaProcess::Start(
    const std::string& dir, const std::vector<std::pair<std::string, int>>& topics,
    const std::vector<std::string>& extra_args) {
  std::vector<std::string> specs;
  for (const auto& [name, partitions] : topics)
    specs.push_back(absl::StrCat(name, ":", partitions));
  const std::string bootstrap_file = dir + "/bootstrap.txt";
  const std::string control_file = dir + "/control-port.txt";
  std::remove(bootstrap_file.c_str());  // a previous cluster in the same dir
  std::remove(control_file.c_str());
  std::vector<std::string> argv = {kDevKafkaBin,
                                   "--brokers=3",
                                   "--topics=" + absl::StrJoin(specs, ","),
                                   "--bootstrap_file=" + bootstrap_file,
                                   "--control-port=0",
                                   "--control-port-file=" + control_file};
  argv.insert(argv.end(), extra_args.begin(), extra_args.end());
  auto process = Process::Start(argv, dir + "/dev-kafka.log");
  if (!process.ok()) return process.status();
  std::unique_ptr<DevKafkaProcess> out(new DevKafkaProcess());
  out->process_ = std::move(*process);
  if (!WaitFor([&] { return !ReadFile(bootstrap_file).empty() || !out->process_->running(); },
               absl::Seconds(20)) ||
      !out->process_->running()) {
    return absl::UnavailableError("kiq-dev-kafka did not start: " + out->process_->ReadLog());
  }
  out->bootstrap_ = std::string(absl::StripAsciiWhitespace(ReadFile(bootstrap_file)));
  // Written before the bootstrap file.
  const std::string control = ReadFile(control_file);
  if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(control), &out->control_port_) ||
      out->control_port_ <= 0) {
    return absl::InternalError("kiq-dev-kafka: bad control port file: " + control);
  }
  return out;
}

std::unique_ptr<DevKafkaProcess> DevKafkaProcess::External(std::string bootstrap_servers) {
  std::unique_ptr<DevKafkaProcess> out(new DevKafkaProcess());
  out->bootstrap_ = std::move(bootstrap_servers);
  return out;
}

Process& DevKafkaProcess::process() {
  if (process_ == nullptr) {
    std::fprintf(stderr, "DevKafkaProcess::process(): the external cluster %s has no process\n",
                 bootstrap_.c_str());
    std::abort();
  }
  return *process_;
}

absl::Status DevKafkaProcess::Control(const std::string& command) {
  if (external()) {
    return absl::UnimplementedError(absl::StrCat("\"", command, "\": no fault injection on the ",
                                                 "external cluster ", bootstrap_));
  }
  const std::string doing = absl::StrCat("kiq-dev-kafka control \"", command, "\"");
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::InternalError(absl::StrCat(doing, ": socket: ", std::strerror(errno)));
  // The dev Kafka answers at once; a stuck one must not hang the test.
  timeval timeout{10, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = htons(static_cast<uint16_t>(control_port_));
  std::string reply;
  absl::Status status;
  if (connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
    status = absl::UnavailableError(
        absl::StrCat(doing, ": connect to 127.0.0.1:", control_port_, ": ", std::strerror(errno)));
  } else {
    const std::string line = command + "\n";
    if (send(fd, line.data(), line.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(line.size())) {
      status = absl::UnavailableError(absl::StrCat(doing, ": send: ", std::strerror(errno)));
    }
    char c;
    while (status.ok() && reply.find('\n') == std::string::npos) {
      const ssize_t n = recv(fd, &c, 1, 0);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        status = absl::UnavailableError(absl::StrCat(doing, ": no answer (", reply, ")"));
        break;
      }
      reply.push_back(c);
    }
  }
  close(fd);
  if (!status.ok()) return status;
  absl::string_view answer = absl::StripAsciiWhitespace(reply);
  if (answer == "ok") return absl::OkStatus();
  absl::ConsumePrefix(&answer, "error ");
  return absl::FailedPreconditionError(absl::StrCat(doing, ": ", answer));
}

absl::StatusOr<std::unique_ptr<NodeProcess>> NodeProcess::Start(const std::string& dir,
                                                                Options options) {
  const std::string port_file = absl::StrCat(dir, "/", options.node_id, ".port");
  std::remove(port_file.c_str());
  std::vector<std::string> argv = {
      kNodeBin,
      "--config=" + options.config,
      "--bootstrap-servers=" + options.bootstrap_servers,
      "--node-id=" + options.node_id,
      "--bind-address=127.0.0.1",
      "--advertised-host=127.0.0.1",
      "--grpc-port=0",
      "--http-port=0",
      "--admin-port=0",
      "--port-file=" + port_file,
      "--data-dir=" + options.data_dir,
  };
  if (!options.default_group_timeouts) {
    // The dev Kafka does not replace a static member that restarts (real brokers do), so a
    // node killed and restarted in a test waits for its old session to expire: keep it short.
    // 6 s is also the shortest a real broker accepts by default (group.min.session.timeout.ms).
    argv.push_back("--kafka-property=session.timeout.ms=6000,heartbeat.interval.ms=500");
  }
  // Runs the integration suite with either ingestion loop; a test's own flag comes after it
  // and wins.
  if (const char* in_flight = std::getenv("KIQ_TEST_CHANGELOG_BATCHES_IN_FLIGHT");
      in_flight != nullptr && *in_flight != '\0') {
    argv.push_back(absl::StrCat("--changelog-batches-in-flight=", in_flight));
  }
  // ...and with several ingestion threads per node.
  if (const char* threads = std::getenv("KIQ_TEST_INGEST_THREADS");
      threads != nullptr && *threads != '\0') {
    argv.push_back(absl::StrCat("--ingest-threads=", threads));
  }
  argv.insert(argv.end(), options.extra_flags.begin(), options.extra_flags.end());
  return Launch(argv, port_file, absl::StrCat(dir, "/", options.node_id, ".log"));
}

absl::StatusOr<std::unique_ptr<NodeProcess>> NodeProcess::StartRouter(
    const std::string& dir, const std::string& config, const std::string& bootstrap_servers,
    const std::vector<std::string>& extra_flags) {
  const std::string port_file = dir + "/router.port";
  std::remove(port_file.c_str());
  std::vector<std::string> argv = {
      kRouterBin,         "--config=" + config,   "--bootstrap-servers=" + bootstrap_servers,
      "--router-id=router", "--bind-address=127.0.0.1", "--grpc-port=0",
      "--http-port=0",    "--admin-port=0",       "--port-file=" + port_file};
  argv.insert(argv.end(), extra_flags.begin(), extra_flags.end());
  return Launch(std::move(argv), port_file, dir + "/router.log");
}

absl::StatusOr<std::unique_ptr<NodeProcess>> NodeProcess::Launch(std::vector<std::string> argv,
                                                                 const std::string& port_file,
                                                                 const std::string& log_path) {
  auto process = Process::Start(argv, log_path);
  if (!process.ok()) return process.status();
  std::unique_ptr<NodeProcess> out(new NodeProcess());
  out->process_ = std::move(*process);
  if (!WaitFor([&] { return !ReadFile(port_file).empty() || !out->process_->running(); },
               absl::Seconds(40)) ||
      !out->process_->running()) {
    return absl::UnavailableError(argv[0] + " did not start: " + out->process_->ReadLog());
  }
  const std::string contents = ReadFile(port_file);
  for (absl::string_view line : absl::StrSplit(contents, '\n')) {
    if (absl::ConsumePrefix(&line, "grpc=")) {
      if (!absl::SimpleAtoi(line, &out->grpc_port_)) out->grpc_port_ = 0;
    } else if (absl::ConsumePrefix(&line, "http=")) {
      if (!absl::SimpleAtoi(line, &out->http_port_)) out->http_port_ = 0;
    } else if (absl::ConsumePrefix(&line, "admin=")) {
      if (!absl::SimpleAtoi(line, &out->admin_port_)) out->admin_port_ = 0;
    }
  }
  if (out->grpc_port_ <= 0) return absl::InternalError("bad port file: " + contents);
  return out;
}

namespace {

class DeliveryTracker final : public RdKafka::DeliveryReportCb {
 public:
  void dr_cb(RdKafka::Message& message) override {
    auto* out =
        static_cast<std::pair<TestProducer::Delivered, RdKafka::ErrorCode>*>(message.msg_opaque());
    if (out == nullptr) {
      if (message.err() != RdKafka::ERR_NO_ERROR) last_error = message.err();
      return;
    }
    out->first.partition = message.partition();
    out->first.offset = message.offset();
    out->second = message.err();
  }
  RdKafka::ErrorCode last_error = RdKafka::ERR_NO_ERROR;
};

DeliveryTracker& Tracker() {
  static DeliveryTracker* tracker = new DeliveryTracker();
  return *tracker;
}

}  // namespace

absl::StatusOr<std::unique_ptr<TestProducer>> TestProducer::Create(
    const std::string& bootstrap_servers, const std::string& partitioner,
    const std::vector<std::pair<std::string, std::string>>& properties) {
  std::unique_ptr<RdKafka::Conf> conf(RdKafka::Conf::create(RdKafka::Conf::CONF_GLOBAL));
  std::string err;
  if (conf->set("bootstrap.servers", bootstrap_servers, err) != RdKafka::Conf::CONF_OK ||
      conf->set("partitioner", partitioner, err) != RdKafka::Conf::CONF_OK ||
      conf->set("linger.ms", "5", err) != RdKafka::Conf::CONF_OK ||
      conf->set("dr_cb", &Tracker(), err) != RdKafka::Conf::CONF_OK) {
    return absl::InvalidArgumentError(err);
  }
  for (const auto& [name, value] : properties) {
    if (conf->set(name, value, err) != RdKafka::Conf::CONF_OK) {
      return absl::InvalidArgumentError(absl::StrCat(name, "=", value, ": ", err));
    }
  }
  std::unique_ptr<TestProducer> out(new TestProducer());
  out->producer_.reset(RdKafka::Producer::create(conf.get(), err));
  if (!out->producer_) return absl::InternalError(err);
  return out;
}

absl::StatusOr<TestProducer::Delivered> TestProducer::Produce(
    const std::string& topic, const std::string& key, const std::optional<std::string>& value,
    int64_t timestamp_ms) {
  std::pair<Delivered, RdKafka::ErrorCode> result{{}, RdKafka::ERR__IN_PROGRESS};
  RdKafka::ErrorCode err =
      producer_->produce(topic, RdKafka::Topic::PARTITION_UA, RdKafka::Producer::RK_MSG_COPY,
                         value ? const_cast<char*>(value->data()) : nullptr,
                         value ? value->size() : 0, key.data(), key.size(), timestamp_ms, &result);
  if (err != RdKafka::ERR_NO_ERROR) return absl::UnavailableError(RdKafka::err2str(err));
  return AwaitDelivery(result);
}

absl::StatusOr<TestProducer::Delivered> TestProducer::ProduceNullKey(const std::string& topic,
                                                                     const std::string& value) {
  std::pair<Delivered, RdKafka::ErrorCode> result{{}, RdKafka::ERR__IN_PROGRESS};
  RdKafka::ErrorCode err = producer_->produce(
      topic, RdKafka::Topic::PARTITION_UA, RdKafka::Producer::RK_MSG_COPY,
      const_cast<char*>(value.data()), value.size(), nullptr, 0, 0, &result);
  if (err != RdKafka::ERR_NO_ERROR) return absl::UnavailableError(RdKafka::err2str(err));
  return AwaitDelivery(result);
}

absl::StatusOr<TestProducer::Delivered> TestProducer::ProduceWithHeaders(
    const std::string& topic, const std::string& key, const std::string& value,
    const std::vector<std::pair<std::string, std::string>>& headers) {
  std::pair<Delivered, RdKafka::ErrorCode> result{{}, RdKafka::ERR__IN_PROGRESS};
  RdKafka::Headers* h = RdKafka::Headers::create();
  for (const auto& [name, v] : headers) h->add(name, v);
  RdKafka::ErrorCode err = producer_->produce(
      topic, RdKafka::Topic::PARTITION_UA, RdKafka::Producer::RK_MSG_COPY,
      const_cast<char*>(value.data()), value.size(), key.data(), key.size(), 0, h, &result);
  if (err != RdKafka::ERR_NO_ERROR) {
    delete h;  // owned by the message only once produce() succeeds
    return absl::UnavailableError(RdKafka::err2str(err));
  }
  return AwaitDelivery(result);
}

absl::StatusOr<TestProducer::Delivered> TestProducer::AwaitDelivery(
    std::pair<Delivered, RdKafka::ErrorCode>& result) {
  producer_->flush(10000);
  if (result.second == RdKafka::ERR__IN_PROGRESS) {
    // Not delivered in time (e.g. the brokers are down): purge it, so that its delivery
    // report, which points at `result`, comes now rather than after this frame is gone.
    producer_->purge(RdKafka::Producer::PURGE_QUEUE | RdKafka::Producer::PURGE_INFLIGHT);
    while (result.second == RdKafka::ERR__IN_PROGRESS) producer_->poll(100);
  }
  if (result.second != RdKafka::ERR_NO_ERROR) {
    return absl::UnavailableError(RdKafka::err2str(result.second));
  }
  return result.first;
}

absl::Status TestProducer::ProduceAsync(const std::string& topic, const std::string& key,
                                        const std::optional<std::string>& value) {
  while (true) {
    RdKafka::ErrorCode err =
        producer_->produce(topic, RdKafka::Topic::PARTITION_UA, RdKafka::Producer::RK_MSG_COPY,
                           value ? const_cast<char*>(value->data()) : nullptr,
                           value ? value->size() : 0, key.data(), key.size(), 0, nullptr);
    if (err == RdKafka::ERR__QUEUE_FULL) {
      producer_->poll(10);
      continue;
    }
    if (err != RdKafka::ERR_NO_ERROR) return absl::UnavailableError(RdKafka::err2str(err));
    producer_->poll(0);
    return absl::OkStatus();
  }
}

absl::Status TestProducer::Flush() {
  if (producer_->flush(30000) != RdKafka::ERR_NO_ERROR) {
    return absl::DeadlineExceededError("flush timed out");
  }
  if (Tracker().last_error != RdKafka::ERR_NO_ERROR) {
    return absl::UnavailableError(RdKafka::err2str(Tracker().last_error));
  }
  return absl::OkStatus();
}

std::vector<ConsumedRecord> ConsumeUntil(
    const std::string& bootstrap_servers, const std::string& topic,
    const std::function<bool(const std::vector<ConsumedRecord>&)>& done, absl::Duration timeout) {
  std::vector<ConsumedRecord> out;
  const absl::Time deadline = absl::Now() + timeout;
  std::unique_ptr<RdKafka::Conf> conf(RdKafka::Conf::create(RdKafka::Conf::CONF_GLOBAL));
  std::string err;
  conf->set("bootstrap.servers", bootstrap_servers, err);
  // Required by KafkaConsumer, never joined: partitions are assigned.
  conf->set("group.id", "kiq-test-reader-" + topic, err);
  conf->set("enable.auto.commit", "false", err);
  std::unique_ptr<RdKafka::KafkaConsumer> consumer(RdKafka::KafkaConsumer::create(conf.get(), err));
  if (!consumer) return out;
  // Every partition of the topic, from the start, once the topic exists.
  std::vector<RdKafka::TopicPartition*> partitions;
  while (partitions.empty() && absl::Now() < deadline) {
    std::unique_ptr<RdKafka::Topic> handle(
        RdKafka::Topic::create(consumer.get(), topic, nullptr, err));
    RdKafka::Metadata* raw = nullptr;
    if (handle != nullptr &&
        consumer->metadata(false, handle.get(), &raw, 2000) == RdKafka::ERR_NO_ERROR) {
      std::unique_ptr<RdKafka::Metadata> metadata(raw);
      for (const RdKafka::TopicMetadata* t : *metadata->topics()) {
        if (t->topic() != topic || t->err() != RdKafka::ERR_NO_ERROR) continue;
        for (const RdKafka::PartitionMetadata* p : *t->partitions()) {
          partitions.push_back(
              RdKafka::TopicPartition::create(topic, p->id(), RdKafka::Topic::OFFSET_BEGINNING));
        }
      }
    }
    if (partitions.empty()) absl::SleepFor(absl::Milliseconds(100));
  }
  if (partitions.empty()) return out;
  consumer->assign(partitions);
  RdKafka::TopicPartition::destroy(partitions);
  while (!done(out) && absl::Now() < deadline) {
    std::unique_ptr<RdKafka::Message> m(consumer->consume(100));
    if (m->err() != RdKafka::ERR_NO_ERROR) continue;
    ConsumedRecord r;
    if (m->key_pointer() != nullptr) {
      r.key.assign(static_cast<const char*>(m->key_pointer()), m->key_len());
    }
    if (m->payload() != nullptr) r.value.emplace(static_cast<const char*>(m->payload()), m->len());
    r.partition = m->partition();
    r.offset = m->offset();
    if (RdKafka::Headers* headers = m->headers()) {
      for (const RdKafka::Headers::Header& h : headers->get_all()) {
        r.headers.emplace_back(h.key(),
                               std::string(static_cast<const char*>(h.value()), h.value_size()));
      }
    }
    out.push_back(std::move(r));
  }
  consumer->close();
  return out;
}

std::vector<ConsumedRecord> ConsumeAll(const std::string& bootstrap_servers,
                                       const std::string& topic, size_t count,
                                       absl::Duration timeout) {
  return ConsumeUntil(
      bootstrap_servers, topic,
      [count](const std::vector<ConsumedRecord>& out) { return out.size() >= count; }, timeout);
}

std::string DeadLetterIdentity(const ConsumedRecord& letter) {
  std::map<std::string, std::string> h(letter.headers.begin(), letter.headers.end());
  return absl::StrCat(h["kiq.store"], " ", h["kiq.topic"], "/", h["kiq.partition"], "@",
                      h["kiq.offset"]);
}

std::map<std::string, std::vector<ConsumedRecord>> ConsumeDeadLetters(
    const std::string& bootstrap_servers, const std::string& topic, size_t distinct,
    absl::Duration timeout) {
  std::map<std::string, std::vector<ConsumedRecord>> by_identity;
  size_t seen = 0;
  for (ConsumedRecord& letter : ConsumeUntil(
           bootstrap_servers, topic,
           [&](const std::vector<ConsumedRecord>& out) {
             for (; seen < out.size(); ++seen) by_identity[DeadLetterIdentity(out[seen])];
             return by_identity.size() >= distinct;
           },
           timeout)) {
    by_identity[DeadLetterIdentity(letter)].push_back(std::move(letter));
  }
  return by_identity;
}

}  // namespace kiq::testing
