//! The local control socket: `von status` asks, the running agent answers.
//!
//! Protocol: the client connects to the Unix socket named by `control_socket`,
//! writes one command line (`status`), and reads one JSON document followed by
//! a newline; the agent then closes the connection. The document is a
//! [`StatusReport`]; its field names are stable and documented in
//! `docs/status.md`. To extend it (epoch details, leases, per-member
//! last-heard, underlay health), add fields to these structs — new fields are
//! additions, never renames — and fill them in [`StatusSource::report`].

use std::collections::BTreeMap;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use von_packet::{
    HealthBoard, PerUnderlay, SharedSnapshot, SocketCounters, SocketCountersSnapshot, UnderlayName,
    VonCounters, VonCountersSnapshot,
};

pub use crate::guard::{ConflictKind, GuardStatus, RouteConflict, SharedGuard, VonGuard};
pub use crate::health::{
    HealthSummary, KeymgrStanding, LeaseStatus, LinkState, LinkStatus, PeerStatus, SharedLease,
    SharedStanding, UnderlayHealth, UnderlayState,
};
use crate::health::{lease, peers};

/// Version of the status document; bumped only on an incompatible change.
/// Version 2 keys every per-underlay part by the underlay's name (`underlay`
/// maps) where version 1 had fixed `a` and `b` fields.
pub const STATUS_VERSION: u32 = 2;

/// How long a client may take to send its command.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);

/// The whole status document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusReport {
    /// [`STATUS_VERSION`].
    pub version: u32,
    /// One entry per VON, in config order.
    pub vons: Vec<VonStatus>,
    /// Host-wide counts of each underlay socket, by name.
    pub underlays: BTreeMap<UnderlayName, UnderlayStatus>,
    /// The leak guard's nftables table (docs/leaks.md).
    #[serde(default)]
    pub leak_guard: GuardStatus,
    /// The alarms raised and not cleared, most severe first
    /// (`docs/alarms.md`).
    #[serde(default)]
    pub alarms: Vec<crate::alarms::Alarm>,
    /// Alarm events not handed to `alarm_hook` because it was behind.
    #[serde(default)]
    pub alarm_hook_dropped: u64,
}

/// One VON's identity, view summary and counters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VonStatus {
    /// The VON's name.
    pub name: String,
    /// Its TUN interface.
    pub interface: String,
    /// Its ON id.
    pub on_id: u32,
    /// This host's member name.
    pub member: String,
    /// This host's member id.
    pub member_id: u32,
    /// This host's IPv4 VON address; `null` in a VON without IPv4.
    pub address: Option<Ipv4Addr>,
    /// The VON's IPv4 prefix length; `null` in a VON without IPv4.
    pub prefix_len: Option<u8>,
    /// This host's IPv6 VON address; `null` in a VON without IPv6.
    #[serde(default)]
    pub address6: Option<Ipv6Addr>,
    /// The VON's IPv6 prefix length; `null` in a VON without IPv6.
    #[serde(default)]
    pub prefix6_len: Option<u8>,
    /// Where the view and key come from (`static`).
    pub mode: String,
    /// The epoch frames are sent under.
    pub epoch: u32,
    /// The epochs accepted on receive.
    pub accepted_epochs: Vec<u32>,
    /// Members in the view, this host included.
    pub members: usize,
    /// Contracted rate, bits per second.
    pub rate_bps: u64,
    /// Outer DSCP.
    pub dscp: u8,
    /// Interface MTU.
    pub mtu: u16,
    /// The counters (see `docs/status.md`).
    pub counters: VonCountersSnapshot,
    /// This member's lease in the view; `None` in static mode (no lease).
    #[serde(default)]
    pub lease: Option<LeaseStatus>,
    /// Where this member stands with its key manager (`revoked`, `refused`,
    /// ...); `None` in static mode.
    #[serde(default)]
    pub keymgr: Option<KeymgrStanding>,
    /// Every other member with the health of its links.
    #[serde(default)]
    pub peers: Vec<PeerStatus>,
    /// Each underlay's health over all peers of this VON.
    #[serde(default)]
    pub health: HealthSummary,
    /// What the leak guard dropped and which routes conflict with the prefix.
    #[serde(default)]
    pub guard: VonGuard,
    /// The latest refused frame of each suspicious kind (`auth_failures`,
    /// `replays`, `unknown_sender`, `stale`): underlay, outer source and
    /// the sender id it named.
    #[serde(default)]
    pub suspicious: BTreeMap<String, crate::alarms::Evidence>,
}

