#!/usr/bin/env bash
# Builds and runs every cargo-fuzz target of von-crypto for SECONDS each.
# Targets come from `cargo fuzz list`, so new ones are picked up without
# editing this script. Needs `cargo install cargo-fuzz`; works on stable
# (no sanitizer: `-s none`).
#
#   crypto/fuzz/run.sh 30        # CI: a short bounded run per target
set -euo pipefail

seconds="${1:?usage: $0 SECONDS (time per fuzz target)}"
case "$seconds" in
    '' | *[!0-9]*) echo "SECONDS must be a whole number, got '$seconds'" >&2; exit 2 ;;
esac
cd "$(dirname "$0")/.."   # cargo fuzz runs from the crate that holds fuzz/

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "cargo-fuzz is missing: run 'cargo install cargo-fuzz' first" >&2
    exit 2
fi

mapfile -t targets < <(cargo fuzz list)
if [ "${#targets[@]}" -eq 0 ]; then
    echo "no fuzz targets found in $(pwd)/fuzz" >&2
    exit 1
fi

cargo fuzz build -s none --release
for target in "${targets[@]}"; do
    echo "== fuzz target $target for ${seconds}s"
    mkdir -p "fuzz/corpus/$target"
    cargo fuzz run -s none --release "$target" "fuzz/corpus/$target" -- \
        -max_total_time="$seconds" -max_len=2048
done
echo "== all ${#targets[@]} targets ran ${seconds}s without a crash"
