//! The per-VON packet pipeline: sans-IO, one packet in, one [`Action`] out.
//!
//! Why a crate of its own: this is von's protocol core, as `quinn-proto`
//! stands beside `quinn` and boringtun's `noise/` beside `device/`. Its
//! `Cargo.toml` has no tokio, no socket and no TUN library, so the compiler
//! (not a comment) keeps I/O out; `#![forbid(unsafe_code)]` keeps the OS out
//! below std. The agent (`von-agent`, `driver.rs`) reads sockets and the TUN,
//! hands buffers and `now` in, and performs the returned [`Action`]s. Being
//! whole and I/O-free, the core is fuzzed as a whole (`packet/fuzz`), and
//! driven without root by the in-memory twins of [`twin`].
//!
//! Outbound flow (TUN → underlays), [`Outbound::handle`]:
//!
//! 1. The driver reads one IP packet from the VON's TUN into its buffer at
//!    [`PACKET_OFFSET`], leaving room for the frame header before it and the
//!    tag after it, so sealing happens in place with no copy.
//! 2. Policy: the packet must be IPv4 or IPv6 (a family the VON carries),
//!    its source this member's VON address of that family, its destination
//!    a member, or the VON's broadcast / a multicast group (IPv6: `ff02::/16`
//!    and wider scopes). Otherwise: drop, `policy_drops`; an IPv6 packet
//!    from `::` or `fe80::/10` (the kernel's MLD reports and router
//!    solicitations) is dropped as `link_local`.
//! 3. Shaping: the VON's token bucket at its contracted rate takes the packet's
//!    bytes. Without tokens the packet waits in a short FIFO
//!    ([`SHAPING_QUEUE`] at the rate, `shaped`; [`Action::Queued`]) and leaves
//!    through [`Outbound::handle_queue`] when tokens allow, in order; with the
//!    FIFO full it is dropped (`rate_drops`). Nothing is ever borrowed.
//! 4. Sequencing: the send counter of the snapshot's send epoch hands out the
//!    next sequence (incarnation ‖ counter; never reused under one key).
//! 5. Framing and sealing: header (ON id first) written, payload sealed in
//!    place under the send epoch's key, header as associated data.
//! 6. Transmission: [`Action::Send`] names the frame and the members'
//!    endpoints — one member for unicast, every other member for
//!    broadcast/multicast. The driver sends it on *every* underlay (1 to
//!    [`MAX_UNDERLAYS`], named in the config) the member runs.
//!
//! Inbound flow (any underlay → TUN), [`Inbound::handle`]:
//!
//! 1. The driver reads one datagram from one underlay and hands it to the
//!    VON its ON id (bytes 0..4) names ([`crate::demux`]).
//! 2. Parse: the header must be complete and valid (`malformed`).
//! 3. Look-up, with no AEAD work: the sender must be in the view
//!    (`unknown_sender`), the epoch one this member accepts (`unknown_epoch`).
//! 4. Window pre-check on the (sender, epoch) window: a sequence already
//!    accepted is a `duplicate` if it is the first copy from this underlay, a
//!    `replay` if this underlay delivered it before; beyond the window it is
//!    `too_old`. Every copy after the first stops here. The sender's
//!    per-sender counters (`elimination.rs`, IEEE 802.1CB's) count the
//!    first as `discarded`, the last as `rogue`.
//! 5. Open: AEAD under the epoch's key (`aead_opens`; failure: `auth_failures`).
//! 6. Window mark: only now does the frame move the window (created on the
//!    first authenticated frame of a (sender, epoch)); the underlay it came
//!    from is recorded for step 4 of later copies. The mark tells the
//!    sender's counters whether the frame was late (`out_of_order`), how
//!    many unfilled positions it pushed out of the window (`lost`) and
//!    whether the sender restarted (`resets`).
//! 7. Inner check: the inner source must be the sender's VON address of
//!    the packet's family (`inner_source_rejected`).
//! 8. Delivery: [`Action::Deliver`] names where the inner packet lies in the
//!    datagram buffer; the driver writes it to the TUN (`delivered`).
//!
//! No step allocates, locks or makes a syscall: buffers come from the caller,
//! the snapshot is read through an `arc_swap` cache, counters are relaxed
//! atomics. The only allocation is a new (sender, epoch) window, once per
//! sender and key. Time is an argument, never read here.
#![forbid(unsafe_code)]

