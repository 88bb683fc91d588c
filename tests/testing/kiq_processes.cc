#include "tests/testing/kiq_processes.h"

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
    const std::string& dir, const std::vector<std::pair<std::string, int>>& topics) {
  std::vector<std::string> specs;
  for (const auto& [name, partitions] : topics)
    specs.push_back(absl::StrCat(name, ":", partitions));
  const std::string bootstrap_file = dir + "/bootstrap.txt";
  std::remove(bootstrap_file.c_str());  // a previous cluster in the same dir
  auto process =
      Process::Start({kDevKafkaBin, "--brokers=3", "--topics=" + absl::StrJoin(specs, ","),
                      "--bootstrap_file=" + bootstrap_file},
                     dir + "/dev-kafka.log");
  if (!process.ok()) return process.status();
  std::unique_ptr<DevKafkaProcess> out(new DevKafkaProcess());
  out->process_ = std::move(*process);
  if (!WaitFor([&] { return !ReadFile(bootstrap_file).empty() || !out->process_->running(); },
               absl::Seconds(20)) ||
      !out->process_->running()) {
    return absl::UnavailableError("kiq-dev-kafka did not start: " + out->process_->ReadLog());
  }
  out->bootstrap_ = std::string(absl::StripAsciiWhitespace(ReadFile(bootstrap_file)));
  return out;
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
      "--port-file=" + port_file,
      "--data-dir=" + options.data_dir,
      // The dev Kafka does not replace a static member that restarts (real brokers do), so a
      // node killed and restarted in a test waits for its old session to expire: keep it short.
      "--kafka-property=session.timeout.ms=6000,heartbeat.interval.ms=500",
  };
  argv.insert(argv.end(), options.extra_flags.begin(), options.extra_flags.end());
  return Launch(argv, port_file, absl::StrCat(dir, "/", options.node_id, ".log"));
}

absl::StatusOr<std::unique_ptr<NodeProcess>> NodeProcess::StartRouter(
    const std::string& dir, const std::string& config, const std::string& bootstrap_servers) {
  const std::string port_file = dir + "/router.port";
  std::remove(port_file.c_str());
  return Launch({kRouterBin, "--config=" + config, "--bootstrap-servers=" + bootstrap_servers,
                 "--router-id=router", "--bind-address=127.0.0.1", "--grpc-port=0", "--http-port=0",
                 "--port-file=" + port_file},
                port_file, dir + "/router.log");
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
    const std::string& bootstrap_servers, const std::string& partitioner) {
  std::unique_ptr<RdKafka::Conf> conf(RdKafka::Conf::create(RdKafka::Conf::CONF_GLOBAL));
  std::string err;
  if (conf->set("bootstrap.servers", bootstrap_servers, err) != RdKafka::Conf::CONF_OK ||
      conf->set("partitioner", partitioner, err) != RdKafka::Conf::CONF_OK ||
      conf->set("linger.ms", "5", err) != RdKafka::Conf::CONF_OK ||
      conf->set("dr_cb", &Tracker(), err) != RdKafka::Conf::CONF_OK) {
    return absl::InvalidArgumentError(err);
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
  producer_->flush(10000);
  if (result.second != RdKafka::ERR_NO_ERROR) {
    return absl::UnavailableError(RdKafka::err2str(result.second));
  }
  return result.first;
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
  producer_->flush(10000);
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

std::vector<ConsumedRecord> ConsumeAll(const std::string& bootstrap_servers,
                                       const std::string& topic, size_t count,
                                       absl::Duration timeout) {
  std::vector<ConsumedRecord> out;
  std::unique_ptr<RdKafka::Conf> conf(RdKafka::Conf::create(RdKafka::Conf::CONF_GLOBAL));
  std::string err;
  conf->set("bootstrap.servers", bootstrap_servers, err);
  conf->set("group.id", "kiq-test-reader-" + topic, err);
  conf->set("auto.offset.reset", "earliest", err);
  conf->set("enable.auto.commit", "false", err);
  std::unique_ptr<RdKafka::KafkaConsumer> consumer(RdKafka::KafkaConsumer::create(conf.get(), err));
  if (!consumer) return out;
  consumer->subscribe({topic});
  const absl::Time deadline = absl::Now() + timeout;
  while (out.size() < count && absl::Now() < deadline) {
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

}  // namespace kiq::testing
