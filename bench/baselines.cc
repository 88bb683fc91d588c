// kiq-bench-baselines: the bare baselines of the benchmark suite, and its Kafka data loader.
//
//   grpc-server    a bare kiq.v1.QueryService whose Get returns a fixed value from a hash map
//                  (the transport limit for Get; same callback server API as kiq-node)
//   rocksdb-write  a bare RocksDB WriteBatch loop writing --records keys (of --keys distinct)
//   rocksdb-iter   a bare RocksDB iterator over --keys entries, entries/s
//   consume        a bare librdkafka consumer reading a whole topic from the beginning (or, with
//                  --only_partitions, those partitions only); the time counted starts before
//                  it asks the end offsets (connections already up), as a restore's does
//   produce        writes --records 100-byte JSON values (murmur2 partitioner) and flushes;
//                  with --format=avro the same records as Avro in Confluent's wire format
//                  (magic byte 0, 4-byte big-endian schema id, Avro binary body, encoded by
//                  libavro), the schema registered at --registry under <topic>-value
//   ingest         rounds of: SIGSTOP the node, produce a round that fits the dev Kafka's
//                  retention, SIGCONT it and time until its /metrics show the round
//                  materialized; then time a bare consumer reading the same round
//                  (--format as for produce)
//   fresh          freshness: produces --records single records (unique keys fresh-<i>) one
//                  every --interval_ms, records each delivery report's time, and polls Get on
//                  --target (a node with a table store --store over --topic) until each
//                  record is visible; a bare consumer (fetch.wait.max.ms=5) reading the same
//                  topic is the baseline. Latencies are from the delivery report.
//   encode         no Kafka: registers the Avro schema at --registry and prints, for record
//                  0 .. --records-1, the hex of its Avro wire bytes, a tab and its JSON value
//                  (for bench/smoke_test.sh, which decodes them with a real serializer library)
// Every command prints one CSV line for bench/run.sh.
#include <avro.h>
#include <grpcpp/grpcpp.h>
#include <httplib.h>
#include <librdkafka/rdkafkacpp.h>
#include <rocksdb/db.h>
#include <rocksdb/write_batch.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "kiq/v1/query.grpc.pb.h"

ABSL_FLAG(std::string, port_file, "", "grpc-server: writes grpc=<port> here once listening");
ABSL_FLAG(int64_t, records, 1000000, "records to write / produce");
ABSL_FLAG(int, keys, 10000, "distinct keys (user-0 ... user-<keys-1>)");
ABSL_FLAG(std::string, dir, "", "RocksDB directory");
ABSL_FLAG(int, batch, 1000, "rocksdb-write: records per WriteBatch");
ABSL_FLAG(double, duration, 3, "rocksdb-iter: seconds");
ABSL_FLAG(std::string, bootstrap, "", "Kafka bootstrap servers");
ABSL_FLAG(std::string, topic, "", "Kafka topic");
ABSL_FLAG(int, partitions, 6, "topic partitions");
ABSL_FLAG(std::vector<std::string>, only_partitions, {},
          "consume: read only these partitions (e.g. 1,4); all when empty");
ABSL_FLAG(int64_t, round, 100000, "ingest: records per round");
ABSL_FLAG(int, node_pid, 0, "ingest: the kiq-node to pause while producing");
ABSL_FLAG(std::string, metrics, "", "ingest: the node's HTTP host:port");
ABSL_FLAG(std::string, store, "", "ingest: the store to watch");
ABSL_FLAG(int64_t, key_offset, 0, "produce: first key number");
ABSL_FLAG(std::string, label, "", "CSV label");
ABSL_FLAG(std::string, target, "", "fresh: the node's gRPC host:port");
ABSL_FLAG(double, interval_ms, 2, "fresh: milliseconds between two records");
ABSL_FLAG(int, pollers, 3, "fresh: threads polling Get (one call in flight each)");
ABSL_FLAG(int, poll_interval_us, 500, "fresh: least time between two Gets of one pending key");
ABSL_FLAG(std::string, format, "json", "produce/ingest: json, or avro (Confluent wire format)");
ABSL_FLAG(std::string, registry, "",
          "produce/ingest/encode with --format=avro: the Schema Registry URL (http://host:port)");

