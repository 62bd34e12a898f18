//! Frame elimination counters per sender, in IEEE 802.1CB's terms (its
//! sequence recovery function's `frerCpsSeqRcvy*` counters).
//!
//! Every VON counter in [`super::VonCounters`] sums over all senders; these
//! say which member's stream lost frames, arrived out of order or restarted.
//! One [`SenderCounters`] cell per member lives in the VON's
//! [`super::HealthBoard`] beside that member's links, so status and metrics
//! read it without a lock, and each (sender, epoch) receive state holds an
//! `Arc` of its sender's cell: the packet path bumps relaxed atomics and
//! never looks anything up or allocates.
//!
//! What is counted where (`docs/status.md` has the operator's table):
//!
//! - `passed`, `out_of_order`: data frames the window accepted, after the
//!   AEAD tag verified; `out_of_order` those below the sender's highest
//!   sequence so far.
//! - `lost`: sequence numbers (data or keepalive) at or above the window's
//!   floor that no underlay delivered by the time the window moved past them
//!   ([`von_crypto::Marked::lost`]), or that were still missing when the
//!   sender restarted or its epoch was retired. Only authenticated frames
//!   move the window, so a forger cannot raise it.
//! - `discarded`, `rogue`: data frames refused by the window's read-only
//!   check *before* the AEAD (the point of that check: a second copy costs
//!   no decryption). `discarded` counts the first copy on each further
//!   underlay of a sequence already accepted (at most k − 1 per accepted
//!   sequence with k underlays, by the "seen on" mask of `seen.rs`); `rogue` frames
//!   behind the window. A forged header can raise both, within those bounds
//!   for `discarded`; the VON-wide `duplicates` and `too_old` share this.
//! - `resets`: the sender's sequence started over: a newer incarnation under
//!   the same key (it restarted), or a window for a new epoch.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use serde::{Deserialize, Serialize};
use von_crypto::Marked;

use super::counters::bump;

/// One sender's elimination counters, shared between the inbound half and
/// status. Relaxed atomics: monotonic counts, read for reporting only.
#[derive(Debug, Default)]
pub struct SenderCounters {
    passed: AtomicU64,
    discarded: AtomicU64,
    out_of_order: AtomicU64,
    lost: AtomicU64,
    rogue: AtomicU64,
    resets: AtomicU64,
    /// Receive windows opened for this sender (one per epoch); from the
    /// second on, each is a reset.
    windows: AtomicU64,
    /// The sender's ordering stage counters (`ordering.rs`), beside these.
    ordering: std::sync::Arc<super::ordering::OrderingCounters>,
}

impl SenderCounters {
    /// A window for one more of this sender's epochs was opened.
    pub(crate) fn window_opened(&self) {
        if self.windows.fetch_add(1, Relaxed) > 0 {
            bump(&self.resets);
        }
    }

    /// The window accepted a frame (data or keepalive) and reported `m`.
    pub(crate) fn marked(&self, m: Marked, data: bool) {
        if m.lost > 0 {
            self.lost.fetch_add(m.lost, Relaxed);
        }
        if m.restarted {
            bump(&self.resets);
        }
        if data {
            bump(&self.passed);
            if m.late {
                bump(&self.out_of_order);
            }
        }
    }

    /// A data frame was a further underlay's copy of one already accepted.
    pub(crate) fn discarded(&self) {
        bump(&self.discarded);
    }

    /// A data frame was behind the window.
    pub(crate) fn rogue(&self) {
        bump(&self.rogue);
    }

    /// A window is dropped (its epoch retired) with `unfilled` gaps that can
    /// no longer be filled.
    pub(crate) fn retired(&self, unfilled: u64) {
        self.lost.fetch_add(unfilled, Relaxed);
    }

    /// The sender's ordering counters, for its reorder rings to share.
    pub(crate) fn ordering(&self) -> std::sync::Arc<super::ordering::OrderingCounters> {
        self.ordering.clone()
    }

    /// A plain copy of the ordering counters, for reporting.
    pub fn ordering_snapshot(&self) -> super::ordering::OrderingCountersSnapshot {
        self.ordering.snapshot()
    }

    /// A plain copy for reporting.
    pub fn snapshot(&self) -> SenderCountersSnapshot {
        let l = |c: &AtomicU64| c.load(Relaxed);
        SenderCountersSnapshot {
            passed: l(&self.passed),
            discarded: l(&self.discarded),
            out_of_order: l(&self.out_of_order),
            lost: l(&self.lost),
            rogue: l(&self.rogue),
            resets: l(&self.resets),
        }
    }
}

/// Serializable elimination counts of one sender (JSON names are stable;
/// `docs/status.md` maps each to 802.1CB's).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SenderCountersSnapshot {
    /// `frerCpsSeqRcvyPassedPackets`.
    pub passed: u64,
    /// `frerCpsSeqRcvyDiscardedPackets` (further underlays' copies only).
    pub discarded: u64,
    /// `frerCpsSeqRcvyOutOfOrderPackets` (late arrivals only).
    pub out_of_order: u64,
    /// `frerCpsSeqRcvyLostPackets`.
    pub lost: u64,
    /// `frerCpsSeqRcvyRoguePackets` (behind the window).
    pub rogue: u64,
    /// `frerCpsSeqRcvyResets`.
    pub resets: u64,
}
