#!/usr/bin/env bash
# Builds von and runs `von-demo`: three hosts in network namespaces, two
# underlays each, the key manager embedded in one agent. Needs root.
set -euo pipefail
cd "$(dirname "$0")"
scripts/setup-debian.sh

# Cargo's own progress shows: the first release build compiles about 300
# crates and takes minutes on a small machine; later runs take seconds.
echo "demo.sh: building von (release; the first build takes a few minutes, later ones seconds)" >&2
cargo build --release -p von-agent -p von-demo
target_dir="${CARGO_TARGET_DIR:-target}"
exec "$target_dir/release/von-demo" --von "$target_dir/release/von" "$@"
