#!/usr/bin/env bash
# Fuzz smoke: builds the fuzz targets under fuzz/ (their own workspace) and runs each one for a few seconds,
# starting from the committed seeds, so a parser change that panics on known input or within seconds of mutation
# fails the test run. The long runs (>= 10 million executions each) are documented in docs/security.md.
#
# Needs the nightly toolchain (libFuzzer's -Z flags) and cargo-fuzz (`cargo install cargo-fuzz`).
# FUZZ_SECONDS (default 5) sets the time per target.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${FUZZ_SECONDS:-5}"
if ! command -v cargo-fuzz >/dev/null; then
    echo "fuzz-smoke: cargo-fuzz is missing: cargo install cargo-fuzz" >&2
    exit 1
fi
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    echo "fuzz-smoke: the nightly toolchain is missing: rustup toolchain install nightly" >&2
    exit 1
fi

# The fuzz crate builds into fuzz/target, not the main target dir (different flags and target triple).
unset CARGO_TARGET_DIR
targets=(ws_decode http_request pusher_message rest_auth config_load)
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

cargo +nightly fuzz build -s none -a -O
for t in "${targets[@]}"; do
    # A throwaway corpus: the seeds are read, nothing new is written into the repository.
    mkdir -p "$scratch/$t"
    echo "fuzz-smoke: $t for ${seconds}s"
    if ! cargo +nightly fuzz run -s none -a -O "$t" "$scratch/$t" "fuzz/seeds/$t" -- \
        -max_total_time="$seconds" -print_final_stats=1 >"$scratch/$t.log" 2>&1; then
        tail -n 40 "$scratch/$t.log" >&2
        echo "fuzz-smoke: $t crashed; the input is under fuzz/artifacts/$t/" >&2
        exit 1
    fi
    grep -E '^stat::number_of_executed_units' "$scratch/$t.log" || true
done
echo "fuzz-smoke: all targets ran without a crash"
