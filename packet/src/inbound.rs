//! Inbound half of a VON's pipeline: look-up, window, open, inner check.
//! The numbered flow is in the module doc of `pipeline`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use arc_swap::cache::Cache;
use von_crypto::freshness::{Floor, KeepaliveBody};
use von_crypto::sequence::incarnation_of;
use von_crypto::{Epoch, Frame, FrameType, Header, MemberId, Rejected, ReplayWindow};

use super::SharedSnapshot;
use super::action::{Action, DropReason, Underlay};
use super::challenges::Challenges;
use super::counters::{VonCounters, bump};
use super::elimination::SenderCounters;
use super::inner::{InnerAddrs, inner_addrs};
use super::keepalive::{HealthBoard, HealthEvent, Liveness};
use super::ordering::{Accept, OrderingConfig, Reorder};
use super::seen::{Seen, SeenOn};
use super::snapshot::Snapshot;

/// Receive state of one sender under one key.
struct Receiver {
    window: ReplayWindow,
    seen: SeenOn,
    /// The sender's elimination counters (shared by all its epochs).
    frames: Arc<SenderCounters>,
    /// The ordering stage's ring, when the VON orders (`ordering.rs`).
    order: Option<Reorder>,
}

impl Receiver {
    fn new(frames: Arc<SenderCounters>, ordering: Option<OrderingConfig>) -> Self {
        frames.window_opened();
        Receiver {
            window: ReplayWindow::new(),
            seen: SeenOn::default(),
            order: ordering.map(|c| Reorder::new(c, frames.ordering())),
            frames,
        }
    }
}

impl std::fmt::Debug for Receiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiver")
            .field("latest", &self.window.latest())
            .finish_non_exhaustive()
    }
}

/// Underlays → TUN for one VON. Owned by one task; `&mut self` per frame.
#[derive(Debug)]
pub struct Inbound {
    snapshot: Cache<SharedSnapshot, Arc<Snapshot>>,
    /// The snapshot the receivers were last pruned against.
    pruned_for: Option<Arc<Snapshot>>,
    counters: Arc<VonCounters>,
    receivers: HashMap<(MemberId, Epoch), Receiver>,
    /// Senders that proved their position since this start, and where it
    /// was (`von_crypto::freshness`); the others' frames are refused.
    floors: HashMap<MemberId, Floor>,
    /// Shared with the outbound half: this start's challenge, and the
    /// peers' challenges it learns here.
    challenges: Arc<Challenges>,
    /// Who was heard on which underlay (see `keepalive.rs`).
    liveness: Liveness,
    /// In-order delivery (`ordering.rs`); `None`: first copy at once.
    ordering: Option<OrderingConfig>,
    /// Receivers that may have held frames to release, for
    /// [`Inbound::poll_deliver`] (drained after every call; no allocation
    /// per packet: at most one entry after `handle`).
    ready: Vec<(MemberId, Epoch)>,
    /// No receiver's held frame is due before this (may be early).
    ordering_due: Option<Instant>,
    /// `ordering_due` must be recomputed once `ready` drains.
    due_dirty: bool,
}

impl Inbound {
    pub(super) fn new(
        snapshot: SharedSnapshot,
        counters: Arc<VonCounters>,
        challenges: Arc<Challenges>,
    ) -> Self {
        Inbound {
            snapshot: Cache::new(snapshot),
            pruned_for: None,
            counters,
            receivers: HashMap::new(),
            floors: HashMap::new(),
            challenges,
            liveness: Liveness::default(),
            ordering: None,
            ready: Vec::with_capacity(64),
            ordering_due: None,
            due_dirty: false,
        }
    }