/// One underlay socket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnderlayStatus {
    /// The bound address.
    pub bind: SocketAddr,
    /// Host-wide counts (before a frame is matched to a VON).
    pub counters: SocketCountersSnapshot,
}

/// Fixed facts of a VON, given once at start.
#[derive(Debug, Clone)]
pub struct VonFacts {
    /// The VON's name.
    pub name: String,
    /// Its TUN interface.
    pub interface: String,
    /// Where view and key come from.
    pub mode: &'static str,
    /// Contracted rate, bits per second.
    pub rate_bps: u64,
    /// Outer DSCP.
    pub dscp: u8,
    /// Interface MTU.
    pub mtu: u16,
}

/// Live, read-only handles on one VON.
#[derive(Debug)]
pub struct VonSource {
    /// Fixed facts.
    pub facts: VonFacts,
    /// View and keys.
    pub snapshot: SharedSnapshot,
    /// Counters.
    pub counters: Arc<VonCounters>,
    /// Link health, from the VON's inbound half.
    pub health: Arc<HealthBoard>,
    /// Lease expiry (empty in static mode).
    pub lease: SharedLease,
    /// Standing with the key manager (empty in static mode).
    pub standing: SharedStanding,
    /// Rate, DSCP and MTU as a reload last set them (`None`: the facts' ones).
    pub live: Option<crate::reload::SharedLive>,
    /// The latest suspicious frames, from the inbound loop.
    pub suspicious: Arc<crate::alarms::Suspicious>,
}

/// What the agent exposes to the status socket: shared, read-only handles.
#[derive(Debug)]
pub struct StatusSource {
    /// Per running VON, in the order they started (config order at start-up);
    /// a reload adds and removes entries.
    pub vons: std::sync::Mutex<Vec<VonSource>>,
    /// Per underlay: name, bound address and socket counters.
    pub underlays: PerUnderlay<(UnderlayName, SocketAddr, Arc<SocketCounters>)>,
    /// The leak guard's last check (per VON, by name).
    pub guard: SharedGuard,
    /// The active alarms (`alarms.rs`).
    pub alarms: crate::alarms::SharedAlarms,
    /// Alarm events the hook was too far behind to take.
    pub alarm_hook_dropped: Arc<std::sync::atomic::AtomicU64>,
}

impl StatusSource {
    /// The document as of now.
    pub fn report(&self) -> StatusReport {
        let (now, wall) = (Instant::now(), SystemTime::now());
        let guard = self.guard.load();
        let running = self.vons.lock().unwrap_or_else(|p| p.into_inner());
        let vons = running
            .iter()
            .map(|v| {
                let (facts, snap) = (&v.facts, v.snapshot.load());
                let (rate_bps, dscp, mtu) =
                    v.live
                        .as_ref()
                        .map_or((facts.rate_bps, facts.dscp, facts.mtu), |l| {
                            let l = l.load();
                            (l.rate_bps, l.dscp, l.mtu)
                        });
                let me = snap.me();
                let names = v.counters.names();
                let peers = peers(&snap, &v.health.peers(now), names);
                VonStatus {
                    name: facts.name.clone(),
                    interface: facts.interface.clone(),
                    on_id: snap.on_id().0,
                    member: me.name.clone(),
                    member_id: me.id.0,
                    address: me.address,
                    prefix_len: snap.prefixes().v4.map(|p| p.prefix_len()),
                    address6: me.address6,
                    prefix6_len: snap.prefixes().v6.map(|p| p.prefix_len()),
                    mode: facts.mode.to_owned(),
                    epoch: snap.send_epoch().0,
                    accepted_epochs: snap.accepted_epochs().map(|e| e.0).collect(),
                    members: snap.members().len(),
                    rate_bps,
                    dscp,
                    mtu,
                    counters: v.counters.snapshot(),
                    lease: v.lease.load().as_deref().map(|t| lease(*t, wall)),
                    keymgr: v.standing.load().as_deref().cloned(),
                    health: HealthSummary::of(&peers, names),
                    peers,
                    guard: guard.von(&facts.name),
                    suspicious: v.suspicious.snapshot(),
                }
            })
            .collect();
        drop(running);
        StatusReport {
            version: STATUS_VERSION,
            vons,
            underlays: self
                .underlays
                .values()
                .map(|(name, bind, counters)| {
                    let status = UnderlayStatus {
                        bind: *bind,
                        counters: counters.snapshot(),
                    };
                    (*name, status)
                })
                .collect(),
            leak_guard: guard.status(wall),
            alarms: self.alarms.load().as_ref().clone(),
            alarm_hook_dropped: self
                .alarm_hook_dropped
                .load(std::sync::atomic::Ordering::Relaxed),
        }
    }
}

