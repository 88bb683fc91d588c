#!/usr/bin/env bash
# The quickstart: a dev Kafka, the customers/orders example produced into it with kcat, one
# kiq-node materializing it, and real queries with kiqctl. Stops everything it started.
set -euo pipefail
BUILD_DIR=${1:-build}
BIN="$(cd "$BUILD_DIR" && pwd)"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
WORK=$(mktemp -d /tmp/kiq-quickstart.XXXXXX)
PIDS=()

cleanup() {
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  printf '\n== stopped everything; logs are in %s\n' "$WORK"
}
trap cleanup EXIT

step() { printf '\n== %s\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }
KIQCTL="$BIN/client/kiqctl"

# wait_for DESCRIPTION SECONDS COMMAND...: polls COMMAND until it succeeds.
wait_for() {
  local what=$1 seconds=$2
  shift 2
  local deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    if [ $SECONDS -ge $deadline ]; then
      echo "quickstart: timed out waiting for $what" >&2
      tail -20 "$WORK"/*.log >&2 || true
      exit 1
    fi
    sleep 0.2
  done
}

step "starting a dev Kafka (librdkafka mock cluster, 3 brokers) with topics customers and orders, 6 partitions each"
# kiq's changelog topic must have as many partitions as the sources; a real cluster lets kiq
# create it, the dev Kafka cannot, so it is created here.
"$BIN/node/kiq-dev-kafka" --topics=customers:6,orders:6,orders-demo-order_count-changelog:6 --bootstrap-file="$WORK/bootstrap" \
  >"$WORK/dev-kafka.log" 2>&1 &
PIDS+=($!)
wait_for "the dev Kafka" 20 test -s "$WORK/bootstrap"
BOOTSTRAP=$(cat "$WORK/bootstrap")
echo "bootstrap servers: $BOOTSTRAP"

step "producing customers (a table: user id -> name) and orders (a stream keyed by user id) with kcat"
# -X partitioner=murmur2_random: Kafka's Java default partitioner, which kiq checks records against.
KCAT=(kcat -b "$BOOTSTRAP" -P -K: -Z -X partitioner=murmur2_random)
printf '%s\n' alice:Alice bob:Bob carol:Carol dave:Dave erin:Erin | "${KCAT[@]}" -t customers
printf '%s\n' dave: | "${KCAT[@]}" -t customers   # a null value deletes dave (-Z)
printf '%s\n' alice:pizza bob:sushi alice:ramen carol:pizza alice:tacos bob:pizza erin:salad \
  frank:burger | "${KCAT[@]}" -t orders
echo "customers: alice bob carol dave erin, then dave deleted; 8 orders (alice 3, bob 2, carol 1, erin 1, frank 1)"

step "starting kiq-node on examples/orders/topology.yaml"
sed -n '/^application_id/p;/^  - name/p' "$ROOT/examples/orders/topology.yaml"
"$BIN/node/kiq-node" --config="$ROOT/examples/orders/topology.yaml" \
  --bootstrap-servers="$BOOTSTRAP" --node-id=quickstart-1 --bind-address=127.0.0.1 --grpc-port=0 \
  --port-file="$WORK/node.port" --data-dir="$WORK/data" >"$WORK/node.log" 2>&1 &
PIDS+=($!)
wait_for "kiq-node to listen" 40 test -s "$WORK/node.port"
export KIQ_TARGET="127.0.0.1:$(sed 's/grpc=//' "$WORK/node.port")"
echo "kiq-node serves gRPC on $KIQ_TARGET"
# Ready when all 5 users with orders and the 4 remaining customers are materialized (records
# of different partitions are consumed in no particular order, so one key would not tell).
has_count() { "$KIQCTL" count "$1" | grep -q "^count: $2 "; }
wait_for "the node to materialize the orders" 60 has_count order_count 5
wait_for "the node to materialize the customers" 60 has_count customers 4

step "queries"
run "$KIQCTL" get customers alice
run "$KIQCTL" get order_count alice
run "$KIQCTL" all customers
run "$KIQCTL" range order_count alice carol
run "$KIQCTL" count order_count
run "$KIQCTL" --json get order_count bob
set +e
run "$KIQCTL" get customers dave
echo "(exit code $?: deleted by a null value)"
run "$KIQCTL" get no_such_store alice 2>&1
echo "(exit code $?)"
set -e
