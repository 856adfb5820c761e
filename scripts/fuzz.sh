#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for a bounded time, one after another, niced.
#
# Usage: scripts/fuzz.sh [SECONDS=120] [TARGET...]
#
# Needs a nightly toolchain and cargo-fuzz (`rustup toolchain install nightly`,
# `cargo install cargo-fuzz`); the script installs neither. Each target keeps its corpus in
# fuzz/corpus/TARGET (git-ignored, so runs build on each other). A crash's input is copied to
# tests/fuzz_regressions/TARGET/, where tests/fuzz_regressions.rs replays it on stable through
# the same entry point (fuzz/entries.rs), so CI keeps failing until the owning code is fixed.
# Exit status: 0 when no target crashed, 1 otherwise; the crashed targets are listed at the end.
#
# Environment: FUZZ_JOBS=N runs N targets at once (default 1); FUZZ_ARGS adds libFuzzer flags.

set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
seconds=${1:-120}
shift || true
targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then
    mapfile -t targets < <(awk -F'"' '/^name = / && $2 != "ringcast-fuzz" { print $2 }' "$root/fuzz/Cargo.toml")
fi

cd "$root/fuzz" || exit 2
# One build of every target first (ASan, debug assertions: `cargo fuzz`'s defaults); the timed
# runs then start the binaries themselves, so no cargo runs beside them.
nice -n 10 cargo +nightly fuzz build || exit 2
binaries=$(ls -d target/*/release | head -n 1)

logs=$(mktemp -d)
crashed=()
run_one() {
    local target=$1
    mkdir -p "corpus/$target" "artifacts/$target"
    # Random bytes rarely spell a TOML key: the config target starts from the example file,
    # which names every key.
    if [[ $target == config && ! -e corpus/config/example.toml ]]; then
        cp "$root/ringcast.example.toml" corpus/config/example.toml
    fi
    # -rss_limit_mb: a decoder that reserves from a declared length shows up as an OOM crash.
    # shellcheck disable=SC2086
    nice -n 10 "$binaries/$target" "corpus/$target" -artifact_prefix="artifacts/$target/" \
        -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 ${FUZZ_ARGS:-} \
        >"$logs/$target.log" 2>&1
}

jobs_max=${FUZZ_JOBS:-1}
for target in "${targets[@]}"; do
    while [[ $(jobs -rp | wc -l) -ge $jobs_max ]]; do
        wait -n
    done
    echo "fuzzing $target for ${seconds}s (log $logs/$target.log)"
    run_one "$target" &
done
wait

for target in "${targets[@]}"; do
    runs=$(awk '/stat::number_of_executed_units/ { print $2 }' "$logs/$target.log")
    found=("artifacts/$target"/crash-* "artifacts/$target"/oom-* "artifacts/$target"/timeout-* "artifacts/$target"/leak-*)
    kept=0
    for input in "${found[@]}"; do
        [[ -f $input ]] || continue
        mkdir -p "$root/tests/fuzz_regressions/$target"
        cp "$input" "$root/tests/fuzz_regressions/$target/"
        kept=$((kept + 1))
    done
    if [[ $kept -gt 0 ]] || grep -q '^==[0-9]*==ERROR\|panicked at' "$logs/$target.log"; then
        crashed+=("$target")
        echo "$target: CRASHED after ${runs:-?} runs; $kept input(s) kept in tests/fuzz_regressions/$target/"
    else
        echo "$target: ${runs:-?} runs, no crash"
    fi
done

if [[ ${#crashed[@]} -gt 0 ]]; then
    echo "crashed: ${crashed[*]}"
    exit 1
fi
