//! The Prometheus endpoint: the status document's counters and gauges as
//! OpenMetrics text on `http://<metrics>/metrics`.
//!
//! Every scrape renders the same [`StatusReport`] that `von status --json`
//! prints, so the two never disagree on a name or a value: a counter
//! `counters.X` of VON `v` is `von_…{von="v"}`, a per-underlay one carries
//! `underlay="a"|"b"`, and link health carries `peer` too. The names are
//! listed in `docs/operations.md`. The metrics are built into a fresh
//! `prometheus-client` registry per scrape — a few hundred values, nothing
//! on the packet path.
//!
//! The server speaks just enough HTTP/1.1 for a scraper: one `GET` per
//! connection, then close. It serves read-only numbers without
//! authentication, so it belongs on loopback; another address is accepted
//! (an operator may scrape over a management network) but logged as a
//! warning at start.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use von_packet::{
    OrderingCountersSnapshot, SenderCountersSnapshot, SocketCountersSnapshot,
    UnderlayCountersSnapshot, VonCountersSnapshot,
};

use crate::health::{LinkState, LinkStatus};
use crate::status::{StatusReport, StatusSource};

/// How long a scraper may take to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest request head read; a scraper's is a few hundred bytes.
const MAX_REQUEST: usize = 8 * 1024;
/// The OpenMetrics text content type, as `prometheus-client` encodes.
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Why the metrics endpoint could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// Binding the TCP address failed.
    #[error(
        "metrics endpoint {addr}: {source}; free the port or set another `metrics` address \
         in the config (or remove it to serve no metrics)"
    )]
    Bind { addr: SocketAddr, source: io::Error },
}

type Labels = Vec<(&'static str, String)>;
/// Reads one counter from a part of the report.
type Read<T> = fn(&T) -> u64;

/// Binds the endpoint, warning when `addr` is reachable from other hosts.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, MetricsError> {
    if !addr.ip().is_loopback() {
        tracing::warn!(
            %addr,
            "metrics endpoint is not on loopback: anyone who can reach it reads every \
             counter without authentication; prefer 127.0.0.1 and a local scraper"
        );
    }
    TcpListener::bind(addr)
        .await
        .map_err(|source| MetricsError::Bind { addr, source })
}

/// Answers scrapes on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, source: Arc<StatusSource>) {
    serve_with(listener, move || {
        let source = source.clone();
        async move { render(&source.report()) }
    })
    .await;
}

/// Answers scrapes on `listener` with what `body` renders at each one, until
/// the task is dropped (the key manager's endpoint uses it too).
pub async fn serve_with<F, Fut>(listener: TcpListener, body: F)
where
    F: Fn() -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = String> + Send + 'static,
{
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // Accept fails only on resource exhaustion; back off briefly.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let body = body.clone();
        tokio::spawn(async move {
            let _ = answer(stream, body).await;
        });
    }
}

async fn answer<F, Fut>(mut stream: TcpStream, body: F) -> io::Result<()>
where
    F: Fn() -> Fut,
    Fut: Future<Output = String>,
{
    let head = tokio::time::timeout(REQUEST_TIMEOUT, read_head(&mut stream))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no request"))??;
    let mut words = head.split_whitespace();
    let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let (status, content_type, body) = match (method, path) {
        ("GET", "/metrics") => ("200 OK", CONTENT_TYPE, body().await),
        ("GET", _) => (
            "404 Not Found",
            "text/plain",
            "von serves its metrics at /metrics\n".to_owned(),
        ),
        _ => (
            "405 Method Not Allowed",
            "text/plain",
            "only GET is served\n".to_owned(),
        ),
    };
    let reply = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(reply.as_bytes()).await?;
    stream.shutdown().await
}

