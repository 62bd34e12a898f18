#!/usr/bin/env bash
# Checks the arithmetic of bench/run.sh without root or network: medians
# (odd and even counts, failed rounds), ratios to the current anchors
# (trixie's wireguard-go, GotaTun) and to the old ones (bookworm's
# wireguard-go, boringtun), issue 17's goals (met, not met, not measured,
# the border of a target), the small-packet rate read from iperf3's JSON,
# and the ping RTT average and nearest-rank p99. Prints "N passed, N failed".
set -euo pipefail
HERE=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=../lib/measure.sh
. "$HERE/lib/measure.sh"

passed=0
failed=0
check() {
  if [ "$2" = "$3" ]; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
    printf 'FAIL %s\n  want: %s\n  got:  %s\n' "$1" "$2" "$3"
  fi
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# results TUNNEL METRIC VALUE...: one line per round.
results() {
  local t=$1 m=$2 r=0 v
  shift 2
  for v in "$@"; do
    r=$((r + 1))
    printf '%s\t%s\t%s\t%s\n' "$t" "$r" "$m" "$v"
  done
}

# TCP 1 stream: trixie 1 3 2 (median 2); GotaTun 4 1 3 2 (even: 2.5);
# bookworm 1; boringtun 2; von 4 fail 6 (median 5 over the 2 runs taken).
# RTT under load: lower is better, the same division.
{
  results wg-go-trixie tcp1_gbps 1 3 2
  results gotatun tcp1_gbps 4 1 3 2
  results wg-go-bookworm tcp1_gbps 1
  results boringtun tcp1_gbps 2
  results von tcp1_gbps 4 fail 6
  results wg-go-trixie rtt_load_avg 2
  results gotatun rtt_load_avg 4
  results von rtt_load_avg 1
  results von udp_mbps fail
} >"$tmp/results.tsv"
order="wg-go-trixie gotatun wg-go-bookworm boringtun von"
labels="wg-go-trixie=WGT|gotatun=GT|wg-go-bookworm=WGB|boringtun=BT|von=V"
report=$(awk -v order="$order" -v labels="$labels" -f "$HERE/lib/report.awk" "$tmp/results.tsv")
# row LABEL N: the Nth row of that tunnel (1: medians, 2: current anchors,
# 3: old anchors).
row() { grep "^| $1 |" <<<"$report" | sed -n "$2p"; }

# Medians: TCP 1 | TCP 4 | 4 peers | 64 B kpps | loss | UDP | loss | RTT idle | RTT load | CPU m | CPU p.
check "trixie medians" "| WGT | 2.000 | – | – | – | – | – | – | – / – | 2.00 / – | – | – |" "$(row WGT 1)"
check "GotaTun even median" "| GT | 2.500 | – | – | – | – | – | – | – / – | 4.00 / – | – | – |" "$(row GT 1)"
check "von median of the runs taken, a figure that failed everywhere" \
  "| V | 5.000 (2/3 runs) | – | – | – | – | fail (0/1 runs) | – | – / – | 1.00 / – | – | – |" "$(row V 1)"
# Ratios: TCP 1 | TCP 4 | 4 peers | 64 B | UDP | RTT idle avg | p99 | RTT load avg | p99 | CPU m | CPU p.
check "von against the current anchors: 5/2, 5/2.5; RTT 1/2, 1/4" \
  "| V | 2.50 / 2.00 | – / – | – / – | – / – | – / – | – / – | – / – | 0.50 / 0.25 | – / – | – / – | – / – |" \
  "$(row V 2)"
check "von against the old anchors: 5/1, 5/2" \
  "| V | 5.00 / 2.50 | – / – | – / – | – / – | – / – | – / – | – / – | – / – | – / – | – / – | – / – |" \
  "$(row V 3)"
check "trixie against itself and GotaTun" \
  "| WGT | 1.00 / 0.80 | – / – | – / – | – / – | – / – | – / – | – / – | 1.00 / 0.50 | – / – | – / – | – / – |" \
  "$(row WGT 2)"
check "the current anchors' table names them by label" "1" \
  "$(grep -c "^Ratio of each median to WGT's / to GT's" <<<"$report")"

# Goals: TCP 1 is 2.50x trixie (met) and 2.00x GotaTun (not met, needs 4);
# RTT 0.50x (met: on the border); TCP 4, 64 B and CPU were not measured.
goal() { grep "^| $1 |" <<<"$report"; }
check "goal met" "| TCP 1 stream ÷ trixie's wireguard-go | ≥ 2 | 2.50 | **met** |" "$(goal "TCP 1 stream ÷ trixie's wireguard-go")"
check "goal not met" "| TCP 1 stream ÷ GotaTun | ≥ 4 | 2.00 | not met |" "$(goal "TCP 1 stream ÷ GotaTun")"
check "goal on its border is met" "| RTT under load avg ÷ trixie's wireguard-go | ≤ 0.5 | 0.50 | **met** |" \
  "$(goal "RTT under load avg ÷ trixie's wireguard-go")"
check "goal not measured" "| 64 B UDP packets/s ÷ trixie's wireguard-go | ≥ 2 | – | not measured |" \
  "$(goal "64 B UDP packets/s ÷ trixie's wireguard-go")"
check "goals summary" \
  "Goals met: 2 of 7. Met: TCP 1 stream ÷ trixie's wireguard-go; RTT under load avg ÷ trixie's wireguard-go. Not met: TCP 1 stream ÷ GotaTun. Not measured: TCP 4 streams ÷ trixie's wireguard-go; TCP 4 streams ÷ GotaTun; 64 B UDP packets/s ÷ trixie's wireguard-go; CPU s/GB machine ÷ trixie's wireguard-go." \
  "$(grep '^Goals met:' <<<"$report")"

# A ratio shown as 2.00 is met against "≥ 2" even when it is 1.998.
{
  results wg-go-trixie tcp1_gbps 2
  results von tcp1_gbps 3.996
  results raw small_kpps 100
  results wg-go-trixie small_kpps 50
  results von small_kpps 95
} >"$tmp/border.tsv"
border=$(awk -v order="raw wg-go-trixie von" -v labels="raw=R|wg-go-trixie=WGT|von=V" \
  -f "$HERE/lib/report.awk" "$tmp/border.tsv")
check "a ratio compared as shown" "| TCP 1 stream ÷ trixie's wireguard-go | ≥ 2 | 2.00 | **met** |" \
  "$(grep -F "| TCP 1 stream ÷ trixie's wireguard-go |" <<<"$border")"
check "no old anchor: that table says so" \
  "No ratios to the anchors of BENCHMARKS.md's runs 1-3: neither \`wg-go-bookworm\` nor \`boringtun\` was in this run." \
  "$(grep '^No ratios' <<<"$border")"
check "no GotaTun: its goals are not measured" "| TCP 1 stream ÷ GotaTun | ≥ 4 | – | not measured |" \
  "$(grep '^| TCP 1 stream ÷ GotaTun |' <<<"$border")"
check "a rate near the raw underlay's is flagged" \
  "Note: V carried 95 % of the raw underlay's 64 B packet rate, so iperf3, not the tunnel, may be what limits it." \
  "$(grep '^Note:' <<<"$border")"

# No von in the run: the goals are not judged.
check "goals without von" "Goals of issue 17: not judged, \`von\` (both underlays) was not in this run." \
  "$(awk -v order="wg-go-trixie" -v labels="wg-go-trixie=WGT" -f "$HERE/lib/report.awk" "$tmp/border.tsv" | tail -1)"

# small_rate: iperf3 3.12's receiver sum of a 64-byte test, 4435136 bytes
# received in 1.010556 s: 69299 packets, 68.575 kpps.
cat >"$tmp/small.json" <<'EOF'
{ "end": { "sum_received": { "seconds": 1.010556, "bytes": 4435136,
  "lost_packets": 79131, "packets": 148430, "lost_percent": 53.3119989220508 } } }
EOF
read -r kpps loss < <(small_rate "$tmp/small.json" 64)
check "small-packet rate" "68.575 53.31" "$(printf '%.3f %.2f' "$kpps" "$loss")"

# ping_stats: replies 1..100 ms in shuffled order, avg 50.5, p99 = 99th value.
{
  echo "PING 100.64.1.2 (100.64.1.2) 56(84) bytes of data."
  for i in $(seq 1 100 | sort -R); do
    echo "64 bytes from 100.64.1.2: icmp_seq=$i ttl=64 time=$i ms"
  done
  echo "100 packets transmitted, 100 received, 0% packet loss, time 990ms"
} >"$tmp/ping.txt"
check "ping avg and p99" "50.500 99.000" "$(ping_stats "$tmp/ping.txt")"
printf '64 bytes from x: icmp_seq=1 ttl=64 time=0.250 ms\n' >"$tmp/one.txt"
check "ping of one reply" "0.250 0.250" "$(ping_stats "$tmp/one.txt")"
echo "2 packets transmitted, 0 received, 100% packet loss" >"$tmp/none.txt"
check "ping with no reply" "fail fail" "$(ping_stats "$tmp/none.txt")"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
