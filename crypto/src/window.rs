//! The per-sender replay and duplicate window (RFC 6479).
//!
//! One window serves two purposes: anti-replay, and PRP-style duplicate
//! discard of the copy that arrives on the second underlay. It is split in two
//! steps so that work and trust are in the right order:
//!
//! 1. [`ReplayWindow::check`] (read-only) before the AEAD: the second copy of
//!    every doubled packet is dropped here and costs no decryption;
//! 2. [`ReplayWindow::mark`] only after the tag verified: a forged frame can
//!    never move the window.
//!
//! The bitmap is a ring of 64-bit words; advancing clears whole words, so each
//! packet costs O(1) (at most [`RING_WORDS`] word writes on a huge jump). The
//! window covers [`WINDOW_SIZE`] positions behind the highest sequence seen,
//! twice the ~8k of WireGuard, to absorb skew between two underlays.
//!
//! Keep one window per (sender, epoch): the counter restarts at every new key.
//!
//! The window also yields IEEE 802.1CB's loss figure at no extra cost per
//! packet: a position that leaves the window unmarked was never received on
//! any underlay and never can be, so [`ReplayWindow::mark`] reports how many
//! such positions the move pushed out ([`Marked::lost`]), counting their
//! zero bits with a few popcounts over the words it reads anyway. Positions
//! below the first sequence marked (the window's *floor*) are never counted:
//! nothing says the sender used them. A sequence of a newer incarnation
//! (`crate::sequence`) means the sender restarted under the same key: its
//! unfilled positions still in the window are counted lost at once, the
//! floor moves to the new sequence, and [`Marked::restarted`] says so.

use crate::sequence::incarnation_of;

/// Bits per ring word.
const WORD_BITS: u64 = 64;
/// log2 of [`WORD_BITS`].
const WORD_SHIFT: u32 = 6;
/// Words in the ring; a power of two so that indexing is a mask.
pub const RING_WORDS: usize = 256;
/// Positions behind the highest sequence that are still told apart. One word
/// of the ring is the one being filled, hence `RING_WORDS - 1`.
pub const WINDOW_SIZE: u64 = (RING_WORDS as u64 - 1) * WORD_BITS;

const _: () = assert!(RING_WORDS.is_power_of_two());
const _: () = assert!(WINDOW_SIZE >= 8192);

/// Why the window refuses a sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum Rejected {
    /// Already received: the second copy of a doubled packet, or a replay.
    #[error("sequence already received (duplicate copy or replay)")]
    Duplicate,
    /// Further behind the newest sequence than the window remembers.
    #[error("sequence is more than {WINDOW_SIZE} behind the newest one received")]
    TooOld,
}

/// What one accepted [`ReplayWindow::mark`] did to the window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Marked {
    /// Below the highest sequence marked before: it arrived out of order.
    pub late: bool,
    /// Unmarked positions at or above the floor that this mark pushed out of
    /// the window (or, on a restart, that were still in it): lost for good.
    pub lost: u64,
    /// The first sequence of a newer incarnation: the sender restarted.
    pub restarted: bool,
}

/// Which sequence numbers of one sender were received under one key.
#[derive(Clone)]
pub struct ReplayWindow {
    /// Highest sequence marked so far (0 before any).
    last: u64,
    /// Lowest position counted for loss: the first sequence marked, or the
    /// first of the sender's latest incarnation; `None` before any mark.
    floor: Option<u64>,
    ring: [u64; RING_WORDS],
}

impl ReplayWindow {
    /// An empty window: every sequence number is acceptable once.
    pub fn new() -> Self {
        ReplayWindow {
            last: 0,
            floor: None,
            ring: [0; RING_WORDS],
        }
    }

    /// Whether `seq` would be accepted, without changing anything. Call before
    /// opening the frame.
    pub fn check(&self, seq: u64) -> Result<(), Rejected> {
        if seq > self.last {
            return Ok(());
        }
        if self.last - seq > WINDOW_SIZE {
            return Err(Rejected::TooOld);
        }
        if self.ring[word_index(seq)] & bit(seq) != 0 {
            return Err(Rejected::Duplicate);
        }
        Ok(())
    }

