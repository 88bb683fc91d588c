#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/, clang, ASan + UBSan) in build-fuzz and runs each for
# N seconds (default 60), one at a time, from its seed corpus in fuzz/corpus/<target>/.
# New inputs go to build-fuzz/corpus/<target>/ (the seeds stay as committed); a crash leaves
# its input in build-fuzz/crashes/ and makes the script exit 1 after the remaining targets.
# KIQ_FUZZ_BUILD_DIR replaces build-fuzz (CI's ctest test fuzz.EveryTarget uses its own).
#   scripts/fuzz.sh [seconds-per-target] [target...]
set -euo pipefail

cd "$(dirname "$0")/.."
seconds="${1:-60}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(record_decoder_fuzzer changelog_record_fuzzer http_request_fuzzer
           member_record_fuzzer page_token_fuzzer topology_fuzzer schema_decoder_fuzzer)
fi

out="${KIQ_FUZZ_BUILD_DIR:-build-fuzz}"
export CCACHE_BASEDIR="$PWD" CCACHE_NOHASHDIR=1
if [ ! -f "$out/build.ninja" ]; then
  CC=clang CXX=clang++ cmake -S . -B "$out" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DKIQ_FUZZ=ON -DBUILD_TESTING=OFF
fi
ninja -C "$out" "${targets[@]}"

failed=()
mkdir -p "$out/crashes"
for target in "${targets[@]}"; do
  corpus="$out/corpus/$target"
  mkdir -p "$corpus"
  echo "== $target: ${seconds}s"
  # halt_on_error: UBSan findings are crashes too; an input taking over 10 s or 2 GB is one
  # too. Inputs up to 64 KiB (deep JSON needs room).
  # timeout: the report of an out-of-memory finding (a heap profile, then the input) can take
  # many minutes on a 2 GB heap; past the bound the run still counts as a crash (the ERROR
  # line is in its log), rerun the target with -malloc_limit_mb or -timeout to get the input.
  # LSAN_OPTIONS: libavro's own leak on truncated input (scripts/lsan.supp) is not a finding.
  if ! UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 LSAN_OPTIONS="suppressions=$PWD/scripts/lsan.supp" \
      timeout -k 10 $((seconds + 120)) "$out/fuzz/$target" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
      -max_len=65536 -print_final_stats=1 -artifact_prefix="$out/crashes/$target-" \
      "$corpus" "fuzz/corpus/$target" 2>&1 | tee "$out/$target.log" |
      grep -E '^#[0-9]+[[:space:]]+DONE|ERROR|SUMMARY|stat::number|stat::average' | tail -n 5; then
    :
  fi
  if grep -qE '^==[0-9]+== ?ERROR|SUMMARY: |fuzz check failed|Test unit written' \
      "$out/$target.log"; then
    failed+=("$target")
  fi
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "crashes in: ${failed[*]} (inputs in $out/crashes/, logs in $out/<target>.log)" >&2
  exit 1
fi
echo "no crashes"
