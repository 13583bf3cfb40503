#!/usr/bin/env bash
# CI smoke run: builds every fuzz target, writes the seed corpora, and runs each target for a
# short fixed time (default 15 s, FUZZ_JOBS=2 at a time); fails on any crash, leak, timeout or
# OOM. Usage: fuzz/smoke.sh [SECONDS_PER_TARGET]. FUZZ_SANITIZER=none runs without ASan (see
# README.md). Installs cargo-fuzz only if it is missing.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/fuzz-lib.sh"

SECONDS_PER_TARGET="${1:-15}"
JOBS="${FUZZ_JOBS:-2}"
ensure_cargo_fuzz
write_seeds
dict=$(merged_dict)
cfuzz build
mkdir -p "$FUZZ_DIR/target/smoke"

# Runs one target; prints its numbers, or FAIL plus the crash summary and exits non-zero.
smoke_one() {
    local target="$1" log="$FUZZ_DIR/target/smoke/$1.log"
    mkdir -p "$FUZZ_DIR/corpus/$target"
    # Without ASan there are no malloc hooks, so the per-allocation limit is not enforced; the
    # RSS limit still catches unbounded growth.
    if cfuzz run "$target" -- -max_total_time="$SECONDS_PER_TARGET" -dict="$dict" \
        -rss_limit_mb=1024 -malloc_limit_mb=256 -timeout=10 -print_final_stats=1 \
        >"$log" 2>&1; then
        summarize_log "$target" "$log"
    else
        echo "FAIL $target (log: $log)"
        grep -E "panicked at|ERROR: libFuzzer|SUMMARY|Test unit written" "$log" | head -5 || true
        return 1
    fi
}

failed=0
running=0
# FUZZ_SKIP: space-separated targets to leave out of the smoke run (for a known, reported
# finding that is being fixed); they still build above.
for target in $(all_targets); do
    if [[ " ${FUZZ_SKIP:-} " == *" $target "* ]]; then
        echo "SKIP $target (FUZZ_SKIP)"
        continue
    fi
    smoke_one "$target" &
    running=$((running + 1))
    if ((running >= JOBS)); then
        wait -n || failed=$((failed + 1))
        running=$((running - 1))
    fi
done
while ((running > 0)); do
    wait -n || failed=$((failed + 1))
    running=$((running - 1))
done
if ((failed)); then
    echo "fuzz smoke: $failed target(s) failed" >&2
    exit 1
fi
echo "fuzz smoke: all targets passed"
