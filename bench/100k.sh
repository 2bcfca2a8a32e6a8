#!/usr/bin/env bash
# 100,000 connections (issue #10): PROCS sockudo processes on one port (SO_REUSEPORT) forming one cluster over
# a throwaway broker, GENS generator processes (each one is limited to ~20,000 sockets by the fd limit) opening
# CONNS WebSocket connections in all from 127.0.0.2.. (--sources), all subscribed to CHANNELS channel(s); then a
# fan-out: EVENTS REST publishes at RATE/s (as fast as accepted with RATE=0), and every delivery is counted.
# Generator 0 publishes and measures server CPU over the whole fan-out (until every generator got everything);
# the others run with --listen-only. Prints memory, connect time, deliveries/s, CPU per delivery, latency.
#
#   bench/100k.sh                                   # PROCS=6 SHARDS=1 GENS=6 CONNS=100000 ADAPTER=nats
#   CONNS=30000 PROCS=2 GENS=2 bench/100k.sh        # a smaller run
#   EVENTS=50 RATE=5 ADAPTER=redis bench/100k.sh
#
# Needs release builds of `sockudo` (--features nats or redis, or full) and `sockudo-bench`. Everything it
# starts (nodes, generators, the broker) is stopped when it ends, whatever way it ends.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=${BIN:-$TARGET/release}
PROCS=${PROCS:-6}
SHARDS=${SHARDS:-1}
GENS=${GENS:-6}
CONNS=${CONNS:-100000}
CHANNELS=${CHANNELS:-1}
ADAPTER=${ADAPTER:-nats}
EVENTS=${EVENTS:-20}
RATE=${RATE:-2}
PAYLOAD=${PAYLOAD:-100}
SOURCES=${SOURCES:-8}
PORT=${PORT:-7701}
TIMEOUT=${TIMEOUT:-900}
IDLE_SECS=${IDLE_SECS:-5}
OUT=${OUT:-$TARGET/100k/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
. "$HERE/lib/nodes.sh"

for b in sockudo sockudo-bench; do
  [[ -x $BIN/$b ]] || { echo "missing $BIN/$b: cargo build --release -p sockudo -p sockudo-bench --features sockudo/full" >&2; exit 2; }
done
per_gen=$(((CONNS + GENS - 1) / GENS))
if ((per_gen + 100 > $(ulimit -Hn))); then
  echo "$per_gen connections per generator exceed the fd limit ($(ulimit -Hn)): raise GENS" >&2
  exit 2
fi

GEN_PIDS=()
stop_gens() { local p; for p in "${GEN_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; }
start_bus "$ADAPTER"
svc_on_exit stop_nodes
svc_on_exit stop_gens

log() { echo "$(date +%T) $*" | tee -a "$OUT/summary.txt" >&2; }
log "$PROCS processes x $SHARDS shard(s), adapter $ADAPTER, $CONNS connections from $GENS generators, $CHANNELS channel(s), $EVENTS events at ${RATE}/s (loadavg $(cut -d' ' -f1-3 /proc/loadavg))"

# shellcheck disable=SC2046
for ((i = 0; i < PROCS; i++)); do start_node "node$i" "$PORT" "$SHARDS" "$ADAPTER" $(adapter_env "$ADAPTER"); done
wait_port "$PORT"
sleep 3 # every node up, bound and heard on the bus
for pid in "${NODE_PIDS[@]}"; do kill -0 "$pid" 2>/dev/null || { log "node $pid died: see $OUT/node*.log"; exit 1; }; done
rss0=$(rss_sum)
bus=$(bus_pid "$ADAPTER")

rate_args="--rate $RATE --events $EVENTS"
[[ $RATE == 0 ]] && rate_args="--events $EVENTS"
common=(--url "ws://127.0.0.1:$PORT" -c "$CHANNELS" --sources "$SOURCES" --timeout "$TIMEOUT" --json --quiet)
t_start=$(date +%s.%N)
left=$CONNS
for ((g = GENS - 1; g >= 0; g--)); do
  n=$((left < per_gen ? left : per_gen))
  left=$((left - n))
  if ((g == 0)); then
    waits=$(for ((j = 1; j < GENS; j++)); do printf '%s,' "$OUT/done$j"; done)
    # shellcheck disable=SC2086
    "$BIN/sockudo-bench" "${common[@]}" -n "$n" --server-pid "$(node_pids_csv)" ${bus:+--bus-pid "$bus"} \
      fanout $rate_args --payload-bytes "$PAYLOAD" --drain 120 --ready-file "$OUT/ready0" \
      --start-file "$OUT/start" ${waits:+--wait-done "${waits%,}"} >"$OUT/gen0.json" 2>"$OUT/gen0.err" &
  else
    # shellcheck disable=SC2086
    "$BIN/sockudo-bench" "${common[@]}" -n "$n" fanout --listen-only $rate_args --drain 120 \
      --ready-file "$OUT/ready$g" --start-file "$OUT/start" --done-file "$OUT/done$g" \
      >"$OUT/gen$g.json" 2>"$OUT/gen$g.err" &
  fi
  GEN_PIDS+=("$!")
done

# Every generator connected and subscribed its share (or gave up).
while :; do
  ready=0
  for ((g = 0; g < GENS; g++)); do [[ -f $OUT/ready$g ]] && ready=$((ready + 1)); done
  ((ready == GENS)) && break
  for p in "${GEN_PIDS[@]}"; do
    kill -0 "$p" 2>/dev/null || { log "a generator ended before connecting: see $OUT/gen*.err"; exit 1; }
  done
  sleep 0.2
done
t_ready=$(date +%s.%N)
sleep 2 # settle: RSS after the connect burst
rss1=$(rss_sum)
fds=$(for pid in "${NODE_PIDS[@]}"; do ls "/proc/$pid/fd" | wc -l; done | paste -sd' ')
log "all generators ready after $(echo "$t_ready - $t_start" | bc) s; server RSS $rss0 -> $rss1 bytes; fds per node: $fds"
# What holding every connection costs while nothing is published (timers, sweeper, bus heartbeats).
cpu0=$(cpu_sum)
sleep "$IDLE_SECS"
idle_pct=$(echo "scale=1; ($(cpu_sum) - $cpu0) * 100 / $(getconf CLK_TCK) / $IDLE_SECS" | bc)
log "idle server CPU with every connection held: $idle_pct % of one core (all nodes, over $IDLE_SECS s)"
touch "$OUT/start"

status=0
for p in "${GEN_PIDS[@]}"; do wait "$p" || status=1; done
GEN_PIDS=()
stop_nodes

python3 - "$OUT" "$GENS" "$CONNS" "$rss0" "$rss1" "$t_start" "$t_ready" <<'PY' | tee -a "$OUT/summary.txt"
import json, os, statistics, sys
out, gens, conns = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rss0, rss1, t_start, t_ready = int(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6]), float(sys.argv[7])
reps, ready = [], []
for g in range(gens):
    ready.append(json.load(open(os.path.join(out, f"ready{g}"))))
    try:
        reps.append(json.load(open(os.path.join(out, f"gen{g}.json"))))
    except ValueError:
        reps.append({"ok": False, "problems": [f"generator {g} wrote no report (see gen{g}.err)"]})
subscribed = sum(r["subscribed"] for r in ready)
pub = reps[0]
delivered = sum(r.get("delivered") or 0 for r in reps)
expected = sum(r.get("expected_deliveries") or 0 for r in reps)
missing = sum(r.get("missing") or 0 for r in reps)
extra = sum(r.get("extra") or 0 for r in reps)
first = pub.get("first_event_ns")
last = max((r.get("last_delivery_ns") or 0) for r in reps)
secs = (last - first) / 1e9 if first and last > first else None
cpu, bus, gen_cpu = pub.get("server_cpu_us"), pub.get("bus_cpu_us"), sum(r.get("generator_cpu_us") or 0 for r in reps)
p99s = [r["latency"]["p99_us"] for r in reps if r.get("latency")]
p50s = [r["latency"]["p50_us"] for r in reps if r.get("latency")]
print(f"connections subscribed: {subscribed:,} of {conns:,} (connect errors {sum(r['connect_errors'] for r in ready)})")
print(f"time to connect and subscribe all: {t_ready - t_start:.1f} s ({subscribed / (t_ready - t_start):,.0f} /s)")
print(f"server RSS (sum of processes): {rss0 / 2**20:.0f} MiB idle -> {rss1 / 2**20:.0f} MiB connected, "
      f"{(rss1 - rss0) / max(subscribed, 1):,.0f} bytes per connection")
print(f"events published: {pub.get('events_sent')} (errors {pub.get('publish_errors')})")
print(f"deliveries: {delivered:,} of {expected:,} expected, missing {missing}, extra {extra}")
if secs:
    print(f"fan-out: {secs:.2f} s from first publish to last delivery, {delivered / secs:,.0f} deliveries/s")
if cpu is not None and delivered:
    print(f"server CPU: {cpu / 1e6:.2f} s, {cpu / delivered:.2f} µs per delivery"
          + (f"; bus broker CPU {bus / 1e6:.2f} s, {bus / delivered:.3f} µs per delivery" if bus is not None else ""))
print(f"generators' CPU: {gen_cpu / 1e6:.2f} s")
if p99s:
    print(f"latency per generator: p50 {', '.join(f'{v / 1000:.0f}' for v in p50s)} ms; "
          f"p99 {', '.join(f'{v / 1000:.0f}' for v in p99s)} ms (worst p99 {max(p99s) / 1000:.0f} ms)")
problems = [p for r in reps for p in r.get("problems", [])]
print("OK: every connection received every event" if not problems and missing == 0 and delivered == expected and subscribed == conns
      else "PROBLEMS: " + "; ".join(problems or ["see the reports"]))
print(f"reports: {out}")
PY
exit $status
