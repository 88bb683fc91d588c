#!/usr/bin/env bash
# ctest smoke check of the benchmark tools (a few seconds, no Kafka): kiq-bench-load drives the
# bare gRPC server closed-loop and open-loop; it exits non-zero unless calls succeeded with no
# errors, and every key must be found. Then kiq-bench-plot must write a PNG from the ramp.
# Then the Avro records kiq-bench-baselines produces (its schema registered with the test
# registry, tests/js/registry.js) must decode with @kafkajs/confluent-schema-registry
# (tests/js/node_modules, installed by ./kiq.sh) to the same values as its JSON records.
set -euo pipefail
BIN=$1
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
WORK=$(mktemp -d /tmp/kiq-bench-smoke.XXXXXX)
PIDS=()
stop_all() {
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap stop_all EXIT
"$BIN/kiq-bench-baselines" grpc-server --keys=100 --port_file="$WORK/port" >"$WORK/server.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do [ -s "$WORK/port" ] && break; sleep 0.1; done
TARGET="127.0.0.1:$(sed -n 's/^grpc=//p' "$WORK/port")"
out=$("$BIN/kiq-bench-load" --target="$TARGET" --store=s --keys=100 --inflight=8 --duration=1 --warmup=0.2 --label=smoke)
echo "$out"
IFS=, read -r _ _ _ ok errors not_found _ <<<"$out"
[ "$ok" -gt 0 ] && [ "$errors" -eq 0 ] && [ "$not_found" -eq 0 ] || { echo "FAIL: $out"; exit 1; }
# The batch mode's CSV (--batch=1: Gets; the bare server has no GetMany).
out=$("$BIN/kiq-bench-load" --mode=batch --batch=1 --target="$TARGET" --store=s --keys=100 --inflight=4 \
  --duration=0.5 --warmup=0.1 --label=single)
echo "$out"
IFS=, read -r label _ per_call calls errors not_found calls_s keys_s _ <<<"$out"
[ "$label" = single ] && [ "$per_call" -eq 1 ] && [ "$calls" -gt 0 ] && [ "$errors" -eq 0 ] &&
  [ "$not_found" -eq 0 ] && [ "$calls_s" = "$keys_s" ] || { echo "FAIL: batch mode: $out"; exit 1; }
"$BIN/kiq-bench-load" --target="$TARGET" --store=s --keys=100 --ramp=200,400 --duration=0.5 --warmup=0.1 \
  --header --label=ramp >"$WORK/ramp.csv"
cat "$WORK/ramp.csv"
[ "$(grep -c '^ramp,0,' "$WORK/ramp.csv")" -eq 2 ] || { echo "FAIL: expected 2 ramp steps"; exit 1; }
"$BIN/kiq-bench-plot" "$WORK/ramp.csv" "$WORK/ramp.png"
head -c 8 "$WORK/ramp.png" | od -An -c | grep -q 'P   N   G' || { echo "FAIL: not a PNG"; exit 1; }

[ -d "$ROOT/tests/js/node_modules/@kafkajs/confluent-schema-registry" ] ||
  { echo "FAIL: tests/js/node_modules is missing (./kiq.sh installs it: cd tests/js && npm ci)"; exit 1; }
node "$ROOT/tests/js/registry.js" --port-file="$WORK/registry.port" >"$WORK/registry.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do [ -s "$WORK/registry.port" ] && break; sleep 0.1; done
[ -s "$WORK/registry.port" ] || { echo "FAIL: the test registry did not start"; cat "$WORK/registry.log"; exit 1; }
REGISTRY="http://127.0.0.1:$(cat "$WORK/registry.port")"
"$BIN/kiq-bench-baselines" encode --format=avro --registry="$REGISTRY" --topic=smoke --records=300 --keys=37 \
  >"$WORK/avro.txt"
[ "$(wc -l <"$WORK/avro.txt")" -eq 300 ] || { echo "FAIL: expected 300 encoded records"; exit 1; }
head -2 "$WORK/avro.txt"
NODE_PATH="$ROOT/tests/js/node_modules" node "$ROOT/bench/avro_check.js" "$REGISTRY" smoke-value "$WORK/avro.txt"
echo "smoke ok"
