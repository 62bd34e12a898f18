#!/usr/bin/env bash
# Builds von and runs `von demo`: three hosts in network namespaces, two
# underlays each, the key manager embedded in one agent. Needs root.
set -euo pipefail
cd "$(dirname "$0")"
scripts/setup-debian.sh

exec cargo run --quiet --release -p von-agent --bin von -- demo "$@"
