#!/usr/bin/env bash
# What the cluster-wide rate limiter costs a REST publish (issue #12): `fanout` publishing as fast as the server
# answers (16 requests in flight, 10 subscribers on one channel) with `rate_limiter.driver` = memory, redis and
# redis-cluster. The app's `max_backend_events_per_second` is set far above what is reached, so every publish
# asks the limiter (one EVAL round trip for the Redis drivers) and none is refused. Each case runs RUNS times;
# prints publishes/s (median) and server CPU per publish as a markdown table.
#
#   bench/rate-limiter.sh                       # release builds from $CARGO_TARGET_DIR/release (or ./target)
#   BIN=target/debug EVENTS=5000 bench/rate-limiter.sh
#   DRIVERS="memory redis" RUNS=3 bench/rate-limiter.sh
#
# Needs `sockudo` built with `--features redis,redis-cluster` and `sockudo-bench`. Starts its own Redis and Redis
# Cluster (scripts/services/*.sh) on loopback and stops them at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET=${CARGO_TARGET_DIR:-$(pwd)/target}
BIN=${BIN:-$TARGET/release}
SHARDS=${SHARDS:-1}
EVENTS=${EVENTS:-20000}
RUNS=${RUNS:-2}
PORT=${PORT:-7312}
DRIVERS=${DRIVERS:-"memory redis redis-cluster"}
for b in sockudo sockudo-bench; do
    [[ -x $BIN/$b ]] || { echo "missing $BIN/$b" >&2; exit 2; }
done

source scripts/services/redis.sh
source scripts/services/redis-cluster.sh

CONFIG=$(mktemp --suffix=.json)
trap 'rm -f "$CONFIG"' EXIT
cat >"$CONFIG" <<JSON
{"app_manager": {"array": {"apps": [{"id": "app-id", "key": "app-key", "secret": "app-secret",
  "max_backend_events_per_second": 100000000}]}}}
JSON

driver_env() {
  case $1 in
  memory) ;;
  redis) echo "RATE_LIMITER_DRIVER=redis REDIS_URL=$SOCKUDO_TEST_REDIS_URL" ;;
  redis-cluster) echo "RATE_LIMITER_DRIVER=redis-cluster REDIS_CLUSTER_NODES=$SOCKUDO_TEST_REDIS_CLUSTER_NODES" ;;
  esac
}

run_once() { # driver -> JSON report
  # shellcheck disable=SC2046
  env -i PATH="$PATH" HOST=127.0.0.1 PORT=$PORT SHARDS=$SHARDS METRICS_ENABLED=false RUST_LOG=error \
    $(driver_env "$1") "$BIN/sockudo" --config "$CONFIG" >/dev/null 2>&1 &
  local pid=$!
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/up" >/dev/null && break; sleep 0.1; done
  local out
  out=$("$BIN/sockudo-bench" --url "ws://127.0.0.1:$PORT" --server-pid "$pid" --json --quiet \
    -n 10 -c 1 fanout --events "$EVENTS" --in-flight 16 || true)
  kill "$pid"; wait "$pid" 2>/dev/null || true
  # One line per report.
  python3 -c 'import json, sys
try: print(json.dumps(json.loads(sys.stdin.read())))
except ValueError: print("{}")' <<<"$out"
}

echo "| rate limiter | publishes/s (median of $RUNS) | runs | server CPU us/publish | load |"
echo "|---|---|---|---|---|"
for driver in $DRIVERS; do
  reports=()
  for _ in $(seq "$RUNS"); do reports+=("$(run_once "$driver")"); done
  printf '%s\n' "${reports[@]}" | python3 -c '
import json, statistics, sys
runs = [json.loads(l) for l in sys.stdin if l.strip()]
rates = [r.get("events_per_sec") or 0 for r in runs]
cpu = [(r.get("server_cpu_us") or 0) / max(r.get("events_sent") or 1, 1) for r in runs]
print("| %s | %.0f | %s | %.0f | %s |" % (sys.argv[1], statistics.median(rates),
      " / ".join("%.0f" % x for x in rates), statistics.median(cpu), open("/proc/loadavg").read().split()[0]))' "$driver"
done
