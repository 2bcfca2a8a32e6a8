# Helpers for the scripts that run one server at a time against the generator (bench/run-table.sh,
# bench/tls-cost.sh, bench/delta-tags.sh); sourced. The server a script starts goes in SERVER_PID; it is stopped
# by stop_server and, whatever way the script ends, on exit.

# Generator arguments of each case of the performance table (docs/performance.md).
case_args() {
    case $1 in
    idle) echo "-n 10000 -c 100 idle --hold 2" ;;
    fanout-rate) echo "-n 1000 -c 1 fanout --rate 100 --duration 10" ;;
    fanout-fast) echo "-n 5000 -c 1 fanout --events 500" ;;
    fanout-fast16) echo "-n 5000 -c 1 fanout --events 500 --in-flight 16" ;;
    many-channels) echo "-n 10000 -c 100 fanout --rate 200 --duration 10" ;;
    churn) echo "-n 50 -c 10 churn --duration 10" ;;
    *) echo "unknown case $1" >&2; exit 2 ;;
    esac
}

# wait_port PORT: until something accepts on 127.0.0.1:PORT (10 s).
wait_port() {
    for _ in $(seq 1 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    echo "nothing listens on $1" >&2
    return 1
}

SERVER_PID=
stop_server() {
    if [[ -n $SERVER_PID ]]; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
        SERVER_PID=
    fi
}
trap stop_server EXIT
