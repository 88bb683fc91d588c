#include "common/kafka/client_config.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/log_limiter.h"
#include "common/logging.h"

namespace kiq {
namespace {

// syslog severities (librdkafka's) → spdlog levels.
spdlog::level::level_enum LevelOf(int severity) {
  if (severity <= 2) return spdlog::level::critical;
  if (severity == 3) return spdlog::level::err;
  if (severity == 4) return spdlog::level::warn;
  if (severity <= 6) return spdlog::level::info;
  return spdlog::level::debug;
}

// A broker outage makes every client log the same failure every few seconds: at most this many
// lines a minute per level get through, with a count of the rest.
LogLimiter& LimiterFor(spdlog::level::level_enum level) {
  static LogLimiter* const limiters[] = {
      new LogLimiter(600), new LogLimiter(600), new LogLimiter(60), new LogLimiter(30),
      new LogLimiter(30),  new LogLimiter(30),  new LogLimiter(30)};
  return *limiters[static_cast<int>(level)];
}

void Log(spdlog::level::level_enum level, absl::string_view what) {
  if (!spdlog::should_log(level)) return;
  if (int64_t suppressed = 0; LimiterFor(level).Allow(&suppressed)) {
    if (suppressed > 0) {
      spdlog::log(level, "kafka: {} ({} similar suppressed)", what, suppressed);
    } else {
      spdlog::log(level, "kafka: {}", what);
    }
  }
}

// The user's properties go to every client, so a consumer setting reaching a producer is
// expected, not worth a warning.
spdlog::level::level_enum LevelOf(int severity, absl::string_view fac, absl::string_view text) {
  if (fac == "CONFWARN" && absl::StrContains(text, "will be ignored by this")) {
    return spdlog::level::debug;
  }
  return LevelOf(severity);
}

void LogFromC(const rd_kafka_t* rk, int level, const char* fac, const char* buf) {
  Log(LevelOf(level, fac, buf), absl::StrCat(rd_kafka_name(rk), " ", fac, ": ", buf));
}

void ErrorFromC(rd_kafka_t* rk, int err, const char* reason, void*) {
  Log(spdlog::level::warn,
      absl::StrCat(rd_kafka_name(rk), " error: ", reason, " (",
                   rd_kafka_err2name(static_cast<rd_kafka_resp_err_t>(err)), ")"));
}

}  // namespace

KafkaLogEvents& KafkaLogEvents::Instance() {
  static KafkaLogEvents* const instance = new KafkaLogEvents();
  return *instance;
}

void KafkaLogEvents::event_cb(RdKafka::Event& event) {
  switch (event.type()) {
    case RdKafka::Event::EVENT_LOG:
      Log(LevelOf(event.severity(), event.fac(), event.str()),
          absl::StrCat(event.fac(), ": ", event.str()));
      break;
    case RdKafka::Event::EVENT_ERROR:
      Log(event.fatal() ? spdlog::level::err : spdlog::level::warn,
          absl::StrCat("error: ", event.str(), " (", RdKafka::err2str(event.err()), ")"));
      break;
    default:
      break;
  }
}

absl::Status SetProperties(RdKafka::Conf& conf, const KafkaProperties& properties) {
  std::string err;
  for (const auto& [name, value] : properties) {
    if (conf.set(name, value, err) != RdKafka::Conf::CONF_OK) {
      return absl::InvalidArgumentError(absl::StrCat("kafka property ", name, ": ", err));
    }
  }
  return absl::OkStatus();
}

KafkaProperties KafkaClientConfig::All(absl::string_view client_id,
                                       const KafkaProperties& settings) const {
  KafkaProperties all = {{"bootstrap.servers", bootstrap_servers_},
                         {"client.id", std::string(client_id)}};
  all.insert(all.end(), settings.begin(), settings.end());
  all.insert(all.end(), user_.begin(), user_.end());
  return all;
}

absl::StatusOr<std::unique_ptr<RdKafka::Conf>> KafkaClientConfig::Build(
    absl::string_view client_id, const KafkaProperties& settings) const {
  std::unique_ptr<RdKafka::Conf> conf(RdKafka::Conf::create(RdKafka::Conf::CONF_GLOBAL));
  if (absl::Status s = SetProperties(*conf, All(client_id, settings)); !s.ok()) return s;
  std::string err;
  if (conf->set("event_cb", &KafkaLogEvents::Instance(), err) != RdKafka::Conf::CONF_OK) {
    return absl::InternalError(absl::StrCat("kafka event_cb: ", err));
  }
  return conf;
}

absl::StatusOr<rd_kafka_conf_t*> KafkaClientConfig::BuildC(absl::string_view client_id,
                                                           const KafkaProperties& settings) const {
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  char errstr[512];
  for (const auto& [name, value] : All(client_id, settings)) {
    if (rd_kafka_conf_set(conf, name.c_str(), value.c_str(), errstr, sizeof(errstr)) !=
        RD_KAFKA_CONF_OK) {
      rd_kafka_conf_destroy(conf);
      return absl::InvalidArgumentError(absl::StrCat("kafka property ", name, ": ", errstr));
    }
  }
  rd_kafka_conf_set_log_cb(conf, &LogFromC);
  rd_kafka_conf_set_error_cb(conf, &ErrorFromC);
  return conf;
}

}  // namespace kiq
