#!/usr/bin/env bash
# HTTP Get of one kiq-node, measured with wrk (bench/README.md, "HTTP Get on one node").
#   bench/http_get.sh [--secs=S] [--rounds=R] BUILD_DIR [KIQ_NODE...]
# Starts kiq-dev-kafka (1 broker), produces 60,000 records over 10,000 keys
# (kiq-bench-baselines produce), then one kiq-node per binary given (default:
# BUILD_DIR/node/kiq-node), each with a `count` store of its own application id (all 6 partitions
# local) over that topic, waits until each answers every spot-checked key with its count, and
# runs wrk (bench/peer/get.lua: uniformly random keys, keep-alive) at 1, 16 and 64 connections,
# S seconds each (default 5) after 2 s of warm-up. With several binaries the steps are
# interleaved (A 1, B 1, A 16, B 16, ...) and the whole sweep is repeated R times (default 2),
# so that a change of load on the shared machine lands on every variant alike. Only one node is
# under load at a time; the others sit idle. Prints "variant,round,connections,qps,p50_ms,p99_ms,
# requests,errors" lines (also $KIQ_BENCH_RESULTS/http_get.csv, default bench/results).
# KIQ_BENCH_PERF=1: also perf-record (cpu-clock, call graphs) the first variant under wrk at 64
# connections in an extra step and write http_get-profile.txt next to the CSV.
set -euo pipefail
SECS=5
ROUNDS=2
ARGS=()
for a in "$@"; do
  case "$a" in
    --secs=*) SECS=${a#--secs=} ;;
    --rounds=*) ROUNDS=${a#--rounds=} ;;
    -*) echo "usage: bench/http_get.sh [--secs=S] [--rounds=R] BUILD_DIR [KIQ_NODE...]" >&2; exit 2 ;;
    *) ARGS+=("$a") ;;
  esac
