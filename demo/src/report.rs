//! The figures one demo run measured, and the short report printed at its
//! end. Every number here was read from `ping` or `von status --json`
//! during the run; a step that did not run says so with its reason.
//!
//! The report's lines are `key: value` with stable keys, so a person reads
//! it and `tests/tests/e2e_demo.rs` checks it.

use std::fmt::{self, Write as _};
use std::time::Duration;

/// One ping between two hosts of the mesh.
#[derive(Debug, Clone)]
pub struct Pair {
    pub from: String,
    pub to: String,
    pub sent: u32,
    pub received: u32,
    /// Average round trip from ping's summary, when it printed one.
    pub rtt_avg_ms: Option<f64>,
}

/// The underlay-cut step: `ping -i 0.01` while underlay A is down for all.
#[derive(Debug, Clone)]
pub struct Cut {
    pub sent: u32,
    pub received: u32,
    /// Replies ping marked `(DUP!)`: must be 0, duplicates are discarded.
    pub ping_duplicates: u32,
    pub down_for: Duration,
    /// Longest time between two consecutive replies, over the whole run.
    pub max_gap_ms: f64,
    /// Mean time between replies: ping asks for 10 ms, a busy machine is
    /// slower, and the share of pings a cut covers depends on it.
    pub mean_interval_ms: f64,
    /// Frames the receiver got on A and on B while the ping ran.
    pub rx_a: u64,
    pub rx_b: u64,
    /// Sends the sender's kernel refused on A while it was down.
    pub tx_errors_a: u64,
    /// Second copies the receiver discarded while the ping ran.
    pub discarded_duplicates: u64,
}

/// The contract step: UDP offered above the VON's rate.
#[derive(Debug, Clone)]
pub struct Contract {
    /// The VON's contracted rate and what h1 offered, bits per second.
    pub rate_bps: f64,
    pub offered_bps: f64,
    /// What h2's iperf3 received, bits per second.
    pub received_bps: f64,
    /// Packets h1's shaper dropped meanwhile.
    pub rate_drops: u64,
}

impl Contract {
    /// Delivered at most the rate plus 10 % (the bucket's burst and
    /// iperf3's timing), with the excess dropped at the edge.
    pub fn held(&self) -> bool {
        self.received_bps <= self.rate_bps * 1.1 && self.rate_drops > 0
    }
}

/// The member-removal step: `von keymgr revoke` while h1 pings h2.
#[derive(Debug, Clone)]
pub struct Rekey {
    pub removed: String,
    /// The epoch every member sent under before, and h1's and h2's after.
    pub before: u64,
    pub after: u64,
    /// The ping that ran across the rekey.
    pub sent: u32,
    pub lost: u32,
    /// Members in the view afterwards.
    pub members: u64,
    /// The removed member's pings to a remaining one, afterwards.
    pub outcast_sent: u32,
    pub outcast_received: u32,
}

/// Everything one run measured.
#[derive(Debug, Clone)]
pub struct Report {
    pub mode: &'static str,
    pub hosts: usize,
    pub namespaces: Vec<String>,
    pub agents_ready: Duration,
    pub mesh: Vec<Pair>,
    pub cut: Option<Cut>,
    pub contract: Contract,
    pub rekey: Rekey,
    /// Counters of one receiver at the end: (name, value).
    pub counters: Vec<(&'static str, u64)>,
    pub counters_of: String,
    /// Namespaces still present after teardown (must be none).
    pub left: Vec<String>,
}

impl Report {
    /// Packets the mesh pings lost, over every pair.
    pub fn mesh_lost(&self) -> u32 {
        self.mesh
            .iter()
            .map(|p| p.sent.saturating_sub(p.received))
            .sum()
    }

