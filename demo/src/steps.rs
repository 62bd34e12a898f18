//! The demo's measuring steps: each drives real programs in the hosts'
//! namespaces and returns only what it read from them.

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::Context;
use von_lab::{Ping, PingReport, Topology, Underlay, VonSpec, iperf3};

use super::report::{self, Contract, Cut, Pair};
use super::say;
use super::stop::Stop;

/// Echo requests per pair of the mesh, and their spacing.
const MESH_PINGS: u32 = 5;
const MESH_INTERVAL: Duration = Duration::from_millis(50);
/// The cut: `ping -i 0.01` for 5 s; A goes down 1 s in, for 2 s.
const CUT_PINGS: u32 = 500;
const CUT_INTERVAL: Duration = Duration::from_millis(10);
const CUT_AFTER: Duration = Duration::from_secs(1);
const CUT_FOR: Duration = Duration::from_secs(2);

/// Every host pings every other over the VON.
pub fn mesh(
    topo: &Topology,
    grid: &VonSpec,
    stop: &Stop,
    out: &mut dyn Write,
) -> anyhow::Result<Vec<Pair>> {
    say(out, "ping mesh over von-grid (every ordered pair):")?;
    let mut pairs = Vec::new();
    for from in topo.hosts() {
        for to in topo.hosts() {
            if from.index() == to.index() {
                continue;
            }
            stop.check()?;
            let ping = Ping::new(grid.address(to.index()), MESH_PINGS).interval(MESH_INTERVAL);
            let r = ping
                .run(from.ns())
                .with_context(|| format!("ping from {} to {}", from.name(), to.name()))?;
            // Ctrl-C reaches ping too; its summary would be a short count.
            stop.check()?;
            let pair = Pair {
                from: from.name(),
                to: to.name(),
                sent: r.transmitted,
                received: r.received,
                rtt_avg_ms: report::rtt_avg_ms(&r.output),
            };
            say(
                out,
                &format!(
                    "  {} -> {} ({}): {}/{} received",
                    pair.from,
                    pair.to,
                    grid.address(to.index()),
                    pair.received,
                    pair.sent
                ),
            )?;
            pairs.push(pair);
        }
    }
    Ok(pairs)
}

/// `ping -i 0.01` from h1 to h2 while underlay A is down for every host.
pub fn cut_a(
    topo: &Topology,
    grid: &VonSpec,
    stop: &Stop,
    out: &mut dyn Write,
) -> anyhow::Result<Cut> {
    let (sender, receiver) = (topo.host(1), topo.host(2));
    say(
        out,
        &format!(
            "underlay failure: h1 pings h2 every 10 ms ({CUT_PINGS} pings); after {} s LAN A goes down on every host for {} s",
            CUT_AFTER.as_secs(),
            CUT_FOR.as_secs()
        ),
    )?;
    let rx_before = topo
        .agent(2)
        .counters(&grid.name)
        .context("h2's counters before the cut")?;
    let tx_before = topo
        .agent(1)
        .counters(&grid.name)
        .context("h1's counters before the cut")?;
    let ping = Ping::new(grid.address(receiver.index()), CUT_PINGS).interval(CUT_INTERVAL);
    let running = ping.spawn(sender.ns()).context("starting ping -i 0.01")?;
    let outcome = (|| -> anyhow::Result<Duration> {
        stop.sleep(CUT_AFTER)?;
        topo.cut_all(Underlay::A).context("cutting underlay A")?;
        let down = Instant::now();
        say(out, "  LAN A down (ip link set ua down on h1, h2, h3)")?;
        let slept = stop.sleep(CUT_FOR);
        // Restore even when interrupted: the namespaces go anyway, but a
        // failed restore must not hide the interruption.
        let restored = topo
            .restore_all(Underlay::A)
            .context("restoring underlay A");
        let down_for = down.elapsed();
        slept?;
        restored?;
        say(
            out,
            &format!("  LAN A up again after {:.1} s", down_for.as_secs_f64()),
        )?;
        Ok(down_for)
    })();
    // On an error `running` is dropped here, which kills the ping.
    let down_for = outcome?;
    let deadline = Instant::now() + ping.timeout();
    let mut running = running;
    while running.running() && Instant::now() < deadline {
        stop.sleep(Duration::from_millis(50))?;
    }
    let output = running
        .wait(Duration::from_secs(5))
        .context("ping -i 0.01 did not finish")?;
    stop.check()?;
    let r = PingReport::parse(&output).context("reading ping's summary")?;
    let rx_after = topo
        .agent(2)
        .counters(&grid.name)
        .context("h2's counters after the cut")?;
    let tx_after = topo
        .agent(1)
        .counters(&grid.name)
        .context("h1's counters after the cut")?;
    let arrivals: Vec<f64> = r
        .replies
        .iter()
        .filter(|p| !p.duplicate)
        .map(|p| p.at)
        .collect();
    let cut = Cut {
        sent: r.transmitted,
        received: r.received,
        ping_duplicates: r.duplicates,
        down_for,
        max_gap_ms: report::max_gap_ms(&arrivals),
        mean_interval_ms: report::mean_interval_ms(&arrivals),
        rx_a: rx_before.delta_on(&rx_after, Underlay::A, "rx_frames")?,
        rx_b: rx_before.delta_on(&rx_after, Underlay::B, "rx_frames")?,
        tx_errors_a: tx_before.delta_on(&tx_after, Underlay::A, "tx_errors")?,
        discarded_duplicates: rx_before.delta(&rx_after, "duplicates")?,
    };
    say(
        out,
        &format!(
            "  {} sent, {} received, {} lost; h2 got {} frames on A and {} on B",
            cut.sent,
            cut.received,
            cut.sent.saturating_sub(cut.received),
            cut.rx_a,
            cut.rx_b
        ),
    )?;
    Ok(cut)
}

