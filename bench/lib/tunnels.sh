# shellcheck shell=bash
# The tunnels bench/run.sh compares, all up side by side on the topology of
# topology.sh and measured in turns. Each `tunnel_up_NAME` brings one up on
# every host (host 2 with a peer for each sender, each sender with host 2 as
# its one peer) and registers, by name:
#   DST[name]    host 2's inner address (every sender measures against it)
#   PIDS[name]   the processes of hosts 1 and 2 that carry its packets (CPU
#                accounting of the 1-stream test, which runs between them)
#   IFS_[name]   "ns:interface" pairs whose offloads the report lists
#   LABEL[name]  how the table names it: the version the binary reports
# A tunnel that cannot run here records why in SKIPPED[name] instead.

declare -A DST PIDS IFS_ LABEL SKIPPED
TUNNELS=()
# Every tunnel run.sh knows, in table order (--only picks among these).
ALL_TUNNELS=(raw wg-go-bookworm wg-go-trixie boringtun gotatun kernel-wg von von-1u)

WG_PORT_BOOKWORM=51820
WG_PORT_BT=51821
WG_PORT_K=51822
WG_PORT_TRIXIE=51823
WG_PORT_GT=51824
VON_PORT=4789

# wait_ping NAME ADDR: until ADDR answers through the tunnel from every
# sender (20 s at most each).
wait_ping() {
  local n tries
  for n in $(senders); do
    tries=0
    until in_host "$n" ping -c1 -W1 -q "$2" >/dev/null 2>&1; do
      tries=$((tries + 1))
      [ "$tries" -lt 20 ] || die "$1: $2 does not answer host $n through the tunnel; logs in $WORK"
    done
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

# wg_configure NAME IF_PREFIX PORT SUBNET: keys, peers, addresses and MTU of
# the WireGuard interfaces "$IF_PREFIX-N" (host N) whose userspace or kernel
# implementation is already running. Host 2 has every sender as a peer (its
# inner /32); each sender has host 2 for the whole subnet.
wg_configure() {
  local name=$1 ifp=$2 port=$3 subnet=$4 n p peers
  for n in $(hosts); do
    (umask 077 && wg genkey >"$WORK/$name-$n.key")
    wg pubkey <"$WORK/$name-$n.key" >"$WORK/$name-$n.pub"
  done
  for n in $(hosts); do
    peers=()
    if [ "$n" = 2 ]; then
      for p in $(senders); do
        peers+=(peer "$(cat "$WORK/$name-$p.pub")" allowed-ips "$subnet.$p/32"
          endpoint "$(underlay_addr a "$p"):$port")
      done
    else
      peers=(peer "$(cat "$WORK/$name-2.pub")" allowed-ips "$subnet.0/24"
        endpoint "$(underlay_addr a 2):$port")
    fi
    in_host "$n" wg set "$ifp-$n" listen-port "$port" private-key "$WORK/$name-$n.key" "${peers[@]}"
    in_host "$n" ip addr add "$subnet.$n/24" dev "$ifp-$n"
    in_host "$n" ip link set "$ifp-$n" mtu "$INNER_MTU" up
  done
  wait_ping "$name" "$subnet.2"
}

# userspace_wg NAME LABEL IF_PREFIX PORT SUBNET CMD...: starts `CMD IF` in
# every host, waits for its UAPI socket, configures them.
userspace_wg() {
  local name=$1 label=$2 ifp=$3 port=$4 subnet=$5 n pids=""
  shift 5
  for n in $(hosts); do
    spawn "vb$ID-h$n" "$WORK/$name-$n.log" "$@" "$ifp-$n"
    case "$n" in 1 | 2) pids="$pids $SPAWNED" ;; esac
    wait_file "$name" "/var/run/wireguard/$ifp-$n.sock" "$SPAWNED"
  done
  wg_configure "$name" "$ifp" "$port" "$subnet"
  register "$name" "$label" "$subnet.2" "$pids" "$NS1:$ifp-1 $NS2:$ifp-2"
}

# reported_version BIN: the second word of `BIN --version`, as the binary
# itself says it (wireguard-go v0.0.20230223, boringtun 0.7.1, gotatun 0.10.2).
reported_version() {
  "$1" --version 2>/dev/null | awk 'NF { print $2; exit }'
}

