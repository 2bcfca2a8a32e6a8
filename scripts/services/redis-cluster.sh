#!/usr/bin/env bash
# Throwaway 3-master Redis Cluster on 127.0.0.1 for tests (no persistence besides each node's nodes.conf;
# state under target/services/redis-cluster/).
#   source scripts/services/redis-cluster.sh   creates it, exports SOCKUDO_TEST_REDIS_CLUSTER_NODES (comma-
#                                              separated redis:// URLs) and SOCKUDO_TEST_REDIS_CLUSTER_CTL,
#                                              and stops it when the shell exits.
#   scripts/services/redis-cluster.sh start|stop|restart
#                                              controls the same three nodes on the same ports; a restart keeps
#                                              nodes.conf, so the same cluster comes back.
#   scripts/services/redis-cluster.sh stop-node I|start-node I
#                                              stops / starts only master I (1-3): a partial outage.
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
CLUSTER_SVC_DIR="$SOCKUDO_SERVICES_DIR/redis-cluster"
CLUSTER_SVC_CTL="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/redis-cluster.sh"

cluster_ports() {
  local base
  base=$(cat "$CLUSTER_SVC_DIR/port")
  echo "$base" $((base + 1)) $((base + 2))
}

cluster_ok() {
  local port
  for port in $(cluster_ports); do
    redis-cli -p "$port" cluster info 2>/dev/null | grep -q '^cluster_state:ok' || return 1
  done
}

# Starts the three nodes; creates the cluster when they have no nodes.conf yet.
redis_cluster_start() {
  svc_need_cmd redis-server redis-server || return 1
  mkdir -p "$CLUSTER_SVC_DIR"
  [ -s "$CLUSTER_SVC_DIR/port" ] || svc_free_ports 17001 3 10000 >"$CLUSTER_SVC_DIR/port" || return 1
  local port fresh=0 nodes=()
  for port in $(cluster_ports); do
    mkdir -p "$CLUSTER_SVC_DIR/$port"
    [ -f "$CLUSTER_SVC_DIR/$port/nodes.conf" ] || fresh=1
    redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --daemonize yes \
      --cluster-enabled yes --cluster-config-file nodes.conf --dir "$CLUSTER_SVC_DIR/$port" \
      --pidfile "$CLUSTER_SVC_DIR/$port/redis.pid" --logfile "$CLUSTER_SVC_DIR/$port/redis.log" ||
      svc_die "redis-server (cluster node $port) did not start" || return 1
    svc_wait 10 "redis cluster node on port $port" redis-cli -p "$port" ping || return 1
    nodes+=("127.0.0.1:$port")
  done
  if [ "$fresh" = 1 ]; then
    redis-cli --cluster create "${nodes[@]}" --cluster-replicas 0 --cluster-yes >"$CLUSTER_SVC_DIR/create.log" 2>&1 ||
      { tail -20 "$CLUSTER_SVC_DIR/create.log" >&2; svc_die "redis-cli --cluster create failed"; return 1; }
  fi
  svc_wait 30 "cluster_state:ok on every node" cluster_ok
}

redis_cluster_stop() {
  local port
  [ -s "$CLUSTER_SVC_DIR/port" ] || return 0
  for port in $(cluster_ports); do svc_stop_pidfile "$CLUSTER_SVC_DIR/$port/redis.pid"; done
}

redis_cluster_export() {
  local port urls=()
  for port in $(cluster_ports); do urls+=("redis://127.0.0.1:$port"); done
  SOCKUDO_TEST_REDIS_CLUSTER_NODES=$(IFS=,; echo "${urls[*]}")
  export SOCKUDO_TEST_REDIS_CLUSTER_NODES
  export SOCKUDO_TEST_REDIS_CLUSTER_CTL="$CLUSTER_SVC_CTL"
}

if [[ "${BASH_SOURCE[0]}" != "$0" ]]; then
  redis_cluster_stop
  rm -rf "$CLUSTER_SVC_DIR"
  redis_cluster_start && redis_cluster_export && svc_on_exit redis_cluster_stop &&
    svc_log "redis cluster at $SOCKUDO_TEST_REDIS_CLUSTER_NODES"
else
  set -euo pipefail
  case "${1:-}" in
    start)
      redis_cluster_start
      redis_cluster_export
      echo "export SOCKUDO_TEST_REDIS_CLUSTER_NODES=$SOCKUDO_TEST_REDIS_CLUSTER_NODES"
      ;;
    stop) redis_cluster_stop ;;
    restart) redis_cluster_stop; redis_cluster_start ;;
    stop-node | start-node)
      node_port=$(cut -d' ' -f"${2:?node number 1-3}" <<<"$(cluster_ports)")
      if [ "$1" = stop-node ]; then
        svc_stop_pidfile "$CLUSTER_SVC_DIR/$node_port/redis.pid"
      else
        # Every node is started again with its nodes.conf; those already running are left alone.
        redis-server --port "$node_port" --bind 127.0.0.1 --save "" --appendonly no --daemonize yes \
          --cluster-enabled yes --cluster-config-file nodes.conf --dir "$CLUSTER_SVC_DIR/$node_port" \
          --pidfile "$CLUSTER_SVC_DIR/$node_port/redis.pid" --logfile "$CLUSTER_SVC_DIR/$node_port/redis.log"
        svc_wait 30 "cluster_state:ok on every node" cluster_ok
      fi
      ;;
    *) echo "usage: $0 start|stop|restart|stop-node I|start-node I" >&2; exit 2 ;;
  esac
fi
