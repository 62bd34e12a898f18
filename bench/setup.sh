#!/usr/bin/env bash
# Installs what bench/run.sh compares von against, and the tools it measures
# with. Idempotent: installs only what is missing (delete an anchor's
# directory to fetch it again). Run as root.
#
#   Host packages (the host's own apt sources): iperf3, iproute2,
#   iputils-ping, ethtool, jq and wireguard-tools (`wg`), without their
#   recommends (wireguard-tools recommends a whole kernel image).
#
#   The anchors, each in its own directory under $VON_BENCH_ROOT
#   (/opt/von-bench; see lib/anchors.sh), none on the host's PATH:
#   - wireguard-go of Debian bookworm and of Debian trixie: each .deb is
#     fetched with `apt-get download` under an apt configuration of bench's
#     own ($VON_BENCH_ROOT/apt: its own sources list naming both suites, its
#     own lists, cache and apt.conf.d), checked against Debian's archive
#     keyring as apt always does, and unpacked with `dpkg-deb -x`. The host's
#     apt sources, lists and cache are not touched and dpkg installs nothing.
#   - boringtun-cli 0.7.1 and gotatun-cli 0.10.2 (Mullvad's GotaTun) from
#     crates.io: `cargo install --locked --version V --root DIR`.
#
# The .debs come from the Debian mirror the host's apt already uses (the
# first one serving a release's main component); set VON_BENCH_DEBIAN_MIRROR
# to a mirror URL to use another, e.g. on a host that is not Debian.
#
# Kernel WireGuard needs no install: run.sh uses it when the running kernel
# has it (`ip link add type wireguard` works) and says so when it does not.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib/anchors.sh
. "$HERE/lib/anchors.sh"

