# shellcheck shell=bash
# One turn of one tunnel: every figure once, appended to $RESULTS as
# "tunnel<TAB>round<TAB>metric<TAB>value". A figure that could not be taken
# (a tunnel that broke, a timeout) is written as "fail" and the run goes on.
#
#   tcp1_gbps, tcp4_gbps     iperf3 TCP goodput (receiver side), 1 and 4 streams
#   peers4_gbps              aggregate TCP goodput of 4 peers at once: one
#                            stream from each of hosts 1, 3, 4 and 5 to host 2
#                            (each to its own iperf3 server), summed
#   udp_mbps, udp_loss_pct   iperf3 UDP goodput and loss at $UDP_RATE offered,
#                            $UDP_LEN-byte datagrams
#   small_kpps, small_loss_pct
#                            $SMALL_LEN-byte UDP payloads offered at
#                            $SMALL_RATE (0: as fast as iperf3 sends): the
#                            thousands of packets per second host 2's iperf3
#                            received, and the share lost on the way
#   rtt_idle_avg/_p99        ping every 10 ms on an idle tunnel (ms)
#   rtt_load_avg/_p99        the same during the 1-stream TCP test (ms)
#   cpu_machine_s_per_gb     busy CPU of the whole machine (all cores, from
#                            /proc/stat) per GB moved in the 1-stream TCP test
#   cpu_procs_s_per_gb       user+system CPU of the tunnel's processes and of
#                            both iperf3 ends per GB moved in the same test

IPERF_PORT=5201
IPERF_SERVER_PID=""

# iperf_port N: the port of the iperf3 server in host 2 that sender N uses
# (host 1: $IPERF_PORT; an iperf3 server runs one test at a time).
iperf_port() {
  local i=0 n
  for n in $(senders); do
    [ "$n" = "$1" ] && break
    i=$((i + 1))
  done
  echo $((IPERF_PORT + i))
}

# iperf_server_up: an iperf3 server in host 2 for every sender.
iperf_server_up() {
  local n port tries
  for n in $(senders); do
    port=$(iperf_port "$n")
    spawn "$NS2" "$WORK/iperf3-server-$port.log" iperf3 -s -p "$port"
    [ "$n" = 1 ] && IPERF_SERVER_PID=$SPAWNED
    tries=0
    until in_host "$n" bash -c "exec 3<>/dev/tcp/192.0.2.2/$port" 2>/dev/null; do
      tries=$((tries + 1))
      [ "$tries" -lt 50 ] || die "iperf3 server on port $port in $NS2 does not listen; see $WORK/iperf3-server-$port.log"
      sleep 0.1
    done
  done
}

record() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >>"$RESULTS"; }

