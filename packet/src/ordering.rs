//! Optional in-order delivery per sender: a packet ordering function after
//! DetNet's POF (RFC 9550), configured per VON as `ordering = "20ms"`.
//!
//! Frame elimination (`elimination.rs`) delivers the *first* copy of each
//! sequence number at once, whichever underlay it came on. With skewed paths
//! (underlay A 50 ms, B 20 ms with loss on B) a frame lost on B arrives late
//! on A, after its successors came on B: out of order. Most traffic does not
//! care; some control protocols assume FIFO. This stage holds a frame that
//! arrives ahead of a gap until the gap fills, or until it is clear the gap
//! will never fill, or at most the configured bound.
//!
//! State per (sender, epoch) receive window, allocated once when that window
//! opens (never per packet): the next sequence to deliver, [`SLOTS`] slots
//! indexed by `seq % SLOTS`, each with room for one inner packet of the
//! VON's MTU, one spare slot for the frame that overflows the ring, and per
//! underlay the highest sequence seen on it and when.
//!
//! A frame with sequence `s`, next expected `n`:
//!
//! - `s == n`: delivered at once (`in_order`); then every held frame that is
//!   now contiguous follows (`reordered`).
//! - `s > n`, `s < n + SLOTS`: copied into its slot and held.
//! - `s >= n + SLOTS`: the ring is full: the frames below `s + 1 - SLOTS` are
//!   released early (`released_on_overflow`) and their gaps given up.
//! - `s < n`: its gap was given up already; delivering it now would break
//!   FIFO, so it is dropped and counted (`late`), as RFC 9550's POF does.
//!
//! Sequence numbers are per *sender*, shared by all its destinations and by
//! its keepalives, so a receiver sees gaps that will never fill: frames the
//! sender addressed to other members. RFC 9550's POF would hold every frame
//! behind such a gap for the full bound. Here a gap is given up at once when
//! it is *passed on every live underlay*: each underlay is (nearly) FIFO, so
//! once every underlay whose link to this sender is up (`keepalive.rs`:
//! heard within 2.5 s) has carried a later sequence, the missing one is
//! either lost everywhere or not for us.
//! The wait behind such a gap is the skew between the underlays, not the
//! bound. The bound is the backstop (an underlay that went quiet, or
//! reordering inside one underlay): once the oldest held frame has waited
//! it, the gaps before it are given up (`released_on_timeout`).
//! Keepalives fill their own positions (nothing is delivered).
//!
//! Latency added: at most the bound for any frame (its own wait is checked
//! against the bound, early releases only shorten it). Memory per (sender,
//! epoch): `(SLOTS + 1) × MTU + SLOTS × 32` bytes (a slot's bookkeeping is
//! at most 32 bytes), 0.75 MB at the default MTU 1432; only when ordering
//! is configured.

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::action::{MAX_UNDERLAYS, Underlay};
use super::counters::bump;

/// Slots of the reorder ring per (sender, epoch): frames at most this far
/// ahead of the next expected one are held.
pub const SLOTS: usize = 512;
/// The largest `ordering` bound: beyond a second, holding traffic back does
/// more harm than the reordering it repairs.
pub const MAX_ORDERING: Duration = Duration::from_secs(1);

/// How a VON orders: the bound on the wait, and the largest inner packet a
/// slot holds (the VON's MTU when the window opens).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrderingConfig {
    /// Longest a frame is held waiting for a gap before it.
    pub bound: Duration,
    /// Bytes per slot; a larger packet cannot be held (see [`Reorder`]).
    pub slot_len: usize,
}

/// One sender's ordering counters (all its epochs), shared with status.
#[derive(Debug, Default)]
pub struct OrderingCounters {
    in_order: AtomicU64,
    reordered: AtomicU64,
    released_on_timeout: AtomicU64,
    released_on_overflow: AtomicU64,
    late: AtomicU64,
    flushed: AtomicU64,
    held: AtomicU64,
}

