#!/usr/bin/env bash
# Runs every test of the project: Rust unit and integration tests (real binary over loopback), the bench smoke
# test, and the conformance and webhook tests with the official pusher-js / pusher (Node, Python) SDKs, Lambda
# webhooks against moto_server. Installs what it needs.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n==> %s\n' "$*"; }

need_cmd() {
  command -v "$1" >/dev/null 2>&1 || { echo "missing required command: $1 ($2)" >&2; exit 1; }
}
need_cmd cargo "install Rust with rustup"
need_cmd node "install Node.js 18 or newer"
need_cmd npm "install npm"
need_cmd python3 "install Python 3.9 or newer (with the venv module)"

# bindgen (the xdelta3 crate behind delta compression) needs libclang at build time; the TLS SDK test makes
# its test CA with the openssl command.
for package in libclang-dev openssl; do
  if command -v dpkg >/dev/null 2>&1 && ! dpkg -s "$package" >/dev/null 2>&1; then
    log "installing $package"
    sudo_cmd=""
    [ "$(id -u)" = 0 ] || sudo_cmd="sudo"
    $sudo_cmd apt-get install -y "$package" || { echo "install $package to build and test sockudo" >&2; exit 1; }
  fi
done
need_cmd openssl "install openssl (the TLS SDK test makes its test CA with it)"

# glommio registers a small amount of locked memory per shard; 8 MiB (the usual default) is plenty for tests.
memlock=$(ulimit -l)
if [ "$memlock" != "unlimited" ] && [ "$memlock" -lt 1024 ]; then
  echo "ulimit -l is ${memlock} KiB; glommio needs at least 1024 KiB (raise it or run as root)" >&2
  exit 1
fi

# One feature set for the build and the tests, so cargo test reuses the binaries instead of building them again.
# `lambda` adds AWS Lambda webhook delivery (tested against moto_server below); `redis`, `redis-cluster` and
# `nats` the cluster adapters (tests/cluster.rs, and the SDK suites on a 2-node cluster below); `postgres`,
# `mysql` and `dynamodb` the database app managers (tests/apps_db.rs, and the SDK suites once per driver).
FEATURES="sockudo/full"

log "test services (Redis, Redis Cluster, NATS, PostgreSQL, MariaDB, moto on loopback ports of their own; stopped on exit)"
# Each exports SOCKUDO_TEST_*_URL / _NODES (and, for the buses, a _CTL script the outage tests use).
for service in redis redis-cluster nats postgres mariadb moto; do
  # shellcheck source=/dev/null
  source "scripts/services/$service.sh" || { echo "could not start the $service test service" >&2; exit 1; }
done

log "cargo build (server and bench binaries, features: $FEATURES)"
cargo build --workspace --bins --features "$FEATURES"

log "cargo test (unit + integration against the real binary)"
cargo test --workspace --features "$FEATURES"

log "fuzz smoke (every fuzz target for a few seconds, from the committed seeds)"
FUZZ_SECONDS="${FUZZ_SECONDS:-3}" scripts/fuzz-smoke.sh

log "SDK conformance tests (pusher-js, pusher)"
(
  cd tests/js
  if [ -f package-lock.json ]; then npm ci --no-audit --no-fund; else npm install --no-audit --no-fund; fi
  SOCKUDO_BIN="$(pwd)/../../target/debug/sockudo" npm test
  # The same suite with every app read from each database (tests/js/test/app-db.js mirrors the apps).
  for driver in postgresql mysql dynamodb; do
    log "SDK conformance tests (pusher-js) with APP_MANAGER_DRIVER=$driver"
    SOCKUDO_TEST_APP_DRIVER=$driver SOCKUDO_BIN="$(pwd)/../../target/debug/sockudo" npm test
  done
  # And against a 2-node cluster on one port (each connection, WebSocket or REST, on either node) per adapter.
  for adapter in redis redis-cluster nats; do
    log "SDK conformance tests (pusher-js) on a 2-node $adapter cluster"
    SOCKUDO_TEST_CLUSTER=$adapter SOCKUDO_BIN="$(pwd)/../../target/debug/sockudo" npm test
  done
)

log "SDK conformance and webhook tests (Python pusher, moto_server for Lambda)"
# requirements.txt brings moto[server] (and boto3): the Lambda webhook tests start moto_server from this venv.
if [ ! -x target/pyvenv/bin/python ]; then python3 -m venv target/pyvenv; fi
target/pyvenv/bin/python -m pip install --quiet --disable-pip-version-check -r tests/python/requirements.txt
SOCKUDO_BIN="$(pwd)/target/debug/sockudo" target/pyvenv/bin/python -m pytest -q tests/python

log "all tests passed"
