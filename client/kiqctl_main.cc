// kiqctl: the command line of kiq. Everything but the process environment is in kiqctl.cc.
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include "client/client.h"
#include "client/kiqctl.h"

int main(int argc, char** argv) {
  const std::vector<std::string> args(argv + 1, argv + argc);
  const char* env_target = std::getenv("KIQ_TARGET");
  const char* env_token = std::getenv("KIQ_TOKEN");
  return kiq::client::RunKiqctl(args, std::cout, std::cerr, kiq::client::Client::Connect,
                                env_target == nullptr ? "" : env_target, absl::Now,
                                env_token == nullptr ? "" : env_token);
}