impl OrderingCounters {
    /// A plain copy for reporting.
    pub fn snapshot(&self) -> OrderingCountersSnapshot {
        let l = |c: &AtomicU64| c.load(Relaxed);
        OrderingCountersSnapshot {
            in_order: l(&self.in_order),
            reordered: l(&self.reordered),
            released_on_timeout: l(&self.released_on_timeout),
            released_on_overflow: l(&self.released_on_overflow),
            late: l(&self.late),
            flushed: l(&self.flushed),
            held: l(&self.held),
        }
    }
}

/// Serializable ordering counts of one sender (JSON names are stable;
/// `docs/status.md`). All zero while the VON has no `ordering`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct OrderingCountersSnapshot {
    /// Delivered at once: nothing before it was missing.
    pub in_order: u64,
    /// Held, then delivered in order once the gaps before it filled or were
    /// passed on every live underlay.
    pub reordered: u64,
    /// Held, then delivered when the oldest held frame had waited the bound
    /// (a gap given up).
    pub released_on_timeout: u64,
    /// Held, then delivered early because the ring was full, or delivered
    /// unordered because it was larger than a slot.
    pub released_on_overflow: u64,
    /// Arrived after its gap was given up: dropped (FIFO kept).
    pub late: u64,
    /// Held when its window was dropped (sender left the view, epoch
    /// retired): dropped.
    pub flushed: u64,
    /// Held right now (a gauge).
    pub held: u64,
}

/// What the stage decided for one data frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accept {
    /// Deliver it now; then drain [`Reorder::release`].
    Deliver,
    /// Copied into the ring; it leaves through [`Reorder::release`].
    Held,
    /// Behind the delivered position: drop it.
    Late,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Empty,
    /// A keepalive's position: nothing to deliver.
    Filler,
    Data {
        len: usize,
        at: Instant,
    },
}

/// Why the last gap was given up; the held frames after it count under it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reason {
    InOrder,
    Timeout,
    Overflow,
}

/// The reorder state of one (sender, epoch).
pub struct Reorder {
    bound: Duration,
    slot_len: usize,
    /// Next sequence to deliver; `None` before the first frame.
    next: Option<u64>,
    slots: Box<[Slot]>,
    /// `SLOTS + 1` packets of `slot_len`; the last is the spare.
    data: Box<[u8]>,
    /// The frame that overflowed the ring, in the spare slot.
    spare: Option<(u64, Slot)>,
    held: usize,
    /// No held frame's deadline is earlier (may be early: re-checked).
    due: Option<Instant>,
    /// Per underlay: the highest sequence it carried, and when.
    high: [Option<(u64, Instant)>; MAX_UNDERLAYS],
    reason: Reason,
    counters: std::sync::Arc<OrderingCounters>,
}

impl std::fmt::Debug for Reorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reorder")
            .field("next", &self.next)
            .field("held", &self.held)
            .finish_non_exhaustive()
    }
}

impl Reorder {
    /// The ring for one (sender, epoch); allocates its storage now.
    pub fn new(config: OrderingConfig, counters: std::sync::Arc<OrderingCounters>) -> Self {
        Reorder {
            bound: config.bound,
            slot_len: config.slot_len,
            next: None,
            slots: vec![Slot::Empty; SLOTS].into_boxed_slice(),
            data: vec![0; (SLOTS + 1) * config.slot_len].into_boxed_slice(),
            spare: None,
            held: 0,
            due: None,
            high: [None; MAX_UNDERLAYS],
            reason: Reason::InOrder,
            counters,
        }
    }

    /// Frames held now.
    pub fn held(&self) -> usize {
        self.held + usize::from(self.spare.is_some())
    }

    /// A copy of `seq` arrived on `underlay` at `now` (any copy whose
    /// sequence the window accepted, first or further): the underlay has
    /// passed every sequence below it.
    pub fn observe(&mut self, now: Instant, underlay: Underlay, seq: u64) {
        let h = &mut self.high[underlay.index()];
        match h {
            Some((s, at)) if *s >= seq => *at = now,
            _ => *h = Some((seq, now)),
        }
    }

