//! Outbound half of a VON's pipeline: policy, shaping, sequencing, sealing.
//! The numbered flow is in the module doc of `pipeline`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use arc_swap::cache::Cache;
use von_crypto::frame::HEADER_LEN;
use von_crypto::freshness::{KeepaliveBody, MAX_KEEPALIVE_LEN, Position};
use von_crypto::sequence::Rekey;
use von_crypto::{Epoch, Flags, FrameType, Header, MemberId, SendCounter};

use super::action::{Action, DropReason, Endpoints, Underlay};
use super::challenges::Challenges;
use super::counters::{VonCounters, bump};
use super::inner::{InnerAddrs, inner_addrs};
use super::keepalive::{Keepalive, KeepaliveRounds};
use super::queue::PacketQueue;
use super::shaper::TokenBucket;
use super::snapshot::{Snapshot, Targets};
use super::{OVERHEAD, PACKET_OFFSET, PipelineConfig, SharedSnapshot};

/// How much traffic the shaping queue holds, in time at the contracted rate
/// (at least the burst, at most [`MAX_QUEUE_BYTES`]): enough for TCP to
/// settle near the rate, short enough to keep a VON's latency low.
pub const SHAPING_QUEUE: Duration = Duration::from_millis(20);
/// Upper bound of the shaping queue in bytes, whatever the rate.
const MAX_QUEUE_BYTES: u64 = 4 << 20;
/// Largest inner packet the queue must take.
const MAX_PACKET: usize = 65_535;

/// TUN → underlays for one VON. Owned by one task; `&mut self` per packet.
#[derive(Debug)]
pub struct Outbound {
    snapshot: Cache<SharedSnapshot, Arc<Snapshot>>,
    counters: Arc<VonCounters>,
    bucket: TokenBucket,
    incarnation: u32,
    /// One counter per epoch sent under and still accepted, so switching
    /// back and forth between accepted epochs never restarts a counter.
    /// Oldest first; a new one is only ever opened for an epoch above all
    /// of them (see [`next_seq`]).
    send_counters: Vec<(Epoch, SendCounter)>,
    /// The newest epoch this incarnation has sent under.
    newest_epoch: Option<Epoch>,
    /// The latest send epoch whose counter passed the rekey point.
    rekey_requested: Option<Epoch>,
    keepalives: KeepaliveRounds,
    /// Shared with the inbound half: challenges to echo and to answer.
    challenges: Arc<Challenges>,
    /// Keepalives owed at once to peers whose new challenge was heard.
    answers: VecDeque<(MemberId, Underlay)>,
    /// Scratch for [`Challenges::take_pending`].
    pending: Vec<MemberId>,
    queue: PacketQueue,
}

impl Outbound {
    pub(super) fn new(
        config: PipelineConfig,
        snapshot: SharedSnapshot,
        counters: Arc<VonCounters>,
        challenges: Arc<Challenges>,
    ) -> Self {
        Outbound {
            snapshot: Cache::new(snapshot),
            counters,
            bucket: TokenBucket::new(config.rate_bps, config.burst_bytes),
            incarnation: config.incarnation,
            send_counters: Vec::with_capacity(2),
            newest_epoch: None,
            rekey_requested: None,
            keepalives: KeepaliveRounds::default(),
            challenges,
            answers: VecDeque::new(),
            pending: Vec::new(),
            queue: PacketQueue::new(queue_bytes(config.rate_bps, config.burst_bytes), MAX_PACKET),
        }
    }

    /// The shared snapshot this half reads.
    pub fn shared_snapshot(&self) -> &ArcSwap<Snapshot> {
        self.snapshot.arc_swap()
    }

    /// The latest send epoch whose counter passed the point where a new key
    /// should be asked for; the driver forwards it to the key manager once
    /// (`control::NearLimit`). A plain field read: cheap enough per batch.
    pub fn rekey_requested(&self) -> Option<Epoch> {
        self.rekey_requested
    }

