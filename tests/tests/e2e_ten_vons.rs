//! Issue 12: ten VONs on one host, each with its own interface. Three hosts
//! are members of all ten (static views, ON ids 101..=110, subnets
//! 100.64.11.0/24..100.64.20.0/24). Every interface exists on every host
//! with its own address; a ping through each VON in turn arrives, and the
//! counters show it arrived in that VON only: on the receiving host the
//! pinged VON delivered every request (and its sender sealed them) while
//! the nine others sealed and delivered nothing. Then the agents' idle CPU
//! and RSS with ten VONs are printed.
//!
//! ```text
//!  ┌──────── h1 ────────┐   ┌──────── h2 ────────┐   ┌──────── h3 ────────┐
//!  │ von-v0 .. von-v9   │   │ von-v0 .. von-v9   │   │ von-v0 .. von-v9   │
//!  │ 100.64.1X.1        │   │ 100.64.1X.2        │   │ 100.64.1X.3        │
//!  │ [von up: 10 VONs]  │   │ [von up: 10 VONs]  │   │ [von up: 10 VONs]  │
//!  └── ua ──── ub ──────┘   └── ua ──── ub ──────┘   └── ua ──── ub ──────┘
//!  ┌───┴───────┴──────────────────┴───────┴──────────────────┴───────┴─────┐
//!  │ sw:  lana = LAN A 192.0.2.0/24        lanb = LAN B 198.51.100.0/24    │
//!  └───────────────────────────────────────────────────────────────────────┘
//! ```
//!
//! Run: `VON_E2E=require VON_BIN=target/release/von cargo test -p von-tests --release --test e2e_ten_vons -- --nocapture`

use std::time::Duration;

use von_tests::{Ping, Result, Topology, VonCounters, VonSpec};

const VONS: u8 = 10;
const HOSTS: u8 = 3;
const COUNT: u32 = 20;

fn counters(topo: &Topology, host: usize, vons: &[VonSpec]) -> Result<Vec<VonCounters>> {
    vons.iter()
        .map(|v| topo.agent(host).counters(&v.name))
        .collect()
}

/// User + system CPU time of `pid` in clock ticks (USER_HZ = 100).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let Some(close) = stat.rfind(')') else {
        return 0;
    };
    let f: Vec<u64> = stat[close + 2..]
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0)
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[test]
fn ten_vons_on_one_host_each_with_its_own_interface() -> Result<()> {
    if !von_tests::e2e_enabled("e2e ten vons")? {
        return Ok(());
    }
    let members: Vec<u8> = (1..=HOSTS).collect();
    let vons: Vec<VonSpec> = (0..VONS)
        .map(|i| VonSpec::new(&format!("v{i}"), 101 + u32::from(i), 11 + i, &members))
        .collect();
    let mut topo = Topology::new(usize::from(HOSTS))?;
    topo.start(&vons)?;

    // Every interface on every host, with its own address.
    for h in 1..=usize::from(HOSTS) {
        let host = topo.host(h);
        for v in &vons {
            let out = host
                .ns()
                .ip(&["-4", "-o", "addr", "show", "dev", &v.interface()])?;
            let text = &out.stdout;
            let want = format!("inet {}/", v.address(host.index()));
            assert!(
                text.contains(&want),
                "h{h}: {} lacks {want}: {text}",
                v.interface()
            );
        }
    }

    // A ping through each VON in turn, h(k) -> h(k+1): it arrives, and only
    // in its own VON.
    for (i, von) in vons.iter().enumerate() {
        let from = i % usize::from(HOSTS) + 1;
        let to = from % usize::from(HOSTS) + 1;
        let before_tx = counters(&topo, from, &vons)?;
        let before_rx = counters(&topo, to, &vons)?;
        let r = Ping::new(von.address(to as u8), COUNT)
            .interval(Duration::from_millis(20))
            .run(topo.host(from).ns())?;
        assert_eq!(
            (r.transmitted, r.received),
            (COUNT, COUNT),
            "{} h{from} -> h{to}: {}",
            von.name,
            r.output
        );
        let after_tx = counters(&topo, from, &vons)?;
        let after_rx = counters(&topo, to, &vons)?;
        let n = u64::from(COUNT);
        for (j, other) in vons.iter().enumerate() {
            let sealed = before_tx[j].delta(&after_tx[j], "tx_packets")?;
            let delivered = before_rx[j].delta(&after_rx[j], "delivered")?;
            // Replies travel back in the same VON; so the sender delivers
            // exactly COUNT too, and nothing else anywhere.
            let replies = before_tx[j].delta(&after_tx[j], "delivered")?;
            let want = if j == i { n } else { 0 };
            assert_eq!(
                (sealed, delivered, replies),
                (want, want, want),
                "ping in {} (h{from} -> h{to}): {} sealed {sealed}, delivered {delivered} at h{to}, {replies} replies at h{from}; want {want} each",
                von.name,
                other.name
            );
        }
    }

    // Idle cost of ten VONs per agent.
    let pids: Vec<u32> = (1..=usize::from(HOSTS))
        .map(|h| topo.agent(h).pid())
        .collect();
    let t0: Vec<u64> = pids.iter().map(|&p| cpu_ticks(p)).collect();
    let idle = Duration::from_secs(10);
    std::thread::sleep(idle);
    for (k, &p) in pids.iter().enumerate() {
        let ticks = cpu_ticks(p) - t0[k];
        println!(
            "h{}: agent with {VONS} VONs and {} peers each: idle CPU {:.2} % of one core over {} s, RSS {} KiB",
            k + 1,
            HOSTS - 1,
            ticks as f64 * 10.0 / idle.as_millis() as f64 * 100.0,
            idle.as_secs(),
            rss_kib(p)
        );
    }
    Ok(())
}