    /// Turns in-order delivery on (`Some`) or off. Applies to every
    /// (sender, epoch) window: each gets a fresh ring (frames held in the
    /// old one are dropped, counted `flushed`). Allocates; call at setup or
    /// reload, never per packet.
    pub fn set_ordering(&mut self, ordering: Option<OrderingConfig>) {
        if ordering == self.ordering {
            return;
        }
        self.ordering = ordering;
        for rx in self.receivers.values_mut() {
            if let Some(o) = rx.order.as_mut() {
                o.flush();
            }
            rx.order = ordering.map(|c| Reorder::new(c, rx.frames.ordering()));
        }
        self.ordering_due = None;
    }

    /// The next packet the ordering stage releases, in order: call after
    /// every [`Inbound::handle`] (after delivering its own
    /// [`Action::Deliver`]) and every [`Inbound::handle_timeout`], until it
    /// returns `None`, and write each to the TUN.
    pub fn poll_deliver(&mut self, now: Instant) -> Option<&[u8]> {
        loop {
            let Some(&id) = self.ready.last() else {
                if self.due_dirty {
                    self.due_dirty = false;
                    self.ordering_due = self
                        .receivers
                        .values()
                        .filter_map(|rx| rx.order.as_ref()?.poll_timeout())
                        .min();
                }
                return None;
            };
            let up = self.liveness.links_up(id.0);
            let range = self
                .receivers
                .get_mut(&id)
                .and_then(|rx| rx.order.as_mut())
                .and_then(|o| o.release(now, up));
            match range {
                Some(range) => {
                    bump(&self.counters.delivered);
                    let order = self.receivers.get(&id)?.order.as_ref()?;
                    return Some(order.packet(range));
                }
                None => {
                    self.ready.pop();
                }
            }
        }
    }

    /// The counters this half bumps.
    pub fn counters(&self) -> &VonCounters {
        &self.counters
    }

