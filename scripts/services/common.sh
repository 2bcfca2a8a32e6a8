# Helpers shared by the service scripts (sourced). Each service registers its stop with `on_exit`; the hooks
# run in reverse order when the sourcing shell exits.
if ! declare -F on_exit >/dev/null; then
  SOCKUDO_EXIT_HOOKS=()
  run_exit_hooks() {
    local i
    for ((i = ${#SOCKUDO_EXIT_HOOKS[@]} - 1; i >= 0; i--)); do eval "${SOCKUDO_EXIT_HOOKS[$i]}" || true; done
  }
  on_exit() {
    SOCKUDO_EXIT_HOOKS+=("$1")
    trap run_exit_hooks EXIT
  }
  # Waits until `$2` (a command) succeeds, at most `$1` tenths of a second.
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
fi