# tunnel_up_wg_go SUITE: the wireguard-go of that Debian suite (setup.sh
# unpacked it), labelled with the version it reports and its package's.
tunnel_up_wg_go() {
  local suite=$1 bin port subnet ifp
  bin=$(wg_go_bin "$suite")
  case "$suite" in
    bookworm) port=$WG_PORT_BOOKWORM subnet=100.64.2 ifp="wgb-$ID" ;;
    trixie) port=$WG_PORT_TRIXIE subnet=100.64.5 ifp="wgt-$ID" ;;
  esac
  userspace_wg "wg-go-$suite" \
    "wireguard-go $(reported_version "$bin") (Debian $suite, $(awk '{ print $2 }' "$(wg_go_dir "$suite")/PACKAGE"))" \
    "$ifp" "$port" "$subnet" \
    env WG_PROCESS_FOREGROUND=1 WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD=1 "$bin"
}

tunnel_up_boringtun() {
  userspace_wg boringtun "boringtun $(reported_version "$BORINGTUN_BIN")" "bt-$ID" "$WG_PORT_BT" 100.64.3 \
    "$BORINGTUN_BIN" --foreground --disable-drop-privileges --log /dev/stderr
}

# GotaTun keeps boringtun's command line; in the foreground it logs to the
# console (its --log is for the daemon).
tunnel_up_gotatun() {
  userspace_wg gotatun "GotaTun $(reported_version "$GOTATUN_BIN")" "gt-$ID" "$WG_PORT_GT" 100.64.6 \
    "$GOTATUN_BIN" --foreground --disable-drop-privileges
}

tunnel_up_kernel_wg() {
  local err n version
  if ! err=$(in1 ip link add "wgk-$ID-1" type wireguard 2>&1); then
    SKIPPED[kernel-wg]="kernel $(uname -r) has no WireGuard (\`ip link add type wireguard\`: ${err//$'\n'/ })"
    return 0
  fi
  for n in $(hosts); do
    [ "$n" = 1 ] || in_host "$n" ip link add "wgk-$ID-$n" type wireguard
  done
  wg_configure kernel-wg "wgk-$ID" "$WG_PORT_K" 100.64.4
  version=$(cat /sys/module/wireguard/version 2>/dev/null || true)
  register kernel-wg "kernel WireGuard ${version:+$version }(kernel $(uname -r))" 100.64.4.2 "" \
    "$NS1:wgk-$ID-1 $NS2:wgk-$ID-2"
}

# von in static mode, one VON over both underlays, every host a member.
# `von-1u` is the same agents while underlay B is down on every host
# (run.sh's enter/leave hooks).
tunnel_up_von() {
  local key n pids="" version
  key=$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')
  mkdir -p "$WORK/von"
  {
    printf 'on_id = 7\nepoch = 1\ncipher = "aes-256-gcm"\nkey = "%s"\n' "$key"
    printf 'prefix = "100.64.1.0/24"\n'
    for n in $(hosts); do
      printf '\n[[member]]\nid = %s\nname = "h%s"\naddress = "100.64.1.%s"\n' "$n" "$n" "$n"
      printf 'a = "192.0.2.%s:%s"\nb = "198.51.100.%s:%s"\n' "$n" "$VON_PORT" "$n" "$VON_PORT"
    done
  } >"$WORK/von/bench.view.toml"
  for n in $(hosts); do
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
    case "$n" in 1 | 2) pids="$pids $SPAWNED" ;; esac
    wait_file von "$WORK/von/h$n/control.sock" "$SPAWNED"
  done
  wait_ping von 100.64.1.2
  version=$(reported_version "$VON_BIN")
  register von "von $version, both underlays" 100.64.1.2 "$pids" "$NS1:von-bench $NS2:von-bench"
  register von-1u "von $version, underlay B down" 100.64.1.2 "$pids" "$NS1:von-bench $NS2:von-bench"
}

# Hooks run.sh calls around a tunnel's turn.
tunnel_enter() {
  if [ "$1" = von-1u ]; then underlay_b down; fi
}
tunnel_leave() {
  if [ "$1" = von-1u ]; then underlay_b up; fi
}
