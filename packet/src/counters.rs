//! Counters per VON and per underlay, shared between the packet path and
//! `von status` without a lock.
//!
//! Every field is a relaxed atomic: each is a monotonic count read for
//! reporting, never used to order other memory. The pipeline core bumps them
//! as it decides; the driver bumps the ones only it can know (a send that the
//! kernel refused). [`VonCounters::snapshot`] turns them into the plain,
//! serializable form whose field names `docs/status.md` fixes.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use serde::{Deserialize, Serialize};

use super::action::{DropReason, PerUnderlay, Underlay, UnderlayName};

/// Counts of one VON on one underlay.
#[derive(Debug, Default)]
pub struct UnderlayCounters {
    /// Frames handed to the kernel on this underlay (one per destination).
    pub tx_frames: AtomicU64,
    /// Frames the kernel refused to send on this underlay.
    pub tx_errors: AtomicU64,
    /// Frames received on this underlay carrying this VON's ON id
    /// (keepalives apart).
    pub rx_frames: AtomicU64,
    /// Keepalives handed to the kernel on this underlay.
    pub tx_keepalives: AtomicU64,
    /// Keepalives received on this underlay, whatever became of them.
    pub rx_keepalives: AtomicU64,
    /// Bytes of every frame handed to the kernel on this underlay, data and
    /// keepalives (UDP payload: the wire adds 28 bytes per frame over IPv4,
    /// 48 over IPv6).
    pub tx_bytes: AtomicU64,
    /// Bytes of every datagram received on this underlay with this VON's ON
    /// id, whatever became of it.
    pub rx_bytes: AtomicU64,
}

/// Counts of one VON. See `docs/status.md` for what each one means.
#[derive(Debug, Default)]
pub struct VonCounters {
    /// Each underlay's name, for the snapshot.
    names: PerUnderlay<UnderlayName>,
    /// Per underlay, indexed by [`Underlay`].
    pub underlay: PerUnderlay<UnderlayCounters>,
    /// Inner packets read from the TUN that passed every check and were sealed.
    pub tx_packets: AtomicU64,
    /// Inner packets written to the TUN.
    pub delivered: AtomicU64,
    /// Copies discarded because another underlay delivered them first.
    pub duplicates: AtomicU64,
    /// Frames already seen on the same underlay they arrived on.
    pub replays: AtomicU64,
    /// Frames older than the replay window.
    pub too_old: AtomicU64,
    /// Frames whose AEAD tag did not verify.
    pub auth_failures: AtomicU64,
    /// Frames from a sender id absent from the view.
    pub unknown_sender: AtomicU64,
    /// Frames under an epoch this member does not accept now.
    pub unknown_epoch: AtomicU64,
    /// Authenticated frames whose inner source is not the sender's address.
    pub inner_source_rejected: AtomicU64,
    /// Outbound packets refused by the view (source, destination, not IP).
    pub policy_drops: AtomicU64,
    /// Outbound IPv6 packets from `::` or a link-local address (the
    /// kernel's own MLD reports and router solicitations), dropped.
    pub link_local: AtomicU64,
    /// Outbound packets over the contracted rate with the shaping queue full.
    pub rate_drops: AtomicU64,
    /// Outbound packets that waited in the shaping queue for tokens.
    pub shaped: AtomicU64,
    /// Outbound packets larger than the frame can carry.
    pub too_big: AtomicU64,
    /// Outbound packets dropped because the sequence space under this key is spent.
    pub sequence_exhausted: AtomicU64,
    /// AEAD open operations attempted on data frames (each costs a decryption).
    pub aead_opens: AtomicU64,
    /// AEAD open operations attempted on keepalives.
    pub keepalive_opens: AtomicU64,
    /// Frames with this VON's ON id whose header does not parse.
    pub malformed: AtomicU64,
    /// Frames of a type other than data (keepalives, probes).
    pub control_frames: AtomicU64,
    /// Frames that carry our own sender id.
    pub from_self: AtomicU64,
    /// Inner packets the TUN refused to take.
    pub tun_errors: AtomicU64,
    /// Frames from a sender that has not proven its position since this
    /// agent started (expected for about one round trip after a start).
    pub unproven: AtomicU64,
    /// Frames sealed before their sender proved its position to this start
    /// (replays of recorded traffic, or frames delayed across a restart).
    pub stale: AtomicU64,
    /// Frames the ordering stage dropped: their gap was given up before
    /// they arrived (`ordering.rs`; per sender in `ordering.late`).
    pub ordering_late: AtomicU64,
}

/// Host-wide counts of one underlay socket, before a frame is matched to a VON.
#[derive(Debug, Default)]
pub struct SocketCounters {
    /// Datagrams read from the socket.
    pub rx_datagrams: AtomicU64,
    /// Datagrams too short to carry an ON id.
    pub malformed: AtomicU64,
    /// Datagrams whose ON id names no VON on this host.
    pub unknown_on_id: AtomicU64,
    /// Errors returned by the socket's receive call.
    pub rx_errors: AtomicU64,
}

/// Adds one to a counter.
pub fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Relaxed);
}

impl VonCounters {
    /// Zeroed counters for a VON sent over the underlays `names`.
    pub fn new(names: &PerUnderlay<UnderlayName>) -> Self {
        VonCounters {
            names: names.clone(),
            underlay: names.map(|_, _| UnderlayCounters::default()),
            ..Default::default()
        }
    }

    /// The counters of `underlay`.
    pub fn on(&self, underlay: Underlay) -> &UnderlayCounters {
        &self.underlay[underlay]
    }