namespace {

using Clock = std::chrono::steady_clock;
double Since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

[[noreturn]] void Die(const std::string& what) {
  fprintf(stderr, "kiq-bench-baselines: %s\n", what.c_str());
  exit(1);
}

std::string Key(int64_t i) { return absl::StrCat("user-", i % absl::GetFlag(FLAGS_keys)); }

// The fields of record i: {user, amount, pad}; as JSON, 100 bytes with the pad.
struct Fields {
  std::string user;
  int64_t amount = 0;
  std::string pad;
};
Fields RecordFields(int64_t i) {
  Fields f{Key(i), i % 100, ""};
  const size_t json_size =
      absl::StrCat("{\"user\":\"", f.user, "\",\"amount\":", f.amount, ",\"pad\":\"\"}").size();
  if (json_size < 100) f.pad.assign(100 - json_size, 'x');
  return f;
}

// A 100-byte JSON value with a numeric field for sum stores.
std::string Value(int64_t i) {
  const Fields f = RecordFields(i);
  return absl::StrCat("{\"user\":\"", f.user, "\",\"amount\":", f.amount, ",\"pad\":\"", f.pad,
                      "\"}");
}

// The Avro record schema equivalent to the JSON values.
constexpr char kAvroSchema[] =
    R"({"type":"record","name":"BenchValue","namespace":"kiq.bench","fields":[)"
    R"({"name":"user","type":"string"},{"name":"amount","type":"long"},)"
    R"({"name":"pad","type":"string"}]})";

// Registers kAvroSchema under `subject` at `url` (POST /subjects/{subject}/versions, as
// Confluent's serializers do) and returns the id the registry gave it.
int RegisterAvroSchema(const std::string& url, const std::string& subject) {
  if (url.empty()) Die("--format=avro needs --registry=http://host:port");
  httplib::Client http(url);
  http.set_read_timeout(10, 0);
  std::string escaped;
  for (char c : std::string(kAvroSchema)) {
    if (c == '"' || c == '\\') escaped += '\\';
    escaped += c;
  }
  auto res = http.Post(absl::StrCat("/subjects/", subject, "/versions"),
                       absl::StrCat("{\"schema\":\"", escaped, "\"}"),
                       "application/vnd.schemaregistry.v1+json");
  if (!res)
    Die(absl::StrCat("--registry ", url, ": no answer to POST /subjects/", subject, "/versions"));
  if (res->status != 200)
    Die(absl::StrCat("--registry ", url, ": POST /subjects/", subject, "/versions answered ",
                     res->status, ": ", res->body));
  // The answer is {"id": N}.
  const size_t at = res->body.find("\"id\"");
  const size_t colon = at == std::string::npos ? at : res->body.find(':', at);
  int id = 0;
  if (colon == std::string::npos ||
      !absl::SimpleAtoi(absl::StripAsciiWhitespace(absl::string_view(res->body).substr(
                            colon + 1, res->body.find_first_of(",}", colon) - colon - 1)),
                        &id) ||
      id <= 0)
    Die(absl::StrCat("--registry ", url, ": no schema id in ", res->body));
  return id;
}

// Encodes records as Avro in Confluent's wire format with libavro (avro-c).
class AvroEncoder {
 public:
  explicit AvroEncoder(int schema_id) : schema_id_(schema_id) {
    if (avro_schema_from_json_length(kAvroSchema, sizeof kAvroSchema - 1, &schema_) != 0)
      Die(absl::StrCat("libavro: the bench schema: ", avro_strerror()));
    iface_ = avro_generic_class_from_schema(schema_);
    if (iface_ == nullptr || avro_generic_value_new(iface_, &value_) != 0)
      Die(absl::StrCat("libavro: ", avro_strerror()));
  }
  ~AvroEncoder() {
    avro_value_decref(&value_);
    avro_value_iface_decref(iface_);
    avro_schema_decref(schema_);
  }
  AvroEncoder(const AvroEncoder&) = delete;
  AvroEncoder& operator=(const AvroEncoder&) = delete;

  std::string Encode(int64_t i) {
    const Fields f = RecordFields(i);
    avro_value_t field;
    if (avro_value_reset(&value_) != 0 ||
        avro_value_get_by_name(&value_, "user", &field, nullptr) != 0 ||
        avro_value_set_string(&field, f.user.c_str()) != 0 ||
        avro_value_get_by_name(&value_, "amount", &field, nullptr) != 0 ||
        avro_value_set_long(&field, f.amount) != 0 ||
        avro_value_get_by_name(&value_, "pad", &field, nullptr) != 0 ||
        avro_value_set_string(&field, f.pad.c_str()) != 0)
      Die(absl::StrCat("libavro: setting record ", i, ": ", avro_strerror()));
    size_t size = 0;
    if (avro_value_sizeof(&value_, &size) != 0) Die(absl::StrCat("libavro: ", avro_strerror()));
    std::string out(5 + size, '\0');
    out[0] = 0;  // magic byte
    for (int b = 0; b < 4; ++b)
      out[1 + b] = static_cast<char>((schema_id_ >> (8 * (3 - b))) & 0xff);
    avro_writer_t writer = avro_writer_memory(out.data() + 5, static_cast<int64_t>(size));
    const int rc = avro_value_write(writer, &value_);
    avro_writer_free(writer);
    if (rc != 0) Die(absl::StrCat("libavro: writing record ", i, ": ", avro_strerror()));
    return out;
  }

