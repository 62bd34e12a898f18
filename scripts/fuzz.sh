#!/usr/bin/env bash
# Builds and runs every cargo-fuzz target of every fuzzed crate (von-crypto's
# frame and unwrap, von-packet's inbound half) for SECONDS each. Targets come
# from `cargo fuzz list` in each crate, so new ones are picked up without
# editing this script. Needs `cargo install cargo-fuzz`; works on stable
# (no sanitizer: `-s none`).
#
#   scripts/fuzz.sh 30        # CI: a short bounded run per target
set -euo pipefail

seconds="${1:?usage: $0 SECONDS (time per fuzz target)}"
case "$seconds" in
    '' | *[!0-9]*) echo "SECONDS must be a whole number, got '$seconds'" >&2; exit 2 ;;
esac
root="$(cd "$(dirname "$0")/.." && pwd)"
# The crates that hold a fuzz/ directory.
crates=(crypto packet)

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "cargo-fuzz is missing: run 'cargo install cargo-fuzz' first" >&2
    exit 2
fi

ran=0
for crate in "${crates[@]}"; do
    cd "$root/$crate"   # cargo fuzz runs from the crate that holds fuzz/
    mapfile -t targets < <(cargo fuzz list)
    if [ "${#targets[@]}" -eq 0 ]; then
        echo "no fuzz targets found in $(pwd)/fuzz" >&2
        exit 1
    fi
    cargo fuzz build -s none --release
    for target in "${targets[@]}"; do
        echo "== fuzz target $crate/$target for ${seconds}s"
        mkdir -p "fuzz/corpus/$target"
        cargo fuzz run -s none --release "$target" "fuzz/corpus/$target" -- \
            -max_total_time="$seconds" -max_len=2048
        ran=$((ran + 1))
    done
done
echo "== all $ran targets ran ${seconds}s without a crash"
