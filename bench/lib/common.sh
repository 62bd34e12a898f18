# shellcheck shell=bash
# Settings, arguments, logging and cleanup of bench/run.sh. Sourced, not run.

# shellcheck source=anchors.sh
. "$(dirname "${BASH_SOURCE[0]}")/anchors.sh"

# Defaults of a full run (about 20 minutes on 2 cores); --quick shortens it.
ROUNDS=5             # runs of every figure; the table shows the median
SECONDS_PER_TEST=5   # iperf3 -t, and the length of an idle ping run
UDP_RATE=200M        # fixed offered UDP rate (iperf3 -b)
UDP_LEN=1200         # UDP datagram payload, the same for every tunnel
SMALL_LEN=64         # payload of the small-packet test (SCADA-sized)
SMALL_RATE=0         # its offered rate (iperf3 -b; 0 = as fast as iperf3 sends)
INNER_MTU=1400       # every tunnel's interface MTU (fits WireGuard and von)
PING_INTERVAL=0.01   # 10 ms
VON_BIN=${VON_BIN:-}
OUT=""
ONLY=""              # comma-separated tunnel names, empty = all
KEEP=0

usage() {
  cat <<'EOF'
usage: sudo bench/run.sh [--quick] [--rounds N] [--time S] [--udp-rate R]
                         [--small-rate R] [--only TUNNEL,...]
                         [--von PATH] [--out FILE] [--keep]

Builds two hosts (network namespaces) joined by two underlays, brings up
every tunnel side by side, and measures them in turns. Prints a markdown
table (also written to --out FILE). Run bench/setup.sh once first.

  --quick       3 rounds of 2 s tests (about 5 minutes)
  --rounds N    runs of every figure; the median is reported (default 5)
  --time S      seconds per iperf3 test and per idle ping run (default 5)
  --udp-rate R  offered UDP rate, iperf3 -b syntax (default 200M)
  --small-rate R  offered rate of 64-byte UDP packets, iperf3 -b syntax
                (default 0: as fast as iperf3 can send)
  --only LIST   measure only these tunnels, of: raw, wg-go-bookworm,
                wg-go-trixie, boringtun, gotatun, kernel-wg, von, von-1u
                (the ratios need the anchors they divide by)
  --von PATH    von binary to use (default: cargo build --release)
  --keep        keep the scratch directory (configs, logs, raw results)
EOF
}

parse_args() {
  while [ $# -gt 0 ]; do
    case "$1" in
      --quick) ROUNDS=3; SECONDS_PER_TEST=2 ;;
      --rounds) ROUNDS=$(positive "$1" "${2:-}"); shift ;;
      --time) SECONDS_PER_TEST=$(positive "$1" "${2:-}"); shift ;;
      --udp-rate) UDP_RATE=${2:?--udp-rate needs a rate such as 200M}; shift ;;
      --small-rate) SMALL_RATE=${2:?--small-rate needs a rate such as 50M, or 0}; shift ;;
      --only) ONLY=$(known_tunnels "${2:-}"); shift ;;
      --von) VON_BIN=${2:?--von needs the path of a von binary}; shift ;;
      --out) OUT=${2:?--out needs a file name}; shift ;;
      --keep) KEEP=1 ;;
      -h|--help) usage; exit 0 ;;
      *) usage >&2; die "unknown argument '$1'" ;;
    esac
    shift
  done
}

# known_tunnels LIST: LIST if every name in it is a tunnel run.sh knows
# (ALL_TUNNELS, tunnels.sh), else exits naming the ones it does not.
known_tunnels() {
  local name known t unknown=()
  [ -n "$1" ] || die "--only needs a comma-separated list of tunnels: ${ALL_TUNNELS[*]}"
  for name in ${1//,/ }; do
    known=0
    for t in "${ALL_TUNNELS[@]}"; do [ "$t" = "$name" ] && known=1; done
    [ "$known" = 1 ] || unknown+=("$name")
  done
  [ ${#unknown[@]} -eq 0 ] || die "--only: no tunnel named ${unknown[*]}; the tunnels are: ${ALL_TUNNELS[*]}"
  echo "$1"
}

# positive FLAG VALUE: VALUE if it is a whole number >= 1, else exits.
positive() {
  case "$2" in
    ''|*[!0-9]*|0) die "$1 needs a whole number of at least 1, not '$2'" ;;
    *) echo "$2" ;;
  esac
}

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf 'bench: %s\n' "$*" >&2; exit 1; }

# wanted NAME: whether tunnel NAME is selected by --only.
wanted() {
  [ -z "$ONLY" ] && return 0
  case ",$ONLY," in *",$1,"*) return 0 ;; *) return 1 ;; esac
}

# Every program run.sh needs, with the command that installs it.
preflight() {
  [ "$(id -u)" -eq 0 ] || die "needs root for namespaces and TUN devices: sudo $0"
  local missing=()
  local tool
  for tool in ip ping iperf3 jq ethtool awk; do
    command -v "$tool" >/dev/null || missing+=("$tool")
  done
  local suite
  for suite in "${WG_GO_SUITES[@]}"; do
    if wanted "wg-go-$suite"; then
      [ -x "$(wg_go_bin "$suite")" ] || missing+=("$(wg_go_bin "$suite")")
    fi
  done
  if wanted boringtun; then
    [ -x "$BORINGTUN_BIN" ] || missing+=("$BORINGTUN_BIN")
  fi
  if wanted gotatun; then
    [ -x "$GOTATUN_BIN" ] || missing+=("$GOTATUN_BIN")
  fi
  local t
  for t in wg-go-bookworm wg-go-trixie boringtun gotatun kernel-wg; do
    if wanted "$t"; then
      command -v wg >/dev/null || missing+=(wg)
      break
    fi
  done
  [ ${#missing[@]} -eq 0 ] || die "missing ${missing[*]}: run sudo bench/setup.sh"
}

# Cleanup actions run in reverse order on exit, pass or fail.
CLEANUP=()
on_exit() { CLEANUP+=("$1"); }
run_cleanup() {
  local i
  for ((i = ${#CLEANUP[@]} - 1; i >= 0; i--)); do
    eval "${CLEANUP[$i]}" >/dev/null 2>&1 || true
  done
  CLEANUP=()
}

# spawn NS LOG CMD...: starts CMD in namespace NS in the background, its
# output in LOG, and stops it on exit. `ip netns exec` execs CMD in place, so
# SPAWNED (the pid) is CMD itself: its CPU time can be read, and killing it
# kills the program, not a wrapper. (A shell function run with `&` would be a
# subshell in between.)
spawn() {
  local ns=$1 out=$2
  shift 2
  ip netns exec "$ns" "$@" >"$out" 2>&1 &
  SPAWNED=$!
  on_exit "kill $SPAWNED; wait $SPAWNED"
}

# Machine-wide busy CPU time in jiffies (all cores): everything in the "cpu"
# line of /proc/stat but idle and iowait.
cpu_busy_jiffies() {
  awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 + $9; exit }' /proc/stat
}

# pid_cpu_jiffies PID...: user + system time of these processes (all their
# threads), 0 for one that is gone.
pid_cpu_jiffies() {
  local total=0 pid line
  for pid in "$@"; do
    line=$(cat "/proc/$pid/stat" 2>/dev/null) || continue
    # Fields after the ")" that closes the command name: state is 3rd.
    line=${line##*) }
    total=$((total + $(awk '{ print $12 + $13 }' <<<"$line")))
  done
  echo "$total"
}