    /// A keepalive took `seq`: its position is filled with nothing.
    pub fn filler(&mut self, now: Instant, underlay: Underlay, seq: u64) {
        self.observe(now, underlay, seq);
        let next = *self.next.get_or_insert(seq);
        if seq == next && self.spare.is_none() {
            self.next = Some(next + 1);
            self.reason = Reason::InOrder;
        } else if seq > next && seq - next < SLOTS as u64 {
            let slot = &mut self.slots[slot(seq)];
            if *slot == Slot::Empty {
                *slot = Slot::Filler;
            }
        }
        // Behind: nothing to do. Beyond the ring: its position stays a gap,
        // given up once every live underlay passed it.
    }

    /// Data frame `seq` with inner packet `packet` arrived on `underlay`.
    pub fn accept(&mut self, now: Instant, underlay: Underlay, seq: u64, packet: &[u8]) -> Accept {
        self.observe(now, underlay, seq);
        if self.spare.is_some() {
            // The driver did not drain the last overflow: do it now, the
            // released frames are lost to it (`flushed`).
            while let Some(_range) = self.release(now, 0) {
                bump(&self.counters.flushed);
            }
        }
        let next = *self.next.get_or_insert(seq);
        if seq < next {
            bump(&self.counters.late);
            return Accept::Late;
        }
        if seq == next {
            self.next = Some(next + 1);
            self.reason = Reason::InOrder;
            bump(&self.counters.in_order);
            return Accept::Deliver;
        }
        if packet.len() > self.slot_len {
            // Larger than a slot (the MTU rose since the window opened):
            // it cannot wait. Deliver it and give up what it overtook.
            bump(&self.counters.released_on_overflow);
            return Accept::Deliver;
        }
        let at = Slot::Data {
            len: packet.len(),
            at: now,
        };
        let index = if seq - next >= SLOTS as u64 {
            self.spare = Some((seq, at));
            SLOTS
        } else {
            if self.slots[slot(seq)] != Slot::Empty {
                // Cannot happen: the window accepts each sequence once.
                return Accept::Late;
            }
            self.slots[slot(seq)] = at;
            self.held += 1;
            slot(seq)
        };
        let start = index * self.slot_len;
        self.data[start..start + packet.len()].copy_from_slice(packet);
        let deadline = now + self.bound;
        self.due = Some(self.due.map_or(deadline, |d| d.min(deadline)));
        self.counters.held.fetch_add(1, Relaxed);
        Accept::Held
    }

    /// The next held frame that may be delivered at `now`, as a range of
    /// [`Reorder::packet`]; `None` when the next gap must still wait.
    /// `up` has a bit ([`Underlay::bit`]) for each underlay whose link to
    /// this sender is up (`keepalive.rs`): only those may still fill a gap.
    pub fn release(&mut self, now: Instant, up: u8) -> Option<Range<usize>> {
        loop {
            let next = self.next?;
            if let Some((seq, spare)) = self.spare {
                if seq - next >= SLOTS as u64 {
                    if self.held == 0 {
                        // Nothing held: jump (a restart jumps by 2^32), and
                        // forget fillers of positions left behind.
                        self.next = Some(seq + 1 - SLOTS as u64);
                        self.slots.fill(Slot::Empty);
                        self.reason = Reason::Overflow;
                    } else if let Some(r) = self.step(next, Reason::Overflow) {
                        return Some(r);
                    }
                    continue;
                }
                // It fits now: move it from the spare into its slot.
                let (from, to) = (SLOTS * self.slot_len, slot(seq) * self.slot_len);
                self.data.copy_within(from..from + self.slot_len, to);
                self.slots[slot(seq)] = spare;
                self.held += 1;
                self.spare = None;
                continue;
            }
            if self.held == 0 {
                self.due = None;
                // Fillers at the head need no release; step over them.
                while self.slots[slot(self.next?)] == Slot::Filler {
                    self.slots[slot(self.next?)] = Slot::Empty;
                    self.next = Some(self.next? + 1);
                }
                return None;
            }
            if self.slots[slot(next)] == Slot::Empty {
                // A gap with frames waiting behind it.
                if self.passed_everywhere(up, next) {
                    self.reason = Reason::InOrder;
                } else if self.waited_the_bound(now) {
                    self.reason = Reason::Timeout;
                } else {
                    return None;
                }
            }
            let reason = self.reason;
            if let Some(r) = self.step(next, reason) {
                return Some(r);
            }
        }
    }