 private:
  int schema_id_;
  avro_schema_t schema_ = nullptr;
  avro_value_iface_t* iface_ = nullptr;
  avro_value_t value_;
};

// The value of record i in --format (json or avro); Avro registers its schema on first use.
class ValueEncoder {
 public:
  ValueEncoder() {
    const std::string format = absl::GetFlag(FLAGS_format);
    if (format == "avro") {
      avro_ = std::make_unique<AvroEncoder>(RegisterAvroSchema(
          absl::GetFlag(FLAGS_registry), absl::StrCat(absl::GetFlag(FLAGS_topic), "-value")));
    } else if (format != "json") {
      Die(absl::StrCat("--format: expected json or avro, got \"", format, "\""));
    }
  }
  std::string operator()(int64_t i) { return avro_ ? avro_->Encode(i) : Value(i); }

 private:
  std::unique_ptr<AvroEncoder> avro_;
};

// ---- grpc-server ----
class BareQueryService final : public kiq::v1::QueryService::CallbackService {
 public:
  explicit BareQueryService(int keys) {
    for (int i = 0; i < keys; ++i) map_[absl::StrCat("user-", i)] = std::string(8, '\x01');
  }
  grpc::ServerUnaryReactor* Get(grpc::CallbackServerContext* ctx, const kiq::v1::GetRequest* req,
                                kiq::v1::GetResponse* resp) override {
    auto* reactor = ctx->DefaultReactor();
    auto it = map_.find(req->key());
    if (it != map_.end()) {
      resp->set_found(true);
      resp->mutable_entry()->set_key(req->key());
      resp->mutable_entry()->set_value(it->second);
    }
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

 private:
  absl::flat_hash_map<std::string, std::string> map_;
};

int GrpcServer() {
  BareQueryService service(absl::GetFlag(FLAGS_keys));
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&service);
  auto server = builder.BuildAndStart();
  if (!server || port == 0) Die("cannot start the gRPC server");
  const std::string tmp = absl::GetFlag(FLAGS_port_file) + ".tmp";
  { std::ofstream(tmp) << "grpc=" << port << "\n"; }
  std::rename(tmp.c_str(), absl::GetFlag(FLAGS_port_file).c_str());
  server->Wait();  // until SIGTERM
  return 0;
}

// ---- RocksDB ----
std::unique_ptr<rocksdb::DB> OpenDb() {
  rocksdb::Options options;
  options.create_if_missing = true;
  rocksdb::DB* db = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(options, absl::GetFlag(FLAGS_dir), &db);
  if (!s.ok()) Die("RocksDB open: " + s.ToString());
  return std::unique_ptr<rocksdb::DB>(db);
}

int RocksdbWrite() {
  auto db = OpenDb();
  const int64_t n = absl::GetFlag(FLAGS_records);
  const int batch = absl::GetFlag(FLAGS_batch);
  const auto start = Clock::now();
  rocksdb::WriteBatch wb;
  char value[8] = {1, 0, 0, 0, 0, 0, 0, 0};
  for (int64_t i = 0; i < n; ++i) {
    wb.Put(Key(i), rocksdb::Slice(value, sizeof value));
    if (static_cast<int>(wb.Count()) >= batch || i + 1 == n) {
      rocksdb::Status s = db->Write(rocksdb::WriteOptions(), &wb);
      if (!s.ok()) Die("RocksDB write: " + s.ToString());
      wb.Clear();
    }
  }
  const double secs = Since(start);
  printf("%s,%lld,%.3f,%.0f\n", absl::GetFlag(FLAGS_label).c_str(), static_cast<long long>(n), secs,
         n / secs);
  return 0;
}

int RocksdbIter() {
  auto db = OpenDb();
  {
    rocksdb::WriteBatch wb;
    for (int i = 0; i < absl::GetFlag(FLAGS_keys); ++i)
      wb.Put(absl::StrCat("user-", i), std::string(8, '\x01'));
    if (!db->Write(rocksdb::WriteOptions(), &wb).ok()) Die("RocksDB write");
    db->Flush(rocksdb::FlushOptions());
  }
  uint64_t entries = 0, scans = 0;
  const auto start = Clock::now();
  while (Since(start) < absl::GetFlag(FLAGS_duration)) {
    ++scans;
    std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(rocksdb::ReadOptions()));
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      // Copy out key and value as a scan response would.
      std::string k = it->key().ToString(), v = it->value().ToString();
      entries += !k.empty();
    }
  }
  const double secs = Since(start);
  // The scan CSV of kiq-bench-load: label,scans,entries,seconds,entries_per_s.
  printf("%s,%llu,%llu,%.3f,%.0f\n", absl::GetFlag(FLAGS_label).c_str(),
         static_cast<unsigned long long>(scans), static_cast<unsigned long long>(entries), secs,
         entries / secs);
  return 0;
}

