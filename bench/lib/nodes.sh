# Helpers for the scripts that run several sockudo processes (bench/cluster.sh, bench/100k.sh); sourced.
# Needs BIN (directory of the release binaries) and OUT (where logs go). Every process started here is stopped
# by the EXIT hook (scripts/services/common.sh), so nothing is left behind, whatever way the script ends.

. "$(dirname "${BASH_SOURCE[0]}")/../../scripts/services/common.sh"

NODE_PIDS=()

# wait_port PORT: until something accepts on 127.0.0.1:PORT (10 s).
wait_port() { svc_wait 10 "a listener on port $1" svc_port_in_use "$1"; }

# start_node NAME PORT SHARDS ADAPTER [VAR=VALUE...]: one sockudo process on 127.0.0.1:PORT (SO_REUSEPORT, so
# several may share a port), no metrics listener, no config file (runs in $OUT, which has none). Its pid is
# appended to NODE_PIDS.
start_node() {
  local name=$1 port=$2 shards=$3 adapter=$4
  shift 4
  (cd "$OUT" && exec env HOST=127.0.0.1 PORT="$port" SHARDS="$shards" METRICS_ENABLED=false \
    ADAPTER_DRIVER="$adapter" "$@" "$BIN/sockudo" >"$OUT/$name.log" 2>&1) &
  NODE_PIDS+=("$!")
}

# adapter_env ADAPTER: the variables that point a node at the bus started by scripts/services/ADAPTER.sh, with
# a prefix of this run's own (two clusters on one broker with one prefix would hear each other).
adapter_env() {
  case $1 in
  local) ;;
  redis) echo "REDIS_URL=$SOCKUDO_TEST_REDIS_URL REDIS_PREFIX=bench$$" ;;
  nats) echo "NATS_SERVERS=$SOCKUDO_TEST_NATS_URL NATS_PREFIX=bench$$" ;;
  *) svc_die "unknown adapter $1 (local, redis, nats)" ;;
  esac
}

# bus_pid ADAPTER: the broker's pid (empty for local).
bus_pid() {
  case $1 in
  redis) cat "$SOCKUDO_SERVICES_DIR/redis/redis.pid" ;;
  nats) cat "$SOCKUDO_SERVICES_DIR/nats/nats.pid" ;;
  *) ;;
  esac
}

# start_bus ADAPTER: starts the throwaway broker once (scripts/services/ADAPTER.sh registers its stop).
start_bus() {
  case $1 in
  redis) [ -n "${SOCKUDO_TEST_REDIS_URL:-}" ] || . "$ROOT/scripts/services/redis.sh" ;;
  nats) [ -n "${SOCKUDO_TEST_NATS_URL:-}" ] || . "$ROOT/scripts/services/nats.sh" ;;
  *) ;;
  esac
}

# stop_nodes: TERM every node of NODE_PIDS, KILL what is left after 10 s.
stop_nodes() {
  local pid i
  for pid in "${NODE_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for ((i = 0; i < 100; i++)); do
    local alive=0
    for pid in "${NODE_PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.1
  done
  for pid in "${NODE_PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  NODE_PIDS=()
}

# node_pids_csv: NODE_PIDS joined with commas (for --server-pid).
node_pids_csv() { local IFS=,; echo "${NODE_PIDS[*]}"; }

# rss_sum: VmRSS of every node, summed, in bytes.
rss_sum() {
  local pid total=0 kb
  for pid in "${NODE_PIDS[@]}"; do
    kb=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
    total=$((total + ${kb:-0} * 1024))
  done
  echo "$total"
}

# cpu_sum: utime+stime of every node, summed, in clock ticks (/proc/PID/stat fields 14 and 15).
cpu_sum() {
  local pid total=0 t
  for pid in "${NODE_PIDS[@]}"; do
    t=$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | awk '{print $12 + $13}')
    total=$((total + ${t:-0}))
  done
  echo "$total"
}
