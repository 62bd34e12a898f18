# shellcheck shell=bash
# The tunnels bench/run.sh compares, all up side by side on the topology of
# topology.sh and measured in turns. Each `tunnel_up_NAME` brings one up and
# registers, by name:
#   DST[name]    the address host 1 measures against (host 2's inner address)
#   PIDS[name]   the processes that carry its packets (CPU accounting)
#   IFS_[name]   "ns:interface" pairs whose offloads the report lists
#   LABEL[name]  how the table names it
# A tunnel that cannot run here records why in SKIPPED[name] instead.

declare -A DST PIDS IFS_ LABEL SKIPPED
TUNNELS=()

WG_PORT_GO=51820
WG_PORT_BT=51821
WG_PORT_K=51822
VON_PORT=4789

# wait_ping NAME ADDR: until ADDR answers through the tunnel (20 s at most).
wait_ping() {
  local tries=0
  until in1 ping -c1 -W1 -q "$2" >/dev/null 2>&1; do
    tries=$((tries + 1))
    [ "$tries" -lt 20 ] || die "$1: $2 does not answer through the tunnel; logs in $WORK"
  done
}

# wait_file NAME PATH PID: until PATH exists while PID runs (10 s at most).
wait_file() {
  local tries=0
  until [ -e "$2" ]; do
    kill -0 "$3" 2>/dev/null || die "$1 exited at start; see its log in $WORK"
    tries=$((tries + 1))
    [ "$tries" -lt 100 ] || die "$1: $2 did not appear within 10 s"
    sleep 0.1
  done
}

register() {
  TUNNELS+=("$1")
  LABEL[$1]=$2
  DST[$1]=$3
  PIDS[$1]=${4:-}
  IFS_[$1]=${5:-}
}

tunnel_up_raw() {
  register raw "raw underlay A (MTU 1500)" 192.0.2.2 "" "$NS1:ua $NS2:ua"
}

# wg_configure NAME IF_PREFIX PORT SUBNET: keys, peers, addresses and MTU of a
# WireGuard interface pair ("$IF_PREFIX-1" in host 1, "-2" in host 2) whose
# userspace or kernel implementation is already running.
wg_configure() {
  local name=$1 ifp=$2 port=$3 subnet=$4 n peer
  for n in 1 2; do
    (umask 077 && wg genkey >"$WORK/$name-$n.key")
    wg pubkey <"$WORK/$name-$n.key" >"$WORK/$name-$n.pub"
  done
  for n in 1 2; do
    peer=$((3 - n))
    in_host "$n" wg set "$ifp-$n" listen-port "$port" private-key "$WORK/$name-$n.key" \
      peer "$(cat "$WORK/$name-$peer.pub")" allowed-ips "$subnet.0/24" \
      endpoint "192.0.2.$peer:$port"
    in_host "$n" ip addr add "$subnet.$n/24" dev "$ifp-$n"
    in_host "$n" ip link set "$ifp-$n" mtu "$INNER_MTU" up
  done
  wait_ping "$name" "$subnet.2"
}

# userspace_wg NAME LABEL IF_PREFIX PORT SUBNET CMD...: starts `CMD IF` in
# each host, waits for its UAPI socket, configures the pair.
userspace_wg() {
  local name=$1 label=$2 ifp=$3 port=$4 subnet=$5 n pids=""
  shift 5
  for n in 1 2; do
    spawn "vb$ID-h$n" "$WORK/$name-$n.log" "$@" "$ifp-$n"
    pids="$pids $SPAWNED"
    wait_file "$name" "/var/run/wireguard/$ifp-$n.sock" "$SPAWNED"
  done
  wg_configure "$name" "$ifp" "$port" "$subnet"
  register "$name" "$label" "$subnet.2" "$pids" "$NS1:$ifp-1 $NS2:$ifp-2"
}

tunnel_up_wg_go() {
  local version
  version=$(wireguard-go --version 2>/dev/null | awk '{ print $2; exit }')
  userspace_wg wg-go "wireguard-go ${version:-?}" "wgo-$ID" "$WG_PORT_GO" 100.64.2 \
    env WG_PROCESS_FOREGROUND=1 WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD=1 wireguard-go
}

tunnel_up_boringtun() {
  local version
  version=$(boringtun-cli --version 2>/dev/null | awk '{ print $2; exit }')
  userspace_wg boringtun "boringtun ${version:-?}" "bt-$ID" "$WG_PORT_BT" 100.64.3 \
    boringtun-cli --foreground --disable-drop-privileges --log /dev/stderr
}

tunnel_up_kernel_wg() {
  local err
  if ! err=$(in1 ip link add "wgk-$ID-1" type wireguard 2>&1); then
    SKIPPED[kernel-wg]="kernel $(uname -r) has no WireGuard (\`ip link add type wireguard\`: ${err//$'\n'/ })"
    return 0
  fi
  in2 ip link add "wgk-$ID-2" type wireguard
  wg_configure kernel-wg "wgk-$ID" "$WG_PORT_K" 100.64.4
  register kernel-wg "kernel WireGuard" 100.64.4.2 "" "$NS1:wgk-$ID-1 $NS2:wgk-$ID-2"
}

# von in static mode, one VON over both underlays. `von-1u` is the same
# agents while underlay B is down on both hosts (run.sh's enter/leave hooks).
tunnel_up_von() {
  local key n pids=""
  key=$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')
  mkdir -p "$WORK/von"
  {
    printf 'on_id = 7\nepoch = 1\ncipher = "aes-256-gcm"\nkey = "%s"\n' "$key"
    printf 'prefix = "100.64.1.0/24"\n'
    for n in 1 2; do
      printf '\n[[member]]\nid = %s\nname = "h%s"\naddress = "100.64.1.%s"\n' "$n" "$n" "$n"
      printf 'a = "192.0.2.%s:%s"\nb = "198.51.100.%s:%s"\n' "$n" "$VON_PORT" "$n" "$VON_PORT"
    done
  } >"$WORK/von/bench.view.toml"
  for n in 1 2; do
    mkdir -p "$WORK/von/h$n"
    cat >"$WORK/von/h$n/von.toml" <<EOF
state_dir = "$WORK/von/h$n/state"
control_socket = "$WORK/von/h$n/control.sock"
log = "info"

[underlay.a]
bind = "192.0.2.$n:$VON_PORT"
[underlay.b]
bind = "198.51.100.$n:$VON_PORT"

[[von]]
name = "bench"
interface = "von-bench"
rate = "100gbit"
mtu = $INNER_MTU
static = { view = "$WORK/von/bench.view.toml", member = "h$n" }
EOF
    spawn "vb$ID-h$n" "$WORK/von-$n.log" "$VON_BIN" up --config "$WORK/von/h$n/von.toml"
    pids="$pids $SPAWNED"
    wait_file von "$WORK/von/h$n/control.sock" "$SPAWNED"
  done
  wait_ping von 100.64.1.2
  register von "von, both underlays" 100.64.1.2 "$pids" "$NS1:von-bench $NS2:von-bench"
  register von-1u "von, underlay B down" 100.64.1.2 "$pids" "$NS1:von-bench $NS2:von-bench"
}

# Hooks run.sh calls around a tunnel's turn.
tunnel_enter() {
  if [ "$1" = von-1u ]; then underlay_b down; fi
}
tunnel_leave() {
  if [ "$1" = von-1u ]; then underlay_b up; fi
}
