//! The health part of the status document: each peer's links (one per
//! underlay, by name), each
//! underlay's summary, and this member's lease. Field names are stable
//! (`docs/status.md`); the link states come from the pipeline's
//! [`von_packet::HealthBoard`], whose timing `packet/src/keepalive.rs`
//! explains.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwapOption;
use serde::{Deserialize, Serialize};

use von_packet::{
    OrderingCountersSnapshot, PeerHealth, PerUnderlay, SenderCountersSnapshot, Snapshot,
    UnderlayName,
};

/// When this member's lease in the view runs out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseStatus {
    /// Expiry, milliseconds since the Unix epoch.
    pub expires_unix_ms: u64,
    /// Milliseconds from now to the expiry; negative once expired.
    pub expires_in_ms: i64,
}

/// One other member of a VON and its links.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerStatus {
    /// Member name.
    pub name: String,
    /// Member id.
    pub id: u32,
    /// Its IPv4 VON address; `null` if it has none.
    pub address: Option<Ipv4Addr>,
    /// Its IPv6 VON address; `null` if it has none.
    #[serde(default)]
    pub address6: Option<Ipv6Addr>,
    /// The link to it over each underlay, by name.
    pub underlay: BTreeMap<UnderlayName, LinkStatus>,
    /// Its frames as this host's elimination saw them (IEEE 802.1CB's
    /// counters; `docs/status.md`).
    #[serde(default)]
    pub elimination: SenderCountersSnapshot,
    /// Its frames as this host's ordering stage saw them (RFC 9550's POF;
    /// all zero while the VON has no `ordering`; `docs/status.md`).
    #[serde(default)]
    pub ordering: OrderingCountersSnapshot,
}

/// A link's state: `up` while something authenticated arrived within the
/// last 2.5 s, `down` otherwise (also before anything was heard, and when
/// the peer runs no underlay of this name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LinkState {
    /// Heard recently.
    Up,
    /// Silent for too long, or never heard.
    Down,
}

/// One (peer, underlay) link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkStatus {
    /// The peer's endpoint on this underlay; `null` if it runs none of
    /// this name (then the link is always `down`).
    pub endpoint: Option<SocketAddr>,
    /// `up` or `down`.
    pub state: LinkState,
    /// Milliseconds since the last authenticated frame on this link; `null`
    /// if none since the agent started.
    pub last_heard_ms: Option<u64>,
    /// Times the link went down since the agent started.
    pub downs: u64,
    /// Bytes of authenticated frames from the peer on this link since the
    /// agent started, data and keepalives (UDP payload).
    pub rx_bytes: u64,
    /// Path health from the keepalive echoes (`packet/src/probes.rs`):
    /// latest round trip in microseconds, `null` before the first echo.
    #[serde(default)]
    pub rtt_us: Option<u64>,
    /// Smoothed RTT jitter (RFC 3550, gain 1/16), microseconds.
    #[serde(default)]
    pub jitter_us: u64,
    /// Recent loss of the peer's keepalives on this link, parts per million
    /// (average over about the last 16 keepalives, 8 s).
    #[serde(default)]
    pub loss_ppm: u32,
    /// Keepalives received on this link, and missing from the peer's count.
    #[serde(default)]
    pub probes_received: u64,
    #[serde(default)]
    pub probes_lost: u64,
    /// The peer's data frames whose first copy arrived on this link, and
    /// those whose copy here came second and was discarded: together every
    /// data copy that arrived on this link (the latent-error evidence).
    #[serde(default)]
    pub data_first: u64,
    #[serde(default)]
    pub data_discarded: u64,
}

/// Health of one underlay over a VON's peers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnderlayHealth {
    /// `up` (every peer heard), `partial`, `down` (no peer heard) or `none`
    /// (no other member).
    pub state: UnderlayState,
    /// Peers whose link on this underlay is up.
    pub peers_up: usize,
    /// Peers whose link on this underlay is down.
    pub peers_down: usize,
}

/// Summary state of one underlay in one VON.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UnderlayState {
    /// Every peer is heard on it.
    Up,
    /// Some peers are, some are not.
    Partial,
    /// No peer is heard on it.
    Down,
    /// The VON has no other member.
    #[default]
    None,
}

/// Every underlay's health in one VON, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct HealthSummary(pub BTreeMap<UnderlayName, UnderlayHealth>);

