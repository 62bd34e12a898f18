#!/usr/bin/env bash
# Every test: unit, property, known-answer, end-to-end tests in network
# namespaces, the Debian package, and a bounded fuzz run. Run as root: the
# end-to-end tests build namespaces and TUN interfaces (without root they are
# skipped, loudly; VON_E2E=require turns a skip into a failure).
#   VON_FUZZ_SECONDS=N   seconds per fuzz target (default 20; 0 skips fuzzing)
set -euo pipefail
cd "$(dirname "$0")"
scripts/setup-debian.sh
cargo build --workspace --release --bins
# The end-to-end tests run this binary rather than building their own.
export VON_BIN="${VON_BIN:-$(realpath "${CARGO_TARGET_DIR:-target}")/release/von}"
# --no-fail-fast: every failing test binary is reported, not only the
# first; cargo still exits non-zero if any failed.
cargo test --workspace --release --no-fail-fast
fuzz_seconds="${VON_FUZZ_SECONDS:-20}"
if [ "$fuzz_seconds" -gt 0 ]; then
  if cargo fuzz --version >/dev/null 2>&1; then
    scripts/fuzz.sh "$fuzz_seconds"
  else
    echo "test.sh: cargo-fuzz not installed (cargo install cargo-fuzz): fuzzing skipped" >&2
    [ -z "${VON_E2E:-}" ] || exit 1
  fi
fi
