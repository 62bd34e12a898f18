//! `von status [--json] [--config FILE | --socket PATH]`: what the running
//! agent reports.
//!
//! The socket is the config's `control_socket` (default config
//! /etc/von/von.toml; `--socket` overrides). `--json` prints the agent's
//! document as it came (field names in `docs/status.md`); without it, per
//! VON a peer table with one group of columns per underlay, like `wg show`,
//! and a row per underlay. Each failure has its own message: no socket
//! (no agent), permission denied, a stale socket, and an agent still
//! waiting for its first view (exit 1; `--json` prints its document).
//! Revoked, refused and lease-lost members are said plainly, first.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use von_agent::status::{
    LinkState, LinkStatus, PeerStatus, StatusError, StatusReport, UnderlayHealth, UnderlayState,
    UnderlayStatus, VonStatus, query,
};
use von_config::{AgentConfig, DEFAULT_CONTROL_SOCKET};
use von_packet::{UnderlayCountersSnapshot, VonCountersSnapshot};

/// Show per-VON members, epoch, peers and counters of the running agent.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print the machine-readable JSON document.
    #[arg(long)]
    json: bool,
    /// The agent's configuration: its `control_socket` names the socket
    /// (only that key is read). A missing default file means the default
    /// socket.
    #[arg(long, value_name = "FILE", default_value = DEFAULT_CONFIG)]
    config: PathBuf,
    /// The agent's control socket; overrides the config's `control_socket`.
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// Show the tables again every second, clearing the screen, until
    /// Ctrl-C (a live view: alarms, path health, counters).
    #[arg(long, conflicts_with = "json")]
    watch: bool,
}

/// Where `von up` reads its config when systemd runs it.
const DEFAULT_CONFIG: &str = "/etc/von/von.toml";

/// Runs `von status`.
pub fn run(args: StatusArgs) -> anyhow::Result<()> {
    let socket = socket(&args)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    if args.watch {
        return runtime.block_on(watch(&socket));
    }
    match runtime.block_on(query(&socket)) {
        Ok((text, report)) => {
            if args.json {
                println!("{text}");
            } else {
                print!("{}", human(&report));
            }
            Ok(())
        }
        // Waiting is an answer, but not a running VON: shown, and exit 1.
        Err(e @ StatusError::Waiting { .. }) => {
            if let (true, StatusError::Waiting { text, .. }) = (args.json, &e) {
                println!("{text}");
            }
            Err(e.into())
        }
        Err(e) => Err(e.into()),
    }
}

/// `--watch`: the tables every second on a cleared screen until Ctrl-C,
/// which ends it cleanly (exit 0). An agent that stops answering is shown
/// as such, and the view keeps trying.
async fn watch(socket: &Path) -> anyhow::Result<()> {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    let mut interrupt = std::pin::pin!(tokio::signal::ctrl_c());
    loop {
        tokio::select! {
            _ = &mut interrupt => {
                println!();
                return Ok(());
            }
            _ = tick.tick() => {}
        }
        let body = match query(socket).await {
            Ok((_, report)) => human(&report),
            Err(e) => format!("{e}\n"),
        };
        // Clear the screen, cursor home, then the tables.
        println!("\x1b[2J\x1b[H{body}  (every 1 s; Ctrl-C to stop)");
        use std::io::Write as _;
        let _ = std::io::stdout().flush();
    }
}

/// `--socket`, else the config's `control_socket`; the default config may
/// be absent (then the default socket), a named one may not.
fn socket(args: &StatusArgs) -> anyhow::Result<PathBuf> {
    if let Some(s) = &args.socket {
        return Ok(s.clone());
    }
    if args.config == Path::new(DEFAULT_CONFIG) && !args.config.exists() {
        return Ok(DEFAULT_CONTROL_SOCKET.into());
    }
    AgentConfig::read_control_socket(&args.config).with_context(|| {
        format!(
            "finding the agent's control socket (or pass --socket PATH; --config {} names the file)",
            args.config.display()
        )
    })
}