    /// The bytes [`Reorder::release`] pointed at.
    pub fn packet(&self, range: Range<usize>) -> &[u8] {
        &self.data[range]
    }

    /// When a held frame will have waited the bound; `None` if none is held.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.due.filter(|_| self.held() > 0)
    }

    /// The window is dropped: what it holds can no longer be delivered.
    pub fn flush(&mut self) {
        let n = self.held();
        self.counters.flushed.fetch_add(n as u64, Relaxed);
        self.counters.held.fetch_sub(n as u64, Relaxed);
        self.held = 0;
        self.spare = None;
        self.slots.fill(Slot::Empty);
    }

    /// Moves past position `next`: a held frame there is released (counted
    /// under `reason`), a filler or a gap is stepped over.
    fn step(&mut self, next: u64, reason: Reason) -> Option<Range<usize>> {
        let i = slot(next);
        let s = std::mem::replace(&mut self.slots[i], Slot::Empty);
        self.next = Some(next + 1);
        match s {
            Slot::Data { len, .. } => {
                self.held -= 1;
                self.counters.held.fetch_sub(1, Relaxed);
                bump(match reason {
                    Reason::InOrder => &self.counters.reordered,
                    Reason::Timeout => &self.counters.released_on_timeout,
                    Reason::Overflow => &self.counters.released_on_overflow,
                });
                if reason == Reason::Overflow {
                    self.reason = Reason::Overflow;
                }
                Some(i * self.slot_len..i * self.slot_len + len)
            }
            Slot::Empty | Slot::Filler => {
                if reason == Reason::Overflow {
                    self.reason = Reason::Overflow;
                }
                None
            }
        }
    }

    /// Whether every underlay whose link is up (bits of `up`) has carried
    /// a sequence above `gap` (so, being FIFO, it will not bring `gap`).
    /// An up link this ring has not heard yet may still bring it.
    fn passed_everywhere(&self, up: u8, gap: u64) -> bool {
        self.high
            .iter()
            .enumerate()
            .all(|(i, high)| up & (1 << i) == 0 || high.is_some_and(|(h, _)| h > gap))
    }

    /// Whether the oldest held frame has waited the bound at `now`; refreshes
    /// the cached deadline when it was early.
    fn waited_the_bound(&mut self, now: Instant) -> bool {
        if self.due.is_none_or(|d| now < d) {
            return false;
        }
        let oldest = self
            .slots
            .iter()
            .filter_map(|s| match s {
                Slot::Data { at, .. } => Some(*at),
                _ => None,
            })
            .min();
        self.due = oldest.map(|at| at + self.bound);
        self.due.is_some_and(|d| now >= d)
    }
}

