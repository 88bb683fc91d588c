#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <rapidjson/allocators.h>
#include <rapidjson/document.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace kiq {

// A record value parsed as JSON at most once, on first use, so that the stores of one source
// share the work. Not thread-safe: owned by the ingestion thread. Parsing reuses one memory
// pool (and an inline buffer for small documents), so the hot path does not allocate per
// record once warmed up.
class LazyJson {
 public:
  LazyJson() : pool_(buffer_, sizeof(buffer_)), document_(&pool_) {}
  LazyJson(const LazyJson&) = delete;
  LazyJson& operator=(const LazyJson&) = delete;

  // Forgets the previous document; `text` must outlive the next uses of Root().
  void Reset(absl::string_view text);
  // The parsed root, or nullptr if the text is not a JSON document.
  const rapidjson::Value* Root();
  absl::string_view text() const { return text_; }

 private:
  absl::string_view text_;
  bool parsed_ = false;
  bool valid_ = false;
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
  // The value at this path under `root`, or nullptr if some segment is missing or its parent
  // is not an object.
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

// Numeric casts, as ksqlDB's CAST: a JSON number, or a JSON or plain string that parses fully
// as the type. INVALID_ARGUMENT naming the field otherwise ("field points is not a number:
// \"abc\""). An int64 does not take a fractional number or one out of range.
absl::StatusOr<int64_t> ToInt64(const Scalar& scalar, const FieldPath& path);
absl::StatusOr<double> ToDouble(const Scalar& scalar, const FieldPath& path);

// The JSON text of a value (compact).
std::string ToJsonText(const rapidjson::Value& value);
// A short quoted rendering of a value for error messages.
std::string DescribeJson(const rapidjson::Value& value);

}  // namespace kiq
