#include "common/kafka/client_properties.h"

#include <fstream>
#include <sstream>

#include <librdkafka/rdkafkacpp.h>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace kiq {
namespace {

// Java client settings with no librdkafka counterpart that change nothing kiq relies on.
const absl::flat_hash_set<std::string>& JavaOnly() {
  static const auto* const names = new absl::flat_hash_set<std::string>{
      "client.dns.lookup",  // librdkafka tries every address of a name anyway
      "key.serializer",     // kiq reads and writes bytes
      "value.serializer",
      "key.deserializer",
      "value.deserializer",
      "ssl.truststore.type",  // checked below: only PEM CAs (ssl.ca.location) can be used
      "sasl.login.callback.handler.class",
  };
  return *names;
}

bool IsSchemaRegistrySetting(absl::string_view name) {
  return absl::StartsWith(name, "schema.registry.") || absl::StartsWith(name, "basic.auth.") ||
         absl::StartsWith(name, "bearer.auth.");
}

// One logical line of a .properties file: continuation lines joined, escapes resolved.
std::vector<std::pair<int, std::string>> LogicalLines(absl::string_view text) {
  std::vector<std::pair<int, std::string>> out;
  std::string current;
  int first_line = 0;
  int line_number = 0;
  bool continuing = false;
  for (absl::string_view raw : absl::StrSplit(text, '\n')) {
    ++line_number;
    absl::string_view line = absl::StripLeadingAsciiWhitespace(absl::StripSuffix(raw, "\r"));
    if (!continuing) {
      if (line.empty() || line[0] == '#' || line[0] == '!') continue;
      first_line = line_number;
      current.clear();
    }
    // An odd number of trailing backslashes continues the line.
    size_t slashes = 0;
    while (slashes < line.size() && line[line.size() - 1 - slashes] == '\\') ++slashes;
    continuing = slashes % 2 == 1;
    if (continuing) line.remove_suffix(1);
    current.append(line.data(), line.size());
    if (!continuing) out.emplace_back(first_line, current);
  }
  if (continuing) out.emplace_back(first_line, current);
  return out;
}

std::string Unescape(absl::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '\\' || i + 1 == s.size()) {
      out.push_back(s[i]);
      continue;
    }
    const char c = s[++i];
    if (c == 't') {
      out.push_back('\t');
    } else if (c == 'n') {
      out.push_back('\n');
    } else if (c == 'r') {
      out.push_back('\r');
    } else if (c == 'f') {
      out.push_back('\f');
    } else if (c == 'u') {
      uint32_t cp = 0;
      if (i + 4 < s.size() && absl::SimpleHexAtoi(s.substr(i + 1, 4), &cp)) {
        i += 4;
        // UTF-8 of a BMP code point.
        if (cp < 0x80) {
          out.push_back(static_cast<char>(cp));
        } else if (cp < 0x800) {
          out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
          out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
        } else {
          out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
          out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
          out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
        }
      } else {
        out.push_back('u');
      }
    } else {
      out.push_back(c);  // \\, \=, \:, \#, \! and any other escaped character stand for themselves
    }
  }
  return out;
}

// key, value of one logical line: the key ends at the first unescaped '=', ':' or whitespace.
std::pair<std::string, std::string> SplitEntry(absl::string_view line) {
  size_t i = 0;
  while (i < line.size()) {
    if (line[i] == '\\') {
      i += 2;
      continue;
    }
    if (line[i] == '=' || line[i] == ':' ||
        absl::ascii_isspace(static_cast<unsigned char>(line[i]))) {
      break;
    }
    ++i;
  }
  absl::string_view key = line.substr(0, std::min(i, line.size()));
  absl::string_view rest = i < line.size() ? line.substr(i) : absl::string_view();
  rest = absl::StripLeadingAsciiWhitespace(rest);
  if (!rest.empty() && (rest[0] == '=' || rest[0] == ':')) rest.remove_prefix(1);
  rest = absl::StripLeadingAsciiWhitespace(rest);
  return {Unescape(key), Unescape(rest)};
}

