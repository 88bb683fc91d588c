#!/usr/bin/env bash
# kiq's benchmark suite (bench/README.md). Usage: bench/run.sh [--quick] [--only=restore|ingest] [BUILD_DIR]
# Starts a dev Kafka and kiq-nodes on 127.0.0.1 (ephemeral ports), loads data, measures each
# kiq figure against a baseline measured in the same run, stops everything it started by PID,
# prints the table and writes bench/results/*.csv and bench/results/latency.png.
#   --only=restore: only the 3-node query cluster and its restore phase (4), for iterating on
#   restore; writes restore.csv and restore.txt (the ratio), no table.
#   --only=ingest: only the ingestion phases (1, with the memory phase 5), for iterating on
#   ingestion; writes rocksdb_write.csv, ingest.csv, memory.csv and ingest.txt (the ratios), no
#   table. KIQ_BENCH_NODE_FLAGS (e.g. --ingest-cache-bytes=0) are added to every node's flags.
#   bench/run.sh --peer <kafka-dist-dir> <bootstrap> [BUILD_DIR]: instead, kiq side by side with
#   a Kafka Streams peer on a real broker (bench/peer/peer.sh; bench/README.md).
set -euo pipefail
QUICK=0
BUILD_DIR=build
PEER=()
ONLY=""
USAGE="usage: bench/run.sh [--quick] [--only=restore|ingest] [BUILD_DIR] | bench/run.sh --peer <kafka-dist-dir> <bootstrap> [BUILD_DIR]"
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --only=restore) ONLY=restore ;;
    --only=ingest) ONLY=ingest ;;
    --peer)
      [ $# -ge 3 ] || { echo "$USAGE" >&2; exit 2; }
      [ -d "$2" ] || { echo "bench/run.sh: --peer: $2 is not a directory (a Kafka distribution)" >&2; exit 2; }
      PEER=("$2" "$3")
      shift 2
      ;;
    -*) echo "$USAGE" >&2; exit 2 ;;
    *) BUILD_DIR=$1 ;;
  esac
  shift
done
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="$(cd "$BUILD_DIR" && pwd)"
RESULTS="${KIQ_BENCH_RESULTS:-$ROOT/bench/results}"  # where the CSVs, table and plot go
mkdir -p "$RESULTS"
WORK=$(mktemp -d /tmp/kiq-bench.XXXXXX)
LOAD="$BIN/bench/kiq-bench-load"
BASE="$BIN/bench/kiq-bench-baselines"
KIQCTL="$BIN/client/kiqctl"
PIDS=()

cleanup() {
  for pid in "${PIDS[@]}"; do kill -CONT "$pid" 2>/dev/null || true; kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  echo "bench: stopped everything; logs in $WORK" >&2
}
trap cleanup EXIT

if [ $QUICK = 1 ]; then
  INGEST=200000; ROUND=100000; TABLE_KEYS=200000; GET_SECS=2; RAMP_SECS=2; SCAN_SECS=2; FRESH=1000
  RAMP=2000,5000,10000,15000,20000,25000,30000,40000
else
  INGEST=1000000; ROUND=100000; TABLE_KEYS=1000000; GET_SECS=5; RAMP_SECS=4; SCAN_SECS=5; FRESH=2000
  RAMP=2000,4000,6000,8000,10000,12500,15000,17500,20000,22500,25000,27500,30000,35000,40000,50000
