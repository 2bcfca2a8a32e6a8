# moto's server on 127.0.0.1 (DynamoDB for the app manager tests), from PyPI `moto[server]` in target/pyvenv
# (sourced by scripts/test.sh). Exports SOCKUDO_TEST_DYNAMODB_URL and SOCKUDO_TEST_DYNAMODB_PORT, and
# SOCKUDO_TEST_SQS_URL (the same endpoint: moto serves SQS too) for the webhook queue tests.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

if [ ! -x target/pyvenv/bin/python ]; then python3 -m venv target/pyvenv; fi
if [ ! -x target/pyvenv/bin/moto_server ]; then
  echo "installing moto[server] (PyPI) into target/pyvenv"
  target/pyvenv/bin/python -m pip install --quiet --disable-pip-version-check -r tests/python/requirements.txt
fi
SOCKUDO_TEST_DYNAMODB_PORT=${SOCKUDO_TEST_DYNAMODB_PORT:-55000}
moto_dir="$(pwd)/target/services/moto"
mkdir -p "$moto_dir"
target/pyvenv/bin/moto_server -H 127.0.0.1 -p "$SOCKUDO_TEST_DYNAMODB_PORT" >"$moto_dir/server.log" 2>&1 &
SOCKUDO_TEST_MOTO_PID=$!
on_exit "kill $SOCKUDO_TEST_MOTO_PID 2>/dev/null; wait $SOCKUDO_TEST_MOTO_PID 2>/dev/null"
SOCKUDO_TEST_DYNAMODB_URL="http://127.0.0.1:$SOCKUDO_TEST_DYNAMODB_PORT"
wait_until 300 python3 -c "import urllib.request; urllib.request.urlopen('$SOCKUDO_TEST_DYNAMODB_URL/moto-api/')" \
  || { echo "moto_server did not start:" >&2; cat "$moto_dir/server.log" >&2; exit 1; }
SOCKUDO_TEST_SQS_URL="$SOCKUDO_TEST_DYNAMODB_URL"
export SOCKUDO_TEST_DYNAMODB_URL SOCKUDO_TEST_DYNAMODB_PORT SOCKUDO_TEST_SQS_URL
echo "moto_server (DynamoDB, SQS) on $SOCKUDO_TEST_DYNAMODB_URL"
