#!/usr/bin/env bash
# CI smoke run: builds every fuzz target and runs each for a short fixed time from the seed
# corpora; fails on any crash, leak, timeout or OOM. Usage: fuzz/smoke.sh [SECONDS_PER_TARGET]
# (default 15). FUZZ_SANITIZER=none runs without ASan (see README.md).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/fuzz-lib.sh"

SECONDS_PER_TARGET="${1:-15}"
ensure_cargo_fuzz
write_seeds
dict=$(merged_dict)
cfuzz build
failed=()
for target in $(all_targets); do
    mkdir -p "$FUZZ_DIR/corpus/$target"
    log="$FUZZ_DIR/target/smoke-$target.log"
    # Without ASan there are no malloc hooks, so the per-allocation limit is not enforced; the
    # RSS limit still catches unbounded growth.
    if cfuzz run "$target" -- -max_total_time="$SECONDS_PER_TARGET" -dict="$dict" \
        -rss_limit_mb=1024 -malloc_limit_mb=256 -timeout=10 -print_final_stats=1 \
        >"$log" 2>&1; then
        summarize_log "$target" "$log"
    else
        echo "FAIL $target (log: $log)"
        grep -E "panicked at|ERROR: libFuzzer|SUMMARY|Test unit written" "$log" | head -5 || true
        failed+=("$target")
    fi
done
if ((${#failed[@]})); then
    echo "fuzz smoke: ${#failed[@]} target(s) failed: ${failed[*]}" >&2
    exit 1
fi
echo "fuzz smoke: all targets passed"