    /// The underlays' names, in order.
    pub fn names(&self) -> &PerUnderlay<UnderlayName> {
        &self.names
    }

    /// Counts one drop under the counter its reason maps to.
    pub fn dropped(&self, reason: DropReason) {
        use DropReason::*;
        bump(match reason {
            NotIp | SourceNotSelf | DestinationNotMember | NoOtherMember => &self.policy_drops,
            LinkLocal => &self.link_local,
            RateExceeded => &self.rate_drops,
            TooBig => &self.too_big,
            SequenceExhausted => &self.sequence_exhausted,
            Malformed | UnknownOnId => &self.malformed,
            UnknownSender => &self.unknown_sender,
            UnknownEpoch => &self.unknown_epoch,
            NotData => &self.control_frames,
            Duplicate => &self.duplicates,
            Replay => &self.replays,
            TooOld => &self.too_old,
            AuthFailed => &self.auth_failures,
            InnerSourceRejected => &self.inner_source_rejected,
            FromSelf => &self.from_self,
            Unproven => &self.unproven,
            Stale => &self.stale,
            Late => &self.ordering_late,
        });
    }

    /// A plain copy for reporting.
    pub fn snapshot(&self) -> VonCountersSnapshot {
        let u = |c: &UnderlayCounters| UnderlayCountersSnapshot {
            tx_frames: c.tx_frames.load(Relaxed),
            tx_errors: c.tx_errors.load(Relaxed),
            rx_frames: c.rx_frames.load(Relaxed),
            tx_keepalives: c.tx_keepalives.load(Relaxed),
            rx_keepalives: c.rx_keepalives.load(Relaxed),
            tx_bytes: c.tx_bytes.load(Relaxed),
            rx_bytes: c.rx_bytes.load(Relaxed),
        };
        let l = |c: &AtomicU64| c.load(Relaxed);
        VonCountersSnapshot {
            underlay: self
                .underlay
                .iter()
                .map(|(x, c)| (self.names[x], u(c)))
                .collect(),
            tx_packets: l(&self.tx_packets),
            delivered: l(&self.delivered),
            duplicates: l(&self.duplicates),
            replays: l(&self.replays),
            too_old: l(&self.too_old),
            auth_failures: l(&self.auth_failures),
            unknown_sender: l(&self.unknown_sender),
            unknown_epoch: l(&self.unknown_epoch),
            inner_source_rejected: l(&self.inner_source_rejected),
            policy_drops: l(&self.policy_drops),
            link_local: l(&self.link_local),
            rate_drops: l(&self.rate_drops),
            shaped: l(&self.shaped),
            too_big: l(&self.too_big),
            sequence_exhausted: l(&self.sequence_exhausted),
            aead_opens: l(&self.aead_opens),
            keepalive_opens: l(&self.keepalive_opens),
            malformed: l(&self.malformed),
            control_frames: l(&self.control_frames),
            from_self: l(&self.from_self),
            tun_errors: l(&self.tun_errors),
            unproven: l(&self.unproven),
            stale: l(&self.stale),
            ordering_late: l(&self.ordering_late),
        }
    }
}

impl SocketCounters {
    /// A plain copy for reporting.
    pub fn snapshot(&self) -> SocketCountersSnapshot {
        SocketCountersSnapshot {
            rx_datagrams: self.rx_datagrams.load(Relaxed),
            malformed: self.malformed.load(Relaxed),
            unknown_on_id: self.unknown_on_id.load(Relaxed),
            rx_errors: self.rx_errors.load(Relaxed),
        }
    }
}

/// Serializable per-underlay counts of one VON (JSON names are stable).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct UnderlayCountersSnapshot {
    pub tx_frames: u64,
    pub tx_errors: u64,
    pub rx_frames: u64,
    pub tx_keepalives: u64,
    pub rx_keepalives: u64,
    pub tx_bytes: u64,
    pub rx_bytes: u64,
}

/// Serializable counts of one VON (JSON names are stable; see `docs/status.md`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct VonCountersSnapshot {
    /// Per underlay, by name.
    pub underlay: BTreeMap<UnderlayName, UnderlayCountersSnapshot>,
    pub tx_packets: u64,
    pub delivered: u64,
    pub duplicates: u64,
    pub replays: u64,
    pub too_old: u64,
    pub auth_failures: u64,
    pub unknown_sender: u64,
    pub unknown_epoch: u64,
    pub inner_source_rejected: u64,
    pub policy_drops: u64,
    pub link_local: u64,
    pub rate_drops: u64,
    pub shaped: u64,
    pub too_big: u64,
    pub sequence_exhausted: u64,
    pub aead_opens: u64,
    pub keepalive_opens: u64,
    pub malformed: u64,
    pub control_frames: u64,
    pub from_self: u64,
    pub tun_errors: u64,
    pub unproven: u64,
    pub stale: u64,
    pub ordering_late: u64,
}

impl VonCountersSnapshot {
    /// The counts on the underlay called `name`; zero if there is none.
    pub fn on(&self, name: &str) -> UnderlayCountersSnapshot {
        self.underlay
            .iter()
            .find(|(n, _)| n.as_str() == name)
            .map(|(_, c)| *c)
            .unwrap_or_default()
    }

    /// A counter summed over every underlay.
    pub fn sum(&self, field: impl Fn(&UnderlayCountersSnapshot) -> u64) -> u64 {
        self.underlay.values().map(field).sum()
    }
}

/// Serializable host-wide counts of one underlay socket.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SocketCountersSnapshot {
    pub rx_datagrams: u64,
    pub malformed: u64,
    pub unknown_on_id: u64,
    pub rx_errors: u64,
}
