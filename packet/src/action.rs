//! What the pipeline core asks its driver to do with one packet.
//!
//! The core never touches a socket or the TUN: it returns an [`Action`] that
//! borrows the caller's buffer (the bytes to send or deliver) and the current
//! snapshot (where to send them). "Sent on every underlay" is therefore
//! visible to a unit test as one `Send` naming each underlay's endpoints.

use std::net::SocketAddr;
use std::ops::Range;

pub use von_ids::{MAX_UNDERLAYS, PerUnderlay, Underlay, UnderlayName};

/// Where a member receives frames: its endpoint on each of this agent's
/// underlays, `None` where it runs no underlay of that name (it then gets
/// fewer copies, and its missing underlays count as down).
pub type Endpoints = PerUnderlay<Option<SocketAddr>>;

/// The outcome of handling one packet.
#[derive(Debug, PartialEq, Eq)]
pub enum Action<'a> {
    /// Send `frame` to every member in `to`, once on each underlay: one
    /// member for unicast, every other member for broadcast/multicast.
    Send {
        /// The sealed frame, a prefix of the caller's output buffer.
        frame: &'a [u8],
        /// Destinations; send to `to[i][u]` on underlay `u` where it is `Some`.
        to: &'a [Endpoints],
    },
    /// Write the bytes at `packet` of the caller's datagram buffer to the TUN.
    Deliver {
        /// Where the inner IP packet lies in the buffer given to `handle_inbound`.
        packet: Range<usize>,
    },
    /// Drop the packet; the matching counter has already been incremented.
    Drop(DropReason),
    /// Outbound: held in the shaping queue until tokens allow; the driver
    /// collects it later from `Outbound::handle_queue`.
    Queued,
    /// Inbound: held by the ordering stage (`ordering.rs`) until the gap
    /// before it fills; the driver collects it from `Inbound::poll_deliver`.
    Held,
}

/// Why a packet was dropped. Each reason maps to exactly one counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Outbound: neither an IPv4 nor an IPv6 packet, or its header is truncated.
    NotIp,
    /// Outbound: an IPv6 packet from the unspecified address or a
    /// link-local one (`::`, `fe80::/10`): what the kernel itself emits on
    /// an interface (MLD reports, router solicitations), never a member's
    /// traffic. Dropped at the edge, counted apart from policy drops.
    LinkLocal,
    /// Outbound: the inner source is not this member's VON address.
    SourceNotSelf,
    /// Outbound: the destination is neither a member nor broadcast/multicast.
    DestinationNotMember,
    /// Outbound: a broadcast/multicast with no other member to reach.
    NoOtherMember,
    /// Outbound: over the contracted rate (never borrowed).
    RateExceeded,
    /// Outbound: the packet does not fit the output buffer or the MTU.
    TooBig,
    /// Outbound: the send counter is exhausted under the current key.
    SequenceExhausted,
    /// Inbound: the frame header does not parse (length, version, type).
    Malformed,
    /// Inbound: the frame names an ON id this pipeline does not serve.
    UnknownOnId,
    /// Inbound: the sender id is not in the current view.
    UnknownSender,
    /// Inbound: the epoch is not one this member accepts now.
    UnknownEpoch,
    /// Inbound: a frame type other than data (handled elsewhere, not an error).
    NotData,
    /// Inbound: already accepted from another underlay (PRP duplicate discard).
    Duplicate,
    /// Inbound: already seen on this same underlay (replayed).
    Replay,
    /// Inbound: older than the replay window.
    TooOld,
    /// Inbound: the AEAD tag did not verify.
    AuthFailed,
    /// Inbound: the inner source is not the authenticated sender's address.
    InnerSourceRejected,
    /// Inbound: frame from ourselves (e.g. looped back by a bridge).
    FromSelf,
    /// Inbound: the sender has not yet proven its current position since
    /// this agent started (one round trip after a start).
    Unproven,
    /// Inbound: sealed before the sender proved its position to this
    /// start: a replay of old traffic, or a frame delayed across the restart.
    Stale,
    /// Inbound: the ordering stage gave up its gap before it arrived;
    /// delivering it now would break FIFO (`ordering.rs`).
    Late,
}

impl DropReason {
    /// A short stable name, used in rate-limited log lines.
    pub const fn name(self) -> &'static str {
        match self {
            DropReason::NotIp => "not_ip",
            DropReason::LinkLocal => "link_local",
            DropReason::SourceNotSelf => "source_not_self",
            DropReason::DestinationNotMember => "destination_not_member",
            DropReason::NoOtherMember => "no_other_member",
            DropReason::RateExceeded => "rate_exceeded",
            DropReason::TooBig => "too_big",
            DropReason::SequenceExhausted => "sequence_exhausted",
            DropReason::Malformed => "malformed",
            DropReason::UnknownOnId => "unknown_on_id",
            DropReason::UnknownSender => "unknown_sender",
            DropReason::UnknownEpoch => "unknown_epoch",
            DropReason::NotData => "not_data",
            DropReason::Duplicate => "duplicate",
            DropReason::Replay => "replay",
            DropReason::TooOld => "too_old",
            DropReason::AuthFailed => "auth_failed",
            DropReason::InnerSourceRejected => "inner_source_rejected",
            DropReason::FromSelf => "from_self",
            DropReason::Unproven => "unproven",
            DropReason::Stale => "stale",
            DropReason::Late => "late",
        }
    }

    /// Whether this drop is worth a (rate-limited) warning: bad input from the
    /// network or a misbehaving local application, not normal operation.
    pub const fn is_suspicious(self) -> bool {
        !matches!(
            self,
            DropReason::Duplicate
                | DropReason::LinkLocal
                | DropReason::NotData
                | DropReason::RateExceeded
                | DropReason::Unproven
                | DropReason::Late
        )
    }
}
