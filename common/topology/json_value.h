#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <rapidjson/allocators.h>
#include <rapidjson/document.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace kiq {

// Bounds on JSON read from data kiq does not control: record keys and values, and stored values
// rendered as Entry.json. One value is passed to every decoder (flags may set it; these are the
// defaults). Past a bound a record is a bad record with its own reason, never a crash.
struct JsonLimits {
  // The deepest nesting of arrays and objects ("1" is 0 deep, "[1]" and "{}" are 1 deep). The
  // parser is iterative, so this bounds the work per value and the recursion of everything that
  // walks a parsed value (rendering, Entry.json), not the parser's stack. Reason past it:
  // "value nests deeper than 64 levels".
  int max_depth = 64;
  // The largest record value (of any format) in bytes. Reason past it: "value too large".
  size_t max_value_bytes = size_t{1} << 20;
};

// Parses `text` as one JSON document (RFC 8259: UTF-8, a single value, nothing after it) into
// `*doc`, without recursion. `what` names the text in the reason ("value", "key"). Fails with
// INVALID_ARGUMENT: "<what> too large (N bytes; the limit is M)", "<what> nests deeper than N
// levels", "<what> is not UTF-8 (a JSON string holds invalid UTF-8)" or "<what> is not JSON".
// On failure `*doc` holds null.
absl::Status ParseJson(absl::string_view text, const JsonLimits& limits, absl::string_view what,
                       rapidjson::Document* doc);

// A record value parsed as JSON at most once, on first use, so that the stores of one source
// share the work. Not thread-safe: owned by the ingestion thread. Parsing reuses one memory
// pool (and an inline buffer for small documents), so the hot path does not allocate per
// record once warmed up.
class LazyJson {
 public:
  explicit LazyJson(JsonLimits limits = {})
      : limits_(limits), pool_(buffer_, sizeof(buffer_)), document_(&pool_) {}
  LazyJson(const LazyJson&) = delete;
  LazyJson& operator=(const LazyJson&) = delete;

  // Forgets the previous document; `text` must outlive the next uses of Root().
  void Reset(absl::string_view text);
  // The parsed root, or nullptr if the text is not a JSON document within the limits (see
  // ParseJson; error() says why).
  const rapidjson::Value* Root();
  // Why Root() is nullptr (OK before the first Root() or when the text parsed).
  const absl::Status& error() const { return error_; }
  const JsonLimits& limits() const { return limits_; }
  absl::string_view text() const { return text_; }

 private:
  const JsonLimits limits_;
  absl::string_view text_;
  bool parsed_ = false;
  absl::Status error_;
  char buffer_[4096];
  rapidjson::MemoryPoolAllocator<> pool_;
  rapidjson::Document document_;
};

// A field of a record value, addressed by a dotted path: "points", "customer.id"; "" is the
// whole value. Constant after construction; thread-compatible.
class FieldPath {
 public:
  // Why `path` is not a valid field path ("" if it is). The empty path is valid.
  static std::string Problem(absl::string_view path);

  // `path` must be valid (see Problem).
  explicit FieldPath(std::string path);

  const std::string& name() const { return name_; }
  bool whole_value() const { return segments_.empty(); }
  // The value at this path under `root`; a JSON null if a segment on the way is null (a field
  // of a null is null, as in SQL); nullptr if some segment is missing or its parent is not an
  // object.
  const rapidjson::Value* Find(const rapidjson::Value& root) const;
  // "field points" or "the value", for error messages.
  std::string Describe() const;

 private:
  std::string name_;
  std::vector<std::string> segments_;
};

// What a store reads from a record: a JSON value (JSON sources) or plain text (the whole value
// of a STRING source). Borrowed from the record.
struct Scalar {
  const rapidjson::Value* json = nullptr;  // set for JSON sources
  absl::string_view text;                  // the text otherwise
};

// Reads `path` from a record value. `json` is the parsed value for JSON sources (nullptr for
// other formats, whose whole value is taken as text). INVALID_ARGUMENT with a reason naming the
// field when the field is missing or the value is not JSON.
absl::StatusOr<Scalar> ReadField(const FieldPath& path, absl::string_view value, LazyJson* json);
// As ReadField, but a missing field is nullopt rather than an error.
absl::StatusOr<std::optional<Scalar>> ReadOptionalField(const FieldPath& path,
                                                        absl::string_view value, LazyJson* json);

// Numeric casts, as ksqlDB's CAST: a JSON number, or a JSON or plain string that parses fully
// as the type. INVALID_ARGUMENT naming the field otherwise ("field points is not a number:
// \"abc\""). An int64 does not take a fractional number or one out of range.
absl::StatusOr<int64_t> ToInt64(const Scalar& scalar, const FieldPath& path);
absl::StatusOr<double> ToDouble(const Scalar& scalar, const FieldPath& path);

// The JSON text of a value (compact). Recursive in the value's depth: call it on values parsed
// by ParseJson, whose depth is bounded.
std::string ToJsonText(const rapidjson::Value& value);
// A short quoted rendering of a value for error messages.
std::string DescribeJson(const rapidjson::Value& value);

}  // namespace kiq
