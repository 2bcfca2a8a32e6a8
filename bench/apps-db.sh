#!/usr/bin/env bash
# What an app lookup costs a connect, per app manager (issue #11): the `churn` case (connect, subscribe, close,
# in loops) against the memory driver and each database driver, with a warm cache (the app found once, then
# served by each shard's cache) and with the cache disabled (every connect is a database lookup, shared only
# by concurrent connects: "cold lookups"). Prints connects/s and server CPU per connect as a markdown table.
#
#   bench/apps-db.sh                          # release builds from $CARGO_TARGET_DIR/release (or ./target)
#   BIN=target/debug DURATION=5 bench/apps-db.sh
#   DRIVERS="memory postgresql" bench/apps-db.sh
#
# Needs `sockudo` built with `--features postgres,mysql,dynamodb` and `sockudo-bench`. Starts its own
# PostgreSQL, MariaDB and moto (scripts/services/*.sh) on loopback and stops them at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET=${CARGO_TARGET_DIR:-$(pwd)/target}
BIN=${BIN:-$TARGET/release}
SHARDS=${SHARDS:-1}
DURATION=${DURATION:-10}
PORT=${PORT:-7311}
DRIVERS=${DRIVERS:-"memory postgresql mysql dynamodb"}
LOOPS=${LOOPS:-50}
for b in sockudo sockudo-bench; do
    [[ -x $BIN/$b ]] || { echo "missing $BIN/$b" >&2; exit 2; }
done

source scripts/services/postgres.sh
source scripts/services/mariadb.sh
source scripts/services/moto.sh

# The bench's default app (app-id / app-key / app-secret) in each database, in Sockudo's schema.
psql -h 127.0.0.1 -p "$SOCKUDO_TEST_POSTGRES_PORT" -U postgres -d sockudo -qc \
  "CREATE TABLE bench_apps (id VARCHAR(255) PRIMARY KEY, key VARCHAR(255) UNIQUE NOT NULL, secret VARCHAR(255) NOT NULL,
   max_connections INTEGER NOT NULL DEFAULT 0, enabled BOOLEAN NOT NULL DEFAULT TRUE,
   enable_client_messages BOOLEAN NOT NULL DEFAULT FALSE, max_client_events_per_second INTEGER NOT NULL DEFAULT 10);
   INSERT INTO bench_apps (id, key, secret) VALUES ('app-id', 'app-key', 'app-secret')"
mariadb --no-defaults -h 127.0.0.1 -P "$SOCKUDO_TEST_MYSQL_PORT" -u sockudo -psockudo sockudo -e \
  "CREATE TABLE bench_apps (id VARCHAR(255) PRIMARY KEY, \`key\` VARCHAR(255) UNIQUE NOT NULL, secret VARCHAR(255) NOT NULL,
   max_connections INT NOT NULL DEFAULT 0, enabled BOOLEAN NOT NULL DEFAULT TRUE,
   enable_client_messages BOOLEAN NOT NULL DEFAULT FALSE, max_client_events_per_second INT NOT NULL DEFAULT 10);
   INSERT INTO bench_apps (id, \`key\`, secret) VALUES ('app-id', 'app-key', 'app-secret')"
dynamo() {
  curl -sf -X POST "$SOCKUDO_TEST_DYNAMODB_URL/" -H "X-Amz-Target: DynamoDB_20120810.$1" \
    -H "Content-Type: application/x-amz-json-1.0" \
    -H "Authorization: AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=x" \
    -d "$2" >/dev/null
}
dynamo CreateTable '{"TableName":"bench_apps","BillingMode":"PAY_PER_REQUEST","AttributeDefinitions":[{"AttributeName":"id","AttributeType":"S"}],"KeySchema":[{"AttributeName":"id","KeyType":"HASH"}]}'
dynamo PutItem '{"TableName":"bench_apps","Item":{"id":{"S":"app-id"},"key":{"S":"app-key"},"secret":{"S":"app-secret"},"enabled":{"BOOL":true},"max_connections":{"N":"0"}}}'

driver_env() {
  case $1 in
  memory) ;;
  postgresql) echo "APP_MANAGER_DRIVER=postgresql DATABASE_POSTGRES_HOST=127.0.0.1 DATABASE_POSTGRES_PORT=$SOCKUDO_TEST_POSTGRES_PORT DATABASE_POSTGRES_USERNAME=postgres DATABASE_POSTGRES_TABLE_NAME=bench_apps" ;;
  mysql) echo "APP_MANAGER_DRIVER=mysql DATABASE_MYSQL_HOST=127.0.0.1 DATABASE_MYSQL_PORT=$SOCKUDO_TEST_MYSQL_PORT DATABASE_MYSQL_USERNAME=sockudo DATABASE_MYSQL_PASSWORD=sockudo DATABASE_MYSQL_TABLE_NAME=bench_apps" ;;
  dynamodb) echo "APP_MANAGER_DRIVER=dynamodb DATABASE_DYNAMODB_TABLE_NAME=bench_apps DATABASE_DYNAMODB_ENDPOINT_URL=$SOCKUDO_TEST_DYNAMODB_URL AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test" ;;
  esac
}

run_case() { # driver, cache (warm|cold)
  local cache_env="APP_MANAGER_CACHE_ENABLED=true"
  [[ $2 == cold ]] && cache_env="APP_MANAGER_CACHE_ENABLED=false"
  # shellcheck disable=SC2046
  env -i PATH="$PATH" HOST=127.0.0.1 PORT=$PORT SHARDS=$SHARDS METRICS_ENABLED=false RUST_LOG=error \
    $cache_env $(driver_env "$1") "$BIN/sockudo" >/dev/null 2>&1 &
  local pid=$!
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/up" >/dev/null && break; sleep 0.1; done
  local out
  out=$("$BIN/sockudo-bench" --url "ws://127.0.0.1:$PORT" --server-pid "$pid" --json --quiet \
    -n "$LOOPS" -c 10 churn --duration "$DURATION" || true)
  kill "$pid"; wait "$pid" 2>/dev/null || true
  python3 -c '
import json, sys
r = json.loads(sys.stdin.read())
print("| %s | %s | %.0f | %.0f | %s |" % (sys.argv[1], sys.argv[2], r.get("connects_per_sec", 0),
      r.get("server_cpu_us_per_connect", 0), (open("/proc/loadavg").read().split()[0])))' "$1" "$2" <<<"$out"
}

echo "| driver | cache | connects/s | server CPU us/connect | load |"
echo "|---|---|---|---|---|"
for driver in $DRIVERS; do
  run_case "$driver" warm
  [[ $driver == memory ]] || run_case "$driver" cold
done