    /// Handles the IP packet at `buf[PACKET_OFFSET..PACKET_OFFSET + len]`.
    ///
    /// On [`Action::Send`] the frame is sealed in place at the start of `buf`;
    /// `buf` must leave [`OVERHEAD`] bytes around the packet, or the packet is
    /// dropped as too big. On [`Action::Queued`] the packet was copied into
    /// the shaping queue; see [`Outbound::poll_queue`].
    pub fn handle<'a>(&'a mut self, now: Instant, buf: &'a mut [u8], len: usize) -> Action<'a> {
        let counters = &*self.counters;
        if buf.len() < len.saturating_add(OVERHEAD) {
            return dropped(counters, DropReason::TooBig);
        }
        let snap: &Arc<Snapshot> = self.snapshot.load();
        let packet = &buf[PACKET_OFFSET..PACKET_OFFSET + len];

        // 2. Policy.
        let to = match policy(snap, packet) {
            Ok(to) => to,
            Err(reason) => return dropped(counters, reason),
        };

        // 3. Shaping: in order behind anything queued, queued while tokens
        // lack, dropped when the queue is full.
        if !self.bucket.can_ever_pass(len) {
            return dropped(counters, DropReason::RateExceeded);
        }
        if !self.queue.is_empty() || !self.bucket.take(now, len) {
            if self.queue.push(packet) {
                bump(&counters.shaped);
                return Action::Queued;
            }
            return dropped(counters, DropReason::RateExceeded);
        }

        // 4.-6.
        let seq = next_seq(
            &mut self.send_counters,
            &mut self.newest_epoch,
            self.incarnation,
            &mut self.rekey_requested,
            snap,
        );
        seal(counters, snap, seq, buf, len, to)
    }

    /// Applies a new contracted rate and burst from `now` on (a config
    /// reload); the shaping queue keeps its size and its packets.
    pub fn set_rate(&mut self, now: Instant, rate_bps: u64, burst_bytes: u64) {
        self.bucket.set_rate(now, rate_bps, burst_bytes);
    }

    /// When the oldest packet of the shaping queue may leave; `None` if the
    /// queue is empty.
    pub fn poll_queue(&self, now: Instant) -> Option<Instant> {
        let len = self.queue.front_len()?;
        // Every queued packet passed `can_ever_pass`, so it has a time.
        self.bucket.ready_at(now, len)
    }

    /// The oldest queued packet, sealed at the start of `buf` (which needs
    /// room for the largest packet and [`OVERHEAD`]), if the bucket lets it
    /// leave at `now`; call until it returns `None`. Policy is checked again
    /// against the current view: a member may have left meanwhile.
    pub fn handle_queue<'a>(&'a mut self, now: Instant, buf: &'a mut [u8]) -> Option<Action<'a>> {
        let counters = &*self.counters;
        let len = self.queue.front_len()?;
        if buf.len() < len.saturating_add(OVERHEAD) || !self.bucket.take(now, len) {
            return None;
        }
        self.queue.pop_into(&mut buf[PACKET_OFFSET..])?;
        let snap: &Arc<Snapshot> = self.snapshot.load();
        let to = match policy(snap, &buf[PACKET_OFFSET..PACKET_OFFSET + len]) {
            Ok(to) => to,
            Err(reason) => return Some(dropped(counters, reason)),
        };
        let seq = next_seq(
            &mut self.send_counters,
            &mut self.newest_epoch,
            self.incarnation,
            &mut self.rekey_requested,
            snap,
        );
        Some(seal(counters, snap, seq, buf, len, to))
    }

    /// When [`Outbound::handle_timeout`] next has a keepalive to send;
    /// `None` means at once (a round is due, or a peer's challenge waits for
    /// its answer).
    pub fn poll_timeout(&self) -> Option<Instant> {
        if !self.answers.is_empty() || self.challenges.answer_pending() {
            return None;
        }
        self.keepalives.poll_timeout()
    }

