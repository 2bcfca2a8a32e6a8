#!/usr/bin/env bash
# What the single shared bus topic costs a node that has no subscriber for the channels being published (issue
# #10: "a node should not receive events for channels it has no subscriber for where the bus allows"). Node A
# (PORT) holds every subscriber and takes every publish; node B (PORT+1) holds none, so everything B does for
# the events is what per-channel topics would save it. Reports B's CPU per event (minus its idle baseline,
# measured over the same time without publishes) and A's CPU per event for comparison, per adapter, RUNS times.
#
#   bench/idle-node.sh                    # ADAPTERS="redis nats" RUNS=2 EVENTS_PER_SEC=500 SECONDS_PER_RUN=10
#
# Needs release builds of `sockudo` (--features redis,nats or full) and `sockudo-bench`.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=${BIN:-$TARGET/release}
RUNS=${RUNS:-2}
PORT=${PORT:-7651}
ADAPTERS=${ADAPTERS:-"redis nats"}
RATE=${EVENTS_PER_SEC:-500}
DURATION=${SECONDS_PER_RUN:-10}
OUT=${OUT:-$TARGET/idle-node/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
. "$HERE/lib/nodes.sh"

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)

svc_on_exit stop_nodes
for run in $(seq 1 "$RUNS"); do
  for adapter in $ADAPTERS; do
    start_bus "$adapter"
    # shellcheck disable=SC2046
    start_node "a-$adapter-$run" "$PORT" 1 "$adapter" $(adapter_env "$adapter")
    # shellcheck disable=SC2046
    start_node "b-$adapter-$run" $((PORT + 1)) 1 "$adapter" $(adapter_env "$adapter")
    wait_port "$PORT"
    wait_port $((PORT + 1))
    sleep 2
    a=${NODE_PIDS[0]} b=${NODE_PIDS[1]}
    idle0=$(ticks "$b")
    sleep "$DURATION"
    idle=$(($(ticks "$b") - idle0))
    b0=$(ticks "$b") a0=$(ticks "$a")
    "$BIN/sockudo-bench" --url "ws://127.0.0.1:$PORT" --server-pid "$a" --json --quiet \
      -n 100 -c 1 fanout --rate "$RATE" --duration "$DURATION" >"$OUT/$adapter-$run.json"
    busy=$(($(ticks "$b") - b0)) abusy=$(($(ticks "$a") - a0))
    events=$(python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(d['events'] if 'events' in d else d['expected_deliveries']//100)" "$OUT/$adapter-$run.json")
    python3 - "$adapter" "$run" "$events" "$busy" "$idle" "$abusy" "$hz" <<'PY' | tee -a "$OUT/results.txt"
import sys
adapter, run, events, busy, idle, abusy, hz = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:])
per = lambda t: t / hz * 1e6 / max(events, 1)
print(f"{adapter} run {run}: {events} events; node B (no subscribers) {per(busy - idle):.1f} us/event "
      f"({per(busy):.1f} busy, {per(idle):.1f} idle baseline); node A (100 subscribers) {per(abusy):.1f} us/event")
PY
    stop_nodes
  done
done
echo "results: $OUT/results.txt"
