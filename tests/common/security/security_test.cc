// The token file parser (good files, both token forms, every kind of mistake named by its field
// path) and the cluster secret's MACs (members records, tombstones, peer tokens): what one
// secret signs, it verifies; a change of any byte, another secret or an old peer token fails.
#include <cctype>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/security/cluster_secret.h"
#include "common/security/crypto.h"
#include "common/security/token_file.h"
#include "tests/testing/status_matchers.h"

namespace kiq::security {
namespace {

using ::kiq::testing::StatusIs;

TEST(CryptoTest, Sha256MatchesTheKnownDigestOfAbc) {
  EXPECT_EQ(ToHex(Sha256("abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(CryptoTest, HmacMatchesRfc4231TestCase2) {
  EXPECT_EQ(ToHex(HmacSha256("Jefe", "what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

TEST(CryptoTest, ConstantTimeEqualsComparesBytesAndLengths) {
  EXPECT_TRUE(ConstantTimeEquals("abc", "abc"));
  EXPECT_FALSE(ConstantTimeEquals("abc", "abd"));
  EXPECT_FALSE(ConstantTimeEquals("abc", "abcd"));
  EXPECT_TRUE(ConstantTimeEquals("", ""));
}

TEST(CryptoTest, HexRoundTripsAndRejectsNonHex) {
  std::string bytes;
  ASSERT_TRUE(FromHex(ToHex(std::string("\x00\xff\x10", 3)), &bytes));
  EXPECT_EQ(bytes, std::string("\x00\xff\x10", 3));
  EXPECT_FALSE(FromHex("abc", &bytes));
  EXPECT_FALSE(FromHex("zz", &bytes));
}

TEST(TokenSetTest, ParsesBothFormsAndGrantsTheListedStores) {
  // printf %s dash-token | sha256sum
  const std::string digest = "0a1be3282471dc6eef24ada1aec827fada31f7dc6d7a229ed202fa5993890018";
  auto set = TokenSet::Parse(
      "tokens:\n"
      "  - name: dashboards\n"
      "    sha256: " + digest + "\n"
      "    stores: [order_count]\n"
      "  - name: ops\n"
      "    token: ops-token\n"
      "    stores: ['*']\n",
      "tokens.yaml");
  ASSERT_OK(set);
  ASSERT_EQ(set->grants().size(), 2u);
  const TokenGrant* dash = set->Find("dash-token");
  ASSERT_NE(dash, nullptr);
  EXPECT_EQ(dash->name, "dashboards");
  EXPECT_TRUE(dash->AllowsStore("order_count"));
  EXPECT_FALSE(dash->AllowsStore("customers"));
  const TokenGrant* ops = set->Find("ops-token");
  ASSERT_NE(ops, nullptr);
  EXPECT_EQ(ops->name, "ops");
  EXPECT_TRUE(ops->AllowsStore("customers"));
  EXPECT_EQ(set->Find("wrong"), nullptr);
  EXPECT_EQ(set->Find(""), nullptr);
  EXPECT_EQ(set->Find("dash-token "), nullptr);
}

TEST(TokenSetTest, UpperCaseHexIsAccepted) {
  std::string digest = ToHex(Sha256("t0ken"));
  for (char& c : digest) c = static_cast<char>(std::toupper(c));
  auto set = TokenSet::Parse("tokens: [{name: a, sha256: " + digest + ", stores: [s]}]", "f");
  ASSERT_OK(set);
  EXPECT_NE(set->Find("t0ken"), nullptr);
}

TEST(TokenSetTest, AnEmptyListIsValidAndAdmitsNobody) {
  auto set = TokenSet::Parse("tokens: []", "f");
  ASSERT_OK(set);
  EXPECT_EQ(set->Find("anything"), nullptr);
}

TEST(TokenSetTest, MistakesNameTheFieldPathAndTheReason) {
  struct Case {
    std::string yaml;
    std::string message;
  };
  const std::vector<Case> cases = {
      {"[1, 2]", "f: (top level): must be a map"},
      {"tokens: {a: b}", "f: tokens: must be a list"},
      {"tokns: []", "f: tokns: unknown field"},
      {"tokens: [{name: a, token: x}]", "f: tokens[0].stores: must be a non-empty list"},
      {"tokens: [{name: a, token: x, stores: []}]", "f: tokens[0].stores: must be a non-empty"},
      {"tokens: [{token: x, stores: [s]}]", "f: tokens[0].name: is required"},
      {"tokens: [{name: a, stores: [s]}]", "f: tokens[0]: needs exactly one of sha256"},
      {"tokens: [{name: a, token: x, sha256: " + std::string(64, 'a') + ", stores: [s]}]",
       "f: tokens[0]: needs exactly one of sha256"},
      {"tokens: [{name: a, sha256: abc, stores: [s]}]", "f: tokens[0].sha256: must be 64 hex"},
      {"tokens: [{name: a, sha256: " + std::string(64, 'g') + ", stores: [s]}]",
       "f: tokens[0].sha256: must be 64 hex"},
      {"tokens: [{name: a, token: '', stores: [s]}]", "f: tokens[0].token: must not be empty"},
      {"tokens: [{name: a, token: x, stores: [s], store: [t]}]", "f: tokens[0].store: unknown"},
      {"tokens: [{name: a, token: x, stores: [s]}, {name: a, token: y, stores: [s]}]",
       "f: tokens[1].name: 'a' appears twice"},
      {"tokens: [{name: a, token: x, stores: [s]}, {name: b, sha256: " +
           ToHex(Sha256("x")) + ", stores: [s]}]",
       "f: tokens[1]: the same token as an earlier entry"},
      {"tokens: [{name: a, token: x, stores: [[s]]}]", "f: tokens[0].stores[0]: must be a store"},
      {"tokens: [{name: [a], token: x, stores: [s]}]", "f: tokens[0].name: must be a string"},
      {"tokens: [", "f: not valid YAML"},
  };
  for (const Case& c : cases) {
    EXPECT_THAT(TokenSet::Parse(c.yaml, "f"), StatusIs(absl::StatusCode::kInvalidArgument, c.message))
        << c.yaml;
  }
}

ClusterSecret Secret(absl::string_view text) {
  absl::StatusOr<ClusterSecret> secret = ClusterSecret::FromText(text, "test");
  EXPECT_TRUE(secret.ok()) << secret.status();
  return *secret;
}

TEST(ClusterSecretTest, ShortSecretsAreRefusedAndWhitespaceTrimmed) {
  EXPECT_THAT(ClusterSecret::FromText("short\n", "--cluster-secret-file: s"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "--cluster-secret-file: s: the cluster secret must be at least 16 bytes, got 5"));
  const ClusterSecret a = Secret("0123456789abcdef\n");
  const ClusterSecret b = Secret("  0123456789abcdef");
  EXPECT_EQ(a.MemberMac("n1", 5, absl::string_view("v")), b.MemberMac("n1", 5, absl::string_view("v")));
}

TEST(ClusterSecretTest, MemberMacVerifiesOnlyTheSignedRecord) {
  const ClusterSecret secret = Secret("the-cluster-secret-1");
  const std::string mac = ToHex(secret.MemberMac("n1", 1000, absl::string_view("value")));
  int64_t at = 0;
  EXPECT_EQ(secret.CheckMember("n1", absl::string_view("value"), mac, "1000", &at),
            ClusterSecret::MemberCheck::kOk);
  EXPECT_EQ(at, 1000);
  // Any change: key, value, time, tombstone instead of value, another secret.
  EXPECT_EQ(secret.CheckMember("n2", absl::string_view("value"), mac, "1000", &at),
            ClusterSecret::MemberCheck::kBadMac);
  EXPECT_EQ(secret.CheckMember("n1", absl::string_view("valuf"), mac, "1000", &at),
            ClusterSecret::MemberCheck::kBadMac);
  EXPECT_EQ(secret.CheckMember("n1", absl::string_view("value"), mac, "1001", &at),
            ClusterSecret::MemberCheck::kBadMac);
  EXPECT_EQ(secret.CheckMember("n1", std::nullopt, mac, "1000", &at),
            ClusterSecret::MemberCheck::kBadMac);
  EXPECT_EQ(Secret("another-secret-of-16").CheckMember("n1", absl::string_view("value"), mac,
                                                        "1000", &at),
            ClusterSecret::MemberCheck::kBadMac);
  EXPECT_EQ(secret.CheckMember("n1", absl::string_view("value"), std::nullopt, "1000", &at),
            ClusterSecret::MemberCheck::kUnsigned);
  EXPECT_EQ(secret.CheckMember("n1", absl::string_view("value"), mac, std::nullopt, &at),
            ClusterSecret::MemberCheck::kBadMac);
  EXPECT_EQ(secret.CheckMember("n1", absl::string_view("value"), "not hex", "1000", &at),
            ClusterSecret::MemberCheck::kBadMac);
}

TEST(ClusterSecretTest, TombstonesAndEmptyValuesHaveDifferentMacs) {
  const ClusterSecret secret = Secret("the-cluster-secret-1");
  const std::string tombstone = ToHex(secret.MemberMac("n1", 7, std::nullopt));
  int64_t at = 0;
  EXPECT_EQ(secret.CheckMember("n1", std::nullopt, tombstone, "7", &at),
            ClusterSecret::MemberCheck::kOk);
  EXPECT_EQ(secret.CheckMember("n1", absl::string_view(""), tombstone, "7", &at),
            ClusterSecret::MemberCheck::kBadMac);
}

TEST(ClusterSecretTest, PeerTokensExpireAndNeedTheSameSecret) {
  const ClusterSecret secret = Secret("the-cluster-secret-1");
  const absl::Time now = absl::FromUnixSeconds(1'800'000'000);
  const std::string token = secret.PeerToken(now);
  EXPECT_TRUE(secret.CheckPeerToken(token, now));
  EXPECT_TRUE(secret.CheckPeerToken(token, now + kPeerTokenLifetime - absl::Seconds(1)));
  EXPECT_TRUE(secret.CheckPeerToken(token, now - kPeerTokenLifetime + absl::Seconds(1)));
  EXPECT_FALSE(secret.CheckPeerToken(token, now + kPeerTokenLifetime + absl::Seconds(1)));
  EXPECT_FALSE(Secret("another-secret-of-16").CheckPeerToken(token, now));
  // The time is inside the MAC: a sniffed token cannot be given a new time.
  const std::string mac = token.substr(token.find('.'));
  EXPECT_FALSE(secret.CheckPeerToken(absl::StrCat(absl::ToUnixMillis(now + absl::Seconds(90)), mac),
                                     now + absl::Seconds(90)));
  EXPECT_FALSE(secret.CheckPeerToken("", now));
  EXPECT_FALSE(secret.CheckPeerToken("garbage", now));
  EXPECT_FALSE(secret.CheckPeerToken("123.zz", now));
}

}  // namespace
}  // namespace kiq::security
