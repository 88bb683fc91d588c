#include "common/security/token_file.h"

#include <set>

#include <yaml-cpp/yaml.h>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/security/crypto.h"

namespace kiq::security {

bool TokenGrant::AllowsStore(absl::string_view store) const {
  for (const std::string& s : stores) {
    if (s == "*" || s == store) return true;
  }
  return false;
}

namespace {

absl::Status Bad(absl::string_view source, absl::string_view path, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat(source, ": ", path, ": ", why));
}

absl::Status ParseNode(const YAML::Node& root, absl::string_view source,
                                   std::vector<TokenGrant>* grants) {
  if (!root.IsMap()) return Bad(source, "(top level)", "must be a map with a 'tokens' list");
  for (const auto& field : root) {
    const std::string name = field.first.as<std::string>();
    if (name != "tokens") return Bad(source, name, "unknown field (expected 'tokens')");
  }
  const YAML::Node tokens = root["tokens"];
  if (!tokens || !tokens.IsSequence()) return Bad(source, "tokens", "must be a list");
  std::set<std::string> names;
  std::set<std::string> digests;
  for (size_t i = 0; i < tokens.size(); ++i) {
    const std::string path = absl::StrCat("tokens[", i, "]");
    const YAML::Node entry = tokens[i];
    if (!entry.IsMap()) return Bad(source, path, "must be a map (name, sha256 or token, stores)");
    for (const auto& field : entry) {
      const std::string f = field.first.as<std::string>();
      if (f != "name" && f != "sha256" && f != "token" && f != "stores") {
        return Bad(source, absl::StrCat(path, ".", f),
                   "unknown field (expected name, sha256, token, stores)");
      }
      if (f != "stores" && !field.second.IsScalar()) {
        return Bad(source, absl::StrCat(path, ".", f), "must be a string");
      }
    }
    TokenGrant grant;
    if (!entry["name"] || entry["name"].as<std::string>().empty()) {
      return Bad(source, absl::StrCat(path, ".name"), "is required");
    }
    grant.name = entry["name"].as<std::string>();
    if (!names.insert(grant.name).second) {
      return Bad(source, absl::StrCat(path, ".name"), absl::StrCat("'", grant.name, "' appears twice"));
    }
    const bool has_sha = static_cast<bool>(entry["sha256"]);
    const bool has_token = static_cast<bool>(entry["token"]);
    if (has_sha == has_token) {
      return Bad(source, path, "needs exactly one of sha256 (hex SHA-256 of the token) or token");
    }
    if (has_sha) {
      const std::string hex = absl::AsciiStrToLower(entry["sha256"].as<std::string>());
      if (hex.size() != 64 || !FromHex(hex, &grant.digest)) {
        return Bad(source, absl::StrCat(path, ".sha256"),
                   "must be 64 hex digits (e.g. the output of: printf %s TOKEN | sha256sum)");
      }
    } else {
      const std::string token = entry["token"].as<std::string>();
      if (token.empty()) return Bad(source, absl::StrCat(path, ".token"), "must not be empty");
      grant.digest = Sha256(token);
    }
    if (!digests.insert(grant.digest).second) {
      return Bad(source, path, "the same token as an earlier entry");
    }
    const YAML::Node stores = entry["stores"];
    if (!stores || !stores.IsSequence() || stores.size() == 0) {
      return Bad(source, absl::StrCat(path, ".stores"),
                 "must be a non-empty list of store names (\"*\": every store)");
    }
    for (size_t j = 0; j < stores.size(); ++j) {
      if (!stores[j].IsScalar() || stores[j].as<std::string>().empty()) {
        return Bad(source, absl::StrCat(path, ".stores[", j, "]"), "must be a store name");
      }
      grant.stores.push_back(stores[j].as<std::string>());
    }
    grants->push_back(std::move(grant));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<TokenSet> TokenSet::Parse(absl::string_view yaml, absl::string_view source) {
  TokenSet set;
  try {
    const YAML::Node root = YAML::Load(std::string(yaml));
    if (absl::Status s = ParseNode(root, source, &set.grants_); !s.ok()) return s;
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": not valid YAML: ", e.what()));
  }
  return set;
}

const TokenGrant* TokenSet::Find(absl::string_view token) const {
  const std::string digest = Sha256(token);
  const TokenGrant* found = nullptr;
  for (const TokenGrant& grant : grants_) {
    if (ConstantTimeEquals(digest, grant.digest) && found == nullptr) found = &grant;
  }
  return found;
}

}  // namespace kiq::security
