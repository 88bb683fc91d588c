#!/usr/bin/env bash
# A/B of the scan phase (bench/run.sh phase 3) between two builds: two 3-node clusters on one
# dev Kafka, each with the same views count store (60k records over 10k keys, the same node
# flags as run.sh), one running OLD_BUILD's kiq-node, the other NEW_BUILD's; then All, Range and
# the Scan stream through node-1 of each, old and new alternating, ROUNDS rounds of SECS each
# (both clusters idle while the other is measured). Every other binary is NEW_BUILD's.
# Prints CSV on stdout. Usage: bench/scan_ab.sh OLD_BUILD NEW_BUILD [ROUNDS] [SECS]
#   HOLD=1: start the clusters and wait (until $WORK/stop exists), e.g. for perf.
set -euo pipefail
OLD=$1; NEW=$2; ROUNDS=${3:-3}; SECS=${4:-3}
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
WORK=$(mktemp -d /tmp/scan-ab.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$WORK"/data-*
  echo "scan_ab: stopped everything; logs in $WORK" >&2
}
trap cleanup EXIT
. "$ROOT/scripts/wait_for.sh"
"$NEW/common/kafka/kiq-dev-kafka" --brokers=3 --topics=views:6,old-views-changelog:6,new-views-changelog:6 \
  --bootstrap-file="$WORK/bootstrap" >"$WORK/dev-kafka.log" 2>&1 &
PIDS+=($!)
wait_for "dev kafka" 30 test -s "$WORK/bootstrap"
BOOTSTRAP=$(cat "$WORK/bootstrap")
"$NEW/bench/kiq-bench-baselines" produce --bootstrap="$BOOTSTRAP" --topic=views --records=60000 --keys=10000 --label=views >"$WORK/produce.csv"
for v in old new; do
  printf 'application_id: %s\nsources: [{topic: views, value_format: json}]\nstores: [{name: views, source: views, count: {}}]\n' $v >"$WORK/$v.yaml"
  bin=$OLD; [ $v = new ] && bin=$NEW
  for n in 1 2 3; do
    "$bin/node/kiq-node" --config="$WORK/$v.yaml" --bootstrap-servers="$BOOTSTRAP" --node-id="$v-$n" \
      --bind-address=127.0.0.1 --advertised-host=127.0.0.1 --grpc-port=0 --http-port=0 --admin-port=0 \
      --port-file="$WORK/$v-$n.port" --data-dir="$WORK/data-$v-$n" --log-level=warn \
      --kafka-property=session.timeout.ms=6000,heartbeat.interval.ms=500 >"$WORK/$v-$n.log" 2>&1 &
    PIDS+=($!)
    echo $! >"$WORK/$v-$n.pid"
    wait_for "$v-$n" 60 test -s "$WORK/$v-$n.port"
  done
done
grpc_of() { echo "127.0.0.1:$(sed -n 's/^grpc=//p' "$WORK/$1.port")"; }
http_of() { echo "127.0.0.1:$(sed -n 's/^http=//p' "$WORK/$1.port")"; }
for v in old new; do
  has_all() { "$NEW/client/kiqctl" --target "$(grpc_of $v-1)" count views | grep -qx "count: 10000"; }
  wait_for "$v materialized" 120 has_all
  members_ok() { for n in 1 2 3; do curl -s "http://$(http_of $v-$n)/metrics" | grep -q '^kiq_members 3' || return 1; done; }
  wait_for "$v members" 60 members_ok
done
echo "$WORK" >"${TMPDIR:-/tmp}/scan-ab.work"  # for HOLD=1 users: the ports and pids
[ -n "${HOLD:-}" ] && { echo "holding: $WORK"; touch "$WORK/ready"; while [ ! -e "$WORK/stop" ]; do sleep 1; done; exit 0; }
echo "round,variant,label,scans,entries,seconds,entries_per_s"
for r in $(seq 1 "$ROUNDS"); do
  for v in old new; do
    for kind in all range stream; do
      line=$("$NEW/bench/kiq-bench-load" --mode=scan --scan=$kind --target="$(grpc_of $v-1)" --store=views --duration=$SECS --label=$kind)
      echo "$r,$v,$line"
    done
  done
done
