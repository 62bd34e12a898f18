//! Outbound half of a VON's pipeline: policy, shaping, sequencing, sealing.
//! The numbered flow is in the module doc of `pipeline`.

use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use arc_swap::cache::Cache;
use von_crypto::sequence::Rekey;
use von_crypto::{Epoch, Flags, FrameType, Header, SendCounter};

use super::action::{Action, DropReason};
use super::counters::{VonCounters, bump};
use super::inner::ipv4_addrs;
use super::keepalive::{Keepalive, KeepaliveRounds};
use super::shaper::TokenBucket;
use super::snapshot::{Snapshot, Targets};
use super::{OVERHEAD, PACKET_OFFSET, PipelineConfig, SharedSnapshot};

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
    rekey_requested: bool,
    keepalives: KeepaliveRounds,
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
            rekey_requested: false,
            keepalives: KeepaliveRounds::default(),
        }
    }

    /// The shared snapshot this half reads.
    pub fn shared_snapshot(&self) -> &ArcSwap<Snapshot> {
        self.snapshot.arc_swap()
    }

    /// Whether the send counter passed the point where a new key should be
    /// asked for (the control client reads this).
    pub fn rekey_requested(&self) -> bool {
        self.rekey_requested
    }

    /// Handles the IP packet at `buf[PACKET_OFFSET..PACKET_OFFSET + len]`.
    ///
    /// On [`Action::Send`] the frame is sealed in place at the start of `buf`;
    /// `buf` must leave [`OVERHEAD`] bytes around the packet, or the packet is
    /// dropped as too big.
    pub fn handle<'a>(&'a mut self, now: Instant, buf: &'a mut [u8], len: usize) -> Action<'a> {
        let counters = &*self.counters;
        let drop = |reason: DropReason| {
            counters.dropped(reason);
            Action::Drop(reason)
        };
        if buf.len() < len.saturating_add(OVERHEAD) {
            return drop(DropReason::TooBig);
        }
        let snap: &Arc<Snapshot> = self.snapshot.load();
        let packet = &buf[PACKET_OFFSET..PACKET_OFFSET + len];

        // 2. Policy.
        let Some(addrs) = ipv4_addrs(packet) else {
            return drop(DropReason::NotIpv4);
        };
        if addrs.src != snap.me().address {
            return drop(DropReason::SourceNotSelf);
        }
        let to = match snap.targets(addrs.dst) {
            Targets::Some(to) => to,
            Targets::Me => return drop(DropReason::NoOtherMember),
            Targets::NotMember => return drop(DropReason::DestinationNotMember),
        };

        // 3. Shaping.
        if !self.bucket.take(now, len) {
            return drop(DropReason::RateExceeded);
        }

        // 4. Sequencing under the send epoch.
        let epoch = snap.send_epoch();
        let seq = match next_seq(
            &mut self.send_counters,
            self.incarnation,
            &mut self.rekey_requested,
            snap,
        ) {
            Ok(seq) => seq,
            Err(reason) => return drop(reason),
        };

        // 5. Framing and sealing.
        let key = snap.send_key();
        let header = Header {
            on_id: snap.on_id(),
            frame_type: FrameType::Data,
            flags: Flags::new(key.cipher()),
            sender: snap.me().id,
            epoch,
            seq,
        };
        let frame_len = match key.seal_in_place(&header, buf, len) {
            Ok(n) => n,
            Err(_) => return drop(DropReason::TooBig),
        };

        // 6. Transmission (by the driver).
        bump(&counters.tx_packets);
        Action::Send {
            frame: &buf[..frame_len],
            to,
        }
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

/// The next sequence number under `snap`'s send epoch, keeping one counter
/// per epoch still accepted.
fn next_seq(
    send_counters: &mut Vec<(Epoch, SendCounter)>,
    incarnation: u32,
    rekey_requested: &mut bool,
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
        *rekey_requested = true;
    }
    Ok(next.seq)
}
