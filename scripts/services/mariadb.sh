# A throwaway MariaDB on 127.0.0.1 for the app manager tests (sourced by scripts/test.sh).
# Exports SOCKUDO_TEST_MYSQL_PORT (user sockudo, password sockudo, database sockudo) and
# SOCKUDO_TEST_MYSQL_SOCKET (for the mariadb client).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

if ! command -v mariadbd >/dev/null 2>&1 && [ ! -x /usr/sbin/mariadbd ]; then
  echo "installing mariadb-server (Debian package)"
  apt_install mariadb-server
fi
mariadbd_bin=$(command -v mariadbd || echo /usr/sbin/mariadbd)
SOCKUDO_TEST_MYSQL_PORT=${SOCKUDO_TEST_MYSQL_PORT:-53306}
my_dir="$(pwd)/target/services/mariadb"
rm -rf "$my_dir" && mkdir -p "$my_dir"
my_user=$(id -un)
if [ "$(id -u)" = 0 ]; then my_user=mysql; chown mysql "$my_dir"; fi
mariadb-install-db --no-defaults --user="$my_user" --datadir="$my_dir/data" --auth-root-authentication-method=socket \
  >"$my_dir/install.log" 2>&1 || { cat "$my_dir/install.log" >&2; exit 1; }
SOCKUDO_TEST_MYSQL_SOCKET="$my_dir/s.sock"
"$mariadbd_bin" --no-defaults --user="$my_user" --datadir="$my_dir/data" --port="$SOCKUDO_TEST_MYSQL_PORT" \
  --bind-address=127.0.0.1 --socket="$SOCKUDO_TEST_MYSQL_SOCKET" --pid-file="$my_dir/mariadb.pid" \
  --skip-log-bin --innodb-flush-log-at-trx-commit=0 >"$my_dir/server.log" 2>&1 &
SOCKUDO_TEST_MYSQL_PID=$!
on_exit "kill $SOCKUDO_TEST_MYSQL_PID 2>/dev/null; wait $SOCKUDO_TEST_MYSQL_PID 2>/dev/null"
wait_until 300 mariadb-admin --no-defaults --socket="$SOCKUDO_TEST_MYSQL_SOCKET" -u root ping \
  || { echo "MariaDB did not start:" >&2; cat "$my_dir/server.log" >&2; exit 1; }
mariadb --no-defaults --socket="$SOCKUDO_TEST_MYSQL_SOCKET" -u root -e "
  CREATE DATABASE sockudo;
  CREATE USER 'sockudo'@'127.0.0.1' IDENTIFIED BY 'sockudo';
  GRANT ALL ON sockudo.* TO 'sockudo'@'127.0.0.1';"
export SOCKUDO_TEST_MYSQL_PORT SOCKUDO_TEST_MYSQL_SOCKET
echo "MariaDB on 127.0.0.1:$SOCKUDO_TEST_MYSQL_PORT"