/// The summary for a person.
fn human(report: &StatusReport) -> String {
    let mut out = String::new();
    alarms(&mut out, report);
    for v in &report.vons {
        von(&mut out, v);
        out.push('\n');
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
    let mut rows = vec![row([
        "underlay",
        "bind",
        "received",
        "malformed",
        "unknown ON id",
        "errors",
    ])];
    for (name, u) in underlays(report) {
        let c = &u.counters;
        rows.push(vec![
            name.to_owned(),
            u.bind.to_string(),
            c.rx_datagrams.to_string(),
            c.malformed.to_string(),
            c.unknown_on_id.to_string(),
            c.rx_errors.to_string(),
        ]);
    }
    table(&mut out, "  ", &rows);
    out
}

/// The active alarms first, most severe first: what an operator must see.
fn alarms(out: &mut String, report: &StatusReport) {
    if report.alarms.is_empty() {
        let _ = writeln!(out, "alarms: none\n");
        return;
    }
    let _ = writeln!(out, "alarms ({}):", report.alarms.len());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let mut rows = vec![row([
        "severity", "alarm", "von", "peer", "underlay", "source", "since", "detail",
    ])];
    for a in &report.alarms {
        let s = &a.subject;
        let field = |o: &Option<String>| o.clone().unwrap_or_else(|| "-".to_owned());
        rows.push(vec![
            a.severity.name().to_uppercase(),
            s.alarm.clone(),
            field(&s.von),
            field(&s.peer),
            field(&s.underlay),
            field(&s.source),
            format!("{} ago", secs(now - a.since_unix_ms as i64)),
            a.detail.clone(),
        ]);
    }
    table(out, "  ", &rows);
    out.push('\n');
}

/// The host's underlays as a list, in order (the tables loop over it).
fn underlays(report: &StatusReport) -> Vec<(&str, &UnderlayStatus)> {
    report
        .underlays
        .iter()
        .map(|(n, u)| (n.as_str(), u))
        .collect()
}

/// A VON's per-underlay data as a list, in the host's underlay order.
fn von_underlays(v: &VonStatus) -> Vec<(&str, &UnderlayHealth, &UnderlayCountersSnapshot)> {
    v.counters
        .underlay
        .iter()
        .filter_map(|(n, c)| Some((n.as_str(), v.health.0.get(n)?, c)))
        .collect()
}

/// A peer's links as a list, in the host's underlay order.
fn peer_links(p: &PeerStatus) -> Vec<(&str, &LinkStatus)> {
    p.underlay.iter().map(|(n, l)| (n.as_str(), l)).collect()
}

fn row<const N: usize>(cells: [&str; N]) -> Vec<String> {
    cells.iter().map(|c| (*c).to_owned()).collect()
}

/// Writes `rows` (the first is the header) with each column padded to its
/// widest cell, like `wg show`; numbers are right-aligned.
fn table(out: &mut String, indent: &str, rows: &[Vec<String>]) {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for (i, r) in rows.iter().enumerate() {
        let mut line = String::from(indent);
        for (c, cell) in r.iter().enumerate() {
            let numeric = i > 0 && !cell.is_empty() && cell.bytes().all(|b| b.is_ascii_digit());
            if c > 0 {
                line.push_str("  ");
            }
            if numeric {
                let _ = write!(line, "{cell:>w$}", w = widths[c]);
            } else {
                let _ = write!(line, "{cell:<w$}", w = widths[c]);
            }
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
}

/// A member's addresses, IPv4 first: `100.64.1.2 fd00:7::2`, or one.
fn addresses(v4: Option<Ipv4Addr>, v6: Option<Ipv6Addr>) -> String {
    let all: Vec<String> = v4
        .map(|a| a.to_string())
        .into_iter()
        .chain(v6.map(|a| a.to_string()))
        .collect();
    if all.is_empty() {
        "-".to_owned()
    } else {
        all.join(" ")
    }
}

/// This host's addresses with their prefix lengths.
fn own_addresses(v: &VonStatus) -> String {
    let all: Vec<String> = [
        v.address.map(IpAddr::V4).zip(v.prefix_len),
        v.address6.map(IpAddr::V6).zip(v.prefix6_len),
    ]
    .into_iter()
    .flatten()
    .map(|(a, l)| format!("{a}/{l}"))
    .collect();
    all.join(" ")
}

fn von(out: &mut String, v: &VonStatus) {
    let c: &VonCountersSnapshot = &v.counters;
    let _ = writeln!(
        out,
        "von {}: interface {}, ON id {}, {} mode",
        v.name, v.interface, v.on_id, v.mode
    );
    let _ = writeln!(
        out,
        "  member {} (id {}) {}, {} members, epoch {}, rate {} bit/s, dscp {}, mtu {}",
        v.member,
        v.member_id,
        own_addresses(v),
        v.members,
        v.epoch,
        v.rate_bps,
        v.dscp,
        v.mtu
    );
    // Revoked, refused, or a lease run out: said first, in plain words.
    for warning in standing_warnings(v) {
        let _ = writeln!(out, "  ! {warning}");
    }
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
    if let Some(l) = v.lease {
        let _ = writeln!(out, "  lease {}", lease_text(l.expires_in_ms));
    }

    // One row per peer, one group of columns per underlay.
    if !v.peers.is_empty() {
        let mut header = row(["peer", "address"]);
        for (name, _) in peer_links(&v.peers[0]) {
            header.push(format!("{name}: endpoint"));
            header.push(format!("{name}: state"));
            header.push(format!("{name}: last heard"));
            header.push(format!("{name}: downs"));
            header.push(format!("{name}: received"));
        }
        let mut rows = vec![header];
        for p in &v.peers {
            let mut r = vec![p.name.clone(), addresses(p.address, p.address6)];
            for (_, l) in peer_links(p) {
                r.push(l.endpoint.map_or_else(|| "-".to_owned(), |e| e.to_string()));
                r.push(state_name(l.state).to_owned());
                r.push(heard(l));
                r.push(l.downs.to_string());
                r.push(bytes(l.rx_bytes));
            }
            rows.push(r);
        }
        table(out, "  ", &rows);
        // Path health per peer and underlay, from the keepalive echoes.
        let mut rows = vec![row(["path", "rtt", "jitter", "loss", "probes lost"])];
        for p in &v.peers {
            for (name, l) in peer_links(p) {
                rows.push(vec![
                    format!("{} via {name}", p.name),
                    l.rtt_us.map_or_else(|| "-".to_owned(), millis),
                    if l.rtt_us.is_some() {
                        millis(l.jitter_us)
                    } else {
                        "-".to_owned()
                    },
                    if l.probes_received > 0 {
                        format!("{:.1}%", f64::from(l.loss_ppm) / 10_000.0)
                    } else {
                        "-".to_owned()
                    },
                    l.probes_lost.to_string(),
                ]);
            }
        }
        table(out, "  ", &rows);
        // Per sender: IEEE 802.1CB's elimination counters.
        let mut rows = vec![row([
            "from",
            "passed",
            "discarded",
            "out of order",
            "lost",
            "rogue",
            "resets",
        ])];
        for p in &v.peers {
            let e = &p.elimination;
            rows.push(vec![
                p.name.clone(),
                e.passed.to_string(),
                e.discarded.to_string(),
                e.out_of_order.to_string(),
                e.lost.to_string(),
                e.rogue.to_string(),
                e.resets.to_string(),
            ]);
        }
        table(out, "  ", &rows);
        // Per sender: the ordering stage (RFC 9550's POF), once it has seen
        // anything (the VON has `ordering`).
        let ordered = |o: &von_packet::OrderingCountersSnapshot| {
            *o != von_packet::OrderingCountersSnapshot::default()
        };
        if v.peers.iter().any(|p| ordered(&p.ordering)) {
            let mut rows = vec![row([
                "ordering",
                "in order",
                "reordered",
                "timeout",
                "overflow",
                "late",
                "flushed",
                "held",
            ])];
            for p in &v.peers {
                let o = &p.ordering;
                rows.push(vec![
                    p.name.clone(),
                    o.in_order.to_string(),
                    o.reordered.to_string(),
                    o.released_on_timeout.to_string(),
                    o.released_on_overflow.to_string(),
                    o.late.to_string(),
                    o.flushed.to_string(),
                    o.held.to_string(),
                ]);
            }
            table(out, "  ", &rows);
        }
    } else {
        let _ = writeln!(out, "  no other member in the view");
    }

    // One row per underlay: its health over the peers and this VON's frames.
    let mut rows = vec![row([
        "underlay",
        "state",
        "peers up",
        "frames sent",
        "send errors",
        "frames received",
        "keepalives sent",
        "keepalives received",
        "sent",
        "received",
    ])];
    for (name, h, u) in von_underlays(v) {
        rows.push(vec![
            name.to_owned(),
            health_name(h.state).to_owned(),
            format!("{}/{}", h.peers_up, h.peers_up + h.peers_down),
            u.tx_frames.to_string(),
            u.tx_errors.to_string(),
            u.rx_frames.to_string(),
            u.tx_keepalives.to_string(),
            u.rx_keepalives.to_string(),
            bytes(u.tx_bytes),
            bytes(u.rx_bytes),
        ]);
    }
    table(out, "  ", &rows);
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

/// The standing an operator must not miss: revoked or refused by the key
/// manager, or a lease that ran out (the key manager has dropped this member).
fn standing_warnings(v: &VonStatus) -> Vec<String> {
    let mut w = Vec::new();
    if let Some(k) = &v.keymgr {
        let reason = k
            .reason
            .as_deref()
            .map(|r| format!(": {r}"))
            .unwrap_or_default();
        match k.state.as_str() {
            "revoked" => w.push(format!(
                "REVOKED by the key manager{reason}. This member is out of the VON: \
                 peers no longer accept its frames (issue a new certificate to rejoin)"
            )),
            "refused" => w.push(format!(
                "REFUSED by the key manager{reason} (the agent keeps retrying)"
            )),
            "view_refused" => w.push(format!(
                "the last view from the key manager was refused{reason}"
            )),
            "unreachable" => w.push(format!(
                "key manager unreachable{reason}; forwarding on the last view"
            )),
            _ => {}
        }
    }
    if let Some(l) = v.lease {
        if l.expires_in_ms < 0 {
            w.push(format!(
                "LEASE LOST: it expired {} ago; the key manager has dropped this member \
                 until it renews",
                secs(-l.expires_in_ms)
            ));
        }
    }
    w
}

fn lease_text(expires_in_ms: i64) -> String {
    if expires_in_ms < 0 {
        format!("expired {} ago", secs(-expires_in_ms))
    } else {
        format!("expires in {}", secs(expires_in_ms))
    }
}

fn state_name(s: LinkState) -> &'static str {
    match s {
        LinkState::Up => "up",
        LinkState::Down => "down",
    }
}

fn health_name(s: UnderlayState) -> &'static str {
    match s {
        UnderlayState::Up => "up",
        UnderlayState::Partial => "partial",
        UnderlayState::Down => "down",
        UnderlayState::None => "no peers",
    }
}

/// "0.2s ago", or "never".
/// A byte count as `wg show` writes transfer: `0 B`, `1.50 KiB`, `3.20 MiB`.
fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.2} {}", UNITS[unit])
    }
}

fn heard(l: &LinkStatus) -> String {
    l.last_heard_ms
        .map_or("never".to_owned(), |ms| format!("{} ago", secs(ms as i64)))
}

/// Microseconds as milliseconds with two decimals ("12.34ms").
fn millis(us: u64) -> String {
    format!("{:.2}ms", us as f64 / 1000.0)
}

/// Milliseconds as seconds with one decimal ("2.7s").
fn secs(ms: i64) -> String {
    format!("{:.1}s", ms as f64 / 1000.0)
}
