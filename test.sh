#!/usr/bin/env bash
# Every test: unit, property, known-answer, and the end-to-end tests in network
# namespaces (those need root; they skip with a message without it).
set -euo pipefail
cd "$(dirname "$0")"
cargo test --workspace --release
