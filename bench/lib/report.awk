# The markdown tables of bench/run.sh from its raw results.
#
# Input: lines "tunnel<TAB>round<TAB>metric<TAB>value" (value a number or
# "fail"). Variables: `order`, the tunnel names in table order, space
# separated; `labels`, "name=label" pairs joined by "|".
#
# Every figure is the median over rounds of the values that were taken; a
# cell whose rounds were not all taken says how many were ("2/3 runs").
# Ratios divide a tunnel's median by an anchor's median of the same figure
# from the same run: first by the current anchors (trixie's wireguard-go,
# `wg-go-trixie`, and GotaTun, `gotatun`), then by those runs 1-3 of
# BENCHMARKS.md were measured against (bookworm's wireguard-go,
# `wg-go-bookworm`, and boringtun, `boringtun`). Last, issue 17's goals for
# von sending both copies (`von`), each met or not.

BEGIN { FS = "\t" }

{
  key = $1 SUBSEP $3
  runs[key]++
  if ($4 != "fail" && $4 != "") {
    n = ++count[key]
    val[key, n] = $4 + 0
  }
}

function median(key,    n, i, j, t, a) {
  n = count[key]
  if (n == 0) return "fail"
  for (i = 1; i <= n; i++) a[i] = val[key, i]
  for (i = 2; i <= n; i++) {
    t = a[i]
    for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]
    a[j + 1] = t
  }
  if (n % 2) return a[(n + 1) / 2]
  return (a[n / 2] + a[n / 2 + 1]) / 2
}

function fmt(x, digits) {
  if (x == "fail") return "fail"
  return sprintf("%." digits "f", x)
}

# cell(tunnel, metric, digits): the median, with a note if rounds failed.
function cell(t, m, digits,    key, s) {
  key = t SUBSEP m
  if (!(key in runs)) return "–"
  s = fmt(median(key), digits)
  if (count[key] < runs[key]) s = s " (" count[key] + 0 "/" runs[key] " runs)"
  return s
}

# ratio(t, ref, m): t's median over ref's, to two decimals, or "–".
function ratio(t, ref, m,    a, b) {
  if (!((t SUBSEP m) in runs) || !((ref SUBSEP m) in runs)) return "–"
  a = median(t SUBSEP m)
  b = median(ref SUBSEP m)
  if (a == "fail" || b == "fail" || b == 0) return "–"
  return sprintf("%.2f", a / b)
}

function ratios(t, m, ref1, ref2) {
  return ratio(t, ref1, m) " / " ratio(t, ref2, m)
}

function in_run(t,    i) {
  for (i = 1; i <= nt; i++) if (names[i] == t) return 1
  return 0
}

function ratio_table(ref1, ref2, what,    i, t) {
  if (!in_run(ref1) && !in_run(ref2)) {
    print "No ratios to " what ": neither `" ref1 "` nor `" ref2 "` was in this run."
    print ""
    return
  }
  print "Ratio of each median to " name(ref1) "'s / to " name(ref2) "'s from this run (" what "; goodput and packet rate: higher is better; RTT and CPU: lower is better):"
  print ""
  print "| tunnel | TCP 1 stream | TCP 4 streams | 4 peers | 64 B UDP packets/s | UDP goodput | RTT idle avg | RTT idle p99 | RTT load avg | RTT load p99 | CPU/GB machine | CPU/GB processes |"
  print "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
  for (i = 1; i <= nt; i++) {
    t = names[i]
    printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", label[t],
      ratios(t, "tcp1_gbps", ref1, ref2), ratios(t, "tcp4_gbps", ref1, ref2),
      ratios(t, "peers4_gbps", ref1, ref2), ratios(t, "small_kpps", ref1, ref2),
      ratios(t, "udp_mbps", ref1, ref2),
      ratios(t, "rtt_idle_avg", ref1, ref2), ratios(t, "rtt_idle_p99", ref1, ref2),
      ratios(t, "rtt_load_avg", ref1, ref2), ratios(t, "rtt_load_p99", ref1, ref2),
      ratios(t, "cpu_machine_s_per_gb", ref1, ref2), ratios(t, "cpu_procs_s_per_gb", ref1, ref2)
  }
  print ""
}

function name(t) { return (t in label) ? label[t] : t }

