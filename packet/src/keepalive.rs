//! Underlay health: keepalive rounds on the sending side, liveness per peer
//! and underlay on the receiving side. Sans-IO: every method takes `now`,
//! nothing reads a clock, and the driver only calls
//! `poll_timeout` / `handle_timeout` (as quinn-proto's connection does).
//!
//! Flow:
//!
//! 1. Sender ([`KeepaliveRounds`], inside [`super::Outbound`]): every
//!    [`KEEPALIVE_INTERVAL`] a round sends one keepalive to every other
//!    member on each underlay, a *separate* one per underlay. Each is a
//!    frame of type keepalive, sealed like data under the send epoch's key
//!    with its own sequence number from the same send counter — so it cannot
//!    be forged or replayed, and it moves the receiver's window like any
//!    frame. Its body carries this start's challenge, the echo of the
//!    peer's and the send positions (`von_crypto::freshness`): how a
//!    restarted peer learns, freshly, which frames of ours can be new.
//! 2. Receiver ([`Liveness`], inside [`super::Inbound`]): any frame whose
//!    tag verified — data or keepalive — marks its sender "heard" on the
//!    underlay it came in on. A link (peer, underlay) is *down* once nothing
//!    authenticated arrived on it for [`DOWN_AFTER`], *up* again at the next
//!    authenticated frame. Keepalives are never delivered to the TUN, and a
//!    peer counts as heard only once it has answered this start's challenge.
//!
//! Why a keepalive per underlay, and why rounds are not skipped while data
//! flows: the receiver authenticates only the *first* copy of a doubled data
//! frame; the second copy stops at the window before any AEAD work. So data
//! alone proves only the faster underlay alive. A keepalive sent on one
//! underlay only is the first and only copy of its sequence number and is
//! always authenticated on that underlay. The price is two 116-byte packets
//! a second per peer and underlay; the counters keep them apart from data (see
//! `docs/operations.md`), so "frames sent on A = on B = inner packets" still
//! holds for data frames.
//!
//! Timing: keepalives every 0.5 s and down after 2.5 s of silence, so a cut
//! is noticed 2.0–2.5 s after it happens (within the 3 s the issue asks for,
//! even with four consecutive keepalives lost) and a restored link within
//! 0.5 s.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use von_crypto::MemberId;

use super::action::{PerUnderlay, Underlay};
use super::elimination::{SenderCounters, SenderCountersSnapshot};
use super::snapshot::Snapshot;

/// How often a round of keepalives goes to every peer on every underlay.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_millis(500);
/// Silence after which a (peer, underlay) link counts as down.
pub const DOWN_AFTER: Duration = Duration::from_millis(2_500);
/// Health events kept for the driver before the oldest are dropped.
const MAX_EVENTS: usize = 1_024;

/// Sender side: when the next keepalive round is due and how far the
/// current one got.
#[derive(Debug, Default)]
pub struct KeepaliveRounds {
    /// Start of the next round; `None` before the first (due at once).
    next_round: Option<Instant>,
    /// Position in the current round: peer `cursor / n`, underlay
    /// `cursor % n` for `n` underlays.
    cursor: Option<usize>,
}

impl KeepaliveRounds {
    /// When [`KeepaliveRounds::next`] has work; `None` means at once.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.cursor {
            Some(_) => None,
            None => self.next_round,
        }
    }

    /// The next (peer index among `peers`, underlay among `underlays`) to
    /// send a keepalive to at `now`, or `None` when the round is done or not
    /// yet due.
    pub fn next(
        &mut self,
        now: Instant,
        peers: usize,
        underlays: usize,
    ) -> Option<(usize, Underlay)> {
        let cursor = match self.cursor {
            Some(c) => c,
            None if self.next_round.is_none_or(|t| now >= t) => {
                self.next_round = Some(now + KEEPALIVE_INTERVAL);
                0
            }
            None => return None,
        };
        let underlays = underlays.max(1);
        let Some(underlay) =
            Underlay::at(cursor % underlays).filter(|_| cursor < peers * underlays)
        else {
            self.cursor = None;
            return None;
        };
        self.cursor = Some(cursor + 1);
        Some((cursor / underlays, underlay))
    }
}

/// A change of one link's health, for the driver to log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthEvent {
    /// The peer.
    pub peer: MemberId,
    /// Its name in the view.
    pub name: String,
    /// The underlay.
    pub underlay: Underlay,
    /// Up again (`true`) or gone down (`false`).
    pub up: bool,
}

