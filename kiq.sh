#!/usr/bin/env bash
# kiq's developer entry point. On a fresh Debian bookworm machine, as root (or with sudo):
#   ./kiq.sh quickstart   install packages, build, run a local cluster with real data and queries
#   ./kiq.sh test         install packages, build everything, run the whole test suite (ctest)
#   ./kiq.sh build        install packages and build only
#   ./kiq.sh bench [--quick]  build and run the benchmark suite (bench/README.md; ~5 min, --quick ~2)
set -euo pipefail
cd "$(dirname "$0")"
BUILD_DIR=${KIQ_BUILD_DIR:-build}

# Every dependency is a Debian package (see README "Dependencies").
PACKAGES=(
  cmake ninja-build ccache g++ clang pkg-config
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  librdkafka-dev librocksdb-dev libabsl-dev prometheus-cpp-dev
  libgtest-dev libgmock-dev zlib1g-dev
  libspdlog-dev libyaml-cpp-dev rapidjson-dev libcpp-httplib-dev libcli11-dev
  libavro-dev libprotoc-dev libcurl4-openssl-dev libssl-dev
  kcat curl
  prometheus python3-yaml
)
# Only for ./kiq.sh bench: the latency plot (bench/run.sh falls back to its own PNG writer)
# and perf for the profiles (KIQ_BENCH_PERF=1).
BENCH_PACKAGES=(gnuplot-nox linux-perf)

install_deps() {
  local missing=()
  for p in "${PACKAGES[@]}" "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  # kubectl renders the Kubernetes manifests in the tests; Debian's comes in kubernetes-client,
  # but some images already carry another kubectl (which kubernetes-client would conflict with).
  command -v kubectl >/dev/null 2>&1 || missing+=(kubernetes-client)
  # Node.js runs the real Schema Registry serializers of the format tests and the Avro example;
  # an image may carry its own (NodeSource's includes npm, and conflicts with Debian's npm).
  command -v node >/dev/null 2>&1 || missing+=(nodejs)
  command -v npm >/dev/null 2>&1 || missing+=(npm)
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "kiq.sh: installing ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
}

# The npm packages of tests/js (package-lock.json): the Schema Registry serializers that write
# the format tests' records, and the Avro example's producer. Reinstalled when the lock changes.
npm_deps() {
  if ! cmp -s tests/js/package-lock.json tests/js/node_modules/.kiq-installed-lock 2>/dev/null; then
    (cd tests/js && npm ci --no-audit --no-fund --loglevel=error &&
      cp package-lock.json node_modules/.kiq-installed-lock)
  fi
}

build() {
  # Paths relative to the checkout in ccache's hashes: every clone of the repository (CI's, a
  # worktree's) reuses the objects another one compiled.
  export CCACHE_BASEDIR="$PWD" CCACHE_NOHASHDIR=1
  cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  ninja -C "$BUILD_DIR" -j"$(nproc)" "$@"
}

case "${1:-}" in
  quickstart)
    install_deps
    build kiq-node kiq-dev-kafka kiqctl
    exec scripts/quickstart.sh "$BUILD_DIR"
    ;;
  test)
    install_deps
    npm_deps
    build
    cd "$BUILD_DIR"
    exec ctest --output-on-failure -j"$(nproc)" --timeout 600
    ;;
  build)
    install_deps
    npm_deps
    build
    ;;
  bench)
    install_deps "${BENCH_PACKAGES[@]}"
    build kiq-node kiq-dev-kafka kiqctl kiq-bench-load kiq-bench-baselines kiq-bench-plot
    shift
    exec bench/run.sh "$@" "$BUILD_DIR"
    ;;
  *)
    echo "usage: ./kiq.sh quickstart|test|build|bench [--quick]" >&2
    exit 2
    ;;
esac