/// Why the control socket could not be served or queried.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// Another live process answers on the path.
    #[error(
        "control socket {0} is in use by a running agent; stop it, or set another \
         `control_socket` in the config"
    )]
    InUse(PathBuf),
    /// Binding or connecting failed.
    #[error("{step} control socket {path}")]
    Io {
        step: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    /// No socket file: no agent has started with this control_socket.
    #[error(
        "no agent: {} does not exist (is `von up` running? `systemctl status von`; \
         the path is control_socket in von.toml, or pass --socket PATH)",
        path.display()
    )]
    NoSocket { path: PathBuf },
    /// The socket exists but this user may not connect to it.
    #[error(
        "permission denied on {}: only root (the agent's user) may read its status; \
         run `sudo von status`",
        path.display()
    )]
    PermissionDenied { path: PathBuf },
    /// The socket file exists, but nothing listens on it.
    #[error(
        "no agent answers on {}: the socket was left by an agent that crashed or was killed \
         (start it: `systemctl start von`; its log says why it stopped: `journalctl -u von`)",
        path.display()
    )]
    NotRunning { path: PathBuf, source: io::Error },
    /// The agent runs but has no view yet for some VON: nothing is forwarded.
    #[error("{}", waiting_text(.report))]
    Waiting {
        path: PathBuf,
        report: WaitingReport,
        text: String,
    },
    /// The answer was not a status document.
    #[error("the agent on {path} answered something that is not a status document: {reason}")]
    BadAnswer { path: PathBuf, reason: String },
}

/// Answers status requests on `listener` until the task is dropped.
pub async fn serve(listener: UnixListener, source: Arc<StatusSource>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // Accept fails only on resource exhaustion; back off briefly.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let source = source.clone();
        tokio::spawn(async move {
            let _ = answer(stream, &source).await;
        });
    }
}

async fn answer(stream: UnixStream, source: &StatusSource) -> io::Result<()> {
    let body = serde_json::to_string(&source.report()).map_err(io::Error::other)?;
    answer_with(stream, body).await
}

/// Asks the agent on `path` for its status; returns the raw JSON text and
/// the parsed document.
pub async fn query(path: &Path) -> Result<(String, StatusReport), StatusError> {
    let mut stream = UnixStream::connect(path)
        .await
        .map_err(|source| connect_error(path, source))?;
    let io_err = |source: io::Error| StatusError::Io {
        step: "talking to",
        path: path.to_owned(),
        source,
    };
    stream.write_all(b"status\n").await.map_err(io_err)?;
    let mut text = String::new();
    stream.read_to_string(&mut text).await.map_err(io_err)?;
    let bad = |e: serde_json::Error| StatusError::BadAnswer {
        path: path.to_owned(),
        reason: format!("{e}: {}", text.chars().take(200).collect::<String>()),
    };
    let value: serde_json::Value = serde_json::from_str(&text).map_err(bad)?;
    if value.get("waiting").is_some() {
        let report = serde_json::from_value(value).map_err(bad)?;
        return Err(StatusError::Waiting {
            path: path.to_owned(),
            report,
            text: text.trim_end().to_owned(),
        });
    }
    let report = serde_json::from_value(value).map_err(bad)?;
    Ok((text.trim_end().to_owned(), report))
}

/// A failed connect, told apart: no socket file, no permission, or a file
/// nothing listens on.
fn connect_error(path: &Path, source: io::Error) -> StatusError {
    let path = path.to_owned();
    match source.kind() {
        io::ErrorKind::NotFound => StatusError::NoSocket { path },
        io::ErrorKind::PermissionDenied => StatusError::PermissionDenied { path },
        _ => StatusError::NotRunning { path, source },
    }
}

/// What an agent answers while some VON has no first view yet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WaitingReport {
    /// [`STATUS_VERSION`].
    pub version: u32,
    /// The VONs still without a view, in config order.
    pub waiting: Vec<WaitingVon>,
}

