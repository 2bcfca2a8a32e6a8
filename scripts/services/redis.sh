#!/usr/bin/env bash
# Throwaway Redis on 127.0.0.1 for tests (no persistence; state under target/services/redis/).
#   source scripts/services/redis.sh   starts it, exports SOCKUDO_TEST_REDIS_URL and SOCKUDO_TEST_REDIS_CTL,
#                                      and stops it when the shell exits. The same server also listens with
#                                      TLS on the next port: SOCKUDO_TEST_REDIS_TLS_URL (rediss://) and
#                                      SOCKUDO_TEST_REDIS_TLS_CA (the throwaway CA that signed its certificate).
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
redis_tls_port() { echo $(($(redis_port) + 1)); }

# A throwaway CA and a certificate for 127.0.0.1/localhost signed by it (made once per directory).
redis_tls_material() {
  local dir="$REDIS_SVC_DIR/tls"
  [ -s "$dir/cert.pem" ] && return 0
  svc_need_cmd openssl openssl || return 1
  mkdir -p "$dir"
  (
    cd "$dir" &&
      openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key -out ca.pem \
        -days 2 -subj '/CN=sockudo test redis CA' &&
      openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout key.pem -out server.csr \
        -subj '/CN=localhost' &&
      printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >ext.cnf &&
      openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out cert.pem -days 2 \
        -extfile ext.cnf
  ) >"$REDIS_SVC_DIR/tls.log" 2>&1 || svc_die "could not make the Redis test certificate (see $REDIS_SVC_DIR/tls.log)"
}

# Starts the instance; keeps the port of a previous start in the same directory.
redis_start() {
  svc_need_cmd redis-server redis-server || return 1
  mkdir -p "$REDIS_SVC_DIR"
  [ -s "$REDIS_SVC_DIR/port" ] || svc_free_ports 16379 2 >"$REDIS_SVC_DIR/port" || return 1
  redis_tls_material || return 1
  local port tls="$REDIS_SVC_DIR/tls"
  port=$(redis_port)
  redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --daemonize yes \
    --tls-port "$(redis_tls_port)" --tls-cert-file "$tls/cert.pem" --tls-key-file "$tls/key.pem" \
    --tls-ca-cert-file "$tls/ca.pem" --tls-auth-clients no \
    --dir "$REDIS_SVC_DIR" --pidfile "$REDIS_SVC_DIR/redis.pid" --logfile "$REDIS_SVC_DIR/redis.log" ||
    svc_die "redis-server did not start (see $REDIS_SVC_DIR/redis.log)" || return 1
  svc_wait 10 "redis on port $port" redis-cli -p "$port" ping || { tail -5 "$REDIS_SVC_DIR/redis.log" >&2; return 1; }
}

redis_stop() { svc_stop_pidfile "$REDIS_SVC_DIR/redis.pid"; }

redis_export() {
  export SOCKUDO_TEST_REDIS_URL="redis://127.0.0.1:$(redis_port)"
  export SOCKUDO_TEST_REDIS_CTL="$REDIS_SVC_CTL"
  export SOCKUDO_TEST_REDIS_TLS_URL="rediss://127.0.0.1:$(redis_tls_port)"
  export SOCKUDO_TEST_REDIS_TLS_CA="$REDIS_SVC_DIR/tls/ca.pem"
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
