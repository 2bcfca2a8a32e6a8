#!/usr/bin/env bash
# Cluster bench (issue #10): the same fan-out load against one sockudo process and against a cluster of two
# processes (ADAPTER_DRIVER=redis, then nats), each setup RUNS times (default 2); prints the medians as a
# markdown table. In the cluster, node A listens on PORT and node B on PORT+1; the generator sends connection i
# to node i % 2 (subscribers split evenly) and publishes through node A only, so every delivery on node B went
# over the bus. Server CPU is utime+stime of both nodes summed; the broker's CPU is reported apart.
#
#   bench/cluster.sh                               # SETUPS="single cluster-redis cluster-nats" LOADS="rate fast"
#   SHARDS=2 RUNS=3 bench/cluster.sh               # shards per process, runs per setup
#   SETUPS="single-redis" bench/cluster.sh         # also: one process with the redis (or nats) adapter
#   LOADS=fast32 bench/cluster.sh                  # the fast load with 32 publish requests in flight
#   LOADS=light bench/cluster.sh                   # 100 subscribers, 20 events/s: the latency a bus hop adds
#   TABLE_ONLY=1 OUT=<dir of an earlier run> bench/cluster.sh
#
# Needs release builds of `sockudo` (--features redis,nats or full) and `sockudo-bench`; redis-server and
# nats-server are started by scripts/services/{redis,nats}.sh (throwaway, own port, stopped at exit).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=${BIN:-$TARGET/release}
SHARDS=${SHARDS:-1}
RUNS=${RUNS:-2}
PORT=${PORT:-7601}
SETUPS=${SETUPS:-"single cluster-redis cluster-nats"}
LOADS=${LOADS:-"rate fast"}
OUT=${OUT:-$TARGET/cluster-bench/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
. "$HERE/lib/nodes.sh"

# Generator arguments of each load.
load_args() {
  case $1 in
  rate) echo "-n 1000 -c 1 fanout --rate 100 --duration 10" ;;
  fast) echo "-n 4000 -c 1 fanout --events 500 --in-flight 8" ;;
  fast32) echo "-n 4000 -c 1 fanout --events 500 --in-flight 32" ;;
  light) echo "-n 100 -c 1 fanout --rate 20 --duration 5" ;;
  *) echo "unknown load $1 (rate, fast, fast32, light)" >&2; exit 2 ;;
  esac
}

# run_one SETUP LOAD RUN: start the node(s), run the generator, stop the node(s).
run_one() {
  local setup=$1 load=$2 run=$3 adapter nodes urls bus
  case $setup in
  single) adapter=local nodes=1 ;;
  single-*) adapter=${setup#single-} nodes=1 ;;
  cluster-*) adapter=${setup#cluster-} nodes=2 ;;
  *) echo "unknown setup $setup" >&2; exit 2 ;;
  esac
  start_bus "$adapter"
  # shellcheck disable=SC2046
  for ((i = 0; i < nodes; i++)); do
    start_node "$setup-$load-$run-node$i" $((PORT + i)) "$SHARDS" "$adapter" $(adapter_env "$adapter")
  done
  urls=
  for ((i = 0; i < nodes; i++)); do
    wait_port $((PORT + i))
    urls+="${urls:+,}ws://127.0.0.1:$((PORT + i))"
  done
  # Let the nodes hear each other's hello before the load starts.
  if [ "$nodes" -gt 1 ]; then sleep 2; fi
  bus=$(bus_pid "$adapter")
  echo "$(date +%T) $setup $load run $run (loadavg $(cut -d' ' -f1-3 /proc/loadavg))" | tee -a "$OUT/runs.txt" >&2
  # shellcheck disable=SC2046
  "$BIN/sockudo-bench" --url "$urls" --http-url "http://127.0.0.1:$PORT" --server-pid "$(node_pids_csv)" \
    ${bus:+--bus-pid "$bus"} --json --quiet $(load_args "$load") >"$OUT/$setup-$load-$run.json" ||
    echo "  run failed (exit $?): see $OUT/$setup-$load-$run.json" >&2
  stop_nodes
}

if [[ -z ${TABLE_ONLY:-} ]]; then
  for b in sockudo sockudo-bench; do
    [[ -x $BIN/$b ]] || { echo "missing $BIN/$b: cargo build --release -p sockudo -p sockudo-bench --features sockudo/full" >&2; exit 2; }
  done
  svc_on_exit stop_nodes
  echo "$(date -u +%FT%TZ) $(nproc) cores, SHARDS=$SHARDS" >"$OUT/info.txt"
  for run in $(seq 1 "$RUNS"); do
    for load in $LOADS; do
      for setup in $SETUPS; do run_one "$setup" "$load" "$run"; done
    done
  done
fi

python3 - "$OUT" "$SHARDS" <<'PY'
import glob, json, os, statistics, sys
out, shards = sys.argv[1], sys.argv[2]
rows = {}
for path in sorted(glob.glob(os.path.join(out, "*.json"))):
    setup, load, _run = os.path.basename(path)[:-5].rsplit("-", 2)
    try:
        d = json.load(open(path))
    except ValueError:
        d = {"ok": False}
    rows.setdefault((load, setup), []).append(d)

def get(d, key):
    for k in key.split("."):
        d = d.get(k) if isinstance(d, dict) else None
    return d

COLS = [
    ("deliveries/s", "deliveries_per_sec", lambda v: f"{v:,.0f}"),
    ("server CPU µs/delivery", "server_cpu_us_per_delivery", lambda v: f"{v:.2f}"),
    ("bus CPU µs/delivery", "bus_cpu_us_per_delivery", lambda v: f"{v:.2f}"),
    ("p50 ms", "latency.p50_us", lambda v: f"{v / 1000:.2f}"),
    ("p99 ms", "latency.p99_us", lambda v: f"{v / 1000:.2f}"),
]
print(f"\nsockudo --shards {shards} per process; median of the runs (each run in parentheses)\n")
print("| load | setup | " + " | ".join(c[0] for c in COLS) + " | delivered / expected |")
print("|---|---|" + "---|" * len(COLS) + "---|")
for (load, setup), ds in sorted(rows.items()):
    cells = []
    for _, key, fmt in COLS:
        vals = [v for v in (get(d, key) for d in ds) if isinstance(v, (int, float))]
        cells.append(f"{fmt(statistics.median(vals))} ({', '.join(fmt(v) for v in vals)})" if vals else "-")
    deliv = ", ".join(f"{d.get('delivered')}/{d.get('expected_deliveries')}" + ("" if d.get("ok") else " FAILED") for d in ds)
    print(f"| {load} | {setup} | " + " | ".join(cells) + f" | {deliv} |")
print(f"\nJSON: {out}")
PY
