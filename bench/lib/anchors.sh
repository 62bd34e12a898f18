# shellcheck shell=bash
# Where the implementations bench/run.sh compares von against live, and which
# versions they are. Sourced by setup.sh (which installs them) and run.sh
# (which runs them), so the two always agree. Not run.
#
# Every anchor lives in a directory of bench's own under $VON_BENCH_ROOT,
# named after what it is, never on the host's PATH:
#
#   wireguard-go-bookworm/  Debian 12's wireguard-go package, extracted
#   wireguard-go-trixie/    Debian 13's wireguard-go package, extracted
#   boringtun-0.7.1/        Cloudflare's boringtun-cli, `cargo install --root`
#   gotatun-0.10.2/         Mullvad's GotaTun (gotatun-cli), `cargo install --root`
#   apt/                    setup.sh's own apt configuration, sources, lists
#                           and cache (the host's apt is not touched)
#
# Each extracted package's directory has a file PACKAGE with the Debian
# package's name, version and suite; the report shows it beside the version
# the binary itself reports (trixie's 0.0.20231211-1+b9 reports v0.0.20230223).

VON_BENCH_ROOT=${VON_BENCH_ROOT:-/opt/von-bench}

# Debian suites whose wireguard-go is an anchor: bookworm's (0.0.20220316,
# before wireguard-go's batching and offload work; runs 1-3 of BENCHMARKS.md
# were against it) and trixie's (vectorized I/O, TUN TSO/GRO).
WG_GO_SUITES=(bookworm trixie)
BORINGTUN_VERSION=0.7.1
GOTATUN_VERSION=0.10.2

wg_go_dir() { echo "$VON_BENCH_ROOT/wireguard-go-$1"; }
wg_go_bin() { echo "$VON_BENCH_ROOT/wireguard-go-$1/usr/bin/wireguard-go"; }
BORINGTUN_BIN=$VON_BENCH_ROOT/boringtun-$BORINGTUN_VERSION/bin/boringtun-cli
GOTATUN_BIN=$VON_BENCH_ROOT/gotatun-$GOTATUN_VERSION/bin/gotatun