// ---- Kafka ----
// `linger_ms`: how long records wait to be batched; `dr`: delivery reports, if wanted.
std::unique_ptr<RdKafka::Producer> MakeProducer(const std::string& linger_ms = "5",
                                                RdKafka::DeliveryReportCb* dr = nullptr) {
  std::string err;
  std::unique_ptr<RdKafka::Conf> conf(RdKafka::Conf::create(RdKafka::Conf::CONF_GLOBAL));
  for (auto [k, v] : std::vector<std::pair<std::string, std::string>>{
           {"bootstrap.servers", absl::GetFlag(FLAGS_bootstrap)},
           {"partitioner", "murmur2_random"},  // what kiq checks records against
           {"linger.ms", linger_ms},
           {"batch.num.messages", "10000"},
           {"queue.buffering.max.messages", "1000000"},
           {"queue.buffering.max.kbytes", "1048576"}}) {
    if (conf->set(k, v, err) != RdKafka::Conf::CONF_OK) Die(err);
  }
  if (dr != nullptr && conf->set("dr_cb", dr, err) != RdKafka::Conf::CONF_OK) Die(err);
  std::unique_ptr<RdKafka::Producer> p(RdKafka::Producer::create(conf.get(), err));
  if (!p) Die(err);
  return p;
}

void Produce(RdKafka::Producer& p, ValueEncoder& encode, int64_t from, int64_t n) {
  const std::string topic = absl::GetFlag(FLAGS_topic);
  for (int64_t i = from; i < from + n; ++i) {
    std::string k = Key(i), v = encode(i);
    for (;;) {
      RdKafka::ErrorCode e =
          p.produce(topic, RdKafka::Topic::PARTITION_UA, RdKafka::Producer::RK_MSG_COPY, v.data(),
                    v.size(), k.data(), k.size(), 0, nullptr);
      if (e == RdKafka::ERR_NO_ERROR) break;
      if (e != RdKafka::ERR__QUEUE_FULL) Die("produce: " + RdKafka::err2str(e));
      p.poll(10);
    }
    p.poll(0);
  }
  if (p.flush(60000) != RdKafka::ERR_NO_ERROR) Die("flush timed out");
}

int ProduceCmd() {
  auto p = MakeProducer();
  ValueEncoder encode;
  const auto start = Clock::now();
  const int64_t n = absl::GetFlag(FLAGS_records);
  Produce(*p, encode, absl::GetFlag(FLAGS_key_offset), n);
  printf("%s,%lld,%.3f,%.0f\n", absl::GetFlag(FLAGS_label).c_str(), static_cast<long long>(n),
         Since(start), n / Since(start));
  return 0;
}

std::unique_ptr<RdKafka::KafkaConsumer> MakeConsumer(
    const std::vector<std::pair<std::string, std::string>>& extra = {}) {
  std::string err;
  std::unique_ptr<RdKafka::Conf> conf(RdKafka::Conf::create(RdKafka::Conf::CONF_GLOBAL));
  std::vector<std::pair<std::string, std::string>> props{
      {"bootstrap.servers", absl::GetFlag(FLAGS_bootstrap)},
      {"group.id", absl::StrCat("kiq-bench-", getpid())},
      {"enable.auto.commit", "false"},
      {"auto.offset.reset", "earliest"}};
  props.insert(props.end(), extra.begin(), extra.end());
  for (const auto& [k, v] : props) {
    if (conf->set(k, v, err) != RdKafka::Conf::CONF_OK) Die(err);
  }
  std::unique_ptr<RdKafka::KafkaConsumer> c(RdKafka::KafkaConsumer::create(conf.get(), err));
  if (!c) Die(err);
  return c;
}