/// Reads up to the blank line ending the request head.
async fn read_head(stream: &mut TcpStream) -> io::Result<String> {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 512];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && !buf.windows(2).any(|w| w == b"\n\n") {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > MAX_REQUEST {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "request too long",
            ));
        }
    }
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// The VON-wide counters and their metric names (`von_<name>_total`).
const VON_COUNTERS: &[(&str, &str, Read<VonCountersSnapshot>)] = &[
    (
        "packets_sent",
        "Inner packets read from the TUN, checked and sealed",
        |c| c.tx_packets,
    ),
    (
        "packets_delivered",
        "Inner packets written to the TUN",
        |c| c.delivered,
    ),
    (
        "duplicates_discarded",
        "Second copies discarded (PRP duplicate discard)",
        |c| c.duplicates,
    ),
    ("aead_opens", "AEAD opens of data frames", |c| c.aead_opens),
    ("keepalive_opens", "AEAD opens of keepalives", |c| {
        c.keepalive_opens
    }),
    ("keepalives_accepted", "Authenticated keepalives", |c| {
        c.control_frames
    }),
];

/// The drop reasons, labelled by their status counter names.
const DROPS: &[(&str, Read<VonCountersSnapshot>)] = &[
    ("replays", |c| c.replays),
    ("too_old", |c| c.too_old),
    ("auth_failures", |c| c.auth_failures),
    ("unknown_sender", |c| c.unknown_sender),
    ("unknown_epoch", |c| c.unknown_epoch),
    ("inner_source_rejected", |c| c.inner_source_rejected),
    ("policy_drops", |c| c.policy_drops),
    ("link_local", |c| c.link_local),
    ("rate_drops", |c| c.rate_drops),
    ("too_big", |c| c.too_big),
    ("sequence_exhausted", |c| c.sequence_exhausted),
    ("malformed", |c| c.malformed),
    ("from_self", |c| c.from_self),
    ("tun_errors", |c| c.tun_errors),
    ("unproven", |c| c.unproven),
    ("stale", |c| c.stale),
    ("late", |c| c.ordering_late),
];

/// The per-underlay counters of a VON.
const UNDERLAY_COUNTERS: &[(&str, &str, Read<UnderlayCountersSnapshot>)] = &[
    ("frames_sent", "Data frames handed to the kernel", |u| {
        u.tx_frames
    }),
    (
        "frames_received",
        "Data frames received with this VON's ON id",
        |u| u.rx_frames,
    ),
    ("send_errors", "Sends the kernel refused", |u| u.tx_errors),
    ("keepalives_sent", "Keepalives handed to the kernel", |u| {
        u.tx_keepalives
    }),
    ("keepalives_received", "Keepalives received", |u| {
        u.rx_keepalives
    }),
    (
        "bytes_sent",
        "Bytes of every frame handed to the kernel, data and keepalives (UDP payload)",
        |u| u.tx_bytes,
    ),
    (
        "bytes_received",
        "Bytes of every datagram received with this VON's ON id (UDP payload)",
        |u| u.rx_bytes,
    ),
];

/// Each sender's frame elimination counters (`von_sender_<name>_total`,
/// labels `von` and `peer`), IEEE 802.1CB's `frerCpsSeqRcvy*`.
const SENDER_COUNTERS: &[(&str, &str, Read<SenderCountersSnapshot>)] = &[
    (
        "frames_passed",
        "First copies of the peer's data frames accepted (802.1CB PassedPackets)",
        |s| s.passed,
    ),
    (
        "frames_discarded",
        "Further underlays' copies of the peer's frames discarded (802.1CB DiscardedPackets)",
        |s| s.discarded,
    ),
    (
        "frames_out_of_order",
        "Passed frames below the peer's highest sequence (802.1CB OutOfOrderPackets)",
        |s| s.out_of_order,
    ),
    (
        "frames_lost",
        "The peer's sequence numbers no underlay delivered before the window passed them (802.1CB LostPackets)",
        |s| s.lost,
    ),
    (
        "frames_rogue",
        "The peer's frames behind the replay window (802.1CB RoguePackets)",
        |s| s.rogue,
    ),
    (
        "resets",
        "Times the peer's sequence started over: a restart or a new epoch (802.1CB SeqRecoveryResets)",
        |s| s.resets,
    ),
];

