//! Outbound half of a VON's pipeline: policy, shaping, sequencing, sealing.
//! The numbered flow is in the module doc of `pipeline`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use arc_swap::cache::Cache;
use von_crypto::sequence::Rekey;
use von_crypto::{Epoch, Flags, FrameType, Header, SendCounter};

use super::action::{Action, DropReason, Endpoints};
use super::counters::{VonCounters, bump};
use super::inner::ipv4_addrs;
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
    send_counters: Vec<(Epoch, SendCounter)>,
    /// The latest send epoch whose counter passed the rekey point.
    rekey_requested: Option<Epoch>,
    keepalives: KeepaliveRounds,
    queue: PacketQueue,
}

impl Outbound {
    pub(super) fn new(
        config: PipelineConfig,
        snapshot: SharedSnapshot,
        counters: Arc<VonCounters>,
    ) -> Self {
        Outbound {
            snapshot: Cache::new(snapshot),
            counters,
            bucket: TokenBucket::new(config.rate_bps, config.burst_bytes),
            incarnation: config.incarnation,
            send_counters: Vec::with_capacity(2),
            rekey_requested: None,
            keepalives: KeepaliveRounds::default(),
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
            self.incarnation,
            &mut self.rekey_requested,
            snap,
        );
        seal(counters, snap, seq, buf, len, to)
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
            self.incarnation,
            &mut self.rekey_requested,
            snap,
        );
        Some(seal(counters, snap, seq, buf, len, to))
    }

    /// When [`Outbound::handle_timeout`] next has a keepalive to send;
    /// `None` means at once.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.keepalives.poll_timeout()
    }

    /// The next keepalive due at `now`, sealed at the start of `buf` (which
    /// needs at least [`OVERHEAD`] bytes); call until it returns `None`.
    /// Keepalives draw sequence numbers from the same counter as data, so
    /// they share the window and can never be replayed.
    pub fn handle_timeout<'a>(
        &'a mut self,
        now: Instant,
        buf: &'a mut [u8],
    ) -> Option<Keepalive<'a>> {
        let snap: &Arc<Snapshot> = self.snapshot.load();
        let me = snap.me().id;
        let (peer, underlay, seq) = loop {
            let (i, underlay) = self.keepalives.next(now, snap.members().len())?;
            let peer = &snap.members()[i];
            if peer.id == me {
                continue;
            }
            // A spent sequence space skips the keepalive; data reports it.
            if let Ok(seq) = next_seq(
                &mut self.send_counters,
                self.incarnation,
                &mut self.rekey_requested,
                snap,
            ) {
                break (peer, underlay, seq);
            }
        };
        let key = snap.send_key();
        let header = Header {
            on_id: snap.on_id(),
            frame_type: FrameType::Keepalive,
            flags: Flags::new(key.cipher()),
            sender: me,
            epoch: snap.send_epoch(),
            seq,
        };
        let len = key.seal_in_place(&header, buf, 0).ok()?;
        Some(Keepalive {
            underlay,
            to: peer.endpoints.on(underlay),
            peer: peer.id,
            frame: &buf[..len],
        })
    }
}

/// Counts a drop and says so.
fn dropped<'a>(counters: &VonCounters, reason: DropReason) -> Action<'a> {
    counters.dropped(reason);
    Action::Drop(reason)
}

/// Step 2: where the inner packet may go, or why not.
fn policy<'s>(snap: &'s Snapshot, packet: &[u8]) -> Result<&'s [Endpoints], DropReason> {
    let addrs = ipv4_addrs(packet).ok_or(DropReason::NotIpv4)?;
    if addrs.src != snap.me().address {
        return Err(DropReason::SourceNotSelf);
    }
    match snap.targets(addrs.dst) {
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
fn next_seq(
    send_counters: &mut Vec<(Epoch, SendCounter)>,
    incarnation: u32,
    rekey_requested: &mut Option<Epoch>,
    snap: &Snapshot,
) -> Result<u64, DropReason> {
    let epoch = snap.send_epoch();
    if !send_counters.iter().any(|(e, _)| *e == epoch) {
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
