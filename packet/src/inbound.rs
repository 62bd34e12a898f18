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
use super::inner::ipv4_addrs;
use super::keepalive::{HealthBoard, HealthEvent, Liveness};
use super::seen::{Seen, SeenOn};
use super::snapshot::Snapshot;

/// Receive state of one sender under one key.
struct Receiver {
    window: ReplayWindow,
    seen: SeenOn,
    /// The sender's elimination counters (shared by all its epochs).
    frames: Arc<SenderCounters>,
}

impl Receiver {
    fn new(frames: Arc<SenderCounters>) -> Self {
        frames.window_opened();
        Receiver {
            window: ReplayWindow::new(),
            seen: SeenOn::default(),
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
        self.liveness.poll_timeout()
    }

    /// Marks down the links silent too long at `now`; see
    /// [`Inbound::poll_event`] for what changed.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.follow_snapshot(now);
        self.liveness.handle_timeout(now);
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
                if reason == DropReason::Duplicate && !keepalive {
                    self.liveness.discarded(header.sender, underlay);
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
        let rx = self
            .receivers
            .entry(id)
            .or_insert_with(|| Receiver::new(liveness.sender_counters(header.sender)));
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
        let source_ok =
            ipv4_addrs(&datagram[inner.clone()]).is_some_and(|a| a.src == sender.address);
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