    /// The challenges this half shares with the inbound half; the driver
    /// polls [`Challenges::poll_answer_wanted`] to answer at once.
    pub fn challenges(&self) -> Arc<Challenges> {
        self.challenges.clone()
    }

    /// The next keepalive due at `now`, sealed at the start of `buf` (which
    /// needs at least [`MAX_KEEPALIVE_LEN`] bytes); call until it returns
    /// `None`. Answers to new challenges go first, on both underlays, then
    /// the round. Keepalives draw sequence numbers from the same counter as
    /// data, so they share the window and can never be replayed; each
    /// carries this start's challenge, the echo of the peer's, and where
    /// every send counter stands (`von_crypto::freshness`).
    pub fn handle_timeout<'a>(
        &'a mut self,
        now: Instant,
        buf: &'a mut [u8],
    ) -> Option<Keepalive<'a>> {
        if buf.len() < MAX_KEEPALIVE_LEN {
            return None;
        }
        let snap = self.snapshot.load().clone();
        let me = snap.me().id;
        if self.answers.is_empty() {
            self.challenges.take_pending(&mut self.pending);
            for peer in self.pending.drain(..) {
                self.answers.extend(
                    (0..snap.underlays())
                        .filter_map(Underlay::at)
                        .map(|u| (peer, u)),
                );
            }
        }
        let (peer, underlay, to, seq) = loop {
            let (peer, underlay) = match self.answers.pop_front() {
                Some((id, underlay)) => match snap.member(id) {
                    Some(peer) => (peer, underlay),
                    None => continue,
                },
                None => {
                    let (i, underlay) =
                        self.keepalives
                            .next(now, snap.members().len(), snap.underlays())?;
                    (&snap.members()[i], underlay)
                }
            };
            if peer.id == me {
                continue;
            }
            // A peer that runs no underlay of this name gets nothing on it.
            let Some(to) = peer.endpoints.get(underlay).copied().flatten() else {
                continue;
            };
            // A spent sequence space skips the keepalive; data reports it.
            if let Ok(seq) = self.counters_next(&snap) {
                break (peer, underlay, to, seq);
            }
        };
        let mut body = KeepaliveBody::new(self.challenges.own(), self.challenges.echo_for(peer.id));
        body.timing = Some(self.challenges.probes().stamp_out(peer.id, underlay, now));
        for (epoch, counter) in self.send_counters.iter().rev() {
            body.push(Position {
                epoch: *epoch,
                next: counter.position(),
            });
        }
        let body_len = body.emit(&mut buf[HEADER_LEN..])?;
        let key = snap.send_key();
        let header = Header {
            on_id: snap.on_id(),
            frame_type: FrameType::Keepalive,
            flags: Flags::new(key.cipher()),
            sender: me,
            epoch: snap.send_epoch(),
            seq,
        };
        let len = key.seal_in_place(&header, buf, body_len).ok()?;
        Some(Keepalive {
            underlay,
            to,
            peer: peer.id,
            frame: &buf[..len],
        })
    }

    /// The next sequence under `snap`'s send epoch; see [`next_seq`].
    fn counters_next(&mut self, snap: &Snapshot) -> Result<u64, DropReason> {
        next_seq(
            &mut self.send_counters,
            &mut self.newest_epoch,
            self.incarnation,
            &mut self.rekey_requested,
            snap,
        )
    }
}

/// Counts a drop and says so.
fn dropped<'a>(counters: &VonCounters, reason: DropReason) -> Action<'a> {
    counters.dropped(reason);
    Action::Drop(reason)
}

