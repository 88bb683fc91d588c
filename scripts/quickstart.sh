#!/usr/bin/env bash
# The quickstart: a dev Kafka, the customers/orders example produced into it with kcat, three
# kiq-nodes materializing it, real queries and a push query with kiqctl. Stops everything it
# started.
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

# shellcheck source=wait_for.sh
. "$ROOT/scripts/wait_for.sh"

step "starting a dev Kafka (librdkafka mock cluster, 3 brokers) with topics customers and orders, 6 partitions each"
# --config creates every topic the topology needs, kiq's own too (its changelog must have as
# many partitions as the sources): a real cluster lets kiq create those, the dev Kafka cannot.
"$BIN/common/kafka/kiq-dev-kafka" --config="$ROOT/examples/orders/topology.yaml" --partitions=6 --bootstrap-file="$WORK/bootstrap" \
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

step "starting three kiq-nodes on examples/orders/topology.yaml (one consumer group: 2 partitions each)"
sed -n '/^application_id/p;/^  - name/p' "$ROOT/examples/orders/topology.yaml"
for n in 1 2 3; do
  "$BIN/node/kiq-node" --config="$ROOT/examples/orders/topology.yaml" \
    --bootstrap-servers="$BOOTSTRAP" --node-id="node-$n" --bind-address=127.0.0.1 \
    --advertised-host=127.0.0.1 --grpc-port=0 --http-port=0 --admin-port=0 \
    --port-file="$WORK/node-$n.port" \
    --data-dir="$WORK/data-$n" >"$WORK/node-$n.log" 2>&1 &
  PIDS+=($!)
done
for n in 1 2 3; do wait_for "node-$n to listen" 40 test -s "$WORK/node-$n.port"; done
port_of() { sed -n 's/^grpc=//p' "$WORK/node-$1.port"; }
http_of() { sed -n 's/^http=//p' "$WORK/node-$1.port"; }
admin_of() { sed -n 's/^admin=//p' "$WORK/node-$1.port"; }
export KIQ_TARGET="127.0.0.1:$(port_of 1)"
echo "node-1, node-2, node-3 serve gRPC on 127.0.0.1:$(port_of 1), :$(port_of 2), :$(port_of 3)"
# Ready when all 5 users with orders and the 4 remaining customers are materialized, as seen
# through node-1 (which asks the other nodes for the partitions it does not own).
has_count() { "$KIQCTL" count "$1" | grep -qx "count: $2"; }
wait_for "the cluster to materialize the orders" 90 has_count order_count 5
wait_for "the cluster to materialize the customers" 90 has_count customers 4

step "the cluster: which node owns which partitions"
run "$KIQCTL" metadata

step "queries"
run "$KIQCTL" get customers alice
run "$KIQCTL" metadata order_count alice
# Ask a node that does NOT own alice's partition: it forwards to the owner.
OWNER=$("$KIQCTL" --json metadata order_count alice | sed 's/.*"nodeId":"\([^"]*\)".*/\1/')
OTHER=1
[ "$OWNER" = "node-1" ] && OTHER=2
echo "alice lives on $OWNER; asking node-$OTHER instead:"
run "$KIQCTL" --target "127.0.0.1:$(port_of $OTHER)" get order_count alice
run "$KIQCTL" all customers
run "$KIQCTL" range order_count alice carol
run "$KIQCTL" count order_count
run "$KIQCTL" --json get order_count bob
step "push query: subscribe to order_count through node-1 (it fans in from all three nodes), then 3 more orders"
echo "\$ kiqctl subscribe order_count --snapshot &"
"$KIQCTL" subscribe order_count --snapshot >"$WORK/subscribe.out" 2>&1 &
SUBSCRIBER=$!
PIDS+=($SUBSCRIBER)
wait_for "the subscription's snapshot" 30 grep -q SNAPSHOT_END "$WORK/subscribe.out"
printf '%s\n' carol:soup erin:pizza bob:curry | "${KCAT[@]}" -t orders
changes() { [ "$(grep -c '^CHANGE' "$WORK/subscribe.out")" -ge 3 ]; }
wait_for "the three changes" 30 changes
kill "$SUBSCRIBER" 2>/dev/null || true
wait "$SUBSCRIBER" 2>/dev/null || true
cat "$WORK/subscribe.out"

step "operations: health, readiness and Prometheus metrics on each node's admin port"
run curl -s "http://127.0.0.1:$(admin_of 1)/readyz"
echo "\$ curl -s http://127.0.0.1:$(admin_of 1)/metrics | grep -E '^kiq_(partitions|members|queries_total)'"
curl -s "http://127.0.0.1:$(admin_of 1)/metrics" | grep -E '^kiq_(partitions|members|queries_total)' | head -8

set +e
run "$KIQCTL" get customers dave
echo "(exit code $?: deleted by a null value)"
run "$KIQCTL" get no_such_store alice 2>&1
echo "(exit code $?)"
set -e