/// Each sender's ordering stage counters (`von_sender_ordering_<name>_total`,
/// labels `von` and `peer`), after RFC 9550's packet ordering function;
/// `held` is a gauge (`von_sender_ordering_held`).
const ORDERING_COUNTERS: &[(&str, &str, Read<OrderingCountersSnapshot>)] = &[
    (
        "in_order",
        "The peer's packets delivered at once, nothing before them missing",
        |s| s.in_order,
    ),
    (
        "reordered",
        "The peer's packets held, then delivered in order once the gap before them filled or was passed on every live underlay",
        |s| s.reordered,
    ),
    (
        "released_on_timeout",
        "The peer's packets held, then delivered when the oldest held packet had waited the ordering bound",
        |s| s.released_on_timeout,
    ),
    (
        "released_on_overflow",
        "The peer's packets delivered early because the reorder ring was full (or too big to hold)",
        |s| s.released_on_overflow,
    ),
    (
        "late",
        "The peer's packets dropped because their gap had been given up (delivering them would break FIFO)",
        |s| s.late,
    ),
    (
        "flushed",
        "The peer's held packets dropped when their window was dropped or ordering was reconfigured",
        |s| s.flushed,
    ),
];

/// The host-wide counters of an underlay socket (`von_socket_<name>_total`).
const SOCKET_COUNTERS: &[(&str, &str, Read<SocketCountersSnapshot>)] = &[
    (
        "datagrams_received",
        "Datagrams read from the socket",
        |s| s.rx_datagrams,
    ),
    ("malformed", "Datagrams too short for an ON id", |s| {
        s.malformed
    }),
    ("unknown_on_id", "Datagrams for no VON on this host", |s| {
        s.unknown_on_id
    }),
    ("receive_errors", "Errors from the receive call", |s| {
        s.rx_errors
    }),
];

