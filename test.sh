#!/usr/bin/env bash
# Every test: unit, property, known-answer, fuzz smoke, and the end-to-end
# tests in network namespaces. Run as root: the end-to-end tests build
# namespaces and TUN interfaces (without root they are skipped, loudly).
set -euo pipefail
cd "$(dirname "$0")"
scripts/setup-debian.sh
cargo build --workspace --release --bins
cargo test --workspace --release