/// Step 2: where the inner packet may go, or why not.
fn policy<'s>(snap: &'s Snapshot, packet: &[u8]) -> Result<&'s [Endpoints], DropReason> {
    let targets = match inner_addrs(packet).ok_or(DropReason::NotIp)? {
        InnerAddrs::V4(a) => {
            if Some(a.src) != snap.me().address {
                return Err(DropReason::SourceNotSelf);
            }
            snap.targets(a.dst)
        }
        InnerAddrs::V6(a) => {
            if Some(a.src) != snap.me().address6 {
                return Err(if a.src.is_unspecified() || a.src.is_unicast_link_local() {
                    DropReason::LinkLocal
                } else {
                    DropReason::SourceNotSelf
                });
            }
            snap.targets6(a.dst)
        }
    };
    match targets {
        Targets::Some(to) => Ok(to),
        Targets::Me => Err(DropReason::NoOtherMember),
        Targets::NotMember => Err(DropReason::DestinationNotMember),
    }
}

/// Steps 4-6: frame and seal the packet at `buf[PACKET_OFFSET..][..len]`
/// under `seq` and hand it to the driver.
fn seal<'a>(
    counters: &VonCounters,
    snap: &'a Snapshot,
    seq: Result<u64, DropReason>,
    buf: &'a mut [u8],
    len: usize,
    to: &'a [Endpoints],
) -> Action<'a> {
    let seq = match seq {
        Ok(seq) => seq,
        Err(reason) => return dropped(counters, reason),
    };
    let key = snap.send_key();
    let header = Header {
        on_id: snap.on_id(),
        frame_type: FrameType::Data,
        flags: Flags::new(key.cipher()),
        sender: snap.me().id,
        epoch: snap.send_epoch(),
        seq,
    };
    match key.seal_in_place(&header, buf, len) {
        Ok(frame_len) => {
            bump(&counters.tx_packets);
            Action::Send {
                frame: &buf[..frame_len],
                to,
            }
        }
        Err(_) => dropped(counters, DropReason::TooBig),
    }
}

/// The shaping queue's size: [`SHAPING_QUEUE`] at the rate, at least the
/// burst, at most [`MAX_QUEUE_BYTES`].
fn queue_bytes(rate_bps: u64, burst_bytes: u64) -> usize {
    let at_rate = u128::from(rate_bps) * SHAPING_QUEUE.as_nanos() / 8 / 1_000_000_000;
    let bytes = u64::try_from(at_rate)
        .unwrap_or(u64::MAX)
        .max(burst_bytes)
        .min(MAX_QUEUE_BYTES);
    usize::try_from(bytes).unwrap_or(usize::MAX)
}

/// The next sequence number under `snap`'s send epoch, keeping one counter
/// per epoch still accepted.
///
/// A counter is opened only for an epoch above every epoch this incarnation
/// sent under: reopening a retired one would restart its sequence (a nonce
/// reuse if the epoch's key is the same), and a restarted receiver's floor
/// (`von_crypto::freshness::Floor`) takes an epoch newer than all reported
/// ones as unused. Going back to a retired epoch is refused instead.
fn next_seq(
    send_counters: &mut Vec<(Epoch, SendCounter)>,
    newest_epoch: &mut Option<Epoch>,
    incarnation: u32,
    rekey_requested: &mut Option<Epoch>,
    snap: &Snapshot,
) -> Result<u64, DropReason> {
    let epoch = snap.send_epoch();
    if !send_counters.iter().any(|(e, _)| *e == epoch) {
        if newest_epoch.is_some_and(|newest| epoch <= newest) {
            return Err(DropReason::SequenceExhausted);
        }
        *newest_epoch = Some(epoch);
        // Retire counters of epochs no longer accepted (not per packet:
        // only when the send epoch changes).
        send_counters.retain(|(e, _)| snap.accepted_epochs().any(|a| a == *e));
        let counter = SendCounter::new(incarnation).map_err(|_| DropReason::SequenceExhausted)?;
        send_counters.push((epoch, counter));
    }
    let (_, counter) = send_counters
        .iter_mut()
        .find(|(e, _)| *e == epoch)
        .ok_or(DropReason::SequenceExhausted)?;
    let next = counter.next().map_err(|_| DropReason::SequenceExhausted)?;
    if next.rekey == Rekey::Requested {
        *rekey_requested = Some(epoch);
    }
    Ok(next.seq)
}