    /// (sender, epoch) pairs with receive state; for status and tests.
    pub fn receivers(&self) -> impl Iterator<Item = (MemberId, Epoch)> + '_ {
        self.receivers.keys().copied()
    }

    /// Whether `sender` proved its position since this start, so its new
    /// frames are accepted.
    pub fn proven(&self, sender: MemberId) -> bool {
        self.floors.contains_key(&sender)
    }

    /// Per-link health of this VON, for status and metrics.
    pub fn health(&self) -> std::sync::Arc<HealthBoard> {
        self.liveness.board()
    }

    /// When [`Inbound::handle_timeout`] next has work; `None` while no
    /// link is up.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match (self.liveness.poll_timeout(), self.ordering_due) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Marks down the links silent too long at `now` (see
    /// [`Inbound::poll_event`] for what changed) and lets the ordering stage
    /// give up gaps whose held frames waited the bound (drain
    /// [`Inbound::poll_deliver`] afterwards).
    pub fn handle_timeout(&mut self, now: Instant) {
        self.follow_snapshot(now);
        self.liveness.handle_timeout(now);
        if self.ordering_due.is_some_and(|d| d <= now) {
            for (id, rx) in &self.receivers {
                if rx.order.as_ref().is_some_and(|o| o.held() > 0) {
                    self.ready.push(*id);
                }
            }
            self.ordering_due = None;
            self.due_dirty = true;
        }
    }

    /// The next link that went up or down, oldest first.
    pub fn poll_event(&mut self) -> Option<HealthEvent> {
        self.liveness.poll_event()
    }

    /// Handles the frame that fills `datagram`, received on `underlay`.
    ///
    /// On [`Action::Deliver`] the inner packet has been decrypted in place and
    /// lies at the returned range of `datagram`.
    pub fn handle(
        &mut self,
        now: Instant,
        underlay: Underlay,
        datagram: &mut [u8],
    ) -> Action<'static> {
        self.follow_snapshot(now);
        let counters = &*self.counters;
        let drop = |reason: DropReason| {
            counters.dropped(reason);
            Action::Drop(reason)
        };
        let snap = self.snapshot.load();

        counters
            .on(underlay)
            .rx_bytes
            .fetch_add(datagram.len() as u64, std::sync::atomic::Ordering::Relaxed);
        // 2. Parse. Keepalives are counted apart from data frames, so the
        // data counters of a clean run add up exactly (docs/status.md).
        let header = match Frame::new_checked(&*datagram).and_then(|f| Header::parse(&f)) {
            Ok(h) => h,
            Err(_) => {
                bump(&counters.on(underlay).rx_frames);
                return drop(DropReason::Malformed);
            }
        };
        let keepalive = header.frame_type == FrameType::Keepalive;
        bump(if keepalive {
            &counters.on(underlay).rx_keepalives
        } else {
            &counters.on(underlay).rx_frames
        });
        if header.on_id != snap.on_id() {
            return drop(DropReason::UnknownOnId);
        }
        if von_crypto::sequence::check_receivable(header.seq).is_err() {
            return drop(DropReason::Malformed);
        }

        // 3. Look-up, no AEAD work for unknowns.
        if header.sender == snap.me().id {
            return drop(DropReason::FromSelf);
        }
        let Some(sender) = snap.member(header.sender) else {
            return drop(DropReason::UnknownSender);
        };
        let Some(key) = snap.key(header.epoch) else {
            return drop(DropReason::UnknownEpoch);
        };

        // 4. Freshness, then the window pre-check. A sender that has not
        // proven its position since this start may only send the keepalive
        // that proves it; below its floor nothing is new to us.
        let id = (header.sender, header.epoch);
        match self.floors.get(&header.sender) {
            Some(floor) if floor.check(header.epoch, header.seq).is_err() => {
                return drop(DropReason::Stale);
            }
            None if !keepalive => return drop(DropReason::Unproven),
            _ => {}
        }
        if let Some(rx) = self.receivers.get_mut(&id) {
            if let Err(rejected) = rx.window.check(header.seq) {
                let reason = classify(rx, rejected, header.seq, underlay, keepalive);
                if reason == DropReason::Duplicate {
                    if !keepalive {
                        self.liveness.discarded(header.sender, underlay);
                    }
                    // A further copy tells the ordering stage this underlay
                    // passed the sequences below it.
                    if let Some(o) = rx.order.as_mut() {
                        o.observe(now, underlay, header.seq);
                        if o.held() > 0 && self.ready.last() != Some(&id) {
                            self.ready.push(id);
                        }
                    }
                }
                return drop(reason);
            }
        }

        // 5. Open.
        bump(if keepalive {
            &counters.keepalive_opens
        } else {
            &counters.aead_opens
        });
        let inner = match key.open_in_place(datagram) {
            Ok(range) => range,
            Err(_) => return drop(DropReason::AuthFailed),
        };

        // 5b. A keepalive's body: learn the sender's challenge (to echo it),
        // and take a first proof of its position if it echoes ours.
        let mut timing = None;
        if keepalive {
            let Ok(body) = KeepaliveBody::parse(&datagram[inner.clone()]) else {
                return drop(DropReason::Malformed);
            };
            let incarnation = incarnation_of(header.seq);
            self.challenges
                .heard(header.sender, incarnation, body.challenge);
            if !self.floors.contains_key(&header.sender) {
                if body.echo != Some(self.challenges.own()) {
                    return drop(DropReason::Unproven);
                }
                let floor = Floor::from_answer(header.epoch, header.seq, &body);
                self.floors.insert(header.sender, floor);
            }
            timing = body.timing;
        }

        // 6. Mark (creating the window on the first authenticated frame).
        let liveness = &self.liveness;
        let ordering = self.ordering;
        let rx = self
            .receivers
            .entry(id)
            .or_insert_with(|| Receiver::new(liveness.sender_counters(header.sender), ordering));
        match rx.window.mark(header.seq) {
            Ok(marked) => rx.frames.marked(marked, !keepalive),
            Err(rejected) => {
                let reason = classify(rx, rejected, header.seq, underlay, keepalive);
                if reason == DropReason::Duplicate && !keepalive {
                    self.liveness.discarded(header.sender, underlay);
                }
                return drop(reason);
            }
        }
        rx.seen.accepted(header.seq, underlay);
        self.liveness
            .heard(now, header.sender, underlay, datagram.len(), !keepalive);
        let source_ok = !keepalive
            && match inner_addrs(&datagram[inner.clone()]) {
                Some(InnerAddrs::V4(a)) => Some(a.src) == sender.address,
                Some(InnerAddrs::V6(a)) => Some(a.src) == sender.address6,
                None => false,
            };
        if let Some(o) = rx.order.as_mut() {
            // 7b. Ordering: a keepalive or a rejected frame fills its
            // position with nothing; a data frame may wait (`ordering.rs`).
            let accepted = if source_ok {
                o.accept(now, underlay, header.seq, &datagram[inner.clone()])
            } else {
                o.filler(now, underlay, header.seq);
                Accept::Held
            };
            if o.held() > 0 && self.ready.last() != Some(&id) {
                self.ready.push(id);
            }
            if let Some(due) = o.poll_timeout() {
                self.ordering_due = Some(self.ordering_due.map_or(due, |d| d.min(due)));
            }
            match accepted {
                Accept::Late => return drop(DropReason::Late),
                Accept::Held if source_ok => return Action::Held,
                Accept::Held | Accept::Deliver => {}
            }
        }
        if keepalive {
            // Path health (`probes.rs`): only now, past the window mark, so
            // a replayed keepalive never reaches it.
            if let Some(t) = timing {
                let rtt = self
                    .challenges
                    .probes()
                    .stamp_in(header.sender, underlay, now, &t);
                self.liveness.probed(header.sender, underlay, t.round, rtt);
            }
            // Keepalives end here: they proved the link, nothing to deliver.
            return drop(DropReason::NotData);
        }

        // 7. Inner check.
        if !source_ok {
            return drop(DropReason::InnerSourceRejected);
        }

        // 8. Delivery (by the driver).
        bump(&counters.delivered);
        Action::Deliver { packet: inner }
    }
}