fn slot(seq: u64) -> usize {
    (seq % SLOTS as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    const A: Underlay = Underlay::FIRST;
    const B: Underlay = match Underlay::at(1) {
        Some(u) => u,
        None => unreachable!(),
    };
    const BOTH: u8 = 0b11;
    const MS: Duration = Duration::from_millis(1);

    fn ring() -> (Reorder, Arc<OrderingCounters>) {
        let c = Arc::new(OrderingCounters::default());
        let config = OrderingConfig {
            bound: 20 * MS,
            slot_len: 16,
        };
        (Reorder::new(config, c.clone()), c)
    }

    fn drain(r: &mut Reorder, now: Instant, up: u8) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some(range) = r.release(now, up) {
            out.push(r.packet(range)[0]);
        }
        out
    }

    #[test]
    fn a_gap_filled_late_releases_in_order() {
        let (mut r, c) = ring();
        let t = Instant::now();
        assert_eq!(r.accept(t, B, 10, &[10]), Accept::Deliver);
        assert_eq!(r.accept(t, B, 12, &[12]), Accept::Held);
        assert_eq!(r.accept(t, B, 13, &[13]), Accept::Held);
        // A has not passed 11 yet: wait.
        assert_eq!(drain(&mut r, t, BOTH), Vec::<u8>::new());
        assert_eq!(r.accept(t + 5 * MS, A, 11, &[11]), Accept::Deliver);
        assert_eq!(drain(&mut r, t + 5 * MS, BOTH), vec![12, 13]);
        let s = c.snapshot();
        assert_eq!((s.in_order, s.reordered, s.held), (2, 2, 0));
    }

    #[test]
    fn a_gap_passed_on_every_up_underlay_is_given_up_at_once() {
        let (mut r, c) = ring();
        let t = Instant::now();
        r.accept(t, A, 1, &[1]);
        // 2 went to another member: 3 comes on both underlays.
        assert_eq!(r.accept(t, A, 3, &[3]), Accept::Held);
        assert_eq!(drain(&mut r, t, BOTH), Vec::<u8>::new(), "B may bring 2");
        r.observe(t, B, 3);
        assert_eq!(drain(&mut r, t, BOTH), vec![3]);
        // With B down, A's word is enough.
        assert_eq!(r.accept(t, A, 5, &[5]), Accept::Held);
        assert_eq!(drain(&mut r, t, A.bit()), vec![5]);
        assert_eq!(c.snapshot().reordered, 2);
        assert_eq!(c.snapshot().released_on_timeout, 0);
    }

    #[test]
    fn the_bound_gives_up_a_gap_and_a_late_frame_is_dropped() {
        let (mut r, c) = ring();
        let t = Instant::now();
        r.accept(t, A, 1, &[1]);
        r.accept(t, A, 3, &[3]);
        r.accept(t + 5 * MS, A, 4, &[4]);
        assert_eq!(r.poll_timeout(), Some(t + 20 * MS));
        assert_eq!(drain(&mut r, t + 19 * MS, BOTH), Vec::<u8>::new());
        assert_eq!(drain(&mut r, t + 20 * MS, BOTH), vec![3, 4]);
        assert_eq!(r.accept(t + 21 * MS, B, 2, &[2]), Accept::Late);
        let s = c.snapshot();
        assert_eq!((s.released_on_timeout, s.late, s.held), (2, 1, 0));
        assert_eq!(r.poll_timeout(), None);
    }

    #[test]
    fn overflow_releases_early_in_order_then_holds_the_newcomer() {
        let (mut r, c) = ring();
        let t = Instant::now();
        r.accept(t, A, 0, &[0]);
        r.accept(t, A, 2, &[2]);
        r.accept(t, A, 3, &[3]);
        // 1 is missing; 2 + SLOTS does not fit: 2 and 3 leave, 1 is given up.
        let far = 2 + SLOTS as u64;
        assert_eq!(r.accept(t, A, far, &[9]), Accept::Held);
        assert_eq!(drain(&mut r, t, BOTH), vec![2, 3]);
        assert_eq!(r.held(), 1, "the newcomer waits behind the new gap");
        assert_eq!(r.accept(t, A, 1, &[1]), Accept::Late);
        let s = c.snapshot();
        assert_eq!((s.released_on_overflow, s.late, s.held), (2, 1, 1));
    }

    #[test]
    fn a_restart_jump_with_nothing_held_forgets_old_fillers() {
        let (mut r, _) = ring();
        let t = Instant::now();
        r.accept(t, A, 5, &[5]);
        r.filler(t, B, 7);
        let restarted = (2u64 << 32) + 7;
        assert_eq!(r.accept(t, A, restarted, &[7]), Accept::Held);
        assert_eq!(drain(&mut r, t, A.bit()), vec![7]);
        assert_eq!(r.accept(t, A, restarted + 1, &[8]), Accept::Deliver);
    }

    #[test]
    fn keepalives_fill_their_positions() {
        let (mut r, c) = ring();
        let t = Instant::now();
        r.accept(t, A, 1, &[1]);
        r.accept(t, A, 3, &[3]);
        r.filler(t, B, 2);
        assert_eq!(drain(&mut r, t, BOTH), vec![3]);
        r.filler(t, B, 4);
        assert_eq!(r.accept(t, A, 5, &[5]), Accept::Deliver);
        assert_eq!(c.snapshot().in_order, 2);
    }
}