/// One (peer, underlay) link as shared with status and metrics.
#[derive(Debug, Default)]
struct LinkCell {
    /// Nanoseconds from the table's base to the last authenticated frame,
    /// plus one; 0 = never heard.
    heard: AtomicU64,
    up: AtomicBool,
    /// Times this link went down.
    downs: AtomicU64,
    /// Bytes of the authenticated frames that arrived on this link.
    rx_bytes: AtomicU64,
}

/// One peer's links, one per underlay.
#[derive(Debug)]
struct PeerCell {
    id: MemberId,
    name: String,
    links: PerUnderlay<LinkCell>,
    /// Its frame elimination counters, shared with its receive windows and
    /// carried (the same `Arc`) from view to view.
    frames: Arc<SenderCounters>,
}

/// The peers of one view; replaced (values carried over) when the view
/// changes, so the packet path updates it with plain atomic stores.
#[derive(Debug)]
struct PeerTable {
    base: Instant,
    peers: Vec<PeerCell>,
    index: HashMap<MemberId, usize>,
}

/// Per-link health of one VON, written by its [`Liveness`] and read by
/// status and metrics without a lock.
#[derive(Debug, Default)]
pub struct HealthBoard {
    table: ArcSwapOption<PeerTable>,
}

/// One link as read from the board.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkHealth {
    /// Something authenticated arrived within [`DOWN_AFTER`].
    pub up: bool,
    /// How long ago the last authenticated frame arrived; `None` if never.
    pub last_heard: Option<Duration>,
    /// Times the link went down since the agent started.
    pub downs: u64,
    /// Bytes of authenticated frames from the peer on this link, data and
    /// keepalives (UDP payload).
    pub rx_bytes: u64,
}

/// One peer as read from the board.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerHealth {
    /// Member id.
    pub id: MemberId,
    /// Member name.
    pub name: String,
    /// One link per underlay.
    pub links: PerUnderlay<LinkHealth>,
    /// Its frame elimination counters (`elimination.rs`).
    pub frames: SenderCountersSnapshot,
    /// Its ordering stage counters (`ordering.rs`; zero without `ordering`).
    pub ordering: super::ordering::OrderingCountersSnapshot,
}

impl HealthBoard {
    /// Every peer as of `now`, in view order (empty before the first frame
    /// or timeout was handled).
    pub fn peers(&self, now: Instant) -> Vec<PeerHealth> {
        let Some(table) = self.table.load_full() else {
            return Vec::new();
        };
        table
            .peers
            .iter()
            .map(|p| PeerHealth {
                id: p.id,
                name: p.name.clone(),
                links: p.links.map(|_, l| {
                    let heard = l.heard.load(Relaxed);
                    LinkHealth {
                        up: l.up.load(Relaxed),
                        last_heard: (heard > 0).then(|| {
                            let at = table.base + Duration::from_nanos(heard - 1);
                            now.saturating_duration_since(at)
                        }),
                        downs: l.downs.load(Relaxed),
                        rx_bytes: l.rx_bytes.load(Relaxed),
                    }
                }),
                frames: p.frames.snapshot(),
                ordering: p.frames.ordering_snapshot(),
            })
            .collect()
    }
}

/// Receiver side: who was heard on which underlay, and when links go down.
#[derive(Debug, Default)]
pub struct Liveness {
    board: Arc<HealthBoard>,
    table: Option<Arc<PeerTable>>,
    /// Earliest instant a link that is up could go down (may be early: a
    /// link heard since then is simply re-checked).
    next_check: Option<Instant>,
    events: VecDeque<HealthEvent>,
}

impl Liveness {
    /// The board status and metrics read.
    pub fn board(&self) -> Arc<HealthBoard> {
        self.board.clone()
    }

    /// Follows a new view: keeps the links of members still in it, adds the
    /// new ones (down, never heard), forgets those that left.
    pub fn sync(&mut self, now: Instant, snap: &Snapshot) {
        let me = snap.me().id;
        let base = self.table.as_ref().map_or(now, |t| t.base);
        let old = self.table.as_deref();
        let peers: Vec<PeerCell> = snap
            .members()
            .iter()
            .filter(|m| m.id != me)
            .map(|m| {
                let prev_peer = old.and_then(|t| t.index.get(&m.id).map(|&i| &t.peers[i]));
                let links = PerUnderlay::from_fn(snap.underlays(), |u| {
                    let prev = prev_peer.and_then(|p| p.links.get(u));
                    LinkCell {
                        heard: AtomicU64::new(prev.map_or(0, |l| l.heard.load(Relaxed))),
                        up: AtomicBool::new(prev.is_some_and(|l| l.up.load(Relaxed))),
                        downs: AtomicU64::new(prev.map_or(0, |l| l.downs.load(Relaxed))),
                        rx_bytes: AtomicU64::new(prev.map_or(0, |l| l.rx_bytes.load(Relaxed))),
                    }
                });
                PeerCell {
                    id: m.id,
                    name: m.name.clone(),
                    links,
                    frames: prev_peer.map_or_else(Arc::default, |p| p.frames.clone()),
                }
            })
            .collect();
        let index = peers.iter().enumerate().map(|(i, p)| (p.id, i)).collect();
        let table = Arc::new(PeerTable { base, peers, index });
        self.board.table.store(Some(table.clone()));
        self.table = Some(table);
    }

