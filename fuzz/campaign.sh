#!/usr/bin/env bash
# Longer campaign: runs each target for SECONDS (default 600), two at a time, niced, keeping the
# corpus; prints execs/s and coverage per target. Usage: fuzz/campaign.sh [SECONDS] [TARGET...]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/fuzz-lib.sh"

SECONDS_PER_TARGET="${1:-600}"
shift || true
ensure_cargo_fuzz
dict=$(merged_dict)
targets=("$@")
if ((${#targets[@]} == 0)); then
    mapfile -t targets < <(all_targets)
fi
cfuzz build
mkdir -p "$FUZZ_DIR/target/campaign"
run_one() {
    local target="$1" log="$FUZZ_DIR/target/campaign/$1.log"
    mkdir -p "$FUZZ_DIR/corpus/$target"
    if nice -n 10 bash -c "source '$FUZZ_DIR/fuzz-lib.sh'; cfuzz run '$target' -- \
        -max_total_time=$SECONDS_PER_TARGET -dict='$dict' -rss_limit_mb=1024 \
        -malloc_limit_mb=256 -timeout=10 -print_final_stats=1" >"$log" 2>&1; then
        summarize_log "$target" "$log"
    else
        echo "CRASH $target (log: $log)"
    fi
}
running=0
for target in "${targets[@]}"; do
    run_one "$target" &
    running=$((running + 1))
    if ((running >= 2)); then
        wait -n || true
        running=$((running - 1))
    fi
done
wait
