#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace kiq::testing {

// A throwaway PKI made at test time with the openssl command line (nothing secret is ever
// committed): two CAs, and for each a server certificate (SAN IP:127.0.0.1, DNS:localhost) and
// a client certificate, every file PEM in `dir`. The second CA is the one a rotation moves to.
struct TestPki {
  std::string dir;
  std::string ca_cert, ca_key;      // CA 1
  std::string server_cert, server_key;
  std::string client_cert, client_key;
  std::string ca2_cert, ca2_key;    // CA 2
  std::string server2_cert, server2_key;
  std::string client2_cert, client2_key;
  // Both CAs in one bundle (the trust during a rotation).
  std::string ca_bundle;
  // A server certificate of CA 1 whose only SAN is DNS:wrong.example (host check fails).
  std::string wrong_host_cert, wrong_host_key;
};

// Makes the PKI in `dir` (which must exist); UNAVAILABLE with openssl's output if it fails.
absl::StatusOr<TestPki> MakeTestPki(const std::string& dir);

// Copies `from` over `to` through a temporary file and a rename (as a Secret update does).
absl::Status ReplaceFile(const std::string& from, const std::string& to);

}  // namespace kiq::testing
