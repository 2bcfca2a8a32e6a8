#!/usr/bin/env bash
# Fuzz smoke: builds the fuzz targets under fuzz/ (their own workspace) and runs each one for a few seconds,
# starting from the committed seeds, so a parser change that panics on known input or within seconds of mutation
# fails the test run. The long runs (>= 10 million executions each) are documented in docs/security.md.
#
# Needs cargo-fuzz (installed from crates.io when missing) and nightly compiler features: the nightly toolchain
# when rustup has it, else the stable one with RUSTC_BOOTSTRAP=1 (same flags, no download).
# FUZZ_SECONDS (default 5) sets the time per target.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${FUZZ_SECONDS:-5}"
if ! command -v cargo-fuzz >/dev/null; then
    echo "fuzz-smoke: installing cargo-fuzz" >&2
    cargo install --locked cargo-fuzz >/dev/null 2>&1 || { echo "fuzz-smoke: cannot install cargo-fuzz" >&2; exit 1; }
fi
if rustup run nightly rustc --version >/dev/null 2>&1; then
    fuzz() { cargo +nightly fuzz "$@"; }
else
    fuzz() { RUSTC_BOOTSTRAP=1 cargo fuzz "$@"; }
fi

# The fuzz crate builds into fuzz/target, not the main target dir (different flags and target triple).
unset CARGO_TARGET_DIR
targets=(ws_decode http_request pusher_message rest_auth config_load)
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

fuzz build -s none -a -O
for t in "${targets[@]}"; do
    # A throwaway corpus: the seeds are read, nothing new is written into the repository.
    mkdir -p "$scratch/$t"
    echo "fuzz-smoke: $t for ${seconds}s"
    if ! fuzz run -s none -a -O "$t" "$scratch/$t" "fuzz/seeds/$t" -- \
        -max_total_time="$seconds" -print_final_stats=1 >"$scratch/$t.log" 2>&1; then
        tail -n 40 "$scratch/$t.log" >&2
        echo "fuzz-smoke: $t crashed; the input is under fuzz/artifacts/$t/" >&2
        exit 1
    fi
    grep -E '^stat::number_of_executed_units' "$scratch/$t.log" || true
done
echo "fuzz-smoke: all targets ran without a crash"
