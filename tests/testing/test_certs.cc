#include "tests/testing/test_certs.h"

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <tuple>

#include "absl/strings/str_cat.h"

namespace kiq::testing {
namespace {

// Runs a shell command, its output to `log`; UNAVAILABLE with the log if it fails.
absl::Status Run(const std::string& command, const std::string& log) {
  const std::string line = absl::StrCat(command, " >>", log, " 2>&1");
  if (std::system(line.c_str()) != 0) {
    std::ifstream in(log);
    std::ostringstream text;
    text << in.rdbuf();
    return absl::UnavailableError(absl::StrCat("`", command, "` failed: ", text.str()));
  }
  return absl::OkStatus();
}

absl::Status MakeCa(const std::string& dir, const std::string& name, const std::string& log) {
  return Run(absl::StrCat("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes",
                          " -days 2 -subj /CN=kiq-test-", name, " -keyout ", dir, "/", name,
                          ".key -out ", dir, "/", name, ".crt",
                          " -addext basicConstraints=critical,CA:TRUE",
                          " -addext keyUsage=critical,keyCertSign,cRLSign"),
             log);
}

// A leaf signed by `ca`: `usage` serverAuth or clientAuth, `san` e.g. "IP:127.0.0.1".
absl::Status MakeLeaf(const std::string& dir, const std::string& ca, const std::string& name,
                      const std::string& usage, const std::string& san, const std::string& log) {
  const std::string ext = absl::StrCat(dir, "/", name, ".ext");
  {
    std::ofstream out(ext);
    out << "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\n"
        << "extendedKeyUsage=" << usage << "\n";
    if (!san.empty()) out << "subjectAltName=" << san << "\n";
  }
  if (absl::Status s = Run(absl::StrCat("openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256",
                                        " -nodes -subj /CN=", name, " -keyout ", dir, "/", name,
                                        ".key -out ", dir, "/", name, ".csr"),
                           log);
      !s.ok()) {
    return s;
  }
  return Run(absl::StrCat("openssl x509 -req -in ", dir, "/", name, ".csr -CA ", dir, "/", ca,
                          ".crt -CAkey ", dir, "/", ca, ".key -CAcreateserial -days 2 -out ", dir,
                          "/", name, ".crt -extfile ", ext),
             log);
}

}  // namespace

absl::StatusOr<TestPki> MakeTestPki(const std::string& dir) {
  const std::string log = dir + "/openssl.log";
  // Node certificates serve and dial (mTLS between peers): both usages.
  const std::string both = "serverAuth,clientAuth";
  const std::string san = "IP:127.0.0.1,DNS:localhost";
  for (const char* ca : {"ca", "ca2"}) {
    if (absl::Status s = MakeCa(dir, ca, log); !s.ok()) return s;
  }
  for (const auto& [ca, server, client] :
       {std::tuple<std::string, std::string, std::string>{"ca", "server", "client"},
        {"ca2", "server2", "client2"}}) {
    if (absl::Status s = MakeLeaf(dir, ca, server, both, san, log); !s.ok()) return s;
    if (absl::Status s = MakeLeaf(dir, ca, client, "clientAuth", "", log); !s.ok()) return s;
  }
  if (absl::Status s = MakeLeaf(dir, "ca", "wrong_host", both, "DNS:wrong.example", log);
      !s.ok()) {
    return s;
  }
  {
    std::ofstream bundle(dir + "/ca_bundle.crt", std::ios::binary | std::ios::trunc);
    for (const char* ca : {"/ca.crt", "/ca2.crt"}) bundle << std::ifstream(dir + ca).rdbuf();
    if (!bundle) return absl::UnavailableError(absl::StrCat("cannot write ", dir, "/ca_bundle.crt"));
  }
  TestPki pki;
  pki.dir = dir;
  auto path = [&dir](const std::string& name) { return absl::StrCat(dir, "/", name); };
  pki.ca_cert = path("ca.crt");
  pki.ca_key = path("ca.key");
  pki.server_cert = path("server.crt");
  pki.server_key = path("server.key");
  pki.client_cert = path("client.crt");
  pki.client_key = path("client.key");
  pki.ca2_cert = path("ca2.crt");
  pki.ca2_key = path("ca2.key");
  pki.server2_cert = path("server2.crt");
  pki.server2_key = path("server2.key");
  pki.client2_cert = path("client2.crt");
  pki.client2_key = path("client2.key");
  pki.ca_bundle = path("ca_bundle.crt");
  pki.wrong_host_cert = path("wrong_host.crt");
  pki.wrong_host_key = path("wrong_host.key");
  return pki;
}

absl::Status ReplaceFile(const std::string& from, const std::string& to) {
  std::ifstream in(from, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", from));
  const std::string tmp = to + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << in.rdbuf();
    if (!out) return absl::UnavailableError(absl::StrCat("cannot write ", tmp));
  }
  if (std::rename(tmp.c_str(), to.c_str()) != 0) {
    return absl::UnavailableError(absl::StrCat("cannot rename ", tmp, " to ", to));
  }
  return absl::OkStatus();
}

}  // namespace kiq::testing