/// One VON waiting for its first view.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WaitingVon {
    /// The VON's name.
    pub name: String,
    /// The key manager it asks (`embedded`, or its addresses).
    pub keymgr: String,
    /// Milliseconds since it started waiting.
    pub waiting_ms: u64,
    /// Where it stands with the key manager (`connecting`, `unreachable`,
    /// `refused`, `revoked`, ...) and why.
    pub standing: Option<KeymgrStanding>,
}

/// "the agent is running but has no view yet ..." with each VON's standing.
fn waiting_text(report: &WaitingReport) -> String {
    let mut text = String::from(
        "the agent is running but waits for its first view, so it forwards nothing yet:",
    );
    for w in &report.waiting {
        let standing = w.standing.as_ref().map_or_else(
            || "connecting".to_owned(),
            |s| match &s.reason {
                Some(r) => format!("{}: {r}", s.state),
                None => s.state.clone(),
            },
        );
        text.push_str(&format!(
            "\n  VON {}: key manager {}: {standing} (waiting {:.0}s)",
            w.name,
            w.keymgr,
            w.waiting_ms as f64 / 1000.0
        ));
    }
    text
}

/// A VON the waiting answer describes: its name, key manager and standing.
#[derive(Debug, Clone)]
pub struct WaitingSource {
    /// The VON's name.
    pub name: String,
    /// Its key manager, as shown.
    pub keymgr: String,
    /// Since when it waits.
    pub since: Instant,
    /// Its standing, as the control client publishes it.
    pub standing: SharedStanding,
}

/// The VONs still waiting, shared between the driver and the answer.
pub type SharedWaiting = Arc<std::sync::Mutex<Vec<WaitingSource>>>;

fn waiting_report(waiting: &SharedWaiting) -> WaitingReport {
    let now = Instant::now();
    let list = waiting.lock().unwrap_or_else(|p| p.into_inner());
    WaitingReport {
        version: STATUS_VERSION,
        waiting: list
            .iter()
            .map(|w| WaitingVon {
                name: w.name.clone(),
                keymgr: w.keymgr.clone(),
                waiting_ms: u64::try_from(now.duration_since(w.since).as_millis())
                    .unwrap_or(u64::MAX),
                standing: w.standing.load().as_deref().cloned(),
            })
            .collect(),
    }
}

/// Claims the control socket at start, before any key manager is asked:
/// a live agent on it is refused ([`StatusError::InUse`]), a stale file is
/// replaced. The listener answers [`serve_waiting`] until the first views
/// are in, then [`serve`].
pub fn claim(path: &Path) -> Result<std::os::unix::net::UnixListener, StatusError> {
    let io_err = |step: &'static str| {
        let path = path.to_owned();
        move |source| StatusError::Io { step, path, source }
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io_err("creating the directory of"))?;
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(StatusError::InUse(path.to_owned()));
        }
        std::fs::remove_file(path).map_err(io_err("removing stale"))?;
    }
    let listener = std::os::unix::net::UnixListener::bind(path).map_err(io_err("binding"))?;
    listener
        .set_nonblocking(true)
        .map_err(io_err("setting O_NONBLOCK on"))?;
    Ok(listener)
}

/// Answers `status` with a [`WaitingReport`] until `stop` fires, then hands
/// the listener back (for [`serve`]). Must run inside a tokio runtime.
pub async fn serve_waiting(
    listener: std::os::unix::net::UnixListener,
    waiting: SharedWaiting,
    stop: tokio::sync::oneshot::Receiver<()>,
) -> io::Result<std::os::unix::net::UnixListener> {
    let listener = UnixListener::from_std(listener)?;
    let mut stop = std::pin::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let body = serde_json::to_string(&waiting_report(&waiting))
                    .map_err(io::Error::other)?;
                tokio::spawn(async move {
                    let _ = answer_with(stream, body).await;
                });
            }
        }
    }
    listener.into_std()
}

