#pragma once

#include <string>

namespace kiq::testing {

// JSON nested `depth` levels, as an attacker would produce it: arrays "[[[...]]]" or objects
// {"a":{"a":...1}}.
inline std::string DeepJsonArray(int depth) {
  return std::string(depth, '[') + std::string(depth, ']');
}
inline std::string DeepJsonObject(int depth) {
  std::string out;
  for (int i = 0; i < depth; ++i) out += R"({"a":)";
  out += "1";
  out += std::string(depth, '}');
  return out;
}

}  // namespace kiq::testing
