#!/usr/bin/env bash
# What TLS costs against plain on the same server build: RSS per idle connection, server CPU per delivery and
# per connect (full handshake), sockudo with `ssl.enabled` against sockudo without, each case RUNS times
# (default 2), alternating plain / TLS. Prints the medians as a markdown table; every generator run's --json
# output is kept under $OUT (default $CARGO_TARGET_DIR/tls-cost/<time>/).
#
#   bench/tls-cost.sh                        # SHARDS=1 RUNS=2
#   CASES="idle churn" RUNS=3 bench/tls-cost.sh
#
# Needs release builds of `sockudo` and `sockudo-bench` and the openssl command (a throwaway test CA and an
# ECDSA P-256 server certificate for 127.0.0.1 are made under $OUT). Loopback only.
set -euo pipefail

TARGET=${CARGO_TARGET_DIR:-$(cd "$(dirname "$0")/.." && pwd)/target}
BIN=${BIN:-$TARGET/release}
SHARDS=${SHARDS:-1}
RUNS=${RUNS:-2}
PORT=${PORT:-7801}
CASES=${CASES:-"idle fanout-rate fanout-fast churn"}
OUT=${OUT:-$TARGET/tls-cost/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"

for b in sockudo sockudo-bench; do
    [[ -x $BIN/$b ]] || { echo "missing $BIN/$b: cargo build --release --workspace" >&2; exit 2; }
done
command -v openssl >/dev/null || { echo "the openssl command is needed for the test certificate" >&2; exit 2; }

(
    cd "$OUT"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key -out ca.pem \
        -days 2 -subj "/CN=sockudo bench CA" 2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout key.pem -out server.csr \
        -subj "/CN=127.0.0.1" 2>/dev/null
    echo "subjectAltName=IP:127.0.0.1,DNS:localhost" >ext.cnf
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out cert.pem -days 2 \
        -extfile ext.cnf 2>/dev/null
)

. "$(dirname "${BASH_SOURCE[0]}")/lib/server.sh"

# run_one SIDE CASE RUN
run_one() {
    local side=$1 case=$2 run=$3 port=$((PORT + RANDOM % 500)) url tls_env=()
    if [[ $side == tls ]]; then
        tls_env=(SSL_ENABLED=true SSL_CERT_PATH="$OUT/cert.pem" SSL_KEY_PATH="$OUT/key.pem")
        url="wss://127.0.0.1:$port"
    else
        url="ws://127.0.0.1:$port"
    fi
    env "${tls_env[@]}" METRICS_ENABLED=false SHUTDOWN_GRACE_PERIOD=0 \
        "$BIN/sockudo" --port "$port" --shards "$SHARDS" >"$OUT/$side-$case-$run.log" 2>&1 &
    SERVER_PID=$!
    wait_port "$port"
    echo "$(date +%T) $side $case run $run (loadavg $(cut -d' ' -f1-3 /proc/loadavg))" >&2
    # shellcheck disable=SC2046
    "$BIN/sockudo-bench" --url "$url" --ca "$OUT/ca.pem" --server-pid "$SERVER_PID" --json --quiet \
        $(case_args "$case") >"$OUT/$side-$case-$run.json" 2>"$OUT/$side-$case-$run.err" ||
        echo "  run failed (exit $?): see $OUT/$side-$case-$run.{json,err}" >&2
    stop_server
    sleep 1
}

for case in $CASES; do
    for run in $(seq 1 "$RUNS"); do
        run_one plain "$case" "$run"
        run_one tls "$case" "$run"
    done
done

python3 - "$OUT" "$RUNS" $CASES <<'PY'
import json, statistics, sys
out, runs, cases = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
fields = {
    "idle": [("server_rss_per_connection_bytes", "RSS per idle connection (B)"),
             ("server_cpu_us_per_connect", "server CPU per connect+subscribe (µs)")],
    "fanout-rate": [("server_cpu_us_per_delivery", "server CPU per delivery (µs), 1000 subs x 100 ev/s"),
                    ("latency.p50_us", "latency p50 (µs)")],
    "fanout-fast": [("server_cpu_us_per_delivery", "server CPU per delivery (µs), 5000 subs, 500 events"),
                    ("deliveries_per_sec", "deliveries/s")],
    "churn": [("server_cpu_us_per_connect", "server CPU per connect (µs), churn"),
              ("connects_per_sec", "connects/s")],
}
def get(d, path):
    for p in path.split("."):
        d = d.get(p) if isinstance(d, dict) else None
    return d
print("| case | measure | plain | TLS | TLS / plain |")
print("|---|---|---|---|---|")
for case in cases:
    for key, label in fields[case]:
        med = {}
        for side in ("plain", "tls"):
            vals = []
            for run in range(1, runs + 1):
                try:
                    with open(f"{out}/{side}-{case}-{run}.json") as f:
                        v = get(json.load(f), key)
                    if v is not None:
                        vals.append(float(v))
                except (OSError, ValueError):
                    pass
            med[side] = (statistics.median(vals), vals) if vals else (None, [])
        def show(m):
            v, vals = m
            return "n/a" if v is None else f"{v:,.1f} [{', '.join(f'{x:,.1f}' for x in vals)}]"
        ratio = ("n/a" if not med["plain"][0] or med["tls"][0] is None
                 else f"{med['tls'][0] / med['plain'][0]:.2f}")
        print(f"| {case} | {label} | {show(med['plain'])} | {show(med['tls'])} | {ratio} |")
PY
