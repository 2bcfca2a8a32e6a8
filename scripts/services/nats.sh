#!/usr/bin/env bash
# Throwaway NATS server on 127.0.0.1 for tests (state under target/services/nats/).
#   source scripts/services/nats.sh   starts it, exports SOCKUDO_TEST_NATS_URL and SOCKUDO_TEST_NATS_CTL, and
#                                     stops it when the shell exits.
#   scripts/services/nats.sh start|stop|restart
#                                     controls the same instance on the same port.
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
NATS_SVC_DIR="$SOCKUDO_SERVICES_DIR/nats"
NATS_SVC_CTL="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/nats.sh"

nats_port() { cat "$NATS_SVC_DIR/port"; }

nats_bin() { command -v nats-server 2>/dev/null || echo /usr/sbin/nats-server; }

nats_start() {
  svc_need_cmd nats-server nats-server || return 1
  mkdir -p "$NATS_SVC_DIR"
  [ -s "$NATS_SVC_DIR/port" ] || svc_free_ports 14222 1 >"$NATS_SVC_DIR/port" || return 1
  local port
  port=$(nats_port)
  # Detached, with its output in the log, so that a caller reading this script's output is not held open.
  setsid "$(nats_bin)" -a 127.0.0.1 -p "$port" -P "$NATS_SVC_DIR/nats.pid" -l "$NATS_SVC_DIR/nats.log" \
    </dev/null >>"$NATS_SVC_DIR/nats.log" 2>&1 &
  svc_wait 10 "nats on port $port" svc_port_in_use "$port" || { tail -5 "$NATS_SVC_DIR/nats.log" >&2; return 1; }
  svc_wait 5 "nats pid file" test -s "$NATS_SVC_DIR/nats.pid"
}

nats_stop() { svc_stop_pidfile "$NATS_SVC_DIR/nats.pid"; }

nats_export() {
  export SOCKUDO_TEST_NATS_URL="nats://127.0.0.1:$(nats_port)"
  export SOCKUDO_TEST_NATS_CTL="$NATS_SVC_CTL"
}

if [[ "${BASH_SOURCE[0]}" != "$0" ]]; then
  nats_stop
  rm -f "$NATS_SVC_DIR/port"
  nats_start && nats_export && svc_on_exit nats_stop && svc_log "nats at $SOCKUDO_TEST_NATS_URL"
else
  set -euo pipefail
  case "${1:-}" in
    start) nats_start; nats_export; echo "export SOCKUDO_TEST_NATS_URL=$SOCKUDO_TEST_NATS_URL" ;;
    stop) nats_stop ;;
    restart) nats_stop; nats_start ;;
    *) echo "usage: $0 start|stop|restart" >&2; exit 2 ;;
  esac
fi