fi
# 10k keys, 6 records each: fits the dev Kafka's ~5 MiB per partition. KIQ_BENCH_QUERY_RECORDS
# changes it (e.g. 180000 for a restore of ~3x the changelog; stay below ~250k records).
QUERY_RECORDS=${KIQ_BENCH_QUERY_RECORDS:-60000}
# KIQ_BENCH_PERF=1: also record a perf profile of the measured process in each phase (a
# separate run: perf's overhead skews the figures) and write bench/results/profile-*.txt.
# KIQ_BENCH_PERF_FREQ: its sampling rate (Hz, default 999; a restore of the query store takes
# ~10 ms, so profile it at e.g. 20000).
PERF=${KIQ_BENCH_PERF:-0}
PERF_PID=""
perf_start() {
  [ "$PERF" = 1 ] || return 0
  perf record -F "${KIQ_BENCH_PERF_FREQ:-999}" -g -p "$2" -o "$WORK/perf-$1.data" >"$WORK/perf-$1.log" 2>&1 &
  PERF_PID=$!
  PERF_NAME=$1
  sleep 0.5
}
# perf_table LINES SUFFIX REPORT_ARGS...: the top LINES rows of a perf report of the phase just
# recorded, without perf's column padding, into $RESULTS/profile-<phase>SUFFIX.txt.
perf_table() {
  local lines=$1 suffix=$2
  shift 2
  perf report -i "$WORK/perf-$PERF_NAME.data" "$@" --stdio 2>/dev/null |
    grep -E '^ +[0-9]+\.[0-9]+%' | sed -E 's/ {2,}[- ]*$//' | head -"$lines" \
    >"$RESULTS/profile-$PERF_NAME$suffix.txt" || true
}
perf_stop() {
  [ "$PERF" = 1 ] && [ -n "$PERF_PID" ] || return 0
  kill -INT "$PERF_PID" 2>/dev/null || true
  wait "$PERF_PID" 2>/dev/null || true
  PERF_PID=""
  perf_table 40 "" --no-children --sort=dso,symbol
  perf_table 60 -children --children --sort=symbol -g none
  # Which threads were on CPU (the ingestion thread, librdkafka's, gRPC's): samples by thread name.
  perf_table 30 -threads --no-children --sort=comm -g none
}
log() { printf '== %s\n' "$*" >&2; }

# shellcheck source=../scripts/wait_for.sh
. "$ROOT/scripts/wait_for.sh"

