#!/usr/bin/env bash
# Runs Tally's cargo-fuzz targets one at a time, niced, then minimizes each corpus into the
# checked-in seeds. Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`).
#
#   scripts/fuzz.sh SECONDS [CRATE/TARGET ...]     e.g. scripts/fuzz.sh 3600
#                                                       scripts/fuzz.sh 300 query/graphite_target
#
# For each target (default: every target of proto, store, query and agent):
#   1. the working corpus <crate>/fuzz/corpus/<target>/ (git-ignored) gets the seeds added;
#   2. `cargo +nightly fuzz run` for SECONDS (`nice -n 10`, one libFuzzer process);
#   3. `cargo +nightly fuzz cmin` minimizes the corpus, which then replaces
#      <crate>/fuzz/seeds/<target>/ (commit it);
#   4. any crash input libFuzzer wrote (<crate>/fuzz/artifacts/<target>/) is copied to
#      <crate>/fuzz/regressions/<target>/, where `cargo test --test fuzz_corpora` replays it:
#      fix the bug, then commit the input with the fix.
# The last lines printed are one summary line per target: executions, corpus sizes, crashes.
#
# Build artifacts go to $CARGO_TARGET_DIR/fuzz (default target/fuzz). FUZZ_JOBS is not offered
# on purpose: the machine is shared; run longer instead.
set -euo pipefail

secs=${1:?usage: scripts/fuzz.sh SECONDS [CRATE/TARGET ...]}
shift
root=$(cd "$(dirname "$0")/.." && pwd)
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}/fuzz"

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    for krate in proto store query agent; do
        for t in $(cargo +nightly fuzz list --fuzz-dir "$root/$krate/fuzz"); do
            targets+=("$krate/$t")
        done
    done
fi

count() { find "$1" -maxdepth 1 -type f ! -name '.*' ! -name '*.md' 2>/dev/null | wc -l; }

summary=()
for spec in "${targets[@]}"; do
    krate=${spec%%/*}
    t=${spec#*/}
    fuzz="$root/$krate/fuzz"
    corpus="$fuzz/corpus/$t"
    seeds="$fuzz/seeds/$t"
    artifacts="$fuzz/artifacts/$t"
    mkdir -p "$corpus" "$seeds" "$artifacts"
    rm -f "$artifacts"/*
    cp -n "$seeds"/* "$corpus"/ 2>/dev/null || true
    before=$(count "$seeds")
    log="$fuzz/artifacts/$t.log"
    echo "== $krate/$t: $secs s from $(count "$corpus") inputs (log: $log)"
    set +e
    nice -n 10 cargo +nightly fuzz run --fuzz-dir "$fuzz" "$t" "$corpus" -- \
        -max_total_time="$secs" -timeout=10 -print_final_stats=1 \
        -artifact_prefix="$artifacts/" >"$log" 2>&1
    status=$?
    set -e
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1 || true)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*' || true)
    crashes=0
    for a in "$artifacts"/crash-* "$artifacts"/oom-* "$artifacts"/timeout-* "$artifacts"/leak-*; do
        [ -e "$a" ] || continue
        mkdir -p "$fuzz/regressions/$t"
        cp "$a" "$fuzz/regressions/$t/"
        crashes=$((crashes + 1))
    done
    if [ $status -ne 0 ] && [ $crashes -eq 0 ]; then
        echo "!! $krate/$t: cargo fuzz exited $status without a crash input; see $log" >&2
        tail -20 "$log" >&2
    fi
    nice -n 10 cargo +nightly fuzz cmin --fuzz-dir "$fuzz" "$t" "$corpus" >"$log.cmin" 2>&1
    rm -f "$seeds"/*
    cp "$corpus"/* "$seeds"/
    # The time it really ran: libFuzzer's "Done N runs in S second(s)", absent when it stopped
    # at a crash (then the executions before it are all there is).
    ran=$(grep -o 'runs in [0-9]* second' "$log" | grep -o '[0-9]*' | tail -1 || true)
    line="$krate/$t: ${ran:-stopped before} ${ran:+of }${secs}s, ${execs:-?} execs, cov ${cov:-?}, seeds $before -> $(count "$seeds"), crash inputs $crashes (exit $status)"
    echo "$line"
    summary+=("$line")
done
echo "== summary"
printf '%s\n' "${summary[@]}"
