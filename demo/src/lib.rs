//! `von-demo`: the whole idea on one machine.
//!
//! A binary of its own beside `von`, so the netns harness it drives
//! (`von-lab`) is never linked into the production agent; it runs the real
//! `von` for everything a host does.
//!
//! Flow:
//! 1. three hosts as network namespaces, each with `ua` on LAN A and `ub`
//!    on LAN B (two bridges in a switch namespace), built by `von-lab`;
//! 2. a CA and certificates (`von ca init`, `von cert issue`), and a real
//!    `von up` per host (the `von` binary given, `ip netns exec`), one VON `grid`
//!    over all three, its key manager embedded in h1's agent;
//! 3. a ping mesh over the VON, every ordered pair;
//! 4. `ping -i 0.01` from h1 to h2 while LAN A is cut for every host: 0 lost;
//! 5. UDP from h1 to h2 at three times the contracted rate: the contract
//!    is delivered, the excess dropped at h1's edge;
//! 6. `von keymgr revoke --name h3 --config h1's von.toml` while h1 pings
//!    h2: epoch +1, 0 lost, and h3 can no longer reach anyone;
//! 7. teardown, and a check that no namespace is left; then the report.
//!
//! Every exit runs the teardown: errors and panics drop the topology
//! (agents stopped, namespaces deleted), Ctrl-C/SIGTERM set a flag every
//! step checks ([`stop`]). Names are unique per process (`v<pid>-<n>-h1`),
//! so two demos, or a demo and the tests, run side by side.

mod keymgr;
mod report;
mod steps;
pub mod stop;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use von_lab::{Netns, Topology, VonSpec};

pub use report::Report;
pub use stop::{Interrupted, Stop};

/// The demo's one VON: ON id 7, 100.64.1.0/24, contracted 20 Mbit/s.
const VON: &str = "grid";
const ON_ID: u32 = 7;
const SUBNET: u8 = 1;
const RATE: &str = "20mbit";
/// Hosts in the demo: the fewest that need a LAN per underlay.
const HOSTS: u8 = 3;

/// Runs the demo with the agents and tools of the `von` binary `bin`,
/// printing progress to `out`; the caller prints the report.
pub fn run(bin: PathBuf, stop: &Stop, out: &mut dyn Write) -> anyhow::Result<Report> {
    von_lab::vonbin::use_binary(bin.clone()).context("choosing the von binary for the agents")?;
    say(out, &format!("von-demo: agents run {}", bin.display()))?;

    let topo = Topology::new(usize::from(HOSTS)).context("building the hosts")?;
    let mut namespaces: Vec<String> = topo
        .hosts()
        .iter()
        .map(|h| h.ns().name().to_owned())
        .collect();
    namespaces.extend(topo.switch().map(|s| s.name().to_owned()));
    say(out, &picture(&topo))?;

    let result = drive(topo, &bin, stop, out, namespaces.clone());
    // `drive` owns the topology and dropped it (agents, namespaces, files)
    // on every path; now make sure nothing is left.
    let left: Vec<String> = namespaces
        .iter()
        .filter(|n| Netns::exists(n).unwrap_or(true))
        .cloned()
        .collect();
    if left.is_empty() {
        say(out, &format!("teardown: removed {}", namespaces.join(" ")))?;
    } else {
        say(
            out,
            &format!(
                "teardown: STILL PRESENT: {} (remove with `ip netns del NAME`)",
                left.join(" ")
            ),
        )?;
    }
    let mut report = result?;
    report.left = left;
    Ok(report)
}

/// Steps 2 to 5; drops the topology before returning, whatever happens.
fn drive(
    mut topo: Topology,
    bin: &Path,
    stop: &Stop,
    out: &mut dyn Write,
    namespaces: Vec<String>,
) -> anyhow::Result<Report> {
    stop.check()?;
    let grid = VonSpec::new(VON, ON_ID, SUBNET, &(1..=HOSTS).collect::<Vec<_>>()).rate(RATE);
    let creds = keymgr::Credentials::issue(bin, &topo, &grid, ON_ID, out)?;
    say(
        out,
        &format!(
            "starting a von agent on each host: VON {VON}, ON id {ON_ID}, 100.64.{SUBNET}.0/24, {RATE}; \
             the key manager embedded in h1's agent ({}), h2 and h3 join it",
            keymgr::keymgr_addr()
        ),
    )?;
    let started = Instant::now();
    for n in 1..=usize::from(HOSTS) {
        stop.check()?;
        let config = keymgr::agent_config(&topo, n, &grid, ON_ID, &creds);
        let address = grid.address(topo.host(n).index());
        topo.start_agent(n, &config, vec![(grid.interface(), address)])
            .with_context(|| format!("starting the agent on h{n}"))?;
        say(
            out,
            &format!("  h{n}: von-grid {address} up, group key received"),
        )?;
    }
    let agents_ready = started.elapsed();
    say(
        out,
        &format!("agents ready after {:.1} s", agents_ready.as_secs_f64()),
    )?;
    stop.check()?;

    let mesh = steps::mesh(&topo, &grid, stop, out)?;
    let cut = steps::cut_a(&topo, &grid, stop, out)?;
    // Parsed as the agents parse their `rate`, so the step checks the
    // contract they actually run.
    let rate: von_config::Rate = RATE.parse().context("the demo's rate")?;
    let contract = steps::contract(&topo, &grid, rate.bits_per_second() as f64, stop, out)?;
    let rekey = keymgr::remove_member(bin, &topo, &grid, stop, out)?;
    let (counters_of, counters) = steps::counters(&topo, 2)?;
    stop.check()?;
    say(out, "stopping the agents and removing the namespaces")?;
    drop(topo);
    Ok(Report {
        mode: "keymgr (embedded in h1's agent)",
        hosts: usize::from(HOSTS),
        namespaces,
        agents_ready,
        mesh,
        cut: Some(cut),
        contract,
        rekey,
        counters,
        counters_of,
        left: Vec::new(),
    })
}

/// The topology as built, with its real namespace names.
fn picture(topo: &Topology) -> String {
    let ns = |n: usize| topo.host(n).ns().name().to_owned();
    let sw = topo
        .switch()
        .map_or_else(|| "-".to_owned(), |s| s.name().to_owned());
    format!(
        "built three hosts (network namespaces) and two underlays:\n\
         \n\
         \x20 {h1:<16} {h2:<16} {h3:<16}\n\
         \x20 h1 ua 192.0.2.1   h2 ua 192.0.2.2   h3 ua 192.0.2.3     von-grid 100.64.1.N\n\
         \x20    ub 198.51.100.1    ub 198.51.100.2    ub 198.51.100.3\n\
         \x20      |  |               |  |               |  |\n\
         \x20 {sw}: bridge lana (underlay A)   bridge lanb (underlay B)\n",
        h1 = ns(1),
        h2 = ns(2),
        h3 = ns(3),
    )
}

/// One progress line, flushed so a watching person sees it at once.
fn say(out: &mut dyn Write, line: &str) -> anyhow::Result<()> {
    writeln!(out, "{line}")
        .and_then(|()| out.flush())
        .context("writing the demo's progress")
}
