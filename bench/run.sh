#!/usr/bin/env bash
# The side-by-side benchmark (issues 7 and 17): von against the userspace
# WireGuard implementations, old and current, in one run, in turns, on the
# two-underlay netns topology of bench/lib/topology.sh. Run as root;
# bench/setup.sh installs what it compares against (lib/anchors.sh says
# where). Prints markdown for BENCHMARKS.md.
#
# Flow:
#   1. preflight: root, tools, anchors; build von unless --von
#   2. topology: host 1 and host 2, three more senders for the 4-peer test,
#      underlays A and B as veth pairs
#   3. tunnels, all up side by side: raw underlay, wireguard-go of Debian
#      bookworm and of trixie, boringtun, GotaTun, kernel WireGuard (when the
#      kernel has it), von (both underlays), and von with underlay B down
#      (the same agents, B taken down for its turn)
#   4. rounds: every tunnel takes its turn in every round (the order rotates
#      each round), measure.sh takes every figure once per turn
#   5. report: medians over rounds, ratios to the current anchors (trixie's
#      wireguard-go, GotaTun) and to the old ones (bookworm's wireguard-go,
#      boringtun), issue 17's goals met or not (report.awk), with machine,
#      kernel, commit, load and the offloads each interface reports
#
# Both ends share this machine's cores, so every tunnel saturates the
# machine: the ratios are the figures, not the absolute numbers.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
# shellcheck source=lib/common.sh
. "$HERE/lib/common.sh"
# shellcheck source=lib/topology.sh
. "$HERE/lib/topology.sh"
# shellcheck source=lib/tunnels.sh
. "$HERE/lib/tunnels.sh"
# shellcheck source=lib/measure.sh
. "$HERE/lib/measure.sh"

parse_args "$@"
preflight

WORK=$(mktemp -d "${TMPDIR:-/tmp}/vonbench.XXXXXX")
RESULTS="$WORK/results.tsv"
: >"$RESULTS"
finish() {
  run_cleanup
  if [ "$KEEP" = 1 ]; then log "scratch directory kept: $WORK"; else rm -rf "$WORK"; fi
}
trap finish EXIT
trap 'exit 130' INT TERM

# 1. The von binary, and which commit it is.
COMMIT=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ -z "$(git -C "$REPO" status --porcelain -- agent crypto config 2>/dev/null)" ]; then
  DIRTY=""
else
  DIRTY=" (with uncommitted changes in agent/crypto/config)"
fi
if wanted von || wanted von-1u; then
  if [ -z "$VON_BIN" ]; then
    log "building von (cargo build --release -p von-agent --bin von)"
    (cd "$REPO" && cargo build --release -q -p von-agent --bin von)
    VON_BIN=$(cd "$REPO" && cargo metadata --format-version 1 --no-deps |
      jq -r .target_directory)/release/von
  else
    DIRTY=" (von binary given with --von: $VON_BIN)"
  fi
  [ -x "$VON_BIN" ] || die "von binary $VON_BIN is missing or not executable"
fi

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
STARTED=$(date -u +'%Y-%m-%d %H:%M UTC')
START_S=$(date +%s)

# 2-3. Topology and tunnels.
log "topology $NS1 <-> $NS2; tunnels up"
topology_up
wanted raw && tunnel_up_raw
wanted wg-go-bookworm && tunnel_up_wg_go bookworm
wanted wg-go-trixie && tunnel_up_wg_go trixie
wanted boringtun && tunnel_up_boringtun
wanted gotatun && tunnel_up_gotatun
wanted kernel-wg && tunnel_up_kernel_wg
if wanted von || wanted von-1u; then tunnel_up_von; fi
SELECTED=()
for t in "${ALL_TUNNELS[@]}"; do
  if wanted "$t" && [ -n "${LABEL[$t]:-}" ]; then SELECTED+=("$t"); fi
done
[ ${#SELECTED[@]} -gt 0 ] || die "--only '$ONLY' selects no tunnel that could start"
iperf_server_up

# 4. Rounds, in turns.
for ((round = 1; round <= ROUNDS; round++)); do
  count=${#SELECTED[@]}
  for ((i = 0; i < count; i++)); do
    t=${SELECTED[$(((i + round - 1) % count))]}
    log "round $round/$ROUNDS: $t"
    tunnel_enter "$t"
    measure_tunnel "$t" "$round"
    tunnel_leave "$t"
  done
done

# 5. Report.
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
ELAPSED=$(($(date +%s) - START_S))
labels=""
for t in "${SELECTED[@]}"; do labels="$labels|$t=${LABEL[$t]}"; done
{
  echo "### $STARTED, commit $COMMIT$DIRTY"
  echo
  echo "- machine: $(nproc) cores ($(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)), $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), kernel $(uname -r)"
  echo "- load average (1/5/15 min) before: $LOAD_BEFORE; after: $LOAD_AFTER"
  echo "- socket buffer limits (they cap what any tunnel's SO_RCVBUF/SO_SNDBUF asks): net.core.rmem_max $(cat /proc/sys/net/core/rmem_max), wmem_max $(cat /proc/sys/net/core/wmem_max)"
  echo "- $ROUNDS round$([ "$ROUNDS" = 1 ] || echo s) of ${SECONDS_PER_TEST}-second tests, tunnels in turns, $((ELAPSED / 60)) min $((ELAPSED % 60)) s in all; every figure is the median over rounds"
  echo "- inner MTU $INNER_MTU on every tunnel; UDP: ${UDP_LEN}-byte datagrams offered at ${UDP_RATE}bit/s; ping every ${PING_INTERVAL} s; RTT under load is measured during the 1-stream TCP test"
  if [ "$SMALL_RATE" = 0 ]; then small_offer="as fast as one iperf3 sends them"; else small_offer="offered at ${SMALL_RATE}bit/s"; fi
  echo "- small packets: ${SMALL_LEN}-byte UDP payloads $small_offer, counted where host 2's iperf3 receives them (the raw underlay's row is what iperf3 itself manages here)"
  if [ "$(senders | wc -w)" = 4 ]; then
    echo "- 4 peers: one TCP stream from each of hosts $(senders | tr ' ' ',') to host 2 at once, each sender its own peer of host 2's tunnel, goodput summed"
  fi
  echo "- anchors as bench/setup.sh installed them under $VON_BENCH_ROOT (bench/README.md); each row names the version its binary reports"
  for t in "${!SKIPPED[@]}"; do echo "- $t: not measured: ${SKIPPED[$t]}"; done
  echo "- offloads (ethtool -k, host 1 / host 2):"
  for t in "${SELECTED[@]}"; do
    # shellcheck disable=SC2206 # IFS_ is a space-separated list
    pairs=(${IFS_[$t]})
    line=""
    for p in "${pairs[@]}"; do line="$line${line:+ / }${p#*:} $(offloads "${p%%:*}" "${p#*:}")"; done
    echo "  - ${LABEL[$t]}: $line"
  done
  echo
  awk -v order="${SELECTED[*]}" -v labels="${labels#|}" -f "$HERE/lib/report.awk" "$RESULTS"
} >"$WORK/report.md"
cat "$WORK/report.md"
if [ -n "$OUT" ]; then cp "$WORK/report.md" "$OUT"; fi