/// The report as OpenMetrics text.
pub fn render(report: &StatusReport) -> String {
    let mut r = Registry::with_prefix("von");
    let counter = |r: &mut Registry, name: &str, help: &str| {
        let f = Family::<Labels, Counter>::default();
        r.register(name, help, f.clone());
        f
    };
    let gauge = |r: &mut Registry, name: &str, help: &str| {
        let f = Family::<Labels, Gauge>::default();
        r.register(name, help, f.clone());
        f
    };
    let inc = |f: &Family<Labels, Counter>, labels: Labels, v: u64| {
        f.get_or_create(&labels).inc_by(v);
    };
    let set = |f: &Family<Labels, Gauge>, labels: Labels, v: i64| {
        f.get_or_create(&labels).set(v);
    };

    for &(name, help, get) in VON_COUNTERS {
        let f = counter(&mut r, name, help);
        for v in &report.vons {
            inc(&f, vec![("von", v.name.clone())], get(&v.counters));
        }
    }
    let drops = counter(&mut r, "dropped", "Packets and frames dropped, by reason");
    for v in &report.vons {
        for &(reason, get) in DROPS {
            let labels = vec![("von", v.name.clone()), ("reason", reason.to_owned())];
            inc(&drops, labels, get(&v.counters));
        }
    }
    for &(name, help, get) in UNDERLAY_COUNTERS {
        let f = counter(&mut r, name, help);
        for v in &report.vons {
            for (u, c) in &v.counters.underlay {
                let labels = vec![("von", v.name.clone()), ("underlay", u.to_string())];
                inc(&f, labels, get(c));
            }
        }
    }

    let epoch = gauge(&mut r, "epoch", "Key epoch frames are sent under");
    let members = gauge(&mut r, "members", "Members in the view, this host included");
    let rate = gauge(&mut r, "rate_bits_per_second", "Contracted rate");
    let lease = gauge(
        &mut r,
        "lease_expiry_timestamp_seconds",
        "Lease expiry (not in static mode)",
    );
    let standing = gauge(
        &mut r,
        "keymgr_standing",
        "1 for this member's standing with its key manager (state: member, revoked, refused, view_refused, unreachable, connecting); keymgr mode only",
    );
    let views_refused = counter(
        &mut r,
        "keymgr_views_refused",
        "Views from the key manager this member refused to install",
    );
    let refusals = counter(
        &mut r,
        "keymgr_refusals",
        "Times the key manager refused or dropped this member",
    );
    let peers_up = gauge(&mut r, "underlay_peers_up", "Peers heard on the underlay");
    let peers_down = gauge(
        &mut r,
        "underlay_peers_down",
        "Peers not heard on the underlay",
    );
    let link_up = gauge(
        &mut r,
        "link_up",
        "1 if something authenticated arrived from the peer on the underlay within 2.5 s",
    );
    let heard = Family::<Labels, Gauge<f64, AtomicU64>>::default();
    r.register(
        "link_last_heard_seconds",
        "Seconds since the last authenticated frame from the peer on the underlay",
        heard.clone(),
    );
    let downs = counter(
        &mut r,
        "link_downs",
        "Times the link to the peer on the underlay went down",
    );
    let link_bytes = counter(
        &mut r,
        "link_received_bytes",
        "Bytes of authenticated frames (UDP payload) from the peer on the underlay",
    );
    let float = |r: &mut Registry, name: &str, help: &str| {
        let f = Family::<Labels, Gauge<f64, AtomicU64>>::default();
        r.register(name, help, f.clone());
        f
    };
    let rtt = float(
        &mut r,
        "link_rtt_seconds",
        "Latest round trip to the peer on the underlay, from the keepalive echo",
    );
    let jitter = float(
        &mut r,
        "link_jitter_seconds",
        "Smoothed round-trip jitter to the peer on the underlay (RFC 3550, gain 1/16)",
    );
    let loss = float(
        &mut r,
        "link_loss_ratio",
        "Recent loss (0 to 1) of the peer's keepalives on the underlay, about the last 8 s",
    );
    let probes_lost = counter(
        &mut r,
        "link_probes_lost",
        "Keepalives missing from the peer's count on the underlay",
    );
    for v in &report.vons {
        let von = || vec![("von", v.name.clone())];
        set(&epoch, von(), i64::from(v.epoch));
        set(&members, von(), v.members as i64);
        set(&rate, von(), i64::try_from(v.rate_bps).unwrap_or(i64::MAX));
        if let Some(l) = v.lease {
            set(&lease, von(), (l.expires_unix_ms / 1000) as i64);
        }
        if let Some(k) = &v.keymgr {
            let labels = vec![("von", v.name.clone()), ("state", k.state.clone())];
            set(&standing, labels, 1);
            inc(&views_refused, von(), k.views_refused);
            inc(&refusals, von(), k.refusals);
        }
        for (u, h) in &v.health.0 {
            let labels = || vec![("von", v.name.clone()), ("underlay", u.to_string())];
            set(&peers_up, labels(), h.peers_up as i64);
            set(&peers_down, labels(), h.peers_down as i64);
        }
        for p in &v.peers {
            for (u, link) in &p.underlay {
                let labels = || {
                    vec![
                        ("von", v.name.clone()),
                        ("peer", p.name.clone()),
                        ("underlay", u.to_string()),
                    ]
                };
                let LinkStatus {
                    state,
                    last_heard_ms,
                    downs: n,
                    rx_bytes,
                    ..
                } = *link;
                inc(&link_bytes, labels(), rx_bytes);
                set(&link_up, labels(), i64::from(state == LinkState::Up));
                if let Some(ms) = last_heard_ms {
                    heard.get_or_create(&labels()).set(ms as f64 / 1000.0);
                }
                inc(&downs, labels(), n);
                if let Some(us) = link.rtt_us {
                    rtt.get_or_create(&labels()).set(us as f64 / 1e6);
                    jitter
                        .get_or_create(&labels())
                        .set(link.jitter_us as f64 / 1e6);
                }
                if link.probes_received > 0 {
                    loss.get_or_create(&labels())
                        .set(f64::from(link.loss_ppm) / 1e6);
                }
                inc(&probes_lost, labels(), link.probes_lost);
            }
        }
    }

    for &(name, help, get) in SENDER_COUNTERS {
        let f = counter(&mut r, &format!("sender_{name}"), help);
        for v in &report.vons {
            for p in &v.peers {
                let labels = vec![("von", v.name.clone()), ("peer", p.name.clone())];
                inc(&f, labels, get(&p.elimination));
            }
        }
    }

    for &(name, help, get) in ORDERING_COUNTERS {
        let f = counter(&mut r, &format!("sender_ordering_{name}"), help);
        for v in &report.vons {
            for p in &v.peers {
                let labels = vec![("von", v.name.clone()), ("peer", p.name.clone())];
                inc(&f, labels, get(&p.ordering));
            }
        }
    }
    let held = gauge(
        &mut r,
        "sender_ordering_held",
        "The peer's packets the ordering stage holds now",
    );
    for v in &report.vons {
        for p in &v.peers {
            let labels = vec![("von", v.name.clone()), ("peer", p.name.clone())];
            set(
                &held,
                labels,
                i64::try_from(p.ordering.held).unwrap_or(i64::MAX),
            );
        }
    }

    let guard_drops = counter(
        &mut r,
        "guard_dropped",
        "Packets to or from the VON prefix the leak guard (nftables table inet von) dropped: \
         kind=leak would have left, kind=injection arrived, by another interface than the TUN",
    );
    let conflicts = gauge(
        &mut r,
        "route_conflicts",
        "Routes that conflict with the VON prefix now (von status lists them)",
    );
    for v in &report.vons {
        for (kind, n) in [
            ("leak", v.guard.leaks_dropped),
            ("injection", v.guard.injections_dropped),
        ] {
            let labels = vec![("von", v.name.clone()), ("kind", kind.to_owned())];
            inc(&guard_drops, labels, n);
        }
        let n = i64::try_from(v.guard.route_conflicts.len()).unwrap_or(i64::MAX);
        set(&conflicts, vec![("von", v.name.clone())], n);
    }
    let installed = gauge(
        &mut r,
        "guard_installed",
        "1 if the leak guard's nftables table was in place at the last check",
    );
    set(
        &installed,
        Vec::new(),
        i64::from(report.leak_guard.installed),
    );

    for &(name, help, get) in SOCKET_COUNTERS {
        let f = counter(&mut r, &format!("socket_{name}"), help);
        for (u, s) in &report.underlays {
            inc(&f, vec![("underlay", u.to_string())], get(&s.counters));
        }
    }

    let alarm = gauge(
        &mut r,
        "alarm",
        "1 for each alarm raised and not cleared (docs/alarms.md); labels say which and what it is about",
    );
    for a in &report.alarms {
        let s = &a.subject;
        let field = |o: &Option<String>| o.clone().unwrap_or_default();
        let labels = vec![
            ("alarm", s.alarm.clone()),
            ("severity", a.severity.name().to_owned()),
            ("von", field(&s.von)),
            ("peer", field(&s.peer)),
            ("underlay", field(&s.underlay)),
            ("source", field(&s.source)),
        ];
        set(&alarm, labels, 1);
    }
    let hook_dropped = counter(
        &mut r,
        "alarm_hook_dropped",
        "Alarm events not handed to alarm_hook because it was behind",
    );
    inc(&hook_dropped, Vec::new(), report.alarm_hook_dropped);

    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = encode(&mut out, &r);
    out
}