if [ ${#PEER[@]} -gt 0 ]; then
  # shellcheck source=peer/peer.sh
  . "$ROOT/bench/peer/peer.sh"
  peer_main "${PEER[@]}"
  exit 0
fi

# ---- the dev Kafka, with every topic the run needs (it cannot create topics) ----
"$BIN/common/kafka/kiq-dev-kafka" --brokers=3 \
  --topics=ing_count:6,ing_count_2threads:6,ing_count_noreplay:6,ing_sum:6,ing_sum_avro:6,bi-sum_avro-amt-changelog:6,ing_table:6,views:6,sb0:6,sb1:6,sb0-views-changelog:6,sb1-views-changelog:6,bi-count-cnt-changelog:6,bi-count_noreplay-cnt-changelog:6,bi-count_2threads-cnt-changelog:6,bi-sum-amt-changelog:6,bi-table-tbl-changelog:6,fresh:6,fresh-tbl-changelog:6,bq-views-changelog:6 \
  --bootstrap-file="$WORK/bootstrap" >"$WORK/dev-kafka.log" 2>&1 &
PIDS+=($!)
wait_for "the dev Kafka" 30 test -s "$WORK/bootstrap"
BOOTSTRAP=$(cat "$WORK/bootstrap")
# ---- the test Schema Registry (tests/js/registry.js), for the Avro ingestion ----
node "$ROOT/tests/js/registry.js" --port-file="$WORK/registry.port" >"$WORK/registry.log" 2>&1 &
PIDS+=($!)
wait_for "the test Schema Registry" 30 test -s "$WORK/registry.port"
REGISTRY="http://127.0.0.1:$(cat "$WORK/registry.port")"

cat >"$WORK/bi-count.yaml" <<EOF
application_id: bi-count
sources: [{topic: ing_count, value_format: json}]
stores: [{name: cnt, source: ing_count, count: {}}]
EOF
# The same count store on a node that keeps no subscribe replay log after gaining partitions
# (--subscribe-replay-window=0s): what the default window costs while it is open.
cat >"$WORK/bi-count_noreplay.yaml" <<EOF
application_id: bi-count_noreplay
sources: [{topic: ing_count_noreplay, value_format: json}]
stores: [{name: cnt, source: ing_count_noreplay, count: {}}]
EOF
# The same count store on a node with two ingestion threads (--ingest-threads=2): 1 vs 2.
cat >"$WORK/bi-count_2threads.yaml" <<EOF
application_id: bi-count_2threads
sources: [{topic: ing_count_2threads, value_format: json}]
stores: [{name: cnt, source: ing_count_2threads, count: {}}]
EOF
cat >"$WORK/bi-sum.yaml" <<EOF
application_id: bi-sum
sources: [{topic: ing_sum, value_format: json}]
stores: [{name: amt, source: ing_sum, sum: {field: amount, type: int64}}]
EOF
# The same sum store over the same records written as Avro (Confluent's wire format; the writer
# schema fetched by id from the registry): what decoding Avro costs against JSON.
cat >"$WORK/bi-sum_avro.yaml" <<EOF
application_id: bi-sum_avro
schema_registry: {url: "$REGISTRY"}
sources: [{topic: ing_sum_avro, value_format: avro}]
stores: [{name: amt, source: ing_sum_avro, sum: {field: amount, type: int64}}]
EOF
cat >"$WORK/bi-table.yaml" <<EOF
application_id: bi-table
sources: [{topic: ing_table, value_format: json}]
stores: [{name: tbl, source: ing_table, table: {}}]
EOF
cat >"$WORK/bq.yaml" <<EOF
application_id: bq
sources: [{topic: views, value_format: json}]
stores: [{name: views, source: views, count: {}}]
EOF

# start_node NAME CONFIG [extra flags...]: starts a kiq-node, sets NODE_PID.
start_node() {
  local name=$1 config=$2
  shift 2
  "$BIN/node/kiq-node" --config="$config" --bootstrap-servers="$BOOTSTRAP" --node-id="$name" \
    --bind-address=127.0.0.1 --advertised-host=127.0.0.1 --grpc-port=0 --http-port=0 --admin-port=0 \
    --port-file="$WORK/$name.port" --data-dir="$WORK/data-$name" --log-level=warn \
    ${KIQ_BENCH_NODE_FLAGS:-} "$@" \
    >"$WORK/$name.log" 2>&1 &
  NODE_PID=$!
  PIDS+=($NODE_PID)
  wait_for "$name to listen" 60 test -s "$WORK/$name.port"
}
grpc_of() { echo "127.0.0.1:$(sed -n 's/^grpc=//p' "$WORK/$1.port")"; }
http_of() { echo "127.0.0.1:$(sed -n 's/^http=//p' "$WORK/$1.port")"; }
stop_pid() { kill -TERM "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }
# metric NAME HOSTPORT MATCH: sum of a metric's samples whose labels contain MATCH.
metric() {
  curl -s "http://$2/metrics" | awk -v m="$1" -v f="$3" '
    index($0, m) == 1 && (substr($0, length(m) + 1, 1) == "{" || substr($0, length(m) + 1, 1) == " ") &&
    index($0, f) > 0 { s += $NF } END { printf "%.6f\n", s + 0 }'
}

# --only=restore: phases 1, 5 and 9 skipped (not indented: the phases read as before).
if [ "$ONLY" != restore ]; then
# ---- 1. ingestion ----
log "ingestion baseline: bare RocksDB WriteBatch loop, $INGEST records over 10k keys"
"$BASE" rocksdb-write --dir="$WORK/rocksdb-write" --records=$INGEST --keys=10000 --label=rocksdb_write \
  >"$RESULTS/rocksdb_write.csv"
echo "label,records,node_seconds,node_rps,bare_consume_seconds,bare_consume_rps" >"$RESULTS/ingest.csv"
for kind in count:cnt:10000 count_2threads:cnt:10000 count_noreplay:cnt:10000 sum:amt:10000 sum_avro:amt:10000 table:tbl:$TABLE_KEYS; do
  IFS=: read -r k store keys <<<"$kind"
  log "ingestion: $k store from $INGEST records ($keys keys), rounds of $ROUND (node paused while each round is produced)"
  extra=() format=(--format=json)
  [ "$k" = count_noreplay ] && extra=(--subscribe-replay-window=0s)
  [ "$k" = count_2threads ] && extra=(--ingest-threads=2)
  [ "$k" = sum_avro ] && format=(--format=avro --registry="$REGISTRY")
  start_node "bi-$k" "$WORK/bi-$k.yaml" "${extra[@]}"
  [ "$k" = count ] && perf_start ingest-count $NODE_PID
  "$BASE" ingest --bootstrap="$BOOTSTRAP" --topic="ing_$k" --records=$INGEST --round=$ROUND --keys="$keys" \
    --node_pid=$NODE_PID --metrics="$(http_of "bi-$k")" --store="$store" --label="$k" "${format[@]}" \
    >>"$RESULTS/ingest.csv" 2>>"$WORK/ingest.log"
  perf_stop
  if [ "$k" = sum ] || [ "$k" = sum_avro ]; then
    # Both formats must give the right answer, not only the same rate: user-42's records all
    # have amount 42 (i % 100 with i % 10000 = 42), and no record may have been refused.
    sum_ok() {
      [ "$("$KIQCTL" --target "$(grpc_of "bi-$k")" get amt user-42 | awk 'NR == 2 {print $2}')" = $((42 * INGEST / 10000)) ]
    }
    wait_for "the $k store: user-42 = $((42 * INGEST / 10000))" 30 sum_ok
    [ "$(metric kiq_bad_records_total "$(http_of "bi-$k")" "")" = 0.000000 ] ||
      { echo "bench: the $k store refused records (kiq_bad_records_total); see $WORK/bi-$k.log" >&2; exit 1; }
  fi
  if [ "$k" = table ]; then
    # ---- 5. memory ----
    rss=$(awk '/^VmRSS/ {print $2}' /proc/$NODE_PID/status)
    hwm=$(awk '/^VmHWM/ {print $2}' /proc/$NODE_PID/status)
    printf 'keys,vmrss_kb,vmhwm_kb\n%s,%s,%s\n' "$keys" "$rss" "$hwm" >"$RESULTS/memory.csv"
  fi
  stop_pid $NODE_PID
done

if [ "$ONLY" = ingest ]; then
  # Each store's node rate against the bare WriteBatch loop and the bare consumer of the same
  # run; the memory phase's VmHWM.
  awk -F, -v rw="$(cut -d, -f4 "$RESULTS/rocksdb_write.csv")" 'NR > 1 {
      printf "ingest %-15s %9.0f rec/s  %.2fx rocksdb_write (%.0f rec/s)  %.2fx bare consume\n", $1, $4, $4 / rw, rw, $4 / $6 }' \
    "$RESULTS/ingest.csv" | tee "$RESULTS/ingest.txt"
  awk -F, 'NR == 2 { printf "memory: %d table keys, VmRSS %.0f MB, VmHWM %.0f MB\n", $1, $2 / 1024, $3 / 1024 }' \
    "$RESULTS/memory.csv" | tee -a "$RESULTS/ingest.txt"
  exit 0  # the trap stops the dev Kafka
fi

# ---- 9. freshness: producer delivery report -> first Get that sees the record ----
# One node with a table store; $FRESH single records (unique keys), one every 2 ms, each
# polled with Get (no min_position) from its delivery report until found; a bare consumer of
# the same topic with the same fetch.wait.max.ms is the baseline. The dev Kafka holds a fetch
# up to fetch.wait.max.ms (librdkafka's default 500 ms) when there is no data: the node is
# started with 5 ms, as a latency-minded deployment would set it.
cat >"$WORK/fresh.yaml" <<EOF
application_id: fresh
sources: [{topic: fresh, value_format: json}]
stores: [{name: tbl, source: fresh, table: {}}]
EOF
log "freshness: $FRESH single records, one every 2 ms, delivery report -> first Get that sees each"
start_node fresh "$WORK/fresh.yaml" --kafka-property=fetch.wait.max.ms=5
echo "label,records,interval_ms,get_p50_ms,get_p99_ms,get_max_ms,consume_p50_ms,consume_p99_ms,consume_max_ms,get_unseen,consume_unseen,gets,get_errors" \
  >"$RESULTS/fresh.csv"
"$BASE" fresh --bootstrap="$BOOTSTRAP" --topic=fresh --records=$FRESH --interval_ms=2 --target="$(grpc_of fresh)" \
  --metrics="$(http_of fresh)" --store=tbl --label=fresh >>"$RESULTS/fresh.csv"
stop_pid $NODE_PID

fi  # --only=restore

# ---- the 3-node query cluster ----
log "query cluster: 3 nodes, views count store, $QUERY_RECORDS records over 10k keys"
"$BASE" produce --bootstrap="$BOOTSTRAP" --topic=views --records=$QUERY_RECORDS --keys=10000 --label=views \
  >"$WORK/produce.csv"
NODES=()
for n in 1 2 3; do
  start_node "bq-$n" "$WORK/bq.yaml" --kafka-property=session.timeout.ms=6000,heartbeat.interval.ms=500
  NODES+=($NODE_PID)
done
has_all() { "$KIQCTL" --target "$(grpc_of bq-1)" count views | grep -qx "count: 10000"; }
wait_for "the cluster to materialize 10k keys" 120 has_all
# Every node must be in every other's routing table before Get is measured.
members_ok() { for n in 1 2 3; do [ "$(metric kiq_members "$(http_of bq-$n)" "")" = "3.000000" ] || return 1; done; }
wait_for "all 3 members" 60 members_ok
# --only=restore: straight from the settled cluster to the restore (phases 2, 6 and 3 skipped;
# not indented, like the other --only block, to keep the phases readable).
if [ "$ONLY" != restore ]; then
"$BASE" grpc-server --keys=10000 --port_file="$WORK/bare.port" >"$WORK/bare.log" 2>&1 &
BARE_PID=$!
PIDS+=($BARE_PID)
wait_for "the bare gRPC server" 20 test -s "$WORK/bare.port"
BARE="127.0.0.1:$(sed -n 's/^grpc=//p' "$WORK/bare.port")"

# ---- 2. point queries ----
echo "label,inflight,offered_qps,ok,errors,not_found,qps,p50_ms,p99_ms,p999_ms" >"$RESULTS/get.csv"
for inflight in 1 16 64; do
  log "Get, $inflight in flight: bare server, local, forwarded"
  "$LOAD" --target="$BARE" --store=views --inflight=$inflight --duration=$GET_SECS --label=bare >>"$RESULTS/get.csv"
  [ $inflight = 64 ] && perf_start get-local "${NODES[0]}"
  "$LOAD" --target="$(grpc_of bq-1)" --store=views --key_set=local --inflight=$inflight --duration=$GET_SECS \
    --label=local >>"$RESULTS/get.csv"
  perf_stop
  [ $inflight = 64 ] && perf_start get-forwarded "${NODES[0]}"
  "$LOAD" --target="$(grpc_of bq-1)" --store=views --key_set=remote --inflight=$inflight --duration=$GET_SECS \
    --label=forwarded >>"$RESULTS/get.csv"
  perf_stop
done

# ---- 10. GetMany: keys/s of 64-key batches vs single Gets through one node of three ----
# Keys of every partition (key_set=all: about a third owned by node-1, the rest by the two
# others), closed loop, the same number of calls in flight for both, the same driver and key
# choice (--batch=1 is the Get RPC): one GetMany costs one call to node-1 and at most one
# forward to each other owner, where 64 Gets cost 64 calls and about 43 forwards.
echo "label,inflight,keys_per_call,calls,errors,not_found,calls_per_s,keys_per_s,p50_ms,p99_ms,p999_ms" \
  >"$RESULTS/getmany.csv"
for inflight in 16 64; do
  log "GetMany 64 keys/call vs single Gets through node-1, $inflight in flight"
  "$LOAD" --mode=batch --batch=1 --target="$(grpc_of bq-1)" --store=views --inflight=$inflight \
    --duration=$GET_SECS --label=single >>"$RESULTS/getmany.csv"
  [ $inflight = 64 ] && perf_start getmany "${NODES[0]}"
  "$LOAD" --mode=batch --batch=64 --target="$(grpc_of bq-1)" --store=views --inflight=$inflight \
    --duration=$GET_SECS --label=getmany >>"$RESULTS/getmany.csv"
  perf_stop
done

# ---- 6. latency under rising load (open loop, node-1's own keys; the bare server as reference) ----
log "Get under rising offered load through node-1: $RAMP"
echo "label,inflight,offered_qps,ok,errors,not_found,qps,p50_ms,p99_ms,p999_ms" >"$RESULTS/ramp.csv"
"$LOAD" --target="$(grpc_of bq-1)" --store=views --key_set=local --ramp=$RAMP --duration=$RAMP_SECS --knee_p99_ms=50 \
  --label=ramp >>"$RESULTS/ramp.csv"
"$LOAD" --target="$BARE" --store=views --ramp=$RAMP --duration=$RAMP_SECS --knee_p99_ms=50 \
  --label=ramp_bare >"$WORK/ramp_bare.csv"
cat "$WORK/ramp_bare.csv" >>"$RESULTS/ramp.csv"
stop_pid $BARE_PID

# ---- 3. scans ----
log "scans through node-1 vs a local RocksDB iterator"
echo "label,scans,entries,seconds,entries_per_s" >"$RESULTS/scan.csv"
perf_start scan-all "${NODES[0]}"
"$LOAD" --mode=scan --scan=all --target="$(grpc_of bq-1)" --store=views --duration=$SCAN_SECS --label=all >>"$RESULTS/scan.csv"
perf_stop
"$LOAD" --mode=scan --scan=range --target="$(grpc_of bq-1)" --store=views --duration=$SCAN_SECS --label=range >>"$RESULTS/scan.csv"
"$LOAD" --mode=scan --scan=stream --target="$(grpc_of bq-1)" --store=views --duration=$SCAN_SECS --label=stream >>"$RESULTS/scan.csv"
"$BASE" rocksdb-iter --dir="$WORK/rocksdb-iter" --keys=10000 --duration=$SCAN_SECS --label=rocksdb_iter >>"$RESULTS/scan.csv"

fi  # --only=restore

# ---- 4. restore: kill node-3, its partitions are rebuilt from the changelog elsewhere ----
# The changelog partitions that move: node-3's (the bare consumer reads the same ones).
MOVED=$("$KIQCTL" --target "$(grpc_of bq-1)" metadata | awk '$1 == "bq-3" { gsub(/[^0-9,]/, "", $4); print $4 }')
[ -n "$MOVED" ] || { echo "bench: node-3 owns no partitions" >&2; exit 1; }
log "restore: killing node-3 (partitions $MOVED)"
r0=0; d0=0
for n in 1 2; do
  r0=$(echo "$r0 + $(metric kiq_restore_records_total "$(http_of bq-$n)" "")" | bc -l)
  d0=$(echo "$d0 + $(metric kiq_restore_duration_seconds_sum "$(http_of bq-$n)" "")" | bc -l)
done
perf_start restore "${NODES[0]}"
kill -KILL "${NODES[2]}"
wait "${NODES[2]}" 2>/dev/null || true
active_6() {
  local a=0
  for n in 1 2; do a=$(echo "$a + $(metric kiq_partitions "$(http_of bq-$n)" 'state="active"')" | bc -l); done
  [ "$(printf '%.0f' "$a")" = 6 ]
}
t0=$(date +%s.%N)
wait_for "node-3's partitions to be active elsewhere" 120 active_6
t1=$(date +%s.%N)
perf_stop
r1=0; d1=0
for n in 1 2; do
  r1=$(echo "$r1 + $(metric kiq_restore_records_total "$(http_of bq-$n)" "")" | bc -l)
  d1=$(echo "$d1 + $(metric kiq_restore_duration_seconds_sum "$(http_of bq-$n)" "")" | bc -l)
done
"$BASE" consume --bootstrap="$BOOTSTRAP" --topic=bq-views-changelog --only_partitions="$MOVED" \
  --label=changelog_consume >"$WORK/consume.csv"
IFS=, read -r _ c_records c_secs c_rps <"$WORK/consume.csv"
printf 'restore_records,restore_seconds,failover_wall_seconds,changelog_records,bare_consume_seconds,bare_consume_rps\n%s,%s,%s,%s,%s,%s\n' \
  "$(printf '%.0f' "$(echo "$r1 - $r0" | bc -l)")" "$(printf '%.3f' "$(echo "$d1 - $d0" | bc -l)")" \
  "$(printf '%.3f' "$(echo "$t1 - $t0" | bc -l)")" "$c_records" "$c_secs" "$c_rps" >"$RESULTS/restore.csv"

if [ "$ONLY" = restore ]; then
  awk -F, 'NR == 2 { r = $2 > 0 ? $1 / $2 : 0; printf "restore %d changelog rec: %.0f rec/s vs bare consume of %d rec %.0f rec/s = %.2fx (failover %.1f s)\n", $1, r, $4, $6, r / $6, $3 }' \
    "$RESULTS/restore.csv" | tee "$RESULTS/restore.txt"
  exit 0  # the trap stops the nodes and the dev Kafka
fi
stop_pid "${NODES[0]}"
stop_pid "${NODES[1]}"

# ---- 8. TLS: what it costs on local Get QPS ----
# One node of the query topology (all 6 partitions, restored from the changelog) measured in
# plaintext, then restarted on the same data dir with TLS on its gRPC port (certificates made
# here with openssl), measured again by the same kiq-bench-load with --tls_ca_file: closed loop,
# 16 and 64 in flight, every key local. Writes tls.csv (the get.csv columns).
bench_tls() {
  log "TLS vs plaintext: local Get QPS on one node, 16 and 64 in flight"
  local pki="$WORK/tls"
  mkdir -p "$pki"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=kiq-bench-ca \
    -keyout "$pki/ca.key" -out "$pki/ca.crt" >"$pki/openssl.log" 2>&1
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n' >"$pki/ext"
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=bt -keyout "$pki/tls.key" \
    -out "$pki/tls.csr" >>"$pki/openssl.log" 2>&1
  openssl x509 -req -in "$pki/tls.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial -days 1 \
    -extfile "$pki/ext" -out "$pki/tls.crt" >>"$pki/openssl.log" 2>&1
  local tls_flags=(--tls-cert-file="$pki/tls.crt" --tls-key-file="$pki/tls.key" --tls-ca-file="$pki/ca.crt")
  echo "label,inflight,offered_qps,ok,errors,not_found,qps,p50_ms,p99_ms,p999_ms" >"$RESULTS/tls.csv"
  local mode
  for mode in plaintext tls; do
    local flags=() ctl=() load=()
    if [ $mode = tls ]; then
      flags=("${tls_flags[@]}"); ctl=(--tls-ca-file "$pki/ca.crt"); load=(--tls_ca_file="$pki/ca.crt")
    fi
    rm -f "$WORK/bt.port"
    start_node bt "$WORK/bq.yaml" --kafka-property=session.timeout.ms=6000,heartbeat.interval.ms=500 "${flags[@]}"
    local pid=$NODE_PID
    bt_has_all() { "$KIQCTL" --target "$(grpc_of bt)" "${ctl[@]}" count views | grep -qx "count: 10000"; }
    wait_for "the $mode node to hold 10k keys" 120 bt_has_all
    local inflight
    for inflight in 16 64; do
      "$LOAD" --target="$(grpc_of bt)" --store=views --inflight=$inflight --duration=$GET_SECS \
        --label=$mode "${load[@]}" >>"$RESULTS/tls.csv"
    done
    stop_pid $pid
  done
}
bench_tls

# ---- 7. standby replicas: what one costs, and what it buys at failover ----
# Two 3-node clusters of the same count store, with num_standby_replicas 0 and 1, each settled
# (and with 1, every replica serving) before $QUERY_RECORDS records are produced to its own
# topic: the time until the nodes have materialized them and the replicas caught up, the memory
# (VmRSS summed over the nodes) and disk (their data dirs) then; then node-3 is killed: the wall
# time until its partitions are active elsewhere, and the handovers (gained -> ACTIVE, summed).
echo "standby,records,ingest_seconds,rss_kb,disk_kb,failover_wall_seconds,handover_seconds,warm_handovers" \
  >"$RESULTS/standby.csv"
# sum_metric CLUSTER NAME MATCH NODES...: a metric summed over nodes, rounded.
sum_metric() {
  local c=$1 m=$2 f=$3 a=0 n
  shift 3
  for n in "$@"; do a=$(echo "$a + $(metric "$m" "$(http_of "$c-$n")" "$f")" | bc -l); done
  printf '%.0f' "$a"
}
for sb in 0 1; do
  cat >"$WORK/sb$sb.yaml" <<YAML
application_id: sb$sb
num_standby_replicas: $sb
sources: [{topic: sb$sb, value_format: json}]
stores: [{name: views, source: sb$sb, count: {}}]
YAML
  SB=()
  for n in 1 2 3; do
    start_node "sb$sb-$n" "$WORK/sb$sb.yaml" --kafka-property=session.timeout.ms=6000,heartbeat.interval.ms=500
    SB+=($NODE_PID)
  done
  sb_members() { for n in 1 2 3; do [ "$(metric kiq_members "$(http_of "sb$sb-$n")" "")" = "3.000000" ] || return 1; done; }
  wait_for "sb$sb: all 3 members" 60 sb_members
  sb_active() { [ "$(sum_metric "sb$sb" kiq_partitions 'state="active"' "$@")" = 6 ]; }
  wait_for "sb$sb: 6 partitions active" 60 sb_active 1 2 3
  sb_standbys() { [ "$(sum_metric "sb$sb" kiq_partitions 'state="standby"' 1 2 3)" = $((6 * sb)) ]; }
  wait_for "sb$sb: $((6 * sb)) standby replicas" 60 sb_standbys
  sb_materialized() { [ "$(sum_metric "sb$sb" kiq_records_materialized_total "" 1 2 3)" -ge "$QUERY_RECORDS" ]; }
  sb_caught_up() { [ "$(sum_metric "sb$sb" kiq_standby_lag_records "" 1 2 3)" = 0 ]; }
  t0=$(date +%s.%N)
  "$BASE" produce --bootstrap="$BOOTSTRAP" --topic="sb$sb" --records=$QUERY_RECORDS --keys=10000 --label="sb$sb" \
    >"$WORK/produce-sb$sb.csv"
  wait_for "sb$sb: $QUERY_RECORDS records materialized" 120 sb_materialized
  wait_for "sb$sb: replicas caught up" 120 sb_caught_up
  t1=$(date +%s.%N)
  rss=0
  for pid in "${SB[@]}"; do rss=$((rss + $(awk '/^VmRSS/ {print $2}' "/proc/$pid/status"))); done
  disk=$(du -sk --apparent-size "$WORK"/data-sb$sb-* | awk '{s += $1} END {print s}')
  h0=$(echo "$(metric kiq_handover_seconds_sum "$(http_of "sb$sb-1")" "") + $(metric kiq_handover_seconds_sum "$(http_of "sb$sb-2")" "")" | bc -l)
  w0=$(sum_metric "sb$sb" kiq_handover_seconds_count 'warm="true"' 1 2)
  kill -KILL "${SB[2]}"
  wait "${SB[2]}" 2>/dev/null || true
  t2=$(date +%s.%N)
  wait_for "sb$sb: node-3's partitions active elsewhere" 120 sb_active 1 2
  t3=$(date +%s.%N)
  h1=$(echo "$(metric kiq_handover_seconds_sum "$(http_of "sb$sb-1")" "") + $(metric kiq_handover_seconds_sum "$(http_of "sb$sb-2")" "")" | bc -l)
  w1=$(sum_metric "sb$sb" kiq_handover_seconds_count 'warm="true"' 1 2)
  printf '%s,%s,%.3f,%s,%s,%.3f,%.3f,%s\n' "$sb" "$QUERY_RECORDS" "$(echo "$t1 - $t0" | bc -l)" "$rss" "$disk" \
    "$(echo "$t3 - $t2" | bc -l)" "$(echo "$h1 - $h0" | bc -l)" "$((w1 - w0))" >>"$RESULTS/standby.csv"
  stop_pid "${SB[0]}"
  stop_pid "${SB[1]}"
done

# ---- the plot ----
# gnuplot when installed (gnuplot-nox), else (or if it fails) kiq-bench-plot.
if command -v gnuplot >/dev/null 2>&1 && gnuplot <<EOF 2>"$WORK/gnuplot.log"
set terminal pngcairo size 900,540
set output "$RESULTS/latency.png"
set datafile separator ","
set logscale y
set xlabel "offered Get QPS (open loop, through one node)"
set ylabel "latency (ms)"
set key top left
plot "< grep '^ramp,' $RESULTS/ramp.csv" using 3:8 with linespoints title "kiq p50", \
     "" using 3:9 with linespoints title "kiq p99", \
     "< grep '^ramp_bare,' $RESULTS/ramp.csv" using 3:9 with linespoints title "bare server p99", \
     50 title "50 ms" with lines dt 2
EOF
then
  :
else
  "$BIN/bench/kiq-bench-plot" "$RESULTS/ramp.csv" "$RESULTS/latency.png" 50
fi

# ---- the table ----
{
  echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr); mode: $([ $QUICK = 1 ] && echo quick || echo full)"
  python3 "$ROOT/bench/table.py" "$RESULTS"
} | tee "$RESULTS/table.txt"
