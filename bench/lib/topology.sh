# shellcheck shell=bash
# The two-host, two-underlay topology of the design brief, for bench/run.sh.
#
#   ┌──────── $NS1 ────────┐                     ┌──────── $NS2 ────────┐
#   │ ua 192.0.2.1/24      ├──── veth, link A ───┤ ua 192.0.2.2/24      │
#   │ ub 198.51.100.1/24   ├──── veth, link B ───┤ ub 198.51.100.2/24   │
#   │                      │                     │                      │
#   │ von-bench 100.64.1.1 │  von: A and B       │ von-bench 100.64.1.2 │
#   │ wgo-ID-1 100.64.2.1  │  wireguard-go: A    │ wgo-ID-2 100.64.2.2  │
#   │ bt-ID-1  100.64.3.1  │  boringtun: A       │ bt-ID-2  100.64.3.2  │
#   │ wgk-ID-1 100.64.4.1  │  kernel WG: A       │ wgk-ID-2 100.64.4.2  │
#   └──────────────────────┘                     └──────────────────────┘
#
# Host 1 runs the iperf3 and ping clients, host 2 the iperf3 server. Every
# tunnel's interface has MTU $INNER_MTU. The veths keep the kernel's default
# offloads (TSO, GSO, GRO on); run.sh records what each interface reports.
# Nothing is created in the root namespace but the two namespaces; names
# carry this run's id so parallel runs and e2e tests never collide.

ID=$(($$ % 10000))
NS1="vb$ID-h1"
NS2="vb$ID-h2"

in1() { ip netns exec "$NS1" "$@"; }
in2() { ip netns exec "$NS2" "$@"; }
# in_host N CMD...: run CMD in host N's namespace.
in_host() { local n=$1; shift; ip netns exec "vb$ID-h$n" "$@"; }

topology_up() {
  local n u
  for n in 1 2; do
    ip netns add "vb$ID-h$n"
    on_exit "ip netns del vb$ID-h$n"
    in_host "$n" ip link set lo up
  done
  for u in a b; do
    in1 ip link add "u$u" type veth peer name "u$u" netns "$NS2"
  done
  for n in 1 2; do
    in_host "$n" ip addr add "192.0.2.$n/24" dev ua
    in_host "$n" ip addr add "198.51.100.$n/24" dev ub
    in_host "$n" ip link set ua up
    in_host "$n" ip link set ub up
  done
  # The first ping fails while the veth's carrier settles: wait for it.
  local tries=0
  until in1 ping -c1 -W1 -q 192.0.2.2 >/dev/null 2>&1 &&
    in1 ping -c1 -W1 -q 198.51.100.2 >/dev/null 2>&1; do
    tries=$((tries + 1))
    [ "$tries" -lt 20 ] || die "the underlays of $NS1 and $NS2 do not answer ping"
    sleep 0.2
  done
}

# underlay_b DOWN|UP: takes underlay B down (or up) on both hosts, as an
# underlay failure does; with the link down the kernel has no route and von's
# sends on B fail at once.
underlay_b() {
  local state n
  state=$(tr '[:upper:]' '[:lower:]' <<<"$1")
  for n in 1 2; do
    in_host "$n" ip link set ub "$state"
  done
  if [ "$state" = up ]; then
    local tries=0
    until in1 ping -c1 -W1 -q 198.51.100.2 >/dev/null 2>&1; do
      tries=$((tries + 1))
      [ "$tries" -lt 20 ] || die "underlay B did not come back"
      sleep 0.2
    done
  fi
}

# offloads NS IF: "tso/gso/gro on|off" as ethtool reports them for IF.
offloads() {
  ip netns exec "$1" ethtool -k "$2" 2>/dev/null | awk -F': ' '
    $1 == "tcp-segmentation-offload" { tso = $2 }
    $1 == "generic-segmentation-offload" { gso = $2 }
    $1 == "generic-receive-offload" { gro = $2 }
    END {
      sub(/ .*/, "", tso); sub(/ .*/, "", gso); sub(/ .*/, "", gro)
      printf "TSO %s, GSO %s, GRO %s", tso, gso, gro
    }'
}
