#!/usr/bin/env bash
# ctest smoke check of the benchmark tools (a few seconds, no Kafka): kiq-bench-load drives the
# bare gRPC server closed-loop and open-loop; it exits non-zero unless calls succeeded with no
# errors, and every key must be found. Then kiq-bench-plot must write a PNG from the ramp.
set -euo pipefail
BIN=$1
WORK=$(mktemp -d /tmp/kiq-bench-smoke.XXXXXX)
"$BIN/kiq-bench-baselines" grpc-server --keys=100 --port_file="$WORK/port" >"$WORK/server.log" 2>&1 &
SERVER=$!
trap 'kill -TERM $SERVER 2>/dev/null || true; wait $SERVER 2>/dev/null || true; rm -rf "$WORK"' EXIT
for _ in $(seq 100); do [ -s "$WORK/port" ] && break; sleep 0.1; done
TARGET="127.0.0.1:$(sed -n 's/^grpc=//p' "$WORK/port")"
out=$("$BIN/kiq-bench-load" --target="$TARGET" --store=s --keys=100 --inflight=8 --duration=1 --warmup=0.2 --label=smoke)
echo "$out"
IFS=, read -r _ _ _ ok errors not_found _ <<<"$out"
[ "$ok" -gt 0 ] && [ "$errors" -eq 0 ] && [ "$not_found" -eq 0 ] || { echo "FAIL: $out"; exit 1; }
"$BIN/kiq-bench-load" --target="$TARGET" --store=s --keys=100 --ramp=200,400 --duration=0.5 --warmup=0.1 \
  --header --label=ramp >"$WORK/ramp.csv"
cat "$WORK/ramp.csv"
[ "$(grep -c '^ramp,0,' "$WORK/ramp.csv")" -eq 2 ] || { echo "FAIL: expected 2 ramp steps"; exit 1; }
"$BIN/kiq-bench-plot" "$WORK/ramp.csv" "$WORK/ramp.png"
head -c 8 "$WORK/ramp.png" | od -An -c | grep -q 'P   N   G' || { echo "FAIL: not a PNG"; exit 1; }
echo "smoke ok"