    /// What went wrong, one line each; empty when the run showed what it
    /// should (nothing lost, no duplicate delivered, nothing left behind).
    pub fn failures(&self) -> Vec<String> {
        let mut f = Vec::new();
        if self.mesh.is_empty() || self.mesh_lost() > 0 {
            f.push(format!("ping mesh lost {} packets", self.mesh_lost()));
        }
        match &self.cut {
            Some(c) if c.sent.saturating_sub(c.received) > 0 || c.ping_duplicates > 0 => {
                f.push(format!(
                    "underlay A cut: {} of {} lost, {} duplicates delivered",
                    c.sent.saturating_sub(c.received),
                    c.sent,
                    c.ping_duplicates
                ))
            }
            Some(_) => {}
            None => f.push("the underlay cut did not run".into()),
        }
        let c = &self.contract;
        if !c.held() {
            f.push(format!(
                "contract: {:.1} Mbit/s delivered against {:.1} Mbit/s contracted, {} dropped at the edge",
                c.received_bps / 1e6,
                c.rate_bps / 1e6,
                c.rate_drops
            ));
        }
        let r = &self.rekey;
        if r.after <= r.before || r.lost > 0 || r.outcast_received > 0 {
            f.push(format!(
                "rekey: epoch {} -> {}, {} lost, the removed member got {} replies",
                r.before, r.after, r.lost, r.outcast_received
            ));
        }
        if !self.left.is_empty() {
            f.push(format!("namespaces left behind: {}", self.left.join(" ")));
        }
        f
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = String::new();
        let _ = writeln!(s, "== von demo report ==");
        let _ = writeln!(s, "mode: {}", self.mode);
        let _ = writeln!(s, "hosts: {} ({})", self.hosts, self.namespaces.join(" "));
        let _ = writeln!(s, "agents ready: {:.1} s", self.agents_ready.as_secs_f64());
        let sent: u32 = self.mesh.iter().map(|p| p.sent).sum();
        let _ = writeln!(
            s,
            "ping mesh: {} pairs, {sent} sent, {} lost",
            self.mesh.len(),
            self.mesh_lost()
        );
        for p in &self.mesh {
            let rtt = p.rtt_avg_ms.map_or("-".into(), |r| format!("{r:.3} ms"));
            let _ = writeln!(
                s,
                "  {} -> {}: {}/{} received, rtt avg {rtt}",
                p.from, p.to, p.received, p.sent
            );
        }
        match &self.cut {
            Some(c) => {
                let _ = writeln!(
                    s,
                    "underlay A cut: {} sent, {} received, {} lost, {} duplicates delivered",
                    c.sent,
                    c.received,
                    c.sent.saturating_sub(c.received),
                    c.ping_duplicates
                );
                let _ = writeln!(
                    s,
                    "  ping -i 0.01 got a reply every {:.1} ms on average; A down for {:.1} s on every host; longest gap between replies {:.1} ms",
                    c.mean_interval_ms,
                    c.down_for.as_secs_f64(),
                    c.max_gap_ms
                );
                let _ = writeln!(
                    s,
                    "  receiver got {} frames on A, {} on B; discarded {} second copies; sender's A refused {} sends",
                    c.rx_a, c.rx_b, c.discarded_duplicates, c.tx_errors_a
                );
            }
            None => {
                let _ = writeln!(s, "underlay A cut: not run");
            }
        }
        let c = &self.contract;
        let _ = writeln!(
            s,
            "contract: {:.0} Mbit/s offered, {:.1} Mbit/s delivered, contract {:.0} Mbit/s, {} packets dropped at the edge",
            c.offered_bps / 1e6,
            c.received_bps / 1e6,
            c.rate_bps / 1e6,
            c.rate_drops
        );
        let r = &self.rekey;
        let _ = writeln!(
            s,
            "rekey: removed {}, epoch {} -> {}, {} members left, {} of {} lost meanwhile",
            r.removed, r.before, r.after, r.members, r.lost, r.sent
        );
        let _ = writeln!(
            s,
            "  {} -> a remaining member afterwards: {}/{} received",
            r.removed, r.outcast_received, r.outcast_sent
        );
        let counters: Vec<String> = self
            .counters
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let _ = writeln!(
            s,
            "counters of {}: {}",
            self.counters_of,
            counters.join(" ")
        );
        let _ = writeln!(
            s,
            "cleanup: {} namespaces removed, {} left",
            self.namespaces.len() - self.left.len(),
            self.left.len()
        );
        let failures = self.failures();
        if failures.is_empty() {
            let _ = write!(s, "result: ok");
        } else {
            let _ = write!(s, "result: FAILED: {}", failures.join("; "));
        }
        f.write_str(&s)
    }
}

/// The average round trip from ping's `rtt min/avg/max/mdev = a/b/c/d ms`.
pub fn rtt_avg_ms(ping_output: &str) -> Option<f64> {
    let line = ping_output.lines().find(|l| l.starts_with("rtt "))?;
    let values = line.split('=').nth(1)?.trim();
    values.split('/').nth(1)?.trim().parse().ok()
}

/// The mean time between consecutive replies (arrival times in seconds).
pub fn mean_interval_ms(arrivals: &[f64]) -> f64 {
    match (arrivals.first(), arrivals.last()) {
        (Some(first), Some(last)) if arrivals.len() > 1 => {
            (last - first) * 1000.0 / (arrivals.len() - 1) as f64
        }
        _ => 0.0,
    }
}

/// The longest time between consecutive replies (arrival times in seconds).
pub fn max_gap_ms(arrivals: &[f64]) -> f64 {
    arrivals
        .windows(2)
        .map(|w| (w[1] - w[0]) * 1000.0)
        .fold(0.0, f64::max)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Report {
        Report {
            mode: "static",
            hosts: 3,
            namespaces: vec!["v1-1-h1".into(), "v1-1-h2".into(), "v1-1-sw".into()],
            agents_ready: Duration::from_millis(1500),
            mesh: vec![Pair {
                from: "h1".into(),
                to: "h2".into(),
                sent: 5,
                received: 5,
                rtt_avg_ms: Some(0.25),
            }],
            cut: Some(Cut {
                sent: 500,
                received: 500,
                ping_duplicates: 0,
                down_for: Duration::from_secs(2),
                max_gap_ms: 12.5,
                mean_interval_ms: 10.4,
                rx_a: 300,
                rx_b: 500,
                tx_errors_a: 200,
                discarded_duplicates: 300,
            }),
            contract: Contract {
                rate_bps: 20e6,
                offered_bps: 60e6,
                received_bps: 19.8e6,
                rate_drops: 3000,
            },
            rekey: Rekey {
                removed: "h3".into(),
                before: 4,
                after: 5,
                sent: 300,
                lost: 0,
                members: 2,
                outcast_sent: 5,
                outcast_received: 0,
            },
            counters: vec![("delivered", 510), ("auth_failures", 0)],
            counters_of: "h2".into(),
            left: Vec::new(),
        }
    }

    #[test]
    fn a_clean_run_reports_ok_with_its_figures() {
        let text = sample().to_string();
        assert!(
            text.contains("ping mesh: 1 pairs, 5 sent, 0 lost"),
            "{text}"
        );
        assert!(
            text.contains("underlay A cut: 500 sent, 500 received, 0 lost"),
            "{text}"
        );
        assert!(
            text.contains("rekey: removed h3, epoch 4 -> 5, 2 members left, 0 of 300 lost"),
            "{text}"
        );
        assert!(
            text.contains("contract: 60 Mbit/s offered, 19.8 Mbit/s delivered, contract 20 Mbit/s, 3000 packets dropped at the edge"),
            "{text}"
        );
        assert!(
            text.contains("cleanup: 3 namespaces removed, 0 left"),
            "{text}"
        );
        assert!(text.ends_with("result: ok"), "{text}");
    }

    #[test]
    fn loss_leftovers_and_a_bad_epoch_fail() {
        let mut r = sample();
        r.mesh[0].received = 4;
        r.left = vec!["v1-1-sw".into()];
        r.rekey.after = r.rekey.before;
        let failures = r.failures();
        assert_eq!(failures.len(), 3, "{failures:?}");
        assert!(
            r.to_string()
                .contains("result: FAILED: ping mesh lost 1 packets")
        );
        r.cut = None;
        assert_eq!(r.failures().len(), 4);
        r.contract.rate_drops = 0;
        assert_eq!(
            r.failures().len(),
            5,
            "no edge drops: the contract was not shown"
        );
        r.contract.rate_drops = 1;
        r.contract.received_bps = 30e6;
        assert_eq!(r.failures().len(), 5, "over the contract");
    }

    #[test]
    fn parses_rtt_and_gaps() {
        let out = "2 packets transmitted, 2 received, 0% packet loss, time 1ms\n\
                   rtt min/avg/max/mdev = 0.061/0.094/0.128/0.033 ms\n";
        assert_eq!(rtt_avg_ms(out), Some(0.094));
        assert_eq!(rtt_avg_ms("100% packet loss\n"), None);
        let gap = max_gap_ms(&[1.0, 1.01, 1.05, 1.06]);
        assert!((gap - 40.0).abs() < 1e-6, "{gap}");
        assert_eq!(max_gap_ms(&[]), 0.0);
        let mean = mean_interval_ms(&[1.0, 1.01, 1.05, 1.06]);
        assert!((mean - 20.0).abs() < 1e-6, "{mean}");
        assert_eq!(mean_interval_ms(&[1.0]), 0.0);
    }
}