// username="..." password="..." of a JAAS login module line.
absl::StatusOr<std::pair<std::string, std::string>> JaasCredentials(absl::string_view jaas) {
  const bool plain = absl::StrContains(jaas, "PlainLoginModule");
  const bool scram = absl::StrContains(jaas, "ScramLoginModule");
  if (!plain && !scram) {
    return absl::InvalidArgumentError(
        "only PlainLoginModule and ScramLoginModule can be used (librdkafka takes "
        "sasl.username/sasl.password; for OAUTHBEARER or GSSAPI set librdkafka's own "
        "sasl.* properties with --kafka-property)");
  }
  std::string username;
  std::string password;
  for (absl::string_view key : {"username", "password"}) {
    size_t at = jaas.find(absl::StrCat(key, "="));
    if (at == absl::string_view::npos) {
      return absl::InvalidArgumentError(absl::StrCat("has no ", key, "=\"...\""));
    }
    absl::string_view rest = jaas.substr(at + key.size() + 1);
    if (rest.empty() || rest[0] != '"') {
      return absl::InvalidArgumentError(absl::StrCat(key, " must be quoted"));
    }
    const size_t end = rest.find('"', 1);
    if (end == absl::string_view::npos) {
      return absl::InvalidArgumentError(absl::StrCat(key, " has no closing quote"));
    }
    (key == "username" ? username : password) = std::string(rest.substr(1, end - 1));
  }
  return std::make_pair(username, password);
}

// Whether librdkafka knows `name` (as a global property).
bool KnownToLibrdkafka(const std::string& name, const std::string& value, std::string* error) {
  std::unique_ptr<RdKafka::Conf> conf(RdKafka::Conf::create(RdKafka::Conf::CONF_GLOBAL));
  if (conf->set(name, value, *error) == RdKafka::Conf::CONF_OK) return true;
  return false;
}

}  // namespace

absl::StatusOr<UserKafkaSettings> ParseClientProperties(absl::string_view text,
                                                        absl::string_view source) {
  UserKafkaSettings out;
  for (const auto& [line, entry] : LogicalLines(text)) {
    auto [name, value] = SplitEntry(entry);
    // Structured bindings are not captured by lambdas in C++17: copies are.
    const auto refuse = [&source, line = line, name = name](absl::string_view why) {
      return absl::InvalidArgumentError(
          absl::StrCat(source, " line ", line, ": ", name, ": ", why));
    };
    if (name == "bootstrap.servers") {
      out.bootstrap_servers = value;
    } else if (name == "sasl.mechanism") {
      out.properties.emplace_back("sasl.mechanisms", value);
    } else if (name == "sasl.jaas.config") {
      absl::StatusOr<std::pair<std::string, std::string>> credentials = JaasCredentials(value);
      if (!credentials.ok()) return refuse(credentials.status().message());
      out.properties.emplace_back("sasl.username", credentials->first);
      out.properties.emplace_back("sasl.password", credentials->second);
      out.notes.push_back(absl::StrCat(name, " → sasl.username, sasl.password"));
    } else if (name == "ssl.endpoint.identification.algorithm") {
      // Java: "" turns host name verification off; librdkafka spells it "none".
      out.properties.emplace_back(name, value.empty() ? "none" : value);
    } else if ((name == "ssl.truststore.location" || name == "ssl.truststore.password")) {
      return refuse(
          "librdkafka reads CA certificates as PEM, not from a Java truststore: export the CA "
          "(keytool -exportcert -rfc) and set ssl.ca.location to the PEM file");
    } else if (name == "ssl.keystore.type" && !absl::EqualsIgnoreCase(value, "PKCS12")) {
      return refuse(absl::StrCat("a ", value,
                                 " keystore cannot be read by librdkafka: convert it to PKCS12"));
    } else if (name == "ssl.keystore.type") {
      // PKCS#12 is what librdkafka's ssl.keystore.location reads.
    } else if (JavaOnly().contains(name)) {
      out.notes.push_back(absl::StrCat(name, " left out (Java client only)"));
    } else if (IsSchemaRegistrySetting(name)) {
      out.notes.push_back(absl::StrCat(name, " left out (a Schema Registry setting)"));
    } else {
      std::string error;
      if (!KnownToLibrdkafka(name, value, &error)) return refuse(error);
      out.properties.emplace_back(name, value);
    }
  }
  return out;
}

absl::StatusOr<UserKafkaSettings> UserKafkaSettingsFromFlags(
    const std::string& config_file, const std::vector<std::string>& property_flags) {
  UserKafkaSettings settings;
  if (!config_file.empty()) {
    std::ifstream in(config_file);
    if (!in) {
      return absl::InvalidArgumentError(absl::StrCat("--kafka-config: cannot read ", config_file));
    }
    std::stringstream text;
    text << in.rdbuf();
    absl::StatusOr<UserKafkaSettings> parsed =
        ParseClientProperties(text.str(), absl::StrCat("--kafka-config ", config_file));
    if (!parsed.ok()) return parsed.status();
    settings = *std::move(parsed);
  }
  for (const std::string& property : property_flags) {
    const size_t eq = property.find('=');
    if (eq == std::string::npos || eq == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("--kafka-property: expected name=value, got \"", property, "\""));
    }
    settings.properties.emplace_back(property.substr(0, eq), property.substr(eq + 1));
  }
  return settings;
}

}  // namespace kiq
