//! Which underlay(s) delivered each sequence number still inside the window.
//!
//! The replay window answers "was this sequence accepted already?". With
//! several underlays that is not enough for honest counters: the copy of a
//! frame that arrives on *another* underlay after the first was accepted is
//! the expected PRP duplicate, while a frame already seen on the *same*
//! underlay it arrives on has been captured and resent — a replay. This ring
//! remembers, per window position, a "seen on" mask with one bit per
//! underlay, so that a clean run adds up exactly (delivered = inner packets,
//! duplicates = (underlays − 1) × inner packets, replays = 0).
//!
//! Each slot holds `(seq mod 2^28) << 4 | mask`. Slot `seq % SLOTS` can only
//! have been overwritten by a later accepted sequence `seq + k·SLOTS`, which
//! would have pushed `seq` out of a window no wider than `SLOTS`, so a
//! sequence the window calls a duplicate always finds its own slot.

use super::action::{MAX_UNDERLAYS, Underlay};

/// Slots in the ring; a power of two at least as wide as the replay window.
pub const SLOTS: usize = 16_384;

// A duplicate lies at most WINDOW_SIZE behind the newest sequence; see the module doc.
const _: () = assert!(SLOTS.is_power_of_two() && SLOTS as u64 > von_crypto::window::WINDOW_SIZE);

const MASK_BITS: u32 = MAX_UNDERLAYS as u32;
const MASK: u32 = (1 << MASK_BITS) - 1;

/// How a frame the window already accepted is classified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// First time on this underlay: another copy (expected with PRP).
    OtherUnderlay,
    /// Already seen on this same underlay: a replay.
    SameUnderlay,
}

/// Per-(sender, epoch) ring of "seen on" masks.
#[derive(Clone)]
pub struct SeenOn {
    slots: Box<[u32]>,
}

impl Default for SeenOn {
    fn default() -> Self {
        SeenOn {
            slots: vec![0; SLOTS].into_boxed_slice(),
        }
    }
}

impl std::fmt::Debug for SeenOn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeenOn").finish_non_exhaustive()
    }
}

impl SeenOn {
    /// Records that `seq` was accepted (tag verified, window marked) on `underlay`.
    pub fn accepted(&mut self, seq: u64, underlay: Underlay) {
        self.slots[slot(seq)] = tag(seq) | u32::from(underlay.bit());
    }

    /// Classifies a frame the window has already accepted, and remembers that
    /// it has now also been seen on `underlay`.
    pub fn again(&mut self, seq: u64, underlay: Underlay) -> Seen {
        let entry = &mut self.slots[slot(seq)];
        if *entry & !MASK != tag(seq) {
            // Cannot happen while SLOTS >= the window (see the module doc);
            // the window has seen this sequence, so the safe answer is replay.
            return Seen::SameUnderlay;
        }
        let bit = u32::from(underlay.bit());
        if *entry & bit != 0 {
            Seen::SameUnderlay
        } else {
            *entry |= bit;
            Seen::OtherUnderlay
        }
    }
}

fn slot(seq: u64) -> usize {
    (seq % SLOTS as u64) as usize
}

fn tag(seq: u64) -> u32 {
    ((seq as u32) & (u32::MAX >> MASK_BITS)) << MASK_BITS
}

#[cfg(test)]
mod tests {
    use super::*;
    const A: Underlay = Underlay::FIRST;
    const B: Underlay = match Underlay::at(1) {
        Some(u) => u,
        None => unreachable!(),
    };

    #[test]
    fn table() {
        // (action, seq, underlay, expected) in order, like a window's table test.
        let mut s = SeenOn::default();
        s.accepted(1, A);
        assert_eq!(s.again(1, B), Seen::OtherUnderlay, "PRP duplicate");
        assert_eq!(s.again(1, B), Seen::SameUnderlay, "resent on B");
        assert_eq!(s.again(1, A), Seen::SameUnderlay, "resent on A");
        s.accepted(2, B);
        assert_eq!(s.again(2, B), Seen::SameUnderlay, "replay on B first");
        assert_eq!(s.again(2, A), Seen::OtherUnderlay);
        assert_eq!(s.again(2, A), Seen::SameUnderlay);
    }

    #[test]
    fn slots_are_reused_by_later_sequences() {
        let mut s = SeenOn::default();
        s.accepted(5, A);
        let later = 5 + SLOTS as u64;
        s.accepted(later, B);
        assert_eq!(s.again(later, A), Seen::OtherUnderlay);
        // The old sequence lost its slot; it is reported as a replay, never a duplicate.
        assert_eq!(s.again(5, B), Seen::SameUnderlay);
    }
}