    /// Records `seq` as received. Call only after the tag verified. Refuses
    /// (and records nothing) if another copy was marked since [`Self::check`].
    pub fn mark(&mut self, seq: u64) -> Result<Marked, Rejected> {
        let mut marked = Marked::default();
        if seq > self.last {
            match self.floor {
                None => self.floor = Some(seq),
                Some(_) if incarnation_of(seq) > incarnation_of(self.last) => {
                    marked.restarted = true;
                    marked.lost = self.unfilled();
                    self.floor = Some(seq);
                }
                Some(floor) => marked.lost = self.pushed_out(floor, seq),
            }
            let current = self.last >> WORD_SHIFT;
            let target = seq >> WORD_SHIFT;
            // Words between the old and the new newest one now describe new
            // positions: clear them, at most the whole ring.
            let advance = target - current;
            if advance >= RING_WORDS as u64 {
                self.ring = [0; RING_WORDS];
            } else {
                for i in 1..=advance {
                    self.ring[ring_slot(current + i)] = 0;
                }
            }
            self.last = seq;
        } else if self.last - seq > WINDOW_SIZE {
            return Err(Rejected::TooOld);
        } else {
            marked.late = seq < self.last;
        }
        let word = &mut self.ring[word_index(seq)];
        let bit = bit(seq);
        if *word & bit != 0 {
            return Err(Rejected::Duplicate);
        }
        *word |= bit;
        if self.floor.is_none() {
            // The very first mark with seq 0 (= last): it is the floor.
            self.floor = Some(seq);
        }
        Ok(marked)
    }

    /// Unmarked positions from the floor (or the window's tail, if higher)
    /// up to the newest: gaps that a late copy may still fill. O(ring).
    pub fn unfilled(&self) -> u64 {
        let Some(floor) = self.floor else { return 0 };
        let lo = floor.max(self.last.saturating_sub(WINDOW_SIZE));
        if lo > self.last {
            return 0;
        }
        (self.last - lo + 1) - self.count_marked(lo, self.last)
    }

    /// Unmarked positions that moving the newest sequence to `seq` (above
    /// the current one, same incarnation) pushes behind the window.
    fn pushed_out(&self, floor: u64, seq: u64) -> u64 {
        // In the window now: last - WINDOW_SIZE ..= last; after: seq - WINDOW_SIZE ..= seq.
        let lo = floor.max(self.last.saturating_sub(WINDOW_SIZE));
        let Some(hi) = seq.checked_sub(WINDOW_SIZE + 1).filter(|&hi| hi >= lo) else {
            return 0;
        };
        // Positions above `last` were never marked; only those at or below
        // it are in the ring as themselves.
        let marked = if lo <= self.last {
            self.count_marked(lo, hi.min(self.last))
        } else {
            0
        };
        (hi - lo + 1) - marked
    }

    /// Marked positions in `lo..=hi`, all inside the window
    /// (`last - WINDOW_SIZE <= lo <= hi <= last`).
    fn count_marked(&self, lo: u64, hi: u64) -> u64 {
        let (first, last_word) = (lo >> WORD_SHIFT, hi >> WORD_SHIFT);
        (first..=last_word)
            .map(|w| {
                let mut bits = self.ring[ring_slot(w)];
                if w == first {
                    bits &= u64::MAX << (lo & (WORD_BITS - 1));
                }
                if w == last_word {
                    bits &= u64::MAX >> (WORD_BITS - 1 - (hi & (WORD_BITS - 1)));
                }
                u64::from(bits.count_ones())
            })
            .sum()
    }

    /// Highest sequence number marked so far (0 before any).
    pub fn latest(&self) -> u64 {
        self.last
    }
}

impl Default for ReplayWindow {
    fn default() -> Self {
        ReplayWindow::new()
    }
}

impl core::fmt::Debug for ReplayWindow {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ReplayWindow")
            .field("latest", &self.last)
            .finish_non_exhaustive()
    }
}

fn ring_slot(word: u64) -> usize {
    // Masked to below RING_WORDS, so it fits a usize.
    (word & (RING_WORDS as u64 - 1)) as usize
}

fn word_index(seq: u64) -> usize {
    ring_slot(seq >> WORD_SHIFT)
}

fn bit(seq: u64) -> u64 {
    1 << (seq & (WORD_BITS - 1))
}
