# Helpers for the throwaway test services in this directory (sourced by each service script).
# Every service keeps its state (pid files, ports, data, logs) under target/services/<name>/ of the checkout.

SOCKUDO_SERVICES_DIR="${SOCKUDO_SERVICES_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/target/services}"

svc_log() { printf '[services] %s\n' "$*" >&2; }
svc_die() { svc_log "ERROR: $*"; return 1; }

# svc_need_cmd COMMAND DEBIAN_PACKAGE: installs the package when the command is missing.
svc_need_cmd() {
  local cmd=$1 pkg=$2
  if command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ]; then return 0; fi
  svc_log "installing $pkg (for $cmd)"
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$pkg" >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$pkg" >/dev/null ||
      svc_die "cannot install $pkg" || return 1
  fi
  command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ] || svc_die "$cmd still missing after installing $pkg"
}

svc_port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# svc_free_ports BASE COUNT [EXTRA_OFFSET]: the first port P >= BASE such that P..P+COUNT-1 are free
# (and, with EXTRA_OFFSET, P+EXTRA_OFFSET.. too, e.g. Redis Cluster's bus ports at +10000).
svc_free_ports() {
  local base=$1 count=$2 extra=${3:-} p i busy
  for ((p = base; p < base + 2000; p += count)); do
    busy=0
    for ((i = 0; i < count; i++)); do
      if svc_port_in_use $((p + i)) || { [ -n "$extra" ] && svc_port_in_use $((p + i + extra)); }; then
        busy=1
        break
      fi
    done
    if [ "$busy" = 0 ]; then echo "$p"; return 0; fi
  done
  svc_die "no free port range from $base"
}

# svc_wait SECONDS DESCRIPTION COMMAND...: polls COMMAND every 0.1 s until it succeeds.
svc_wait() {
  local seconds=$1 what=$2 i
  shift 2
  for ((i = 0; i < seconds * 10; i++)); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  svc_die "timed out after ${seconds}s waiting for $what"
}

# svc_stop_pidfile FILE: stops the process in FILE (TERM, then KILL after 5 s) and removes the file.
svc_stop_pidfile() {
  local file=$1 pid i
  [ -f "$file" ] || return 0
  pid=$(cat "$file" 2>/dev/null || true)
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null || true
    for ((i = 0; i < 20; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -f "$file"
}

# svc_on_exit COMMAND: runs COMMAND when the sourcing shell exits (all registered commands, last first).
SVC_EXIT_HOOKS=${SVC_EXIT_HOOKS:-}
svc_on_exit() {
  SVC_EXIT_HOOKS="$1;$SVC_EXIT_HOOKS"
  # shellcheck disable=SC2064
  trap "eval \"\$SVC_EXIT_HOOKS\"" EXIT
}

# The same exit hooks under the names the database service scripts use.
on_exit() { svc_on_exit "$1"; }
# wait_until TENTHS COMMAND...: waits until COMMAND succeeds, at most TENTHS tenths of a second.
wait_until() {
  local tries=$1; shift
  while ! "$@" >/dev/null 2>&1; do
    tries=$((tries - 1))
    if [ "$tries" -le 0 ]; then return 1; fi
    sleep 0.1
  done
}
apt_install() {
  if [ -z "${SOCKUDO_APT_UPDATED:-}" ]; then apt-get update -qq; SOCKUDO_APT_UPDATED=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}
