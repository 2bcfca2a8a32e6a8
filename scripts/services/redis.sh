#!/usr/bin/env bash
# Throwaway Redis on 127.0.0.1 for tests (no persistence; state under target/services/redis/).
#   source scripts/services/redis.sh   starts it, exports SOCKUDO_TEST_REDIS_URL and SOCKUDO_TEST_REDIS_CTL,
#                                      and stops it when the shell exits.
#   scripts/services/redis.sh start|stop|restart
#                                      controls the same instance on the same port (tests use `restart`, or
#                                      `stop` and `start`, to simulate an outage).
#   scripts/services/redis.sh pause|resume
#                                      freezes / thaws the server (SIGSTOP / SIGCONT): connections stay open
#                                      but nothing answers, like a wedged server or a half-open connection.
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
REDIS_SVC_DIR="$SOCKUDO_SERVICES_DIR/redis"
REDIS_SVC_CTL="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/redis.sh"

redis_port() { cat "$REDIS_SVC_DIR/port"; }

# Starts the instance; keeps the port of a previous start in the same directory.
redis_start() {
  svc_need_cmd redis-server redis-server || return 1
  mkdir -p "$REDIS_SVC_DIR"
  [ -s "$REDIS_SVC_DIR/port" ] || svc_free_ports 16379 1 >"$REDIS_SVC_DIR/port" || return 1
  local port
  port=$(redis_port)
  redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --daemonize yes \
    --dir "$REDIS_SVC_DIR" --pidfile "$REDIS_SVC_DIR/redis.pid" --logfile "$REDIS_SVC_DIR/redis.log" ||
    svc_die "redis-server did not start (see $REDIS_SVC_DIR/redis.log)" || return 1
  svc_wait 10 "redis on port $port" redis-cli -p "$port" ping || { tail -5 "$REDIS_SVC_DIR/redis.log" >&2; return 1; }
}

redis_stop() { svc_stop_pidfile "$REDIS_SVC_DIR/redis.pid"; }

redis_export() {
  export SOCKUDO_TEST_REDIS_URL="redis://127.0.0.1:$(redis_port)"
  export SOCKUDO_TEST_REDIS_CTL="$REDIS_SVC_CTL"
}

if [[ "${BASH_SOURCE[0]}" != "$0" ]]; then
  redis_stop
  rm -f "$REDIS_SVC_DIR/port"
  redis_start && redis_export && svc_on_exit redis_stop && svc_log "redis at $SOCKUDO_TEST_REDIS_URL"
else
  set -euo pipefail
  case "${1:-}" in
    start) redis_start; redis_export; echo "export SOCKUDO_TEST_REDIS_URL=$SOCKUDO_TEST_REDIS_URL" ;;
    stop) redis_stop ;;
    restart) redis_stop; redis_start ;;
    pause) kill -STOP "$(cat "$REDIS_SVC_DIR/redis.pid")" ;;
    resume) kill -CONT "$(cat "$REDIS_SVC_DIR/redis.pid")" ;;
    *) echo "usage: $0 start|stop|restart|pause|resume" >&2; exit 2 ;;
  esac
fi