// Offsets [low, high) of every partition.
std::vector<std::pair<int64_t, int64_t>> Watermarks(RdKafka::Handle& h) {
  std::vector<std::pair<int64_t, int64_t>> w(absl::GetFlag(FLAGS_partitions));
  for (int p = 0; p < static_cast<int>(w.size()); ++p) {
    RdKafka::ErrorCode e =
        h.query_watermark_offsets(absl::GetFlag(FLAGS_topic), p, &w[p].first, &w[p].second, 10000);
    if (e != RdKafka::ERR_NO_ERROR) Die("watermarks: " + RdKafka::err2str(e));
  }
  return w;
}

// Reads from the given offsets to the given ends; returns the records read.
int64_t ConsumeRange(RdKafka::KafkaConsumer& c, const std::vector<int64_t>& from,
                     const std::vector<int64_t>& to) {
  std::vector<RdKafka::TopicPartition*> tps;
  int64_t expected = 0;
  for (size_t p = 0; p < from.size(); ++p) {
    if (from[p] >= to[p]) continue;  // nothing to read: not fetched at all
    tps.push_back(
        RdKafka::TopicPartition::create(absl::GetFlag(FLAGS_topic), static_cast<int>(p), from[p]));
    expected += to[p] - from[p];
  }
  c.assign(tps);
  RdKafka::TopicPartition::destroy(tps);
  int64_t got = 0, bytes = 0;
  const auto deadline = Clock::now() + std::chrono::seconds(120);
  while (got < expected && Clock::now() < deadline) {
    std::unique_ptr<RdKafka::Message> m(c.consume(100));
    if (m->err() == RdKafka::ERR_NO_ERROR) {
      ++got;
      bytes += static_cast<int64_t>(m->len());  // touch the payload like a real consumer
    } else if (m->err() != RdKafka::ERR__TIMED_OUT && m->err() != RdKafka::ERR__PARTITION_EOF) {
      Die("consume: " + m->errstr());
    }
  }
  c.unassign();
  if (got < expected) Die(absl::StrCat("consumed only ", got, " of ", expected));
  return got;
}

int ConsumeCmd() {
  auto c = MakeConsumer();
  std::vector<bool> wanted(absl::GetFlag(FLAGS_partitions),
                           absl::GetFlag(FLAGS_only_partitions).empty());
  for (const std::string& s : absl::GetFlag(FLAGS_only_partitions)) {
    int p = -1;
    if (!absl::SimpleAtoi(s, &p) || p < 0 || p >= static_cast<int>(wanted.size())) {
      Die("--only_partitions: bad partition " + s);
    }
    wanted[p] = true;
  }
  // Untimed: the connections to the brokers are set up, as a node's restore consumer's are
  // (it is created at start-up). The timed part then pays what a restore pays: the end
  // offsets, the assignment, the fetches.
  Watermarks(*c);
  const auto start = Clock::now();
  std::vector<int64_t> from(wanted.size(), 0), to(wanted.size(), 0);
  for (int p = 0; p < static_cast<int>(wanted.size()); ++p) {
    if (!wanted[p]) continue;
    RdKafka::ErrorCode e =
        c->query_watermark_offsets(absl::GetFlag(FLAGS_topic), p, &from[p], &to[p], 10000);
    if (e != RdKafka::ERR_NO_ERROR) Die("watermarks: " + RdKafka::err2str(e));
  }
  const int64_t n = ConsumeRange(*c, from, to);
  const double secs = Since(start);
  printf("%s,%lld,%.3f,%.0f\n", absl::GetFlag(FLAGS_label).c_str(), static_cast<long long>(n), secs,
         n / secs);
  c->close();
  return 0;
}

// Sums a counter (all label sets whose labels contain `match`) from a Prometheus text page.
double ScrapeSum(httplib::Client& http, const std::string& metric, const std::string& match) {
  auto res = http.Get("/metrics");
  if (!res || res->status != 200) Die("cannot scrape /metrics");
  double sum = 0;
  for (absl::string_view line : absl::StrSplit(res->body, '\n')) {
    if (!absl::StartsWith(line, metric) || line.size() <= metric.size()) continue;
    if (line[metric.size()] != '{' && line[metric.size()] != ' ') continue;
    if (!match.empty() && line.find(match) == absl::string_view::npos) continue;
    const size_t sp = line.rfind(' ');
    double v = 0;
    if (absl::SimpleAtod(line.substr(sp + 1), &v)) sum += v;
  }
  return sum;
}