done
[ ${#ARGS[@]} -ge 1 ] || { echo "usage: bench/http_get.sh [--secs=S] [--rounds=R] BUILD_DIR [KIQ_NODE...]" >&2; exit 2; }
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="$(cd "${ARGS[0]}" && pwd)"
NODES=("${ARGS[@]:1}")
[ ${#NODES[@]} -gt 0 ] || NODES=("$BIN/node/kiq-node")
for b in wrk python3 curl; do
  command -v $b >/dev/null || { echo "bench/http_get.sh: $b is not installed" >&2; exit 2; }
done
for b in "${NODES[@]}" "$BIN/bench/kiq-bench-baselines" "$BIN/common/kafka/kiq-dev-kafka"; do
  [ -x "$b" ] || { echo "bench/http_get.sh: $b is not built" >&2; exit 2; }
done
RESULTS="${KIQ_BENCH_RESULTS:-$ROOT/bench/results}"
mkdir -p "$RESULTS"
OUT="$RESULTS/http_get.csv"
WORK=$(mktemp -d /tmp/kiq-http-get.XXXXXX)
RECORDS=60000
KEYS=10000
PIDS=()
DONE=0
cleanup() {
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ "$DONE" = 1 ]; then
    rm -rf "$WORK"
  else
    rm -rf "$WORK"/data-*
    echo "bench/http_get.sh: stopped everything; logs in $WORK" >&2
  fi
}
trap cleanup EXIT
log() { printf '== %s\n' "$*" >&2; }
# shellcheck source=../scripts/wait_for.sh
. "$ROOT/scripts/wait_for.sh"

topics=hget:6
for i in "${!NODES[@]}"; do topics="$topics,hget$i-cnt-changelog:6"; done
"$BIN/common/kafka/kiq-dev-kafka" --brokers=1 --topics="$topics" --bootstrap-file="$WORK/bootstrap" \
  >"$WORK/dev-kafka.log" 2>&1 &
PIDS+=($!)
wait_for "the dev Kafka" 30 test -s "$WORK/bootstrap"
BOOTSTRAP=$(cat "$WORK/bootstrap")
"$BIN/bench/kiq-bench-baselines" produce --bootstrap="$BOOTSTRAP" --topic=hget --records=$RECORDS \
  --keys=$KEYS --label=produce >"$WORK/produce.csv"

HTTP=()
NODE_PIDS=()
for i in "${!NODES[@]}"; do
  log "variant $i: ${NODES[$i]}"
  printf 'application_id: hget%s\nsources: [{topic: hget, value_format: json}]\nstores: [{name: cnt, source: hget, count: {}}]\n' \
    "$i" >"$WORK/hget$i.yaml"
  "${NODES[$i]}" --config="$WORK/hget$i.yaml" --bootstrap-servers="$BOOTSTRAP" --node-id="hget$i" \
    --bind-address=127.0.0.1 --advertised-host=127.0.0.1 --grpc-port=0 --http-port=0 \
    --port-file="$WORK/hget$i.port" --data-dir="$WORK/data-$i" --log-level=warn \
    >"$WORK/node-$i.log" 2>&1 &
  PIDS+=($!)
  NODE_PIDS+=($!)
  wait_for "kiq-node $i to listen" 60 test -s "$WORK/hget$i.port"
  HTTP+=("127.0.0.1:$(sed -n 's/^http=//p' "$WORK/hget$i.port")")
  # Every key was produced RECORDS/KEYS times: wait for a few keys (first, middle, last) to say
  # so, then check 20 more; a node that answers otherwise fails the run.
  for k in 0 $((KEYS / 2)) $((KEYS - 1)); do
    python3 "$ROOT/bench/peer/probe.py" answer --get="http://${HTTP[$i]}/v1/stores/cnt/keys/user-$k" \
      --value-path=entry.json --equals=$((RECORDS / KEYS)) --timeout=120 >/dev/null
  done
  for k in $(seq 7 $((KEYS / 20)) $((KEYS - 1))); do
    v=$(curl -s "http://${HTTP[$i]}/v1/stores/cnt/keys/user-$k" |
      python3 -c 'import json, sys; print(int(json.load(sys.stdin)["entry"]["json"]))' 2>/dev/null || true)
    [ "$v" = $((RECORDS / KEYS)) ] ||
      { echo "bench/http_get.sh: variant $i answered user-$k = $v, produced $((RECORDS / KEYS)) times" >&2; exit 1; }
  done
done

# wrk_step VARIANT CONNECTIONS SECONDS: wrk's CSV figures (qps,p50,p99,requests,errors).
wrk_step() {
  local c=$2 t=2
  [ "$c" -lt 2 ] && t=1
  wrk -t "$t" -c "$c" -d "${3}s" --timeout 5s -s "$ROOT/bench/peer/get.lua" "http://${HTTP[$1]}" -- \
    /v1/stores/cnt/keys/user- $KEYS 2>>"$WORK/wrk.log" | tee -a "$WORK/wrk.log" | sed -n 's/^wrk_csv,//p'
}

echo "variant,round,connections,qps,p50_ms,p99_ms,requests,errors" | tee "$OUT"
for i in "${!NODES[@]}"; do wrk_step "$i" 16 2 >/dev/null; done  # warm-up
for r in $(seq 1 "$ROUNDS"); do
  for c in 1 16 64; do
    for i in "${!NODES[@]}"; do
      line=$(wrk_step "$i" $c "$SECS")
      [ -n "$line" ] || { echo "bench/http_get.sh: wrk failed; see $WORK/wrk.log" >&2; exit 1; }
      case "$line" in *,0) ;; *) echo "bench/http_get.sh: variant $i had errors: $line" >&2; exit 1 ;; esac
      echo "$i,$r,$c,$line" | tee -a "$OUT"
    done
  done
done

if [ "${KIQ_BENCH_PERF:-0}" = 1 ]; then
  log "perf record of variant 0 under wrk at 64 connections"
  perf record -e cpu-clock -F 999 -g -p "${NODE_PIDS[0]}" -o "$WORK/perf.data" >"$WORK/perf.log" 2>&1 &
  perf_pid=$!
  sleep 0.5
  wrk_step 0 64 "$SECS" >/dev/null
  kill -INT $perf_pid
  wait $perf_pid || true
  {
    echo "# self (dso, symbol)"
    # (head closes the pipe early: not a failure)
    perf report -i "$WORK/perf.data" --no-children --sort=dso,symbol --stdio 2>/dev/null |
      grep -E '^ +[0-9]+\.[0-9]+%' | sed 's/ *-* *-* *$//' | head -40 || true
    echo "# children (symbol)"
    perf report -i "$WORK/perf.data" --children --sort=symbol --stdio -g none 2>/dev/null |
      grep -E '^ +[0-9]+\.[0-9]+%' | sed 's/ *$//' | head -60 || true
  } >"$RESULTS/http_get-profile.txt"
  log "profile in $RESULTS/http_get-profile.txt"
fi
DONE=1
