#include "common/kafka/client_properties.h"

#include <filesystem>
#include <fstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/process.h"
#include "tests/testing/status_matchers.h"

namespace kiq {
namespace {

using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Pair;
using testing::StatusIs;

TEST(ClientPropertiesTest, TranslatesAConfluentCloudFile) {
  // The file Confluent Cloud hands out, as downloaded.
  absl::StatusOr<UserKafkaSettings> s =
      ParseClientProperties(R"(# Required connection configs for Kafka producer, consumer, and admin
bootstrap.servers=pkc-abc12.us-east-1.aws.confluent.cloud:9092
security.protocol=SASL_SSL
sasl.mechanisms=PLAIN
sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username='KEY' password='SECRET';
)",
                            "client.properties");
  // Single quotes are not Java's JAAS syntax: refused with the reason.
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kInvalidArgument, "username must be quoted"));

  s = ParseClientProperties(R"(bootstrap.servers=pkc-abc12.us-east-1.aws.confluent.cloud:9092
security.protocol=SASL_SSL
sasl.mechanism=PLAIN
sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username="KEY" password="SE=CRET";
# Best practice for higher availability in Apache Kafka clients prior to 3.0
session.timeout.ms=45000
client.dns.lookup=use_all_dns_ips
acks=all
schema.registry.url=https://psrc-xyz.confluent.cloud
basic.auth.credentials.source=USER_INFO
)",
                            "client.properties");
  ASSERT_OK(s);
  EXPECT_EQ(s->bootstrap_servers, "pkc-abc12.us-east-1.aws.confluent.cloud:9092");
  EXPECT_THAT(s->properties,
              ElementsAre(Pair("security.protocol", "SASL_SSL"), Pair("sasl.mechanisms", "PLAIN"),
                          Pair("sasl.username", "KEY"), Pair("sasl.password", "SE=CRET"),
                          Pair("session.timeout.ms", "45000"), Pair("acks", "all")));
  EXPECT_THAT(s->notes, Contains(HasSubstr("client.dns.lookup left out")));
  EXPECT_THAT(s->notes, Contains(HasSubstr("schema.registry.url left out")));
}

TEST(ClientPropertiesTest, FollowsJavaPropertiesSyntax) {
  absl::StatusOr<UserKafkaSettings> s = ParseClientProperties(
      "! a comment\n  security.protocol : SSL\nssl.ca.location /etc/ssl/ca\\\n    .pem\n"
      "ssl.endpoint.identification.algorithm=\nclient.id=a\\u00e9b\n",
      "f");
  ASSERT_OK(s);
  EXPECT_THAT(s->properties, ElementsAre(Pair("security.protocol", "SSL"),
                                         Pair("ssl.ca.location", "/etc/ssl/ca.pem"),
                                         Pair("ssl.endpoint.identification.algorithm", "none"),
                                         Pair("client.id",
                                              "a\xc3\xa9"
                                              "b")));
}

TEST(ClientPropertiesTest, RefusesWhatLibrdkafkaCannotDoWithTheLineAndTheName) {
  EXPECT_THAT(
      ParseClientProperties("security.protocol=SSL\nno.such.setting=1\n", "f.properties"),
      StatusIs(absl::StatusCode::kInvalidArgument, "f.properties line 2: no.such.setting: "));
  EXPECT_THAT(ParseClientProperties("ssl.truststore.location=/x.jks\n", "f"),
              StatusIs(absl::StatusCode::kInvalidArgument, "ssl.ca.location"));
  EXPECT_THAT(ParseClientProperties("ssl.keystore.type=JKS\n", "f"),
              StatusIs(absl::StatusCode::kInvalidArgument, "convert it to PKCS12"));
  EXPECT_THAT(
      ParseClientProperties(
          "sasl.jaas.config=org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule "
          "required;\n",
          "f"),
      StatusIs(absl::StatusCode::kInvalidArgument, "PlainLoginModule"));
  EXPECT_THAT(ParseClientProperties("security.protocol=TLS\n", "f"),
              StatusIs(absl::StatusCode::kInvalidArgument, "security.protocol"));
}

TEST(ClientPropertiesTest, FlagsWinOverTheFile) {
  const std::string dir = testing::MakeTempDir("client-properties");
  const std::string path = dir + "/client.properties";
  std::ofstream(path) << "bootstrap.servers=b:9092\nsecurity.protocol=SASL_SSL\n";
  absl::StatusOr<UserKafkaSettings> s =
      UserKafkaSettingsFromFlags(path, {"security.protocol=SSL", "linger.ms=5"});
  ASSERT_OK(s);
  EXPECT_EQ(s->bootstrap_servers, "b:9092");
  EXPECT_THAT(s->properties, ElementsAre(Pair("security.protocol", "SASL_SSL"),
                                         Pair("security.protocol", "SSL"), Pair("linger.ms", "5")));
  EXPECT_THAT(UserKafkaSettingsFromFlags(dir + "/missing", {}),
              StatusIs(absl::StatusCode::kInvalidArgument, "--kafka-config: cannot read"));
  EXPECT_THAT(UserKafkaSettingsFromFlags("", {"novalue"}),
              StatusIs(absl::StatusCode::kInvalidArgument, "--kafka-property"));
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace kiq
