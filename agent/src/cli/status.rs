//! `von status [--json] [--socket PATH]`: what the running agent reports.
//!
//! `--json` prints the agent's document as it came (field names in
//! `docs/status.md`); without it, a summary per VON for a person.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use von_agent::status::{
    LinkState, LinkStatus, StatusReport, UnderlayHealth, UnderlayState, VonStatus, query,
};
use von_config::DEFAULT_CONTROL_SOCKET;
use von_packet::{UnderlayCountersSnapshot, VonCountersSnapshot};

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
    let g = &report.leak_guard;
    let _ = writeln!(
        out,
        "leak guard: nftables table {} {}{}",
        g.table,
        if g.installed { "installed" } else { "MISSING" },
        if g.reinstalls > 0 {
            format!(
                " (put back {} times after someone removed it)",
                g.reinstalls
            )
        } else {
            String::new()
        }
    );
    let _ = writeln!(out, "underlays (host-wide, before matching a VON):");
    for (name, u) in &report.underlays {
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
        "VON {} (ON id {}, {} mode) on {}: member {} (id {}) {}/{}, {} members, epoch {}, lease {}",
        v.name,
        v.on_id,
        v.mode,
        v.interface,
        v.member,
        v.member_id,
        v.address,
        v.prefix_len,
        v.members,
        v.epoch,
        v.lease.map_or("none".to_owned(), |l| format!(
            "expires in {}",
            secs(l.expires_in_ms)
        ))
    );
    if let Some(k) = &v.keymgr {
        let _ = writeln!(
            out,
            "  key manager: {}{}{}",
            k.state,
            k.reason
                .as_deref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default(),
            if k.views_refused + k.refusals > 0 {
                format!(
                    "; views refused {}, refusals {}",
                    k.views_refused, k.refusals
                )
            } else {
                String::new()
            }
        );
    }
    let _ = writeln!(
        out,
        "  rate {} bit/s, dscp {}, mtu {}",
        v.rate_bps, v.dscp, v.mtu
    );
    let line = |out: &mut String, name: &str, u: &UnderlayCountersSnapshot| {
        let _ = writeln!(
            out,
            "  underlay {name}: sent {}  send errors {}  received {}  keepalives sent {} received {}",
            u.tx_frames, u.tx_errors, u.rx_frames, u.tx_keepalives, u.rx_keepalives
        );
    };
    let health: Vec<String> = v
        .health
        .0
        .iter()
        .map(|(n, h)| format!("underlay {n}: {}", summary(h)))
        .collect();
    let _ = writeln!(out, "  {}", health.join("   "));
    if !v.peers.is_empty() {
        let mut head = format!("  {:<14}{:>5}  ", "peer", "id");
        for n in v.health.0.keys() {
            let _ = write!(head, "{:<28}", format!("underlay {n}"));
        }
        let _ = writeln!(out, "{}", head.trim_end());
    }
    for p in &v.peers {
        let mut row = format!("  {:<14}{:>5}  ", p.name, p.id);
        for l in p.underlay.values() {
            let _ = write!(row, "{:<28}", link(l));
        }
        let _ = writeln!(out, "{}", row.trim_end());
    }
    for (name, u) in &c.underlay {
        line(out, name.as_str(), u);
    }
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
    let g = &v.guard;
    let _ = writeln!(
        out,
        "  leak guard: dropped {} leaving and {} arriving by another interface than {}; \
         route conflicts: {}",
        g.leaks_dropped,
        g.injections_dropped,
        v.interface,
        g.route_conflicts.len()
    );
    for c in &g.route_conflicts {
        let _ = writeln!(
            out,
            "  ! {} conflict {}: {}",
            c.kind.name(),
            c.dst,
            c.reason
        );
    }
}

/// "up (1 of 1 peers up)" for one underlay of a VON.
fn summary(h: &UnderlayHealth) -> String {
    let state = match h.state {
        UnderlayState::Up => "up",
        UnderlayState::Partial => "partial",
        UnderlayState::Down => "down",
        UnderlayState::None => "no peers",
    };
    format!(
        "{state} ({} of {} peers up)",
        h.peers_up,
        h.peers_up + h.peers_down
    )
}

/// "up    heard 0.2s ago  0x" for one link.
fn link(l: &LinkStatus) -> String {
    let state = match l.state {
        LinkState::Up => "up",
        LinkState::Down => "down",
    };
    let heard = l.last_heard_ms.map_or("never heard".to_owned(), |ms| {
        format!("heard {} ago", secs(ms as i64))
    });
    format!("{state:<5} {heard}  {}x down", l.downs)
}

/// Milliseconds as seconds with one decimal ("2.7s").
fn secs(ms: i64) -> String {
    format!("{:.1}s", ms as f64 / 1000.0)
}
