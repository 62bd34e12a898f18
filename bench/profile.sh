#!/usr/bin/env bash
# Where von's data path spends its time: the topology of bench/run.sh with
# von only, one iperf3 TCP stream host 1 -> host 2, and `perf record` on both
# agents meanwhile. Prints the flat profile (self time, top symbols) of the
# two agents and of the whole machine. Run as root.
#
#   sudo bench/profile.sh [--time S] [--von PATH] [--keep] [--1u]
#
# This machine's perf has no hardware counters (a VM: `perf stat -e
# instructions` says "not supported"), so it samples the cpu-clock software
# event; the shares are right, cycle and instruction counts are not to be had.
# --1u takes underlay B down first (von sending on one underlay only).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
# Hosts 1 and 2 only: the 4-peer test's extra senders would be idle agents.
PEER_HOSTS=""
# shellcheck source=lib/common.sh
. "$HERE/lib/common.sh"
# shellcheck source=lib/topology.sh
. "$HERE/lib/topology.sh"
# shellcheck source=lib/tunnels.sh
. "$HERE/lib/tunnels.sh"
# shellcheck source=lib/measure.sh
. "$HERE/lib/measure.sh"

ONE_UNDERLAY=0
SECONDS_PER_TEST=10
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --1u) ONE_UNDERLAY=1 ;;
    *) args+=("$1") ;;
  esac
  shift
done
parse_args ${args[@]+"${args[@]}"}
ONLY=von
preflight
command -v perf >/dev/null || die "perf is missing: apt-get install linux-perf"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/vonprof.XXXXXX")
trap 'run_cleanup; [ "$KEEP" = 1 ] && log "kept $WORK" || rm -rf "$WORK"' EXIT
trap 'exit 130' INT TERM

if [ -z "$VON_BIN" ]; then
  (cd "$REPO" && cargo build --release -q -p von-agent --bin von)
  VON_BIN=$(cd "$REPO" && cargo metadata --format-version 1 --no-deps |
    jq -r .target_directory)/release/von
fi

topology_up
tunnel_up_von
iperf_server_up
[ "$ONE_UNDERLAY" = 1 ] && underlay_b down

# shellcheck disable=SC2086 # a list of pids
pids=$(echo ${PIDS[von]} | tr ' ' ',')
perf record -q -e cpu-clock -F 2000 -g -o "$WORK/agents.data" -p "$pids" \
  -- sleep "$SECONDS_PER_TEST" 2>"$WORK/perf-agents.log" &
agents=$!
perf record -q -e cpu-clock -F 1000 -a -o "$WORK/machine.data" \
  -- sleep "$SECONDS_PER_TEST" 2>"$WORK/perf-machine.log" &
machine=$!
sleep 0.2
iperf_client "$WORK/tcp1.json" "$WORK/tcp1.cpu" 100.64.1.2
wait "$agents" "$machine"

printf '## TCP 1 stream through von: %.3f Gbit/s\n' "$(jq '.end.sum_received.bits_per_second / 1e9' "$WORK/tcp1.json")"
echo
echo "## The two agents: self time by object (perf cpu-clock)"
perf report -i "$WORK/agents.data" --no-children --sort dso --stdio -g none 2>/dev/null |
  grep -E '^ +[0-9]' | head -8
echo
echo "## The two agents: self time by symbol"
perf report -i "$WORK/agents.data" --no-children --sort dso,symbol --percent-limit 0.7 --stdio -g none 2>/dev/null |
  grep -E '^ +[0-9]' | sed -E 's/ +- +-? *$//' | head -40
echo
echo "## The whole machine: by command"
perf report -i "$WORK/machine.data" --no-children --sort comm --percent-limit 1 --stdio -g none 2>/dev/null |
  grep -E '^ +[0-9]' | head -15
