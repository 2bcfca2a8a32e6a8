#!/usr/bin/env bash
# Webhook throughput per queue driver (issue #12): N `channel_occupied` webhooks (one request each, no batching)
# from subscribe to the receiver's 200, through the memory queue and each durable queue (Redis, Redis Cluster,
# SQS on moto). Each case runs RUNS times; prints the median events/s per driver as a markdown table.
#
#   bench/webhook-queue.sh                       # sockudo from $CARGO_TARGET_DIR/release (or ./target)
#   BIN=target/debug N=2000 RUNS=3 bench/webhook-queue.sh
#   DRIVERS="memory redis" bench/webhook-queue.sh
#
# Needs `sockudo` built with `--features redis,redis-cluster,sqs` (or `full`). Starts its own Redis, Redis
# Cluster and moto (scripts/services/*.sh) on loopback and stops them at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET=${CARGO_TARGET_DIR:-$(pwd)/target}
BIN=${BIN:-$TARGET/release}
N=${N:-3000}
RUNS=${RUNS:-2}
SHARDS=${SHARDS:-1}
DRIVERS=${DRIVERS:-"memory redis redis-cluster sqs"}
[[ -x $BIN/sockudo ]] || { echo "missing $BIN/sockudo" >&2; exit 2; }

source scripts/services/redis.sh
source scripts/services/redis-cluster.sh
source scripts/services/moto.sh
PY=target/pyvenv/bin/python

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

driver_env() {
  case $1 in
  memory) ;;
  redis) echo "QUEUE_DRIVER=redis REDIS_URL=$SOCKUDO_TEST_REDIS_URL" ;;
  redis-cluster) echo "QUEUE_DRIVER=redis-cluster REDIS_CLUSTER_NODES=$SOCKUDO_TEST_REDIS_CLUSTER_NODES REDIS_CLUSTER_QUEUE_PREFIX=bench$$-$RANDOM:" ;;
  sqs) echo "QUEUE_DRIVER=sqs SQS_ENDPOINT_URL=$SOCKUDO_TEST_SQS_URL SQS_QUEUE_NAME=bench-$$-$RANDOM SQS_WAIT_TIME_SECONDS=1 AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test" ;;
  esac
}

run_case() { # driver -> events/s
  local port recv dir pid out
  port=$(free_port); recv=$(free_port); dir=$(mktemp -d)
  cat >"$dir/config.json" <<JSON
{"app_manager":{"array":{"apps":[{"id":"app-id","key":"app-key","secret":"app-secret",
  "webhooks":[{"url":"http://127.0.0.1:$recv/","event_types":["channel_occupied"]}]}]}},
 "websocket":{"max_subscriptions":100000}}
JSON
  # shellcheck disable=SC2046
  env -i PATH="$PATH" HOST=127.0.0.1 PORT="$port" SHARDS="$SHARDS" METRICS_ENABLED=false RUST_LOG=error \
    $(driver_env "$1") "$BIN/sockudo" --config "$dir/config.json" >"$dir/log" 2>&1 &
  pid=$!
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/up" >/dev/null && break; sleep 0.1; done
  out=$("$PY" bench/webhook_queue.py "$port" "$recv" "$N" || echo "0 0 0")
  kill "$pid"; wait "$pid" 2>/dev/null || true
  rm -rf "$dir"
  echo "$out" | awk '{print $3}'
}

echo "| queue driver | webhooks/s (median of $RUNS runs, $N events, $SHARDS shard) | runs |"
echo "|---|---|---|"
for d in $DRIVERS; do
  results=()
  for _ in $(seq "$RUNS"); do results+=("$(run_case "$d")"); done
  median=$(printf '%s\n' "${results[@]}" | sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}')
  echo "| \`$d\` | $median | ${results[*]} |"
done
