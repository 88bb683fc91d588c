#include "common/topology/window.h"

#include <algorithm>
#include <limits>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"

namespace kiq {
namespace {

// Parses a duration field: "" → nullopt (unset); otherwise a positive (or, with allow_zero,
// non-negative) whole number of milliseconds.
std::optional<int64_t> ParseMs(const std::string& text, const std::string& field, bool allow_zero,
                               std::vector<std::pair<std::string, std::string>>* problems) {
  if (text.empty()) return std::nullopt;
  absl::Duration d;
  if (!absl::ParseDuration(text, &d) || d == absl::InfiniteDuration() ||
      d == -absl::InfiniteDuration()) {
    problems->emplace_back(field, absl::StrCat("\"", text,
                                               "\" is not a duration (write e.g. \"500ms\", "
                                               "\"30s\", \"5m\", \"1h\")"));
    return std::nullopt;
  }
  if (d < absl::ZeroDuration() || (!allow_zero && d == absl::ZeroDuration())) {
    problems->emplace_back(
        field, absl::StrCat("must be ", allow_zero ? ">= 0" : "> 0", ", got \"", text, "\""));
    return std::nullopt;
  }
  if (d % absl::Milliseconds(1) != absl::ZeroDuration()) {
    problems->emplace_back(field,
                           absl::StrCat("\"", text, "\" is not a whole number of milliseconds"));
    return std::nullopt;
  }
  if (d > absl::Hours(24 * 365 * 100)) {
    problems->emplace_back(field, absl::StrCat("\"", text, "\" is longer than 100 years"));
    return std::nullopt;
  }
  return absl::ToInt64Milliseconds(d);
}

int64_t FloorDiv(int64_t a, int64_t b) {
  int64_t q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
  return q;
}

}  // namespace

WindowParams ParseWindowSpec(const kiq::v1::WindowSpec& spec,
                             std::vector<std::pair<std::string, std::string>>* problems) {
  WindowParams w;
  const size_t before = problems->size();
  std::optional<int64_t> size = ParseMs(spec.size(), "size", false, problems);
  if (spec.size().empty()) problems->emplace_back("size", "required, e.g. \"30s\"");
  std::optional<int64_t> advance = ParseMs(spec.advance(), "advance", false, problems);
  std::optional<int64_t> grace = ParseMs(spec.grace(), "grace", true, problems);
  std::optional<int64_t> retention = ParseMs(spec.retention(), "retention", false, problems);
  if (problems->size() != before) return w;
  w.size_ms = *size;
  w.advance_ms = advance.value_or(*size);
  // Unset, the grace is a day, or what an explicit retention leaves after the window (Kafka
  // Streams' rule: retention - size), so a retention that was valid stays valid.
  w.grace_ms =
      grace.value_or(retention ? std::clamp<int64_t>(*retention - *size, 0, kDefaultWindowGraceMs)
                               : kDefaultWindowGraceMs);
  if (w.advance_ms > w.size_ms) {
    problems->emplace_back("advance", absl::StrCat("must be <= size (", spec.size(), "), got \"",
                                                   spec.advance(), "\""));
  } else if ((w.size_ms - 1) / w.advance_ms + 1 > kMaxWindowsPerRecord) {
    problems->emplace_back(
        "advance",
        absl::StrCat("puts each record in ", (w.size_ms - 1) / w.advance_ms + 1, " windows (size ",
                     spec.size(), " / advance ", spec.advance(), "); at most ",
                     kMaxWindowsPerRecord, " are allowed: use an advance of at least ",
                     (w.size_ms - 1) / kMaxWindowsPerRecord + 1, "ms"));
  }
  const int64_t minimum = w.size_ms + w.grace_ms;
  if (retention) {
    if (*retention < minimum) {
      problems->emplace_back("retention", absl::StrCat("must be >= size + grace (", minimum,
                                                       "ms) so that every "
                                                       "window is kept until it closes, got \"",
                                                       spec.retention(), "\""));
    }
    w.retention_ms = *retention;
  } else {
    w.retention_ms = std::max(minimum, kDefaultWindowRetentionMs);
  }
  return w;
}

std::vector<int64_t> WindowStartsFor(const WindowParams& w, int64_t ts_ms) {
  std::vector<int64_t> starts;
  if (ts_ms < 0 || w.size_ms <= 0 || w.advance_ms <= 0) return starts;
  // The latest start at or before ts; earlier ones, every `advance`, while ts is inside.
  const int64_t last = FloorDiv(ts_ms, w.advance_ms) * w.advance_ms;
  if (last > std::numeric_limits<int64_t>::max() - w.size_ms) return starts;
  for (int64_t start = last; start > ts_ms - w.size_ms; start -= w.advance_ms) {
    starts.push_back(start);
    if (start < w.advance_ms) break;  // no negative starts: timestamps are >= 0
  }
  std::reverse(starts.begin(), starts.end());
  return starts;
}

}  // namespace kiq