    /// The elimination counters of `sender`, for its receive windows to
    /// hold; a detached cell if the view does not name it (never shown).
    pub fn sender_counters(&self, sender: MemberId) -> Arc<SenderCounters> {
        self.table
            .as_ref()
            .and_then(|t| t.index.get(&sender).map(|&i| t.peers[i].frames.clone()))
            .unwrap_or_default()
    }

    /// The underlays whose link to `sender` is up, one bit each
    /// ([`Underlay::bit`]); for the ordering stage (`ordering.rs`).
    pub fn links_up(&self, sender: MemberId) -> u8 {
        let Some(table) = &self.table else { return 0 };
        let Some(&i) = table.index.get(&sender) else {
            return 0;
        };
        table.peers[i]
            .links
            .iter()
            .filter(|(_, l)| l.up.load(Relaxed))
            .fold(0, |m, (u, _)| m | u.bit())
    }

    /// An authenticated frame of `bytes` from `sender` arrived on `underlay`
    /// at `now`.
    pub fn heard(&mut self, now: Instant, sender: MemberId, underlay: Underlay, bytes: usize) {
        let Some(table) = &self.table else { return };
        let Some(&i) = table.index.get(&sender) else {
            return;
        };
        let peer = &table.peers[i];
        let Some(link) = peer.links.get(underlay) else {
            return;
        };
        link.rx_bytes.fetch_add(bytes as u64, Relaxed);
        let since = now.saturating_duration_since(table.base).as_nanos();
        link.heard
            .store(u64::try_from(since).unwrap_or(u64::MAX - 1) + 1, Relaxed);
        if !link.up.swap(true, Relaxed) {
            let event = HealthEvent {
                peer: sender,
                name: peer.name.clone(),
                underlay,
                up: true,
            };
            self.push(event);
            let deadline = now + DOWN_AFTER;
            self.next_check = Some(self.next_check.map_or(deadline, |t| t.min(deadline)));
        }
    }

    /// When [`Liveness::handle_timeout`] next has work; `None` while no
    /// link is up.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_check
    }

    /// Marks down every link silent for [`DOWN_AFTER`] at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.next_check.is_none_or(|t| now < t) {
            return;
        }
        let Some(table) = self.table.clone() else {
            self.next_check = None;
            return;
        };
        let mut next: Option<Instant> = None;
        for peer in &table.peers {
            for (u, link) in peer.links.iter() {
                if !link.up.load(Relaxed) {
                    continue;
                }
                let heard = link.heard.load(Relaxed).saturating_sub(1);
                let deadline = table.base + Duration::from_nanos(heard) + DOWN_AFTER;
                if deadline <= now {
                    link.up.store(false, Relaxed);
                    link.downs.fetch_add(1, Relaxed);
                    self.push(HealthEvent {
                        peer: peer.id,
                        name: peer.name.clone(),
                        underlay: u,
                        up: false,
                    });
                } else {
                    next = Some(next.map_or(deadline, |t| t.min(deadline)));
                }
            }
        }
        self.next_check = next;
    }

    /// The next health change, oldest first.
    pub fn poll_event(&mut self) -> Option<HealthEvent> {
        self.events.pop_front()
    }

    fn push(&mut self, event: HealthEvent) {
        if self.events.len() == MAX_EVENTS {
            self.events.pop_front();
        }
        self.events.push_back(event);
    }
}

/// A keepalive sealed by [`super::Outbound::handle_timeout`]: send `frame`
/// to `to` on `underlay` only (never on every one: see the module doc).
#[derive(Debug, PartialEq, Eq)]
pub struct Keepalive<'a> {
    /// The underlay to send it on.
    pub underlay: Underlay,
    /// The peer's endpoint on that underlay.
    pub to: std::net::SocketAddr,
    /// The peer it is for.
    pub peer: MemberId,
    /// The sealed frame, a prefix of the caller's buffer.
    pub frame: &'a [u8],
}