/// The contract step: UDP offered at three times the rate, for 3 s.
const CONTRACT_FACTOR: f64 = 3.0;
const CONTRACT_FOR: Duration = Duration::from_secs(3);
/// iperf3's UDP payload; the inner packet is 28 bytes more.
const CONTRACT_DATAGRAM: &str = "1200";

/// UDP from h1 to h2 at three times the VON's contracted rate: what
/// arrives is the contract, the rest is dropped at h1's edge, as a
/// dedicated line of that rate would.
pub fn contract(
    topo: &Topology,
    grid: &VonSpec,
    rate_bps: f64,
    stop: &Stop,
    out: &mut dyn Write,
) -> anyhow::Result<Contract> {
    let offered_bps = rate_bps * CONTRACT_FACTOR;
    say(
        out,
        &format!(
            "contract: h1 offers {:.0} Mbit/s of UDP to h2 for {} s, {CONTRACT_FACTOR}x the VON's {:.0} Mbit/s",
            offered_bps / 1e6,
            CONTRACT_FOR.as_secs(),
            rate_bps / 1e6
        ),
    )?;
    stop.check()?;
    let before = topo
        .agent(1)
        .counters(super::VON)
        .context("h1's counters")?;
    let offered = format!("{}", offered_bps as u64);
    let seconds = CONTRACT_FOR.as_secs().to_string();
    let r = iperf3(
        topo.host(2).ns(),
        grid.address(2),
        topo.host(1).ns(),
        &["-u", "-b", &offered, "-l", CONTRACT_DATAGRAM, "-t", &seconds],
        CONTRACT_FOR,
    )
    .context("iperf3 from h1 to h2 over von-grid (is iperf3 installed? scripts/setup-debian.sh installs it)")?;
    stop.check()?;
    let after = topo
        .agent(1)
        .counters(super::VON)
        .context("h1's counters")?;
    let contract = Contract {
        rate_bps,
        offered_bps,
        received_bps: r.received_bps(),
        rate_drops: before.delta(&after, "rate_drops")?,
    };
    say(
        out,
        &format!(
            "  h2 received {:.1} Mbit/s; h1's edge dropped {} packets over the contract (rate_drops)",
            contract.received_bps / 1e6,
            contract.rate_drops
        ),
    )?;
    Ok(contract)
}

/// The counters an operator looks at first, from host `hN`'s agent.
pub fn counters(topo: &Topology, n: usize) -> anyhow::Result<(String, Vec<(&'static str, u64)>)> {
    const NAMES: [&str; 8] = [
        "tx_packets",
        "delivered",
        "duplicates",
        "replays",
        "auth_failures",
        "unknown_sender",
        "policy_drops",
        "rate_drops",
    ];
    let c = topo
        .agent(n)
        .counters(super::VON)
        .with_context(|| format!("h{n}'s counters"))?;
    let values = NAMES
        .iter()
        .map(|&name| Ok((name, c.get(name)?)))
        .collect::<Result<Vec<_>, von_lab::Error>>()?;
    Ok((format!("h{n}"), values))
}
