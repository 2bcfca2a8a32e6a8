# A throwaway PostgreSQL on 127.0.0.1 for the app manager tests (sourced by scripts/test.sh).
# Exports SOCKUDO_TEST_POSTGRES_PORT (user postgres, no password, database sockudo).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1 || true)
if [ -z "$pg_bin" ] || [ ! -x "$pg_bin/initdb" ]; then
  echo "installing postgresql (Debian package)"
  apt_install postgresql
  pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)
fi
SOCKUDO_TEST_POSTGRES_PORT=${SOCKUDO_TEST_POSTGRES_PORT:-55432}
pg_dir="$(pwd)/target/services/postgres"
rm -rf "$pg_dir" && mkdir -p "$pg_dir"
pg_user=$(id -u)
as_pg() { if [ "$pg_user" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
if [ "$pg_user" = 0 ]; then chown postgres "$pg_dir"; fi
as_pg "$pg_bin/initdb" -D "$pg_dir/data" -A trust -U postgres >"$pg_dir/initdb.log" 2>&1 \
  || { cat "$pg_dir/initdb.log" >&2; exit 1; }
# Tests stop and start it again (a database outage) by running these two commands with `sh -c`.
pg_as=""; if [ "$pg_user" = 0 ]; then pg_as="runuser -u postgres --"; fi
SOCKUDO_TEST_POSTGRES_START="$pg_as $pg_bin/pg_ctl -D $pg_dir/data -l $pg_dir/server.log -w -o '-p $SOCKUDO_TEST_POSTGRES_PORT -k $pg_dir -c listen_addresses=127.0.0.1 -c fsync=off' start"
SOCKUDO_TEST_POSTGRES_STOP="$pg_as $pg_bin/pg_ctl -D $pg_dir/data -w -m fast stop"
sh -c "$SOCKUDO_TEST_POSTGRES_START" >/dev/null \
  || { echo "PostgreSQL did not start:" >&2; cat "$pg_dir/server.log" >&2; exit 1; }
on_exit "sh -c \"\$SOCKUDO_TEST_POSTGRES_STOP\" >/dev/null 2>&1"
"$pg_bin/psql" -h 127.0.0.1 -p "$SOCKUDO_TEST_POSTGRES_PORT" -U postgres -qc "CREATE DATABASE sockudo" >/dev/null
export SOCKUDO_TEST_POSTGRES_PORT SOCKUDO_TEST_POSTGRES_START SOCKUDO_TEST_POSTGRES_STOP
echo "PostgreSQL on 127.0.0.1:$SOCKUDO_TEST_POSTGRES_PORT"