impl Inbound {
    /// When the view or keys changed: forget senders that left and epochs no
    /// longer accepted, and follow the view's members for health. Once per
    /// snapshot, not per packet.
    fn follow_snapshot(&mut self, now: Instant) {
        let snap = self.snapshot.load();
        if self
            .pruned_for
            .as_ref()
            .is_some_and(|p| Arc::ptr_eq(p, snap))
        {
            return;
        }
        self.receivers.retain(|(sender, epoch), rx| {
            let keep = snap.member(*sender).is_some() && snap.key(*epoch).is_some();
            if !keep {
                // Its gaps can no longer be filled: lost.
                rx.frames.retired(rx.window.unfilled());
                if let Some(o) = rx.order.as_mut() {
                    o.flush();
                }
            }
            keep
        });
        self.floors
            .retain(|sender, _| snap.member(*sender).is_some());
        self.challenges
            .probes()
            .retain(|m| snap.member(m).is_some());
        self.liveness.sync(now, snap);
        self.pruned_for = Some(snap.clone());
    }
}

/// Turns a window refusal into the counter it belongs to, and counts a
/// refused data frame in its sender's elimination counters
/// (`elimination.rs`: `discarded` or `rogue`).
fn classify(
    rx: &mut Receiver,
    rejected: Rejected,
    seq: u64,
    underlay: Underlay,
    keepalive: bool,
) -> DropReason {
    let reason = match rejected {
        Rejected::TooOld => DropReason::TooOld,
        Rejected::Duplicate => match rx.seen.again(seq, underlay) {
            Seen::OtherUnderlay => DropReason::Duplicate,
            Seen::SameUnderlay => DropReason::Replay,
        },
    };
    match reason {
        DropReason::Duplicate if !keepalive => rx.frames.discarded(),
        DropReason::TooOld if !keepalive => rx.frames.rogue(),
        _ => {}
    }
    reason
}
