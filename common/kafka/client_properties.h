#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/kafka/client_config.h"

namespace kiq {

// The Kafka settings a user gives kiq: a Java-style client.properties file (the one Confluent
// Cloud, MSK and most Kafka tools hand out) and name=value overrides, translated to
// librdkafka's names.
struct UserKafkaSettings {
  // bootstrap.servers from the file, if it has one (the flag wins over it).
  std::string bootstrap_servers;
  KafkaProperties properties;
  // What was translated or left out, for one info line each at start-up.
  std::vector<std::string> notes;
};

// Parses `text` (java.util.Properties syntax: `key=value`, `key: value` or `key value`, `#`/`!`
// comments, backslash continuations and escapes) and translates the Java client names
// librdkafka lacks: sasl.mechanism → sasl.mechanisms; sasl.jaas.config (PlainLoginModule or
// ScramLoginModule with username/password) → sasl.username + sasl.password;
// ssl.endpoint.identification.algorithm "" → none; settings only the Java client has (e.g.
// client.dns.lookup) and Schema Registry settings are left out with a note. A name librdkafka
// does not know either is INVALID_ARGUMENT naming `source`, the line and the name, as is a
// setting kiq cannot honour (a JKS store, an unsupported login module).
absl::StatusOr<UserKafkaSettings> ParseClientProperties(absl::string_view text,
                                                        absl::string_view source);

// The settings of --kafka-config=FILE (read and parsed; empty path: none) and then of each
// --kafka-property=name=value, which win. INVALID_ARGUMENT naming the flag and the reason.
absl::StatusOr<UserKafkaSettings> UserKafkaSettingsFromFlags(
    const std::string& config_file, const std::vector<std::string>& property_flags);

}  // namespace kiq
