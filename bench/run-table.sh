#!/usr/bin/env bash
# Runs every case of the performance table (issue #6) against sockudo and against sockudo-floor
# (--coalesce), each case RUNS times (default 2), and prints the medians as a markdown table.
# Every generator run's --json output is kept under $OUT (default $CARGO_TARGET_DIR/perf-table/<time>/).
#
#   bench/run-table.sh                       # build dirs from CARGO_TARGET_DIR (or ./target)
#   SHARDS=1 RUNS=3 bench/run-table.sh       # server shard count, runs per case
#   CASES="fanout-fast churn" bench/run-table.sh
#   (cases: idle fanout-rate fanout-fast fanout-fast16 many-channels churn; fanout-fast16 is fanout-fast with 16
#   publish requests in flight instead of 4, so the publisher is not what sets the pace)
#   TABLE_ONLY=1 OUT=<dir of an earlier run> bench/run-table.sh    # print the table again, run nothing
#
# Needs release builds of `sockudo`, `sockudo-bench` and `sockudo-floor` (cargo build --release --workspace).
# The machine should be quiet: the script prints /proc/loadavg before every run and in the table.
set -euo pipefail

TARGET=${CARGO_TARGET_DIR:-$(cd "$(dirname "$0")/.." && pwd)/target}
BIN=${BIN:-$TARGET/release}
SHARDS=${SHARDS:-1}
RUNS=${RUNS:-2}
PORT=${PORT:-7301}
CASES=${CASES:-"idle fanout-rate fanout-fast fanout-fast16 many-channels churn"}
OUT=${OUT:-$TARGET/perf-table/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"

for b in sockudo sockudo-bench sockudo-floor; do
    [[ -x $BIN/$b ]] || { echo "missing $BIN/$b: cargo build --release --workspace" >&2; exit 2; }
done

. "$(dirname "${BASH_SOURCE[0]}")/lib/server.sh"

# run_one SIDE CASE RUN
run_one() {
    local side=$1 case=$2 run=$3 port=$((PORT + RANDOM % 500))
    if [[ $side == sockudo ]]; then
        METRICS_PORT=$((port + 1000)) "$BIN/sockudo" --port "$port" --shards "$SHARDS" \
            >"$OUT/$side-$case-$run.log" 2>&1 &
    else
        "$BIN/sockudo-floor" --port "$port" --coalesce >"$OUT/$side-$case-$run.log" 2>&1 &
    fi
    SERVER_PID=$!
    wait_port "$port"
    echo "$(date +%T) $side $case run $run (loadavg $(cut -d' ' -f1-3 /proc/loadavg))" >&2
    # shellcheck disable=SC2046
    "$BIN/sockudo-bench" --url "ws://127.0.0.1:$port" --server-pid "$SERVER_PID" --json --quiet \
        $(case_args "$case") >"$OUT/$side-$case-$run.json" 2>"$OUT/$side-$case-$run.err" ||
        echo "  run failed (exit $?): see $OUT/$side-$case-$run.{json,err}" >&2
    stop_server
    sleep 1
}

for case in $CASES; do
    [[ -n ${TABLE_ONLY:-} ]] && break
    for run in $(seq 1 "$RUNS"); do
        for side in sockudo floor; do
            run_one "$side" "$case" "$run"
        done
    done
done

python3 - "$OUT" "$RUNS" "$SHARDS" "$CASES" <<'PY'
import json, os, statistics, sys
out, runs, shards, cases = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4].split()

def load(side, case):
    got = []
    for r in range(1, runs + 1):
        try:
            with open(os.path.join(out, f"{side}-{case}-{r}.json")) as f:
                got.append(json.load(f))
        except (OSError, ValueError):
            pass
    return got

def field(d, path):
    for k in path.split("."):
        if not isinstance(d, dict):
            return None
        d = d.get(k)
    return d

ROWS = [
    ("idle", "idle 10,000 subscribed conns: server RSS per connection (bytes)", "server_rss_per_connection_bytes", "<= 2048"),
    ("fanout-rate", "1,000 subs on 1 channel, 100 ev/s, 100 B: server CPU per delivery (us)", "server_cpu_us_per_delivery", "<= 3"),
    ("fanout-rate", "same: latency p99 (ms)", "latency.p99_us", "<= 6"),
    ("fanout-fast", "5,000 subs, 500 events as fast as accepted: CPU per delivery (us)", "server_cpu_us_per_delivery", "<= 0.5"),
    ("fanout-fast", "same: deliveries/s", "deliveries_per_sec", ">= 2,000,000"),
    ("fanout-fast16", "5,000 subs, 500 events, 16 requests in flight: CPU per delivery (us)", "server_cpu_us_per_delivery", "<= 0.5"),
    ("fanout-fast16", "same: deliveries/s", "deliveries_per_sec", ">= 2,000,000"),
    ("many-channels", "10,000 conns over 100 channels, 200 ev/s: CPU per delivery (us)", "server_cpu_us_per_delivery", "<= 10"),
    ("churn", "churn, 50 connect/subscribe/close loops: CPU per connect (us)", "server_cpu_us_per_connect", "<= 30"),
]

def fmt(v, key):
    if v is None:
        return "-"
    if key == "latency.p99_us":
        return f"{v / 1000:.1f}"
    if key == "deliveries_per_sec":
        return f"{v:,.0f}"
    if key == "server_rss_per_connection_bytes":
        return f"{v:,.0f}"
    return f"{v:.2f}"

print(f"\nsockudo --shards {shards}; floor = sockudo-floor --coalesce; {runs} runs each, median (runs)\n")
print("| case | sockudo | floor | ratio | target |")
print("|---|---|---|---|---|")
for case, label, key, target in ROWS:
    if case not in cases:
        continue
    cells, meds = [], []
    for side in ("sockudo", "floor"):
        vals = [field(d, key) for d in load(side, case)]
        vals = [v for v in vals if isinstance(v, (int, float))]
        oks = [field(d, "ok") for d in load(side, case)]
        med = statistics.median(vals) if vals else None
        meds.append(med)
        bad = "" if all(oks) else " (run failed)"
        cells.append(f"{fmt(med, key)} ({', '.join(fmt(v, key) for v in vals)}){bad}")
    ratio = f"{meds[0] / meds[1]:.2f}" if meds[0] is not None and meds[1] not in (None, 0) else "-"
    print(f"| {label} | {cells[0]} | {cells[1]} | {ratio} | {target} |")
print(f"\nJSON: {out}")
PY