# goal(what, metric, ref, op, target): one row of the goals table; counts it
# as met, not met or not measured. The ratio is compared as shown (two
# decimals), so a row never reads "2.00, not met" against "≥ 2".
function goal(what, metric, ref, op, target,    r, met, verdict) {
  r = ratio("von", ref, metric)
  if (r == "–") {
    verdict = "not measured"
    unmeasured = unmeasured (unmeasured == "" ? "" : "; ") what
  } else {
    met = (op == ">=") ? (r + 0 >= target) : (r + 0 <= target)
    verdict = met ? "**met**" : "not met"
    if (met) { nmet++; metlist = metlist (metlist == "" ? "" : "; ") what }
    else missed = missed (missed == "" ? "" : "; ") what
  }
  ngoals++
  printf "| %s | %s %s | %s | %s |\n", what, (op == ">=" ? "≥" : "≤"), target, r, verdict
}

END {
  nt = split(order, names, " ")
  np = split(labels, pairs, "|")
  for (i = 1; i <= np; i++) {
    eq = index(pairs[i], "=")
    label[substr(pairs[i], 1, eq - 1)] = substr(pairs[i], eq + 1)
  }

  print "| tunnel | TCP 1 stream Gbit/s | TCP 4 streams Gbit/s | 4 peers TCP Gbit/s | 64 B UDP kpackets/s | 64 B UDP loss % | UDP goodput Mbit/s | UDP loss % | RTT idle avg / p99 ms | RTT under load avg / p99 ms | CPU s/GB machine | CPU s/GB processes |"
  print "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
  for (i = 1; i <= nt; i++) {
    t = names[i]
    printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s / %s | %s / %s | %s | %s |\n", label[t],
      cell(t, "tcp1_gbps", 3), cell(t, "tcp4_gbps", 3), cell(t, "peers4_gbps", 3),
      cell(t, "small_kpps", 1), cell(t, "small_loss_pct", 1),
      cell(t, "udp_mbps", 1), cell(t, "udp_loss_pct", 2),
      cell(t, "rtt_idle_avg", 3), cell(t, "rtt_idle_p99", 3),
      cell(t, "rtt_load_avg", 2), cell(t, "rtt_load_p99", 2),
      cell(t, "cpu_machine_s_per_gb", 1), cell(t, "cpu_procs_s_per_gb", 1)
  }
  print ""

  ratio_table("wg-go-trixie", "gotatun", "the current anchors")
  ratio_table("wg-go-bookworm", "boringtun", "the anchors of BENCHMARKS.md's runs 1-3")

  if (!in_run("von")) {
    print "Goals of issue 17: not judged, `von` (both underlays) was not in this run."
    exit
  }
  wg = "trixie's wireguard-go"
  gt = "GotaTun"
  print "Goals of issue 17 for " name("von") ", each a ratio from this run (" wg ": " name("wg-go-trixie") "; " gt ": " name("gotatun") "):"
  print ""
  print "| goal | target | ratio | result |"
  print "|---|---|---:|---|"
  goal("TCP 1 stream ÷ " wg, "tcp1_gbps", "wg-go-trixie", ">=", 2)
  goal("TCP 4 streams ÷ " wg, "tcp4_gbps", "wg-go-trixie", ">=", 2)
  goal("TCP 1 stream ÷ " gt, "tcp1_gbps", "gotatun", ">=", 4)
  goal("TCP 4 streams ÷ " gt, "tcp4_gbps", "gotatun", ">=", 4)
  goal("64 B UDP packets/s ÷ " wg, "small_kpps", "wg-go-trixie", ">=", 2)
  goal("RTT under load avg ÷ " wg, "rtt_load_avg", "wg-go-trixie", "<=", 0.5)
  goal("CPU s/GB machine ÷ " wg, "cpu_machine_s_per_gb", "wg-go-trixie", "<=", 0.5)
  print ""
  printf "Goals met: %d of %d.", nmet, ngoals
  if (metlist != "") printf " Met: %s.", metlist
  if (missed != "") printf " Not met: %s.", missed
  if (unmeasured != "") printf " Not measured: %s.", unmeasured
  print ""
  # A tunnel close to the raw underlay's small-packet rate may be limited
  # by iperf3 itself, not by the tunnel: say so, the ratio would hide it.
  if (in_run("raw") && median("raw" SUBSEP "small_kpps") != "fail") {
    raw = median("raw" SUBSEP "small_kpps")
    split("von wg-go-trixie", near, " ")
    for (i = 1; i <= 2; i++) {
      t = near[i]
      if (!((t SUBSEP "small_kpps") in runs)) continue
      v = median(t SUBSEP "small_kpps")
      if (v != "fail" && raw > 0 && v >= 0.9 * raw)
        printf "\nNote: %s carried %.0f %% of the raw underlay's 64 B packet rate, so iperf3, not the tunnel, may be what limits it.\n", name(t), 100 * v / raw
    }
  }
}