/// Reads the command and answers `status` with `body`.
async fn answer_with(stream: UnixStream, body: String) -> io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut reader = BufReader::new(read.take(256));
    tokio::time::timeout(COMMAND_TIMEOUT, reader.read_line(&mut line))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no command"))??;
    let body = match line.trim() {
        "status" => body,
        other => serde_json::json!({
            "error": format!("unknown command {other:?}; this agent knows: status")
        })
        .to_string(),
    };
    write.write_all(body.as_bytes()).await?;
    write.write_all(b"\n").await?;
    write.shutdown().await
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use arc_swap::{ArcSwap, ArcSwapOption};
    use von_crypto::Epoch;
    use von_packet::twin;

    fn source(lease: SharedLease) -> StatusSource {
        test_source("keymgr", lease)
    }

    /// VON "grid" over a 2-member twin snapshot (this host h0, peer h1),
    /// in `mode`, with `lease`: the source the status and alarm tests read.
    pub(crate) fn test_source(mode: &'static str, lease: SharedLease) -> StatusSource {
        let key = twin::group_key();
        let snap = twin::snapshot(2, 0, Epoch(4), &[(Epoch(4), key)]);
        let any = SocketAddr::from((Ipv4Addr::LOCALHOST, 4789));
        StatusSource {
            vons: std::sync::Mutex::new(vec![VonSource {
                facts: VonFacts {
                    name: "grid".into(),
                    interface: "von-grid".into(),
                    mode,
                    rate_bps: 1_000_000,
                    dscp: 46,
                    mtu: 1400,
                },
                snapshot: Arc::new(ArcSwap::from_pointee(snap)),
                counters: Arc::new(VonCounters::new(&twin::underlay_names(2))),
                health: Arc::default(),
                lease,
                standing: Arc::default(),
                live: None,
                suspicious: Arc::default(),
            }]),
            underlays: twin::underlay_names(2).map(|_, n| (*n, any, Arc::default())),
            guard: Arc::default(),
            alarms: Arc::default(),
            alarm_hook_dropped: Arc::default(),
        }
    }

    #[test]
    fn the_guard_reaches_the_document_and_the_metrics() {
        let src = source(Arc::new(ArcSwapOption::empty()));
        let json = serde_json::to_value(src.report()).unwrap();
        assert_eq!(json["leak_guard"]["installed"], false, "{json}");
        assert_eq!(json["vons"][0]["guard"]["leaks_dropped"], 0, "{json}");

        let conflict = RouteConflict {
            kind: ConflictKind::Route,
            dst: "100.64.0.2/32".into(),
            dev: Some("ua".into()),
            table: Some("main".into()),
            reason: "inside the VON prefix".into(),
        };
        src.guard.store(Arc::new(crate::guard::GuardReport {
            installed: true,
            reinstalls: 1,
            checked: Some(SystemTime::now()),
            vons: vec![(
                "grid".into(),
                VonGuard {
                    leaks_dropped: 10,
                    injections_dropped: 3,
                    route_conflicts: vec![conflict],
                },
            )],
        }));
        let report = src.report();
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["leak_guard"]["table"], "inet von");
        assert_eq!(json["leak_guard"]["reinstalls"], 1);
        assert!(json["leak_guard"]["checked_ms_ago"].as_u64().unwrap() < 60_000);
        let g = &json["vons"][0]["guard"];
        assert_eq!(
            (
                g["leaks_dropped"].as_u64(),
                g["injections_dropped"].as_u64()
            ),
            (Some(10), Some(3))
        );
        assert_eq!(g["route_conflicts"][0]["kind"], "route", "{g}");
        assert_eq!(g["route_conflicts"][0]["dev"], "ua", "{g}");
        let back: StatusReport = serde_json::from_value(json).unwrap();
        assert_eq!(back, report, "the document reads back");

        let text = crate::metrics::render(&report);
        for sample in [
            "von_guard_dropped_total{von=\"grid\",kind=\"leak\"} 10",
            "von_guard_dropped_total{von=\"grid\",kind=\"injection\"} 3",
            "von_route_conflicts{von=\"grid\"} 1",
            "von_guard_installed 1",
        ] {
            assert!(text.lines().any(|l| l == sample), "{sample} in\n{text}");
        }
    }

    #[test]
    fn each_senders_elimination_counters_reach_the_document_and_the_metrics() {
        let mut net = twin::TwinNet::new(2, 10_000_000_000, 9);
        let t0 = Instant::now();
        for i in 0..5 {
            let p = twin::ipv4_packet(twin::address(0), twin::address(1), 20, i);
            net.send(t0, 0, &p).unwrap();
        }
        net.step(t0);
        let src = source(Arc::new(ArcSwapOption::empty()));
        let h2 = &net.hosts[1];
        {
            let mut vons = src.vons.lock().unwrap();
            vons[0].snapshot = h2.snapshot.clone();
            vons[0].counters = h2.counters.clone();
            vons[0].health = h2.pipeline.inbound.health();
        }
        let report = src.report();
        let json = serde_json::to_value(&report).unwrap();
        let e = &json["vons"][0]["peers"][0]["elimination"];
        assert_eq!(json["vons"][0]["peers"][0]["name"], "h1", "{json}");
        for (field, n) in [
            ("passed", 5),
            ("discarded", 5),
            ("out_of_order", 0),
            ("lost", 0),
            ("rogue", 0),
            ("resets", 0),
        ] {
            assert_eq!(e[field], n, "{field} in {e}");
        }
        let back: StatusReport = serde_json::from_value(json).unwrap();
        assert_eq!(back, report, "the document reads back");
        let text = crate::metrics::render(&report);
        for sample in [
            "von_sender_frames_passed_total{von=\"grid\",peer=\"h1\"} 5",
            "von_sender_frames_discarded_total{von=\"grid\",peer=\"h1\"} 5",
            "von_sender_frames_lost_total{von=\"grid\",peer=\"h1\"} 0",
            "von_sender_resets_total{von=\"grid\",peer=\"h1\"} 0",
        ] {
            assert!(text.lines().any(|l| l == sample), "{sample} in\n{text}");
        }
    }

    #[test]
    fn lease_is_null_until_published_then_follows_the_client() {
        let lease: SharedLease = Arc::new(ArcSwapOption::empty());
        let src = source(lease.clone());
        let json = serde_json::to_value(src.report()).unwrap();
        assert!(json["vons"][0]["lease"].is_null(), "{json}");
        let text = crate::metrics::render(&src.report());
        assert!(
            !text
                .lines()
                .any(|l| l.contains("lease_expiry_timestamp_seconds{")),
            "no lease sample without a lease:\n{text}"
        );

        // The control client stores an expiry 3 s ahead (a join or renewal).
        let expires = SystemTime::now() + Duration::from_secs(3);
        lease.store(Some(Arc::new(expires)));
        let report = src.report();
        let l = report.vons[0].lease.expect("lease shown once stored");
        let unix_ms = expires
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        assert_eq!(l.expires_unix_ms, unix_ms);
        assert!((2_000..=3_000).contains(&l.expires_in_ms), "{l:?}");
        assert_eq!(report.vons[0].epoch, 4);
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["vons"][0]["lease"]["expires_unix_ms"], unix_ms);
        // Prometheus renders the same document: one lease sample, in seconds.
        let text = crate::metrics::render(&report);
        let sample = format!(
            "lease_expiry_timestamp_seconds{{von=\"grid\"}} {}",
            unix_ms / 1000
        );
        assert!(text.lines().any(|l| l.ends_with(&sample)), "{text}");

        // An expiry in the past (key manager unreachable) counts below zero.
        lease.store(Some(Arc::new(SystemTime::now() - Duration::from_secs(1))));
        let l = src.report().vons[0].lease.unwrap();
        assert!(l.expires_in_ms <= -1_000, "{l:?}");
    }

    #[test]
    fn a_revoked_or_refusing_member_says_so_in_status_and_metrics() {
        let src = source(Arc::new(ArcSwapOption::empty()));
        let json = serde_json::to_value(src.report()).unwrap();
        assert!(json["vons"][0]["keymgr"].is_null(), "static mode: {json}");
        let standing = KeymgrStanding {
            state: "revoked".into(),
            reason: Some("the key manager refused this member's certificate as revoked".into()),
            views_refused: 2,
            refusals: 3,
        };
        src.vons.lock().unwrap()[0]
            .standing
            .store(Some(Arc::new(standing)));
        let report = src.report();
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["vons"][0]["keymgr"]["state"], "revoked");
        assert_eq!(json["vons"][0]["keymgr"]["views_refused"], 2);
        let text = crate::metrics::render(&report);
        for sample in [
            "keymgr_standing{von=\"grid\",state=\"revoked\"} 1",
            "keymgr_views_refused_total{von=\"grid\"} 2",
            "keymgr_refusals_total{von=\"grid\"} 3",
        ] {
            assert!(
                text.lines().any(|l| l.ends_with(sample)),
                "{sample} in\n{text}"
            );
        }
    }
}
