# shellcheck shell=bash
# The two-host, two-underlay topology of the design brief, for bench/run.sh,
# plus three more senders for the 4-peer test.
#
#   ┌──────── $NS1 ────────┐                     ┌──────── $NS2 ────────┐
#   │ ua 192.0.2.1/24      ├──── veth, link A ───┤ ua 192.0.2.2/24      │
#   │ ub 198.51.100.1/24   ├──── veth, link B ───┤ ub 198.51.100.2/24   │
#   │                      │                     │                      │
#   │ von-bench 100.64.1.1 │  von: A and B       │ von-bench 100.64.1.2 │
#   │ wgb-ID-1  100.64.2.1 │  wg-go bookworm: A  │ wgb-ID-2  100.64.2.2 │
#   │ bt-ID-1   100.64.3.1 │  boringtun: A       │ bt-ID-2   100.64.3.2 │
#   │ wgk-ID-1  100.64.4.1 │  kernel WG: A       │ wgk-ID-2  100.64.4.2 │
#   │ wgt-ID-1  100.64.5.1 │  wg-go trixie: A    │ wgt-ID-2  100.64.5.2 │
#   │ gt-ID-1   100.64.6.1 │  GotaTun: A         │ gt-ID-2   100.64.6.2 │
#   └──────────────────────┘                     │                      │
#   ┌─ vbID-hN, N = 3 4 5 ─┐                     │                      │
#   │ ua 192.0.2.N/32      ├──── veth, link A ───┤ uaN 192.0.2.2/32     │
#   │ ub 198.51.100.N/32   ├──── veth, link B ───┤ ubN 198.51.100.2/32  │
#   │ tunnels: 100.64.T.N  │                     │                      │
#   └──────────────────────┘                     └──────────────────────┘
#
# Host 1 runs the iperf3 and ping clients, host 2 the iperf3 servers; hosts
# 3-5 ($PEER_HOSTS) only send in the 4-peer test (hosts 1, 3, 4, 5 at once).
# Each of them has its own veth pair to host 2 per underlay, addressed point
# to point (`peer`), so host 1's links stay exactly as they were and host 2
# has the same address on every link of an underlay. Every tunnel's
# interface has MTU $INNER_MTU. The veths keep the kernel's default offloads
# (TSO, GSO, GRO on); run.sh records what each interface reports. Nothing is
# created in the root namespace but the namespaces; names carry this run's
# id so parallel runs and e2e tests never collide.

ID=$(($$ % 10000))
NS1="vb$ID-h1"
NS2="vb$ID-h2"
# The extra senders (profile.sh sets none: it measures hosts 1 and 2 only).
PEER_HOSTS=${PEER_HOSTS-3 4 5}

in1() { ip netns exec "$NS1" "$@"; }
in2() { ip netns exec "$NS2" "$@"; }
# in_host N CMD...: run CMD in host N's namespace.
in_host() { local n=$1; shift; ip netns exec "vb$ID-h$n" "$@"; }

# Every host but host 2: those that send to it.
senders() { echo "1 $PEER_HOSTS"; }
# Every host.
hosts() { echo "1 2 $PEER_HOSTS"; }

# underlay_addr U N: host N's address on underlay U (a or b).
underlay_addr() {
  case "$1" in a) echo "192.0.2.$2" ;; b) echo "198.51.100.$2" ;; esac
}

# h2_link U N: host 2's end of host N's link on underlay U.
h2_link() { if [ "$2" = 1 ]; then echo "u$1"; else echo "u$1$2"; fi; }

# wait_underlays: until host 2 answers every sender on both underlays (the
# first ping fails while a veth's carrier settles).
wait_underlays() {
  local n u tries
  for n in $(senders); do
    for u in a b; do
      tries=0
      until in_host "$n" ping -c1 -W1 -q "$(underlay_addr "$u" 2)" >/dev/null 2>&1; do
        tries=$((tries + 1))
        [ "$tries" -lt 20 ] || die "host $n does not reach host 2 on underlay $u"
        sleep 0.2
      done
    done
  done
}

topology_up() {
  local n u
  for n in $(hosts); do
    ip netns add "vb$ID-h$n"
    on_exit "ip netns del vb$ID-h$n"
    in_host "$n" ip link set lo up
  done
  for u in a b; do
    in1 ip link add "u$u" type veth peer name "u$u" netns "$NS2"
    for n in 1 2; do
      in_host "$n" ip addr add "$(underlay_addr "$u" "$n")/24" dev "u$u"
      in_host "$n" ip link set "u$u" up
    done
    for n in $PEER_HOSTS; do
      in_host "$n" ip link add "u$u" type veth peer name "u$u$n" netns "$NS2"
      in_host "$n" ip addr add "$(underlay_addr "$u" "$n")/32" \
        peer "$(underlay_addr "$u" 2)/32" dev "u$u"
      in2 ip addr add "$(underlay_addr "$u" 2)/32" peer "$(underlay_addr "$u" "$n")/32" dev "u$u$n"
      in_host "$n" ip link set "u$u" up
      in2 ip link set "u$u$n" up
    done
  done
  wait_underlays
}

# underlay_b DOWN|UP: takes underlay B down (or up) on every host, both ends
# of every link, as an underlay failure does; with the link down the kernel
# has no route and von's sends on B fail at once.
underlay_b() {
  local state n
  state=$(tr '[:upper:]' '[:lower:]' <<<"$1")
  for n in $(senders); do
    in_host "$n" ip link set ub "$state"
    in2 ip link set "$(h2_link b "$n")" "$state"
  done
  if [ "$state" = up ]; then wait_underlays; fi
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
