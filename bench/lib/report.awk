# The markdown tables of bench/run.sh from its raw results.
#
# Input: lines "tunnel<TAB>round<TAB>metric<TAB>value" (value a number or
# "fail"). Variables: `order`, the tunnel names in table order, space
# separated; `labels`, "name=label" pairs joined by "|".
#
# Every figure is the median over rounds of the values that were taken; a
# cell whose rounds were not all taken says how many were ("2/3 runs").
# Ratios divide a tunnel's median by wireguard-go's (`wg-go`) and by
# boringtun's median of the same figure from the same run.

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

function ratio(t, ref, m,    a, b) {
  if (!((t SUBSEP m) in runs) || !((ref SUBSEP m) in runs)) return "–"
  a = median(t SUBSEP m)
  b = median(ref SUBSEP m)
  if (a == "fail" || b == "fail" || b == 0) return "–"
  return sprintf("%.2f", a / b)
}

function ratios(t, m) {
  return ratio(t, "wg-go", m) " / " ratio(t, "boringtun", m)
}

END {
  nt = split(order, names, " ")
  np = split(labels, pairs, "|")
  for (i = 1; i <= np; i++) {
    eq = index(pairs[i], "=")
    label[substr(pairs[i], 1, eq - 1)] = substr(pairs[i], eq + 1)
  }

  print "| tunnel | TCP 1 stream Gbit/s | TCP 4 streams Gbit/s | UDP goodput Mbit/s | UDP loss % | RTT idle avg / p99 ms | RTT under load avg / p99 ms | CPU s/GB machine | CPU s/GB processes |"
  print "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
  for (i = 1; i <= nt; i++) {
    t = names[i]
    printf "| %s | %s | %s | %s | %s | %s / %s | %s / %s | %s | %s |\n", label[t],
      cell(t, "tcp1_gbps", 3), cell(t, "tcp4_gbps", 3),
      cell(t, "udp_mbps", 1), cell(t, "udp_loss_pct", 2),
      cell(t, "rtt_idle_avg", 3), cell(t, "rtt_idle_p99", 3),
      cell(t, "rtt_load_avg", 2), cell(t, "rtt_load_p99", 2),
      cell(t, "cpu_machine_s_per_gb", 1), cell(t, "cpu_procs_s_per_gb", 1)
  }

  print ""
  print "Ratio of each median to wireguard-go's / to boringtun's from this run (goodput: higher is better; RTT and CPU: lower is better):"
  print ""
  print "| tunnel | TCP 1 stream | TCP 4 streams | UDP goodput | RTT idle avg | RTT idle p99 | RTT load avg | RTT load p99 | CPU/GB machine | CPU/GB processes |"
  print "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
  for (i = 1; i <= nt; i++) {
    t = names[i]
    printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", label[t],
      ratios(t, "tcp1_gbps"), ratios(t, "tcp4_gbps"), ratios(t, "udp_mbps"),
      ratios(t, "rtt_idle_avg"), ratios(t, "rtt_idle_p99"),
      ratios(t, "rtt_load_avg"), ratios(t, "rtt_load_p99"),
      ratios(t, "cpu_machine_s_per_gb"), ratios(t, "cpu_procs_s_per_gb")
  }
}