// Waits (up to 90 s) until the node whose /metrics `http` reads owns all partitions.
void WaitOwnsAll(httplib::Client& http) {
  const auto ready_deadline = Clock::now() + std::chrono::seconds(90);
  while (ScrapeSum(http, "kiq_partitions", "state=\"active\"") < absl::GetFlag(FLAGS_partitions)) {
    if (Clock::now() > ready_deadline) Die("the node never owned all partitions");
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

int IngestCmd() {
  const int pid = absl::GetFlag(FLAGS_node_pid);
  const std::string match = absl::StrCat("store=\"", absl::GetFlag(FLAGS_store), "\"");
  httplib::Client http("http://" + absl::GetFlag(FLAGS_metrics));
  http.set_read_timeout(10, 0);
  // The node must own all partitions before the first round is timed.
  WaitOwnsAll(http);
  auto producer = MakeProducer();
  ValueEncoder encode;
  auto consumer = MakeConsumer();
  const int64_t total = absl::GetFlag(FLAGS_records), round = absl::GetFlag(FLAGS_round);
  double node_secs = 0, bare_secs = 0;
  double materialized = ScrapeSum(http, "kiq_records_materialized_total", match);
  for (int64_t done = 0; done < total;) {
    const int64_t n = std::min(round, total - done);
    auto before = Watermarks(*producer);
    if (kill(pid, SIGSTOP) != 0) Die("SIGSTOP failed");
    Produce(*producer, encode, done, n);
    auto after = Watermarks(*producer);
    const auto start = Clock::now();
    kill(pid, SIGCONT);
    const double target = materialized + static_cast<double>(n);
    const auto deadline = Clock::now() + std::chrono::seconds(300);
    while ((materialized = ScrapeSum(http, "kiq_records_materialized_total", match)) < target) {
      if (Clock::now() > deadline)
        Die(absl::StrCat("node stuck at ", materialized, " of ", target));
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    node_secs += Since(start);
    std::vector<int64_t> from, to;
    for (size_t p = 0; p < before.size(); ++p)
      from.push_back(before[p].second), to.push_back(after[p].second);
    const auto bare_start = Clock::now();
    ConsumeRange(*consumer, from, to);
    bare_secs += Since(bare_start);
    done += n;
    fprintf(stderr, "ingest %s: %lld/%lld records\n", absl::GetFlag(FLAGS_store).c_str(),
            static_cast<long long>(done), static_cast<long long>(total));
  }
  consumer->close();
  // label,records,node_seconds,node_rps,bare_consume_seconds,bare_consume_rps
  printf("%s,%lld,%.3f,%.0f,%.3f,%.0f\n", absl::GetFlag(FLAGS_label).c_str(),
         static_cast<long long>(total), node_secs, total / node_secs, bare_secs, total / bare_secs);
  return 0;
}

// ---- fresh ----
// Times (ms since the run's start) of each record: its delivery report, the answer of the first
// Get that found it, and its arrival at the bare consumer; -1 until then.
class FreshTracker {
 public:
  FreshTracker(int64_t records, int pollers)
      : delivered_(records, -1), visible_(records, -1), consumed_(records, -1), pending_(pollers) {}

  void Delivered(int64_t i, double t) {
    absl::MutexLock lock(&mu_);
    delivered_[i] = t;
    pending_[i % pending_.size()].push_back(i);
  }
  // The records delivered since the last call, for poller `p`.
  std::vector<int64_t> TakePending(int p) {
    absl::MutexLock lock(&mu_);
    std::vector<int64_t> out;
    out.swap(pending_[p]);
    return out;
  }
  void Visible(int64_t i, double t) {
    absl::MutexLock lock(&mu_);
    visible_[i] = t;
    ++visible_count_;
  }
  void Consumed(int64_t i, double t) {
    absl::MutexLock lock(&mu_);
    if (i < 0 || i >= static_cast<int64_t>(consumed_.size()) || consumed_[i] >= 0) return;
    consumed_[i] = t;
    ++consumed_count_;
  }
  bool AllSeen() {
    absl::MutexLock lock(&mu_);
    const int64_t n = static_cast<int64_t>(delivered_.size());
    return visible_count_ == n && consumed_count_ == n;
  }
  // Sorted latencies (seen - delivered) of the records seen; `unseen` counts the others.
  std::vector<double> Latencies(bool get, int64_t* unseen) {
    absl::MutexLock lock(&mu_);
    const std::vector<double>& seen = get ? visible_ : consumed_;
    std::vector<double> out;
    *unseen = 0;
    for (size_t i = 0; i < seen.size(); ++i) {
      if (seen[i] < 0 || delivered_[i] < 0) {
        ++*unseen;
        continue;
      }
      out.push_back(seen[i] - delivered_[i]);
    }
    std::sort(out.begin(), out.end());
    return out;
  }

 private:
  absl::Mutex mu_;
  std::vector<double> delivered_ ABSL_GUARDED_BY(mu_);
  std::vector<double> visible_ ABSL_GUARDED_BY(mu_);
  std::vector<double> consumed_ ABSL_GUARDED_BY(mu_);
  std::vector<std::vector<int64_t>> pending_ ABSL_GUARDED_BY(mu_);
  int64_t visible_count_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t consumed_count_ ABSL_GUARDED_BY(mu_) = 0;
};

class FreshDeliveryReports final : public RdKafka::DeliveryReportCb {
 public:
  FreshDeliveryReports(FreshTracker& tracker, std::function<double()> now)
      : tracker_(tracker), now_(std::move(now)) {}
  void dr_cb(RdKafka::Message& m) override {
    if (m.err() != RdKafka::ERR_NO_ERROR) Die("fresh: delivery failed: " + m.errstr());
    tracker_.Delivered(reinterpret_cast<intptr_t>(m.msg_opaque()), now_());
  }

 private:
  FreshTracker& tracker_;
  std::function<double()> now_;
};

// Nearest-rank percentile of sorted values (NAN if none).
double Percentile(const std::vector<double>& sorted, double q) {
  if (sorted.empty()) return NAN;
  const size_t rank = static_cast<size_t>(std::ceil(q * static_cast<double>(sorted.size())));
  return sorted[std::min(sorted.size() - 1, rank == 0 ? 0 : rank - 1)];
}

int FreshCmd() {
  const int64_t n = absl::GetFlag(FLAGS_records);
  const int pollers = absl::GetFlag(FLAGS_pollers);
  const std::string store = absl::GetFlag(FLAGS_store), topic = absl::GetFlag(FLAGS_topic);
  if (n <= 0 || pollers <= 0 || absl::GetFlag(FLAGS_target).empty() || store.empty() ||
      topic.empty())
    Die("fresh needs --records > 0, --pollers > 0, --target, --store and --topic");
  httplib::Client http("http://" + absl::GetFlag(FLAGS_metrics));
  http.set_read_timeout(10, 0);
  WaitOwnsAll(http);

  const auto start = Clock::now();
  auto now_ms = [start] {
    return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
  };
  FreshTracker tracker(n, pollers);
  std::atomic<bool> stop{false};
  std::atomic<int64_t> gets{0}, get_errors{0};

  // The baseline: a bare consumer from the current ends, fetching as eagerly as the node.
  auto consumer = MakeConsumer({{"fetch.wait.max.ms", "5"}});
  {
    auto w = Watermarks(*consumer);
    std::vector<RdKafka::TopicPartition*> tps;
    for (size_t p = 0; p < w.size(); ++p)
      tps.push_back(RdKafka::TopicPartition::create(topic, static_cast<int>(p), w[p].second));
    consumer->assign(tps);
    RdKafka::TopicPartition::destroy(tps);
  }
  std::thread consume_thread([&] {
    while (!stop.load()) {
      std::unique_ptr<RdKafka::Message> m(consumer->consume(20));
      if (m->err() != RdKafka::ERR_NO_ERROR || m->key() == nullptr) continue;
      int64_t i = -1;
      absl::string_view k(*m->key());
      if (absl::ConsumePrefix(&k, "fresh-") && absl::SimpleAtoi(k, &i))
        tracker.Consumed(i, now_ms());
    }
  });

  // Get pollers: each asks for its pending records (one call in flight per poller), each at
  // most every --poll_interval_us, until found. No min_position: a plain read.
  auto channel =
      grpc::CreateChannel(absl::GetFlag(FLAGS_target), grpc::InsecureChannelCredentials());
  auto stub = kiq::v1::QueryService::NewStub(channel);
  if (!channel->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(10)))
    Die("fresh: cannot connect to --target " + absl::GetFlag(FLAGS_target));
  const auto interval = std::chrono::microseconds(absl::GetFlag(FLAGS_poll_interval_us));
  std::vector<std::thread> poll_threads;
  for (int t = 0; t < pollers; ++t) {
    poll_threads.emplace_back([&, t] {
      std::vector<int64_t> mine;
      while (!stop.load()) {
        const auto pass_start = Clock::now();
        for (int64_t i : tracker.TakePending(t)) mine.push_back(i);
        for (size_t j = 0; j < mine.size();) {
          grpc::ClientContext ctx;
          ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
          kiq::v1::GetRequest req;
          req.set_store(store);
          req.set_key(absl::StrCat("fresh-", mine[j]));
          kiq::v1::GetResponse resp;
          const grpc::Status st = stub->Get(&ctx, req, &resp);
          ++gets;
          if (st.ok() && resp.found()) {
            tracker.Visible(mine[j], now_ms());
            mine[j] = mine.back();
            mine.pop_back();
            continue;
          }
          if (!st.ok()) ++get_errors;
          ++j;
        }
        std::this_thread::sleep_until(pass_start + interval);
      }
    });
  }

  // The producer: one record at a time, no batching, every --interval_ms.
  FreshDeliveryReports reports(tracker, now_ms);
  auto producer = MakeProducer("0", &reports);
  const auto every = std::chrono::duration_cast<Clock::duration>(
      std::chrono::duration<double, std::milli>(absl::GetFlag(FLAGS_interval_ms)));
  // Delivery reports are served by their own thread, as soon as each arrives.
  std::atomic<bool> stop_reports{false};
  std::thread report_thread([&] {
    while (!stop_reports.load()) producer->poll(50);
  });
  const auto produce_start = Clock::now();
  for (int64_t i = 0; i < n; ++i) {
    std::this_thread::sleep_until(produce_start + i * every);
    const std::string k = absl::StrCat("fresh-", i), v = absl::StrCat("{\"seq\":", i, "}");
    const RdKafka::ErrorCode e =
        producer->produce(topic, RdKafka::Topic::PARTITION_UA, RdKafka::Producer::RK_MSG_COPY,
                          const_cast<char*>(v.data()), v.size(), k.data(), k.size(), 0,
                          reinterpret_cast<void*>(static_cast<intptr_t>(i)));
    if (e != RdKafka::ERR_NO_ERROR) Die("fresh: produce: " + RdKafka::err2str(e));
  }
  if (producer->flush(30000) != RdKafka::ERR_NO_ERROR) Die("fresh: flush timed out");
  stop_reports.store(true);
  report_thread.join();
  const auto seen_deadline = Clock::now() + std::chrono::seconds(30);
  while (!tracker.AllSeen() && Clock::now() < seen_deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  stop.store(true);
  for (auto& th : poll_threads) th.join();
  consume_thread.join();
  consumer->close();

  int64_t get_unseen = 0, consume_unseen = 0;
  const std::vector<double> get_ms = tracker.Latencies(true, &get_unseen);
  const std::vector<double> consume_ms = tracker.Latencies(false, &consume_unseen);
  // label,records,interval_ms,get_p50_ms,get_p99_ms,get_max_ms,consume_p50_ms,consume_p99_ms,
  // consume_max_ms,get_unseen,consume_unseen,gets,get_errors
  printf("%s,%lld,%.3f,%.3f,%.3f,%.3f,%.3f,%.3f,%.3f,%lld,%lld,%lld,%lld\n",
         absl::GetFlag(FLAGS_label).c_str(), static_cast<long long>(n),
         absl::GetFlag(FLAGS_interval_ms), Percentile(get_ms, 0.5), Percentile(get_ms, 0.99),
         get_ms.empty() ? NAN : get_ms.back(), Percentile(consume_ms, 0.5),
         Percentile(consume_ms, 0.99), consume_ms.empty() ? NAN : consume_ms.back(),
         static_cast<long long>(get_unseen), static_cast<long long>(consume_unseen),
         static_cast<long long>(gets.load()), static_cast<long long>(get_errors.load()));
  return 0;
}

int EncodeCmd() {
  if (absl::GetFlag(FLAGS_format) != "avro") Die("encode: only --format=avro");
  ValueEncoder encode;
  static constexpr char kHex[] = "0123456789abcdef";
  for (int64_t i = 0; i < absl::GetFlag(FLAGS_records); ++i) {
    std::string hex;
    for (unsigned char c : encode(i)) hex += {kHex[c >> 4], kHex[c & 15]};
    printf("%s\t%s\n", hex.c_str(), Value(i).c_str());
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // As kiq-node does (node/main.cc): Debian's abseil checks lock order on every Mutex lock,
  // ~3 % of the bare gRPC server's CPU, a cost kiq's servers do not pay.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  std::vector<char*> rest = absl::ParseCommandLine(argc, argv);
  if (rest.size() != 2)
    Die("usage: kiq-bench-baselines grpc-server|rocksdb-write|rocksdb-iter|consume|produce|ingest|"
        "fresh|encode [--flags]");
  const std::string cmd = rest[1];
  if (cmd == "grpc-server") return GrpcServer();
  if (cmd == "rocksdb-write") return RocksdbWrite();
  if (cmd == "rocksdb-iter") return RocksdbIter();
  if (cmd == "consume") return ConsumeCmd();
  if (cmd == "produce") return ProduceCmd();
  if (cmd == "ingest") return IngestCmd();
  if (cmd == "encode") return EncodeCmd();
  if (cmd == "fresh") return FreshCmd();
  Die("unknown command " + cmd);
}
