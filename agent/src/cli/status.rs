//! `von status [--json] [--socket PATH]`: what the running agent reports.
//!
//! `--json` prints the agent's document as it came (field names in
//! `docs/status.md`); without it, a summary per VON for a person.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use von_agent::pipeline::{UnderlayCountersSnapshot, VonCountersSnapshot};
use von_agent::status::{StatusReport, VonStatus, query};
use von_config::DEFAULT_CONTROL_SOCKET;

/// Show per-VON members, epoch and counters of the running agent.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print the machine-readable JSON document.
    #[arg(long)]
    json: bool,
    /// The agent's control socket (its config's `control_socket`).
    #[arg(long, value_name = "PATH", default_value = DEFAULT_CONTROL_SOCKET)]
    socket: PathBuf,
}

/// Runs `von status`.
pub fn run(args: StatusArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let (text, report) = runtime.block_on(query(&args.socket))?;
    if args.json {
        println!("{text}");
    } else {
        print!("{}", human(&report));
    }
    Ok(())
}

/// The summary for a person.
fn human(report: &StatusReport) -> String {
    let mut out = String::new();
    for v in &report.vons {
        von(&mut out, v);
    }
    let _ = writeln!(out, "underlays (host-wide, before matching a VON):");
    for (name, u) in [("a", &report.underlays.a), ("b", &report.underlays.b)] {
        let c = &u.counters;
        let _ = writeln!(
            out,
            "  {name} {:<22} received {}  malformed {}  unknown ON id {}  errors {}",
            u.bind, c.rx_datagrams, c.malformed, c.unknown_on_id, c.rx_errors
        );
    }
    out
}

fn von(out: &mut String, v: &VonStatus) {
    let c: &VonCountersSnapshot = &v.counters;
    let _ = writeln!(
        out,
        "VON {} (ON id {}, {} mode) on {}: member {} (id {}) {}/{}, {} members, epoch {}",
        v.name,
        v.on_id,
        v.mode,
        v.interface,
        v.member,
        v.member_id,
        v.address,
        v.prefix_len,
        v.members,
        v.epoch
    );
    let _ = writeln!(
        out,
        "  rate {} bit/s, dscp {}, mtu {}",
        v.rate_bps, v.dscp, v.mtu
    );
    let line = |out: &mut String, name: &str, u: &UnderlayCountersSnapshot| {
        let _ = writeln!(
            out,
            "  underlay {name}: sent {}  send errors {}  received {}",
            u.tx_frames, u.tx_errors, u.rx_frames
        );
    };
    line(out, "a", &c.a);
    line(out, "b", &c.b);
    let _ = writeln!(
        out,
        "  packets sent {}  delivered {}  duplicates discarded {}  AEAD opens {}",
        c.tx_packets, c.delivered, c.duplicates, c.aead_opens
    );
    let _ = writeln!(
        out,
        "  drops: replays {}  too old {}  auth failures {}  unknown sender {}  unknown epoch {}  \
         inner source {}  policy {}  rate {}  too big {}  malformed {}",
        c.replays,
        c.too_old,
        c.auth_failures,
        c.unknown_sender,
        c.unknown_epoch,
        c.inner_source_rejected,
        c.policy_drops,
        c.rate_drops,
        c.too_big,
        c.malformed
    );
}