# iperf_client_in N JSON_OUT CPU_OUT ARGS...: iperf3 -c in host N, to its
# server in host 2; writes its JSON and, through the shell that waited for
# it, its user+system jiffies.
iperf_client_in() {
  local n=$1 json=$2 cpu=$3
  shift 3
  # shellcheck disable=SC2016 # expanded by the inner sh
  timeout $((SECONDS_PER_TEST + 30)) ip netns exec "vb$ID-h$n" sh -c '
    json=$1; cpu=$2; shift 2
    iperf3 "$@" --json >"$json"; rc=$?
    s=$(cat /proc/$$/stat); s=${s##*) }
    echo "$s" | awk "{ print \$14 + \$15 }" >"$cpu"
    exit $rc' sh "$json" "$cpu" -c "$@" -p "$(iperf_port "$n")" -t "$SECONDS_PER_TEST"
}

# iperf_client JSON_OUT CPU_OUT ARGS...: iperf3 -c in host 1.
iperf_client() { iperf_client_in 1 "$@"; }

# peers_goodput DIR DST: one TCP stream from every sender to host 2 at once;
# prints their summed receiver-side goodput in Gbit/s, or "fail" when any
# of them failed (a sum with a missing peer would not be 4 peers' figure).
peers_goodput() {
  local dir=$1 dst=$2 n clients=() ok=1 pid
  for n in $(senders); do
    iperf_client_in "$n" "$dir/peers-h$n.json" "$dir/peers-h$n.cpu" "$dst" &
    clients+=($!)
  done
  for pid in "${clients[@]}"; do wait "$pid" || ok=0; done
  if [ "$ok" = 1 ]; then
    for n in $(senders); do jq '.end.sum_received.bits_per_second' "$dir/peers-h$n.json"; done |
      awk '{ sum += $1 } END { print sum / 1e9 }'
  else
    echo fail
  fi
}

# small_rate JSON LEN: "kpps loss%" received in an iperf3 UDP test of
# LEN-byte payloads: bytes received / LEN / seconds, and iperf3's lost share.
small_rate() {
  jq -r --arg len "$2" '.end.sum_received
    | "\(.bytes / ($len | tonumber) / .seconds / 1000) \(.lost_percent)"' "$1"
}

# ping_run OUT DST COUNT: COUNT pings at $PING_INTERVAL, one line per reply.
ping_run() {
  in1 ping -n -i "$PING_INTERVAL" -c "$3" -W 1 "$2" >"$1" 2>&1 || true
}

# ping_stats FILE: "avg p99" in ms over the replies in FILE, or "fail fail"
# when there are none. p99 is the nearest-rank percentile.
ping_stats() {
  grep -o 'time=[0-9.]*' "$1" | cut -d= -f2 | sort -g | awk '
    { v[NR] = $1; sum += $1 }
    END {
      if (NR == 0) { print "fail fail"; exit }
      rank = int(0.99 * NR); if (rank < 0.99 * NR) rank++
      printf "%.3f %.3f\n", sum / NR, v[rank]
    }'
}

measure_tunnel() {
  local name=$1 round=$2 dst=${DST[$1]} dir="$WORK/raw/$1-r$2"
  local pings=$((SECONDS_PER_TEST * 100)) jiffy busy0 busy1 procs0 procs1 client
  local kpps loss
  mkdir -p "$dir"
  jiffy=$(getconf CLK_TCK)

  # 1. One TCP stream, with pings alongside (RTT under load) and CPU counted.
  busy0=$(cpu_busy_jiffies)
  # shellcheck disable=SC2086 # PIDS is a list
  procs0=$(pid_cpu_jiffies ${PIDS[$name]} "$IPERF_SERVER_PID")
  ping_run "$dir/ping-load.txt" "$dst" "$pings" &
  local ping_pid=$!
  if iperf_client "$dir/tcp1.json" "$dir/tcp1.cpu" "$dst"; then
    busy1=$(cpu_busy_jiffies)
    # shellcheck disable=SC2086
    procs1=$(pid_cpu_jiffies ${PIDS[$name]} "$IPERF_SERVER_PID")
    client=$(cat "$dir/tcp1.cpu")
    jq -r --arg busy "$((busy1 - busy0))" --arg procs "$((procs1 - procs0 + client))" \
      --arg hz "$jiffy" '.end.sum_received
        | [(.bits_per_second / 1e9),
           (($busy | tonumber) / ($hz | tonumber) / (.bytes / 1e9)),
           (($procs | tonumber) / ($hz | tonumber) / (.bytes / 1e9))]
        | @tsv' "$dir/tcp1.json" >"$dir/tcp1.tsv"
    IFS=$'\t' read -r tcp1 cpu_m cpu_p <"$dir/tcp1.tsv"
    record "$name" "$round" tcp1_gbps "$tcp1"
    record "$name" "$round" cpu_machine_s_per_gb "$cpu_m"
    record "$name" "$round" cpu_procs_s_per_gb "$cpu_p"
  else
    log "$name round $round: 1-stream TCP failed (see $dir/tcp1.json)"
    record "$name" "$round" tcp1_gbps fail
  fi
  wait "$ping_pid"
  read -r avg p99 < <(ping_stats "$dir/ping-load.txt")
  record "$name" "$round" rtt_load_avg "$avg"
  record "$name" "$round" rtt_load_p99 "$p99"

  # 2. Four TCP streams.
  if iperf_client "$dir/tcp4.json" "$dir/tcp4.cpu" "$dst" -P 4; then
    record "$name" "$round" tcp4_gbps "$(jq '.end.sum_received.bits_per_second / 1e9' "$dir/tcp4.json")"
  else
    record "$name" "$round" tcp4_gbps fail
  fi

  # 3. Four peers at once.
  if [ "$(senders | wc -w)" = 4 ]; then
    record "$name" "$round" peers4_gbps "$(peers_goodput "$dir" "$dst")"
  fi

  # 4. UDP at a fixed offered rate.
  if iperf_client "$dir/udp.json" "$dir/udp.cpu" "$dst" -u -b "$UDP_RATE" -l "$UDP_LEN"; then
    record "$name" "$round" udp_mbps "$(jq '.end.sum_received.bits_per_second / 1e6' "$dir/udp.json")"
    record "$name" "$round" udp_loss_pct "$(jq '.end.sum_received.lost_percent' "$dir/udp.json")"
  else
    record "$name" "$round" udp_mbps fail
    record "$name" "$round" udp_loss_pct fail
  fi

  # 5. Small packets: how many the tunnel carries.
  if iperf_client "$dir/small.json" "$dir/small.cpu" "$dst" -u -b "$SMALL_RATE" -l "$SMALL_LEN"; then
    read -r kpps loss < <(small_rate "$dir/small.json" "$SMALL_LEN")
    record "$name" "$round" small_kpps "$kpps"
    record "$name" "$round" small_loss_pct "$loss"
  else
    record "$name" "$round" small_kpps fail
    record "$name" "$round" small_loss_pct fail
  fi

  # 6. Idle RTT.
  ping_run "$dir/ping-idle.txt" "$dst" "$pings"
  read -r avg p99 < <(ping_stats "$dir/ping-idle.txt")
  record "$name" "$round" rtt_idle_avg "$avg"
  record "$name" "$round" rtt_idle_p99 "$p99"
}