say() { printf 'bench/setup.sh: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

[ "$(id -u)" -eq 0 ] || die "installs packages and writes $VON_BENCH_ROOT; run it as root (sudo $0)"

# 1. Tools, from the host's own apt sources.
need_apt=()
command -v ip >/dev/null || need_apt+=(iproute2)
command -v ping >/dev/null || need_apt+=(iputils-ping)
command -v iperf3 >/dev/null || need_apt+=(iperf3)
command -v ethtool >/dev/null || need_apt+=(ethtool)
command -v wg >/dev/null || need_apt+=(wireguard-tools)
command -v jq >/dev/null || need_apt+=(jq)
if [ ${#need_apt[@]} -gt 0 ]; then
  say "installing ${need_apt[*]} from the host's apt sources"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${need_apt[@]}"
fi
mkdir -p "$VON_BENCH_ROOT"

# 2. wireguard-go of each suite, through bench's own apt configuration.
APT_DIR=$VON_BENCH_ROOT/apt

debian_mirror() {
  if [ -n "${VON_BENCH_DEBIAN_MIRROR:-}" ]; then
    echo "$VON_BENCH_DEBIAN_MIRROR"
    return
  fi
  # shellcheck disable=SC2016 # apt expands $(SITE) etc., not the shell
  apt-get indextargets --format '$(SITE) $(RELEASE) $(COMPONENT) $(TARGET_OF)' 2>/dev/null |
    awk '$4 == "deb" && $3 == "main" && $2 !~ /-/ { print $1; exit }'
}

# The configuration is read before apt's own (APT_CONFIG comes first), so
# it can point apt.conf.d at an empty directory: none of the host's hooks
# (appstream, PackageKit, docker-clean) run for these downloads.
private_apt_config() {
  local mirror keyring=/usr/share/keyrings/debian-archive-keyring.gpg suite
  mirror=$(debian_mirror)
  [ -n "$mirror" ] || die "found no Debian mirror in the host's apt sources; set VON_BENCH_DEBIAN_MIRROR=URL (a Debian archive) and run again"
  [ -r "$keyring" ] || die "$keyring is missing; install debian-archive-keyring (it checks the suites' signatures)"
  mkdir -p "$APT_DIR"/{apt.conf.d,sources.list.d,state/lists/partial,cache/archives/partial,debs}
  for suite in "${WG_GO_SUITES[@]}"; do
    echo "deb [signed-by=$keyring] $mirror $suite main"
  done >"$APT_DIR/sources.list"
  cat >"$APT_DIR/apt.conf" <<EOF
// bench/setup.sh's own apt: fetches the wireguard-go packages of
// ${WG_GO_SUITES[*]} without touching the host's apt sources, lists or cache.
Dir::Etc::Parts "$APT_DIR/apt.conf.d";
Dir::Etc::SourceList "$APT_DIR/sources.list";
Dir::Etc::SourceParts "$APT_DIR/sources.list.d";
Dir::State "$APT_DIR/state";
Dir::Cache "$APT_DIR/cache";
Acquire::Languages "none";
EOF
  # apt downloads as the unprivileged _apt user where it exists.
  if id _apt >/dev/null 2>&1; then
    chown _apt:root "$APT_DIR/debs" "$APT_DIR/state/lists/partial" "$APT_DIR/cache/archives/partial"
  fi
}

# private_apt ARGS...: apt-get under bench's own configuration.
private_apt() { APT_CONFIG=$APT_DIR/apt.conf apt-get "$@"; }

have_wg_go() { [ -x "$(wg_go_bin "$1")" ] && [ -s "$(wg_go_dir "$1")/PACKAGE" ]; }

install_wg_go() {
  local suite=$1 dir deb new
  dir=$(wg_go_dir "$suite")
  rm -f "$APT_DIR"/debs/wireguard-go_*.deb
  (cd "$APT_DIR/debs" && private_apt download -q "wireguard-go/$suite" >&2)
  deb=$(find "$APT_DIR/debs" -name 'wireguard-go_*.deb' | head -1)
  [ -n "$deb" ] || die "apt-get download wireguard-go/$suite left no .deb in $APT_DIR/debs"
  # Unpacked beside its final place and moved there whole, so an interrupted
  # run leaves either the old directory or none, never half of one.
  new=$dir.new
  rm -rf "$new"
  mkdir -p "$new"
  dpkg-deb -x "$deb" "$new"
  echo "$(dpkg-deb -f "$deb" Package) $(dpkg-deb -f "$deb" Version) (Debian $suite)" >"$new/PACKAGE"
  "$new/usr/bin/wireguard-go" --version >/dev/null ||
    die "the wireguard-go of $deb does not run here"
  rm -rf "$dir"
  mv "$new" "$dir"
  rm -f "$deb"
  say "unpacked $(cat "$dir/PACKAGE") into $dir"
}

missing=()
for suite in "${WG_GO_SUITES[@]}"; do
  if have_wg_go "$suite"; then
    say "have $(cat "$(wg_go_dir "$suite")/PACKAGE") in $(wg_go_dir "$suite")"
  else
    missing+=("$suite")
  fi
done
if [ ${#missing[@]} -gt 0 ]; then
  private_apt_config
  say "apt-get update with bench's own sources ($APT_DIR/sources.list: ${WG_GO_SUITES[*]})"
  private_apt update -q >&2
  for suite in "${missing[@]}"; do install_wg_go "$suite"; done
  # The suites' package lists (about 40 MB) are only needed to download.
  rm -rf "$APT_DIR/state/lists" "$APT_DIR/cache"
fi

# 3. boringtun and GotaTun from crates.io, each in its own --root.
command -v cargo >/dev/null || die "cargo not found; install Rust first (see scripts/setup-debian.sh)"

# cargo_anchor CRATE VERSION BIN: cargo install CRATE@VERSION unless BIN is
# there and reports VERSION. CARGO_TARGET_DIR is unset so the build goes to
# cargo's own temporary directory, not a project's target.
cargo_anchor() {
  local crate=$1 version=$2 bin=$3 root
  root=$(dirname "$(dirname "$bin")")
  if [ -x "$bin" ] && "$bin" --version 2>/dev/null | grep -qw "$version"; then
    say "have $crate $version in $root"
    return
  fi
  say "cargo install $crate $version into $root (a few minutes)"
  env -u CARGO_TARGET_DIR cargo install "$crate" --locked --version "$version" --root "$root"
}

cargo_anchor boringtun-cli "$BORINGTUN_VERSION" "$BORINGTUN_BIN"
cargo_anchor gotatun-cli "$GOTATUN_VERSION" "$GOTATUN_BIN"

say "anchors in $VON_BENCH_ROOT (host apt sources untouched):"
for suite in "${WG_GO_SUITES[@]}"; do
  say "  $(cat "$(wg_go_dir "$suite")/PACKAGE"): $(wg_go_bin "$suite") reports $("$(wg_go_bin "$suite")" --version | awk '{ print $2; exit }')"
done
say "  $BORINGTUN_BIN reports $("$BORINGTUN_BIN" --version)"
say "  $GOTATUN_BIN reports $("$GOTATUN_BIN" --version)"
say "tools: iperf3, wg, ethtool and jq are installed"
