#!/usr/bin/env bash
# Installs what von's demo and tests need on a Debian machine. Idempotent:
# installs only what is missing. Needs root for apt.
set -euo pipefail

need_apt=()
command -v ip >/dev/null || need_apt+=(iproute2)
command -v ping >/dev/null || need_apt+=(iputils-ping)
command -v iperf3 >/dev/null || need_apt+=(iperf3)
command -v nft >/dev/null || need_apt+=(nftables)
command -v tcpdump >/dev/null || need_apt+=(tcpdump)
command -v systemd-analyze >/dev/null || need_apt+=(systemd)
command -v dpkg-deb >/dev/null || need_apt+=(dpkg)
# cargo-deb strips with strip/objcopy; the package test reads sections with
# readelf, asks man for the page and installs in its own mount namespace.
command -v objcopy >/dev/null || need_apt+=(binutils)
command -v man >/dev/null || need_apt+=(man-db)
command -v unshare >/dev/null || need_apt+=(util-linux)
# The router isolation proof crafts IPv4-option and IPv6 hop-by-hop look-alike
# frames with a few lines of python3 (tests/src/router.rs).
command -v python3 >/dev/null || need_apt+=(python3)
# Key manager replicas: the etcd cluster the tests start (bookworm's 3.4.23;
# docs/dependencies.md says why), and protoc with its well-known types, which
# the etcd-client crate's build script compiles the etcd API with.
command -v etcd >/dev/null || need_apt+=(etcd-server)
command -v etcdctl >/dev/null || need_apt+=(etcd-client)
command -v protoc >/dev/null || need_apt+=(protobuf-compiler)
[ -f /usr/include/google/protobuf/descriptor.proto ] || need_apt+=(libprotobuf-dev)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: missing ${need_apt[*]}; run as root (sudo $0) to install them" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${need_apt[@]}"
fi

if ! command -v cargo >/dev/null; then
  cat >&2 <<'MSG'
setup: cargo not found. von needs Rust 1.85 or newer; Debian's packaged rustc is
older. Install it with rustup (https://rustup.rs):
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh
then open a new shell and run this again.
MSG
  exit 1
fi
