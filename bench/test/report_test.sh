#!/usr/bin/env bash
# Checks the arithmetic of bench/run.sh without root or network: medians
# (odd and even counts, failed rounds), ratios to wireguard-go and boringtun,
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

# wg-go: 1 3 2 (median 2); boringtun: 4 1 3 2 (median 2.5); von: 4 fail 6
# (median 5 over the 2 runs taken). RTT: lower is better, same division.
tab=$'\t'
cat >"$tmp/results.tsv" <<EOF
wg-go${tab}1${tab}tcp1_gbps${tab}1
wg-go${tab}2${tab}tcp1_gbps${tab}3
wg-go${tab}3${tab}tcp1_gbps${tab}2
boringtun${tab}1${tab}tcp1_gbps${tab}4
boringtun${tab}2${tab}tcp1_gbps${tab}1
boringtun${tab}3${tab}tcp1_gbps${tab}3
boringtun${tab}4${tab}tcp1_gbps${tab}2
von${tab}1${tab}tcp1_gbps${tab}4
von${tab}2${tab}tcp1_gbps${tab}fail
von${tab}3${tab}tcp1_gbps${tab}6
wg-go${tab}1${tab}rtt_load_avg${tab}2
boringtun${tab}1${tab}rtt_load_avg${tab}4
von${tab}1${tab}rtt_load_avg${tab}1
von${tab}1${tab}udp_mbps${tab}fail
EOF
report=$(awk -v order="wg-go boringtun von" -v labels="wg-go=WG|boringtun=BT|von=V" \
  -f "$HERE/lib/report.awk" "$tmp/results.tsv")
rows() { grep "^| $1 |" <<<"$report"; }

# Medians table: TCP 1 | TCP 4 | UDP | loss | RTT idle | RTT load | CPU m | CPU p.
check "wg-go medians" "| WG | 2.000 | – | – | – | – / – | 2.00 / – | – | – |" "$(rows WG | head -1)"
check "boringtun even median" "| BT | 2.500 | – | – | – | – / – | 4.00 / – | – | – |" "$(rows BT | head -1)"
check "von median of the runs taken, a figure that failed everywhere" \
  "| V | 5.000 (2/3 runs) | – | fail (0/1 runs) | – | – / – | 1.00 / – | – | – |" "$(rows V | head -1)"
# Ratios table: von 5 / 2 = 2.50 and 5 / 2.5 = 2.00; RTT 1/2 and 1/4.
check "von ratios" "| V | 2.50 / 2.00 | – / – | – / – | – / – | – / – | 0.50 / 0.25 | – / – | – / – | – / – |" \
  "$(rows V | tail -1)"
check "wg-go against itself and boringtun" \
  "| WG | 1.00 / 0.80 | – / – | – / – | – / – | – / – | 1.00 / 0.50 | – / – | – / – | – / – |" \
  "$(rows WG | tail -1)"

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
