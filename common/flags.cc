#include "common/flags.h"

#include "absl/flags/commandlineflag.h"
#include "absl/flags/reflection.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/time/time.h"
#include "common/status.h"

namespace kiq {
namespace {

constexpr size_t kMaxKafkaIdLength = 249;

// The flag as users spell it.
std::string Dashed(absl::string_view name) {
  return absl::StrCat("--", absl::StrReplaceAll(name, {{"_", "-"}}));
}

// What a value of the flag's type looks like, for the error message.
std::string Expected(const absl::CommandLineFlag& flag) {
  if (flag.IsOfType<int>() || flag.IsOfType<int64_t>() || flag.IsOfType<int32_t>() ||
      flag.IsOfType<uint32_t>() || flag.IsOfType<uint64_t>()) {
    return "an integer";
  }
  if (flag.IsOfType<double>() || flag.IsOfType<float>()) return "a number";
  if (flag.IsOfType<bool>()) return "true or false";
  if (flag.IsOfType<absl::Duration>()) return "a duration such as 30s, 500ms or 1m";
  return "";
}

}  // namespace

absl::Status CheckFlags(const std::vector<std::string>& args) {
  for (size_t i = 1; i < args.size(); ++i) {
    absl::string_view arg = args[i];
    if (arg == "--") {
      if (i + 1 < args.size()) {
        return absl::InvalidArgumentError(absl::StrCat("unexpected argument ", ClipKey(args[i + 1]),
                                                       ": this program takes flags only"));
      }
      break;
    }
    if (arg.size() < 2 || arg[0] != '-') {
      return absl::InvalidArgumentError(
          absl::StrCat("unexpected argument ", ClipKey(arg), ": this program takes flags only"));
    }
    arg.remove_prefix(arg[1] == '-' ? 2 : 1);
    absl::string_view name = arg;
    absl::string_view value;
    bool has_value = false;
    if (size_t eq = arg.find('='); eq != absl::string_view::npos) {
      name = arg.substr(0, eq);
      value = arg.substr(eq + 1);
      has_value = true;
    }
    absl::CommandLineFlag* flag = absl::FindCommandLineFlag(name);
    if (flag == nullptr && !has_value && absl::StartsWith(name, "no")) {
      // --nofoo turns a bool flag off.
      absl::CommandLineFlag* negated = absl::FindCommandLineFlag(name.substr(2));
      if (negated != nullptr && negated->IsOfType<bool>()) continue;
    }
    if (flag == nullptr || flag->IsRetired()) {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown flag ", Dashed(name.substr(0, 64)), " (see --help)"));
    }
    if (!has_value) {
      if (flag->IsOfType<bool>()) continue;
      // abseil takes "--flag value" for flags that are not bool.
      if (i + 1 >= args.size()) {
        return absl::InvalidArgumentError(absl::StrCat(Dashed(name), ": missing value"));
      }
      value = args[++i];
    }
    std::string error;
    if (!flag->ParseFrom(value, &error)) {
      std::string expected = Expected(*flag);
      return absl::InvalidArgumentError(
          expected.empty()
              ? absl::StrCat(Dashed(name), ": ", error)
              : absl::StrCat(Dashed(name), ": ", ClipKey(value), " is not ", expected));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<spdlog::level::level_enum> ParseLogLevel(absl::string_view flag,
                                                        absl::string_view name) {
  const std::string lower = absl::AsciiStrToLower(name);
  static constexpr std::pair<absl::string_view, spdlog::level::level_enum> kLevels[] = {
      {"trace", spdlog::level::trace}, {"debug", spdlog::level::debug},
      {"info", spdlog::level::info},   {"warn", spdlog::level::warn},
      {"error", spdlog::level::err},   {"critical", spdlog::level::critical},
      {"off", spdlog::level::off}};
  for (const auto& [level_name, level] : kLevels) {
    if (lower == level_name) return level;
  }
  return absl::InvalidArgumentError(
      absl::StrCat(flag, ": unknown level ", ClipKey(name),
                   "; one of trace, debug, info, warn, error, critical, off"));
}

absl::Status CheckFlagRange(absl::string_view flag, int64_t value, int64_t min, int64_t max) {
  if (value >= min && value <= max) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat(flag, ": must be between ", min, " and ", max, ", got ", value));
}

absl::Status CheckKafkaId(absl::string_view flag, absl::string_view id) {
  if (id.size() > kMaxKafkaIdLength) {
    return absl::InvalidArgumentError(absl::StrCat(flag, ": ", id.size(),
                                                   " characters, over Kafka's limit of ",
                                                   kMaxKafkaIdLength, " for group.instance.id"));
  }
  for (size_t i = 0; i < id.size(); ++i) {
    const char c = id[i];
    if (absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-') {
      continue;
    }
    return absl::InvalidArgumentError(
        absl::StrCat(flag, ": ", ClipKey(id), " has ", ClipKey(id.substr(i, 1)), " at offset ", i,
                     "; Kafka allows only [a-zA-Z0-9._-] in group.instance.id"));
  }
  return absl::OkStatus();
}

}  // namespace kiq
