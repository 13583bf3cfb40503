# Shared by smoke.sh and campaign.sh (sourced, not run). Sets up the cargo-fuzz invocation for
# stable Rust; see README.md "Running on stable Rust".

FUZZ_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

# `cargo fuzz` passes `-Zsanitizer=address` to rustc, which stable rustc only accepts when
# RUSTC_BOOTSTRAP=1 is set. FUZZ_SANITIZER=none uses `-s none` instead (no -Z flag, no ASan).
FUZZ_SANITIZER="${FUZZ_SANITIZER:-address}"

ensure_cargo_fuzz() {
    if ! cargo fuzz --version >/dev/null 2>&1; then
        echo "cargo-fuzz not found; installing it" >&2
        cargo install cargo-fuzz --locked
    fi
}

# cargo fuzz with the right environment and sanitizer flag for FUZZ_SANITIZER.
cfuzz() {
    local sub="$1"
    shift
    (cd "$FUZZ_DIR" && RUSTC_BOOTSTRAP=1 cargo fuzz "$sub" -s "$FUZZ_SANITIZER" "$@")
}

# One dictionary for every target (libFuzzer takes a single -dict file).
merged_dict() {
    mkdir -p "$FUZZ_DIR/target"
    cat "$FUZZ_DIR"/dict/*.dict >"$FUZZ_DIR/target/all.dict"
    echo "$FUZZ_DIR/target/all.dict"
}

all_targets() {
    (cd "$FUZZ_DIR" && cargo fuzz list)
}

# Writes the seed corpora (docs/protocol.md §13 vectors and core's encoders) into corpus/<target>/.
write_seeds() {
    (cd "$FUZZ_DIR" && cargo run --quiet --example write_seeds -- corpus >/dev/null)
}

# Final numbers of a libFuzzer log: execs/s and the last cov:/ft: figures.
summarize_log() {
    local target="$1" log="$2"
    local execs cov ft runs
    execs=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*')
    ft=$(grep -o 'ft: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*')
    printf '%-22s runs=%-11s exec/s=%-8s cov=%-6s ft=%s\n' "$target" "${runs:-?}" "${execs:-?}" "${cov:-?}" "${ft:-?}"
}
