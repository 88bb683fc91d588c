#pragma once

#include <string>
#include <vector>

namespace kiq {

// Lets users spell flags with dashes (--bootstrap-servers) as well as abseil's underscores
// (--bootstrap_servers): rewrites the name part of each "--flag[=value]" argument. Arguments
// after a bare "--" are left alone. The returned strings back the returned argv pointers.
inline std::vector<std::string> NormalizeFlagNames(int argc, char** argv) {
  std::vector<std::string> args(argv, argv + argc);
  for (size_t i = 1; i < args.size(); ++i) {
    std::string& arg = args[i];
    if (arg == "--") break;
    if (arg.size() < 3 || arg[0] != '-' || arg[1] != '-') continue;
    const size_t end = arg.find('=');
    for (size_t k = 2; k < std::min(end, arg.size()); ++k) {
      if (arg[k] == '-') arg[k] = '_';
    }
  }
  return args;
}

}  // namespace kiq
