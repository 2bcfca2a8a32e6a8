#!/usr/bin/env bash
# Delta compression and tag filtering cases (issue #13), each RUNS times (default 2) on a fresh server, medians
# printed as a markdown table. Outputs under $OUT (default $CARGO_TARGET_DIR/perf-delta/<time>/).
#
#   bench/delta-tags.sh                     # SHARDS=1 RUNS=2
#   CASES="plain fossil" bench/delta-tags.sh
#
# Cases: 1,000 subscribers of one channel, 100 events/s for 10 s of a 1 KB ticker envelope (few fields change):
#   plain    no delta (baseline)          fossil / xdelta3   every subscriber asks for deltas
#   tagged   plain, events tagged          filtered  every subscriber filters, 10 % of the events match
#   fossil-i100 / xdelta3-i100   as fossil / xdelta3 with delta_compression.full_message_interval = 100
#                                (a full message every 101st event instead of every 11th)
# Needs release builds of `sockudo` and `sockudo-bench`.
set -euo pipefail

TARGET=${CARGO_TARGET_DIR:-$(cd "$(dirname "$0")/.." && pwd)/target}
BIN=${BIN:-$TARGET/release}
SHARDS=${SHARDS:-1}
RUNS=${RUNS:-2}
PORT=${PORT:-7801}
CASES=${CASES:-"plain fossil xdelta3 tagged filtered"}
OUT=${OUT:-$TARGET/perf-delta/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
for b in sockudo sockudo-bench; do
    [[ -x $BIN/$b ]] || { echo "missing $BIN/$b: cargo build --release --workspace" >&2; exit 2; }
done

BASE="-n 1000 -c 1 fanout --rate 100 --duration 10 --ticker --payload-bytes 1000"
# The server's config file for a case (every case gets one, `{}` for the defaults).
case_config() {
    local file="$OUT/$1.config.json"
    case $1 in
    *-i100) echo '{"delta_compression":{"full_message_interval":100}}' >"$file" ;;
    *) echo '{}' >"$file" ;;
    esac
    echo "$file"
}

. "$(dirname "${BASH_SOURCE[0]}")/lib/server.sh"

# This script's own cases (they replace the table's from lib/server.sh).
case_args() {
    case $1 in
    plain) echo "$BASE" ;;
    fossil | fossil-i100) echo "--delta fossil $BASE" ;;
    xdelta3 | xdelta3-i100) echo "--delta xdelta3 $BASE" ;;
    tagged) echo "--filter-match 100 $BASE" ;;
    filtered) echo "--filter-match 10 $BASE" ;;
    *) echo "unknown case $1" >&2; exit 2 ;;
    esac
}

for run in $(seq 1 "$RUNS"); do
    for case in $CASES; do
        port=$((PORT + RANDOM % 500))
        TAG_FILTERING_ENABLED=true METRICS_PORT=$((port + 1000)) "$BIN/sockudo" --config "$(case_config "$case")" --port "$port" --shards "$SHARDS" \
            >"$OUT/$case-$run.log" 2>&1 &
        SERVER_PID=$!
        wait_port "$port"
        echo "$(date +%T) $case run $run (loadavg $(cut -d' ' -f1-3 /proc/loadavg))" >&2
        # shellcheck disable=SC2046
        "$BIN/sockudo-bench" --url "ws://127.0.0.1:$port" --server-pid "$SERVER_PID" --json --quiet \
            $(case_args "$case") >"$OUT/$case-$run.json" 2>"$OUT/$case-$run.err" ||
            echo "  run failed (exit $?): see $OUT/$case-$run.{json,err}" >&2
        stop_server
        sleep 1
    done
done

python3 - "$OUT" "$RUNS" $CASES <<'PY'
import json, statistics, sys
out, runs, cases = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
def load(c, r):
    try:
        return json.load(open(f"{out}/{c}-{r}.json"))
    except Exception:
        return {}
cols = [("wire bytes / delivery", "wire_bytes_per_delivery", 1, "{:.0f}"),
        ("server CPU us / delivery", "server_cpu_us_per_delivery", 1, "{:.2f}"),
        ("server RSS after, KB / subscriber", "server_rss_after_bytes", 1 / 1024 / 1000, "{:.1f}"),
        ("deliveries", "delivered", 1, "{:.0f}"),
        ("p99 latency ms (full frames)", None, 1, "{:.1f}")]
print("| case | " + " | ".join(c[0] for c in cols) + " |")
print("|---|" + "---|" * len(cols))
for c in cases:
    row = []
    for name, key, scale, fmt in cols:
        vals = []
        for r in range(1, runs + 1):
            j = load(c, r)
            v = (j.get("latency") or {}).get("p99_us", None) if key is None else j.get(key)
            if v is not None:
                vals.append(v * (scale if key else 1 / 1000))
        row.append(f"{fmt.format(statistics.median(vals))} ({', '.join(fmt.format(v) for v in vals)})" if vals else "-")
    print(f"| {c} | " + " | ".join(row) + " |")
PY
