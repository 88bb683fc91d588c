# Sourced by bench/run.sh for `bench/run.sh --peer <kafka-dist-dir> <bootstrap> [BUILD_DIR]`
# (bench/README.md, "Side by side with Kafka Streams"). Uses run.sh's ROOT, BIN, RESULTS, WORK,
# PIDS (stopped by its cleanup trap), log and wait_for; defines everything else it needs.
#
# Against a real broker: creates a 6-partition topic, produces 1M records over 10k keys
# (kiq-bench-baselines produce, ~100-byte JSON values), then measures one at a time, on the same
# topic, kiq (one kiq-node, a count store) and the Kafka Streams peer (bench/peer/CountPeer.java,
# groupByKey().count() into an in-memory store) with 1 and 2 stream threads: ingestion, CPU and
# peak RSS, HTTP Get with wrk at 1/16/64 connections (kiq's gRPC Get with kiq-bench-load too),
# and a restart on its own state. Writes $RESULTS/peer/*.csv and prints $RESULTS/peer/table.txt.

PEER_RECORDS=${KIQ_PEER_RECORDS:-1000000}
PEER_KEYS=10000
PEER_GET_SECS=${KIQ_PEER_GET_SECS:-5}
PEER_WARM_SECS=2
PEER_TCK=$(getconf CLK_TCK)

