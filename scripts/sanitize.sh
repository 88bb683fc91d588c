#!/usr/bin/env bash
# Builds the unit tests of the given ctest labels (default: common router) with AddressSanitizer
# and UndefinedBehaviorSanitizer (clang, -DKIQ_SANITIZE=ON) in their own build directory and runs
# them with ctest; exits non-zero if a test fails or a sanitizer reports (UBSan halts on its
# first finding, ASan's leak check is on). CI runs it as the ctest test sanitize.UnitTests.
#   scripts/sanitize.sh [build-dir] [label...]     (default build-sanitize)
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${1:-build-sanitize}"
shift || true
labels=("$@")
[ ${#labels[@]} -eq 0 ] && labels=(common router)

targets=()
for label in "${labels[@]}"; do
  case "$label" in
    common | router | node | client) targets+=("kiq_${label}_tests") ;;
    *) echo "sanitize.sh: no unit-test binary for label '$label'" >&2; exit 2 ;;
  esac
done

export CCACHE_BASEDIR="$PWD" CCACHE_NOHASHDIR=1
if [ ! -f "$dir/build.ninja" ]; then
  CC=clang CXX=clang++ cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DKIQ_SANITIZE=ON >/dev/null
fi
ninja -C "$dir" -j"$(nproc)" "${targets[@]}"
suppressions="$PWD/scripts/lsan.supp"
cd "$dir"
regex=$(IFS='|'; echo "${labels[*]}")
ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
  LSAN_OPTIONS="suppressions=$suppressions" ctest --output-on-failure -j"$(nproc)" --timeout 600 -L "^($regex)\$"
