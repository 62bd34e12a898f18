#!/usr/bin/env bash
# Installs what bench/run.sh compares von against, and the tools it measures
# with. Idempotent: installs only what is missing. Run as root.
#
#   Debian packages: iperf3, iproute2, iputils-ping, ethtool, wireguard-go
#                    and wireguard-tools (`wg`), without their recommends
#                    (wireguard-tools recommends a whole kernel image).
#   crates.io:       boringtun-cli (`cargo install`), into ~/.cargo/bin.
#
# Kernel WireGuard needs no install: run.sh uses it when the running kernel
# has it (`ip link add type wireguard` works) and says so when it does not.
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
  echo "bench/setup.sh: installs Debian packages; run it as root (sudo $0)" >&2
  exit 1
fi

need_apt=()
command -v ip >/dev/null || need_apt+=(iproute2)
command -v ping >/dev/null || need_apt+=(iputils-ping)
command -v iperf3 >/dev/null || need_apt+=(iperf3)
command -v ethtool >/dev/null || need_apt+=(ethtool)
command -v wireguard-go >/dev/null || need_apt+=(wireguard-go)
command -v wg >/dev/null || need_apt+=(wireguard-tools)
command -v jq >/dev/null || need_apt+=(jq)
if [ ${#need_apt[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${need_apt[@]}"
fi

if ! command -v cargo >/dev/null; then
  echo "bench/setup.sh: cargo not found; install Rust first (see scripts/setup-debian.sh)" >&2
  exit 1
fi
if ! command -v boringtun-cli >/dev/null && [ ! -x "${CARGO_HOME:-$HOME/.cargo}/bin/boringtun-cli" ]; then
  cargo install boringtun-cli --locked
fi
echo "bench/setup.sh: iperf3, wireguard-go, wg, boringtun-cli, ethtool and jq are installed"
