#pragma once

#include <string_view>

#include "absl/status/status.h"
#include "google/protobuf/message.h"
#include "yaml-cpp/yaml.h"

namespace kiq {

// Maps a YAML node onto a protobuf message through reflection, so any config message can be
// read from YAML (or JSON, which YAML includes) and every mistake is reported with the path of
// the offending field, e.g. `stores[2].count: expected a mapping, found "yes"`.
//
// Why not protobuf's JsonStringToMessage: it reads JSON only and its errors do not carry the
// field path a user needs to fix a config file.
//
// Mapping rules:
// - A mapping fills a message. Keys are proto field names; the json_name / lowerCamelCase form
//   is accepted too. Unknown keys, a field given twice, and two fields of the same oneof are
//   errors. A null or empty mapping (`table: {}`, or `table:` with nothing) still sets the
//   message field, which is how an empty message selects its oneof case.
// - A sequence fills a repeated field; a mapping fills a map field.
// - Scalars: strings and bytes take the text as written; bools are true/false; integers are
//   decimal and range-checked for their type; floats also accept .inf/-.inf/.nan; enums take
//   the value name or the name without the enum's common prefix, in any case (`json`,
//   `FORMAT_JSON`).
// - A null scalar (`name:`, `name: ~`) clears the field, as null does in proto3 JSON.
//
// Fields present in `node` are merged into `message` (repeated fields are appended); pass a
// freshly constructed message to get exactly what the YAML says. On error, `message` may be
// partly filled. Errors are InvalidArgument and start with the field path, built on `path`
// (empty for the root). Thread-compatible; does not take ownership of anything.
absl::Status YamlToMessage(const YAML::Node& node, google::protobuf::Message* message,
                           std::string_view path = "");

}  // namespace kiq