# peer_stat_cpu STAT_FILE: user + system CPU seconds so far of a process's or a thread's stat
# file (fields 14 and 15). peer_cpu PID: the process's.
peer_stat_cpu() {
  awk -v t="$PEER_TCK" '{ sub(/^.*\) /, ""); printf "%.2f\n", ($12 + $13) / t }' "$1"
}
peer_cpu() { peer_stat_cpu "/proc/$1/stat"; }
# peer_threads PID SYSTEM: CPU seconds per thread name so far ("system,thread,cpu_s", the
# busiest 12): which of the ingestion thread, librdkafka's or the JVM's threads did the work.
peer_threads() {
  local t
  for t in /proc/"$1"/task/*; do
    printf '%s\t%s\n' "$(cat "$t/comm" 2>/dev/null)" "$(peer_stat_cpu "$t/stat" 2>/dev/null)"
  done | awk -F'\t' -v sys="$2" '{ cpu[$1] += $2 } END { for (c in cpu) printf "%s,%s,%.2f\n", sys, c, cpu[c] }' |
    sort -t, -k3,3 -rn | head -12
}
peer_hwm_kb() { awk '/^VmHWM/ {print $2}' "/proc/$1/status"; }
peer_stop() { kill -TERM "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }
peer_now() { date +%s.%N; }

# peer_start SYSTEM: starts kiq or kiq2 (kiq-node with 1 or 2 ingestion threads) or ks1/ks2
# (CountPeer with 1/2 stream threads) on the
# bench topic with state of its own under $WORK (kept across a restart); sets PEER_PID,
# PEER_T0 (just before exec), PEER_HTTP (host:port), PEER_GET (GET path prefix of a key),
# PEER_PROGRESS (URL, figure) and PEER_VALUE (JSON path of a Get's count).
peer_start() {
  local sys=$1
  rm -f "$WORK/peer-$sys.port" "$WORK/peer-$sys-state/port"
  PEER_T0=$(peer_now)
  if [ "$sys" = kiq ] || [ "$sys" = kiq2 ]; then
    local threads=1
    [ "$sys" = kiq2 ] && threads=2
    "$BIN/node/kiq-node" --config="$WORK/peer-$sys.yaml" --bootstrap-servers="$PEER_BOOTSTRAP" \
      --node-id=peer-$sys --bind-address=127.0.0.1 --advertised-host=127.0.0.1 --grpc-port=0 \
      --http-port=0 --admin-port=0 --port-file="$WORK/peer-$sys.port" --data-dir="$WORK/peer-$sys-data" \
      --ingest-threads=$threads --log-level=warn >>"$WORK/peer-$sys.log" 2>&1 &
    PEER_PID=$!
    PIDS+=($PEER_PID)
    wait_for "kiq-node to listen" 60 test -s "$WORK/peer-$sys.port"
    PEER_HTTP="127.0.0.1:$(sed -n 's/^http=//p' "$WORK/peer-$sys.port")"
    PEER_GRPC="127.0.0.1:$(sed -n 's/^grpc=//p' "$WORK/peer-$sys.port")"
    PEER_GET=/v1/stores/cnt/keys/user-
    PEER_PROGRESS=("http://127.0.0.1:$(sed -n 's/^admin=//p' "$WORK/peer-$sys.port")/metrics"
      kiq_records_materialized_total)
    PEER_VALUE=entry.json
  else
    java -Dsun.net.httpserver.nodelay=true -cp "$PEER_DIST/libs/*:$WORK/peer-classes" \
      -Dlog4j.configuration="file:$WORK/peer-log4j.properties" CountPeer \
      "$PEER_APP-$sys" "$PEER_BOOTSTRAP" "$PEER_TOPIC" 0 "${sys#ks}" "$WORK/peer-$sys-state" \
      >>"$WORK/peer-$sys.log" 2>&1 &
    PEER_PID=$!
    PIDS+=($PEER_PID)
    wait_for "CountPeer ($sys) to listen" 60 test -s "$WORK/peer-$sys-state/port"
    PEER_HTTP="127.0.0.1:$(sed -n 's/^http=//p' "$WORK/peer-$sys-state/port")"
    PEER_GET=/get/user-
    PEER_PROGRESS=("http://$PEER_HTTP/count" records)
    PEER_VALUE=count
  fi
}

# peer_wrk SYSTEM CONNECTIONS SECONDS: wrk GETs of random keys; prints its CSV line's figures.
peer_wrk() {
  local c=$2 t=2
  [ "$c" -lt 2 ] && t=1
  wrk -t "$t" -c "$c" -d "${3}s" --timeout 5s -s "$ROOT/bench/peer/get.lua" "http://$PEER_HTTP" -- \
    "$PEER_GET" "$PEER_KEYS" 2>>"$WORK/peer-wrk.log" | tee -a "$WORK/peer-wrk.log" |
    sed -n 's/^wrk_csv,//p'
}

peer_measure() {
  local sys=$1 t qa first all cpu hwm
  log "peer: $sys: start, ingest $PEER_RECORDS records"
  peer_start "$sys"
  # KIQ_BENCH_PERF=1 (a separate run: perf slows the node): kiq's ingestion and gRPC Get profiled.
  case $sys in kiq | kiq2) perf_start "peer-ingest-$sys" "$PEER_PID" ;; esac
  IFS=, read -r qa first all < <(python3 "$ROOT/bench/peer/probe.py" ingest --interval=0.02 \
    --get="http://$PEER_HTTP${PEER_GET}0" --value-path="$PEER_VALUE" --progress="${PEER_PROGRESS[0]}" \
    --progress-path="${PEER_PROGRESS[1]}" --records="$PEER_RECORDS" --timeout=600)
  cpu=$(peer_cpu "$PEER_PID")
  hwm=$(peer_hwm_kb "$PEER_PID")
  perf_stop
  peer_threads "$PEER_PID" "$sys" >>"$PEER_OUT/threads.csv"
  [ -n "$all" ] || { echo "bench: $sys did not materialize $PEER_RECORDS records" >&2; exit 1; }
  # Correctness: every key was produced records/keys times; spot-check 20 keys.
  local k v
  for k in $(seq 0 $((PEER_KEYS / 20)) $((PEER_KEYS - 1))); do
    v=$(curl -s "http://$PEER_HTTP$PEER_GET$k" | python3 -c 'import functools, json, sys
print(int(float(functools.reduce(lambda v, p: v[p], sys.argv[1].split("."), json.load(sys.stdin)))))' \
      "$PEER_VALUE" 2>/dev/null || true)
    [ "$v" = $((PEER_RECORDS / PEER_KEYS)) ] ||
      { echo "bench: $sys answered user-$k = $v, produced $((PEER_RECORDS / PEER_KEYS)) times" >&2; exit 1; }
  done
  printf '%s,%s,%.3f,%.3f,%.3f,%.3f,%s,%s\n' "$sys" "$PEER_RECORDS" \
    "$(echo "$qa - $PEER_T0" | bc -l)" "$(echo "$first - $PEER_T0" | bc -l)" \
    "$(echo "$all - $PEER_T0" | bc -l)" "$(echo "$all - $first" | bc -l)" "$cpu" "$hwm" \
    >>"$PEER_OUT/ingest.csv"

  # kiq2 differs from kiq in its ingestion only: its Gets are not measured again.
  [ "$sys" = kiq2 ] || log "peer: $sys: HTTP Get with wrk at 1, 16, 64 connections"
  [ "$sys" = kiq2 ] || peer_wrk "$sys" 16 $PEER_WARM_SECS >/dev/null  # warm-up (the JIT, for the peer)
  local c line
  for c in 1 16 64; do
    [ "$sys" = kiq2 ] && break
    line=$(peer_wrk "$sys" $c "$PEER_GET_SECS")
    [ -n "$line" ] || { echo "bench: wrk failed against $sys; see $WORK/peer-wrk.log" >&2; exit 1; }
    echo "$sys,$c,$line" >>"$PEER_OUT/http_get.csv"
  done
  if [ "$sys" = kiq ]; then
    log "peer: kiq: gRPC Get with kiq-bench-load at 1, 16, 64 in flight"
    for c in 1 16 64; do
      [ $c = 64 ] && perf_start peer-grpc-get-kiq "$PEER_PID"
      "$BIN/bench/kiq-bench-load" --target="$PEER_GRPC" --store=cnt --keys=$PEER_KEYS --inflight=$c \
        --duration="$PEER_GET_SECS" --label=kiq_grpc >>"$PEER_OUT/grpc_get.csv"
    done
    perf_stop
    # The transport's own limit on this machine: the same client against a gRPC server that
    # answers from a hash map (no store, no routing). kiq's gRPC Get cannot beat it.
    log "peer: the bare gRPC server (kiq-bench-baselines grpc-server) at 1, 16, 64 in flight"
    local bare_pid bare
    rm -f "$WORK/peer-bare.port"
    "$BIN/bench/kiq-bench-baselines" grpc-server --keys=$PEER_KEYS --port_file="$WORK/peer-bare.port" \
      >"$WORK/peer-bare.log" 2>&1 &
    bare_pid=$!
    PIDS+=($bare_pid)
    wait_for "the bare gRPC server" 20 test -s "$WORK/peer-bare.port"
    bare="127.0.0.1:$(sed -n 's/^grpc=//p' "$WORK/peer-bare.port")"
    for c in 1 16 64; do
      [ $c = 64 ] && perf_start peer-grpc-get-bare "$bare_pid"
      "$BIN/bench/kiq-bench-load" --target="$bare" --store=cnt --keys=$PEER_KEYS --inflight=$c \
        --duration="$PEER_GET_SECS" --label=bare_grpc >>"$PEER_OUT/grpc_get.csv"
    done
    perf_stop
    peer_stop "$bare_pid"
  fi
  printf '%s,%s,%s\n' "$sys" "$(peer_cpu "$PEER_PID")" "$(peer_hwm_kb "$PEER_PID")" >>"$PEER_OUT/memory.csv"
  peer_stop "$PEER_PID"

  # Restart on its own state (kiq: its RocksDB data dir; the peer: its in-memory store, so
  # restored from its changelog topic) until a key answers its right count.
  log "peer: $sys: restart on its own state"
  peer_start "$sys"
  t=$(python3 "$ROOT/bench/peer/probe.py" answer --get="http://$PEER_HTTP${PEER_GET}42" \
    --value-path="$PEER_VALUE" --equals=$((PEER_RECORDS / PEER_KEYS)) --timeout=300)
  printf '%s,%.3f\n' "$sys" "$(echo "$t - $PEER_T0" | bc -l)" >>"$PEER_OUT/restart.csv"
  peer_stop "$PEER_PID"
}

# peer_main DIST BOOTSTRAP: the whole mode.
peer_main() {
  PEER_DIST=$(cd "$1" && pwd)
  PEER_BOOTSTRAP=$2
  local b
  for b in java javac wrk python3 bc curl; do
    command -v $b >/dev/null || { echo "bench --peer: $b is not installed (see bench/README.md)" >&2; exit 2; }
  done
  ls "$PEER_DIST"/libs/kafka-streams-[0-9]*.jar >/dev/null 2>&1 ||
    { echo "bench --peer: $PEER_DIST/libs holds no kafka-streams jar: not a Kafka distribution" >&2; exit 2; }
  for b in node/kiq-node bench/kiq-bench-baselines bench/kiq-bench-load; do
    [ -x "$BIN/$b" ] || { echo "bench --peer: $BIN/$b is not built" >&2; exit 2; }
  done
  PEER_OUT="$RESULTS/peer"
  mkdir -p "$PEER_OUT"
  rm -f "$PEER_OUT"/*.csv

  log "peer: compiling bench/peer/CountPeer.java against $PEER_DIST/libs"
  mkdir -p "$WORK/peer-classes"
  javac -nowarn -cp "$PEER_DIST/libs/*" -d "$WORK/peer-classes" "$ROOT/bench/peer/CountPeer.java"
  printf 'log4j.rootLogger=WARN, stderr\nlog4j.appender.stderr=org.apache.log4j.ConsoleAppender\nlog4j.appender.stderr.Target=System.err\nlog4j.appender.stderr.layout=org.apache.log4j.PatternLayout\nlog4j.appender.stderr.layout.ConversionPattern=[%%d] %%p %%m (%%c)%%n\n' \
    >"$WORK/peer-log4j.properties"

  # Everything of this run is named kiqpeer-<time>-*: the topic, the applications and so their
  # internal topics; deleted at the end.
  PEER_APP=kiqpeer-$(date +%s)
  PEER_TOPIC=$PEER_APP-events
  log "peer: topic $PEER_TOPIC (6 partitions) on $PEER_BOOTSTRAP, $PEER_RECORDS records over $PEER_KEYS keys"
  "$PEER_DIST/bin/kafka-topics.sh" --bootstrap-server "$PEER_BOOTSTRAP" --create --topic "$PEER_TOPIC" \
    --partitions 6 --replication-factor 1 >"$WORK/peer-topics.log" 2>&1 ||
    { cat "$WORK/peer-topics.log" >&2; exit 1; }
  "$BIN/bench/kiq-bench-baselines" produce --bootstrap="$PEER_BOOTSTRAP" --topic="$PEER_TOPIC" \
    --records="$PEER_RECORDS" --keys=$PEER_KEYS --label=produce >"$PEER_OUT/produce.csv"
  for sys in kiq kiq2; do
    cat >"$WORK/peer-$sys.yaml" <<EOF
application_id: $PEER_APP-$sys
sources: [{topic: $PEER_TOPIC, value_format: json}]
stores: [{name: cnt, source: $PEER_TOPIC, count: {}}]
EOF
  done

  echo "system,records,start_to_queryable_s,start_to_first_s,start_to_all_s,first_to_all_s,cpu_s,vmhwm_kb" \
    >"$PEER_OUT/ingest.csv"
  echo "system,connections,qps,p50_ms,p99_ms,requests,errors" >"$PEER_OUT/http_get.csv"
  echo "label,inflight,offered_qps,ok,errors,not_found,qps,p50_ms,p99_ms,p999_ms" >"$PEER_OUT/grpc_get.csv"
  echo "system,cpu_s,vmhwm_kb" >"$PEER_OUT/memory.csv"
  echo "system,restart_to_answer_s" >"$PEER_OUT/restart.csv"
  echo "system,thread,cpu_s" >"$PEER_OUT/threads.csv"
  local load0 sys
  load0=$(cut -d' ' -f1-3 /proc/loadavg)
  for sys in kiq kiq2 ks1 ks2; do peer_measure $sys; done

  "$PEER_DIST/bin/kafka-topics.sh" --bootstrap-server "$PEER_BOOTSTRAP" --delete --topic "$PEER_APP-.*" \
    >>"$WORK/peer-topics.log" 2>&1 || log "peer: could not delete the topics $PEER_APP-*: see $WORK/peer-topics.log"
  {
    echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr); load average at start $load0, at end $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "broker: $PEER_BOOTSTRAP, Kafka Streams $(basename "$PEER_DIST"/libs/kafka-streams-[0-9]*.jar .jar | sed 's/kafka-streams-//'), $(java -version 2>&1 | head -1)"
    python3 "$ROOT/bench/peer/table.py" "$PEER_OUT"
  } | tee "$PEER_OUT/table.txt"
}
