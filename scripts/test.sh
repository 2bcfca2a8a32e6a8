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

# glommio registers a small amount of locked memory per shard; 8 MiB (the usual default) is plenty for tests.
memlock=$(ulimit -l)
if [ "$memlock" != "unlimited" ] && [ "$memlock" -lt 1024 ]; then
  echo "ulimit -l is ${memlock} KiB; glommio needs at least 1024 KiB (raise it or run as root)" >&2
  exit 1
fi

# One feature set for the build and the tests, so cargo test reuses the binaries instead of building them again.
# `lambda` adds AWS Lambda webhook delivery (tested against moto_server below); `postgres`, `mysql` and
# `dynamodb` the database app managers (tests/apps_db.rs, and the SDK suites once per driver below).
FEATURES="sockudo/lambda,sockudo/postgres,sockudo/mysql,sockudo/dynamodb"

# Services for the tests: throwaway instances on loopback ports of their own, stopped when this script exits.
log "services (PostgreSQL, MariaDB, moto for DynamoDB)"
source scripts/services/postgres.sh
source scripts/services/mariadb.sh
source scripts/services/moto.sh

log "cargo build (server and bench binaries, features: $FEATURES)"
cargo build --workspace --bins --features "$FEATURES"

log "cargo test (unit + integration against the real binary)"
cargo test --workspace --features "$FEATURES"

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
)

log "SDK conformance and webhook tests (Python pusher, moto_server for Lambda)"
# requirements.txt brings moto[server] (and boto3): the Lambda webhook tests start moto_server from this venv.
if [ ! -x target/pyvenv/bin/python ]; then python3 -m venv target/pyvenv; fi
target/pyvenv/bin/python -m pip install --quiet --disable-pip-version-check -r tests/python/requirements.txt
SOCKUDO_BIN="$(pwd)/target/debug/sockudo" target/pyvenv/bin/python -m pytest -q tests/python

log "all tests passed"