impl HealthSummary {
    /// The summary of `peers` over the underlays `names`.
    pub fn of(peers: &[PeerStatus], names: &PerUnderlay<UnderlayName>) -> Self {
        let one = |name: &UnderlayName| {
            let peers_up = peers
                .iter()
                .filter(|p| {
                    p.underlay
                        .get(name)
                        .is_some_and(|l| l.state == LinkState::Up)
                })
                .count();
            let peers_down = peers.len() - peers_up;
            let state = match (peers_up, peers_down) {
                (0, 0) => UnderlayState::None,
                (_, 0) => UnderlayState::Up,
                (0, _) => UnderlayState::Down,
                _ => UnderlayState::Partial,
            };
            UnderlayHealth {
                state,
                peers_up,
                peers_down,
            }
        };
        HealthSummary(names.values().map(|n| (*n, one(n))).collect())
    }

    /// The health of the underlay called `name`.
    pub fn on(&self, name: &str) -> UnderlayHealth {
        self.0
            .iter()
            .find(|(n, _)| n.as_str() == name)
            .map(|(_, h)| *h)
            .unwrap_or_default()
    }
}

/// This member's lease expiry, written by the key manager's client at every
/// renewal and read by status; stays empty in static mode.
pub type SharedLease = Arc<ArcSwapOption<SystemTime>>;

/// Where this member stands with its key manager (keymgr mode only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeymgrStanding {
    /// `connecting`, `member`, `revoked`, `refused`, `view_refused` or
    /// `unreachable`.
    pub state: String,
    /// The key manager's (or this member's) reason, when there is one.
    pub reason: Option<String>,
    /// Views this member refused to install since it started.
    pub views_refused: u64,
    /// Times the key manager refused or dropped this member since it started.
    pub refusals: u64,
}

/// The standing, written by the key manager's client at every change and
/// read by status; stays empty in static mode.
pub type SharedStanding = Arc<ArcSwapOption<KeymgrStanding>>;

/// Every member of `snap` but this host, with what `health` knows of it
/// (a member the board does not know yet is down, never heard).
pub(crate) fn peers(
    snap: &Snapshot,
    health: &[PeerHealth],
    names: &PerUnderlay<UnderlayName>,
) -> Vec<PeerStatus> {
    let me = snap.me().id;
    snap.members()
        .iter()
        .filter(|m| m.id != me)
        .map(|m| {
            let known = health.iter().find(|h| h.id == m.id);
            let link = |u| {
                let l = known.and_then(|h| h.links.get(u).copied());
                LinkStatus {
                    endpoint: m.endpoints.get(u).copied().flatten(),
                    state: if l.is_some_and(|l| l.up) {
                        LinkState::Up
                    } else {
                        LinkState::Down
                    },
                    last_heard_ms: l
                        .and_then(|l| l.last_heard)
                        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
                    downs: l.map_or(0, |l| l.downs),
                    rx_bytes: l.map_or(0, |l| l.rx_bytes),
                    rtt_us: l
                        .and_then(|l| l.rtt)
                        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX)),
                    jitter_us: l.map_or(0, |l| {
                        u64::try_from(l.jitter.as_micros()).unwrap_or(u64::MAX)
                    }),
                    loss_ppm: l.map_or(0, |l| l.loss_ppm),
                    probes_received: l.map_or(0, |l| l.probes_received),
                    probes_lost: l.map_or(0, |l| l.probes_lost),
                    data_first: l.map_or(0, |l| l.data_first),
                    data_discarded: l.map_or(0, |l| l.data_discarded),
                }
            };
            PeerStatus {
                name: m.name.clone(),
                id: m.id.0,
                address: m.address,
                address6: m.address6,
                underlay: names.iter().map(|(u, n)| (*n, link(u))).collect(),
                elimination: known.map(|h| h.frames).unwrap_or_default(),
                ordering: known.map(|h| h.ordering).unwrap_or_default(),
            }
        })
        .collect()
}

/// The lease expiring at `expires`, as seen at wall-clock time `now`.
pub(crate) fn lease(expires: SystemTime, now: SystemTime) -> LeaseStatus {
    let ms = |t: SystemTime| {
        t.duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    };
    LeaseStatus {
        expires_unix_ms: u64::try_from(ms(expires)).unwrap_or(0),
        expires_in_ms: ms(expires).saturating_sub(ms(now)),
    }
}