mod action;
mod challenges;
mod counters;
pub mod demux;
mod elimination;
mod inbound;
mod inner;
mod keepalive;
pub mod ordering;
mod outbound;
mod probes;
mod queue;
mod seen;
mod shaper;
mod snapshot;
pub mod twin;

use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use von_crypto::freshness::Challenge;

pub use action::{
    Action, DropReason, Endpoints, MAX_UNDERLAYS, PerUnderlay, Underlay, UnderlayName,
};
pub use challenges::Challenges;
pub use counters::bump as counters_bump;
pub use counters::{
    SocketCounters, SocketCountersSnapshot, UnderlayCounters, UnderlayCountersSnapshot,
    VonCounters, VonCountersSnapshot,
};
pub use elimination::{SenderCounters, SenderCountersSnapshot};
pub use inbound::Inbound;
pub use inner::{InnerAddrs, Ipv4Addrs, Ipv6Addrs, inner_addrs, ipv4_addrs, ipv6_addrs};
pub use keepalive::{
    DOWN_AFTER, HealthBoard, HealthEvent, KEEPALIVE_INTERVAL, Keepalive, KeepaliveRounds,
    LinkHealth, Liveness, PeerHealth,
};
pub use ordering::{MAX_ORDERING, OrderingConfig, OrderingCountersSnapshot};
pub use outbound::{Outbound, SHAPING_QUEUE};
pub use probes::Probes;
pub use queue::PacketQueue;
pub use shaper::TokenBucket;
pub use snapshot::{Ipv4Prefix, Ipv6Prefix, Member, Prefixes, Snapshot, SnapshotError, Targets};

/// Where the driver puts an outbound packet in its buffer: the frame header
/// is written in front of it.
pub const PACKET_OFFSET: usize = von_crypto::frame::HEADER_LEN;
/// Bytes a frame adds around an inner packet (header and tag).
pub const OVERHEAD: usize = von_crypto::frame::OVERHEAD;

/// The shared, swappable view and keys of one VON.
pub type SharedSnapshot = Arc<ArcSwap<Snapshot>>;

/// Settings of one VON's pipeline that do not change while it runs.
#[derive(Debug, Clone, Copy)]
pub struct PipelineConfig {
    /// Contracted rate in bits per second.
    pub rate_bps: u64,
    /// Token bucket depth in bytes.
    pub burst_bytes: u64,
    /// Incarnation persisted for this start (see the agent's `state.rs`).
    pub incarnation: u32,
    /// This start's random challenge (see `von_crypto::freshness`).
    pub challenge: Challenge,
}

/// Both directions of one VON. The driver splits it so that the TUN reader
/// and the underlay reader each own their half without a lock.
#[derive(Debug)]
pub struct Pipeline {
    /// TUN → underlays.
    pub outbound: Outbound,
    /// Underlays → TUN.
    pub inbound: Inbound,
}

impl Pipeline {
    /// A pipeline reading `snapshot`, counting into `counters`.
    pub fn new(
        config: PipelineConfig,
        snapshot: SharedSnapshot,
        counters: Arc<VonCounters>,
    ) -> Self {
        let challenges = Arc::new(Challenges::new(config.challenge));
        Pipeline {
            outbound: Outbound::new(
                config,
                snapshot.clone(),
                counters.clone(),
                challenges.clone(),
            ),
            inbound: Inbound::new(snapshot, counters, challenges),
        }
    }

    /// Seals the packet at `buf[PACKET_OFFSET..PACKET_OFFSET + len]`; see
    /// [`Outbound::handle`].
    pub fn handle_outbound<'a>(
        &'a mut self,
        now: Instant,
        buf: &'a mut [u8],
        len: usize,
    ) -> Action<'a> {
        self.outbound.handle(now, buf, len)
    }

    /// Opens the frame that fills `datagram`; see [`Inbound::handle`].
    pub fn handle_inbound(
        &mut self,
        now: Instant,
        underlay: Underlay,
        datagram: &mut [u8],
    ) -> Action<'static> {
        self.inbound.handle(now, underlay, datagram)
    }
}
