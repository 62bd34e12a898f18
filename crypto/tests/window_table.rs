//! The replay window's numbered table test, case for case after wireguard-go's
//! `replay/replay_test.go` (itself the kernel's `selftest/counter.c`), with
//! the outcome named instead of a bool: accepted, duplicate, too old, or past
//! the hard limit. The receive path is modelled as the pipeline runs it:
//! sequence limit, read-only check, (tag verifies), mark.

use von_crypto::sequence::{self, COUNTER_BITS, MAX_INCARNATION, REJECT_AFTER_MESSAGES};
use von_crypto::window::{Rejected, ReplayWindow, WINDOW_SIZE};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Accepted,
    Duplicate,
    TooOld,
    PastLimit,
}
use Outcome::*;

/// One receiver: runs the numbered cases and names the first that fails.
struct Table {
    window: ReplayWindow,
    number: usize,
}

impl Table {
    fn new() -> Self {
        Table {
            window: ReplayWindow::new(),
            number: 0,
        }
    }

    fn receive(&mut self, seq: u64) -> Outcome {
        if sequence::check_receivable(seq).is_err() {
            return PastLimit;
        }
        let checked = self.window.check(seq);
        let marked = match checked {
            Ok(()) => self.window.mark(seq).map(|_| ()),
            Err(e) => Err(e),
        };
        assert_eq!(checked, marked, "check and mark disagree on {seq}");
        match marked {
            Ok(()) => Accepted,
            Err(Rejected::Duplicate) => Duplicate,
            Err(Rejected::TooOld) => TooOld,
        }
    }

    #[track_caller]
    fn t(&mut self, seq: u64, expected: Outcome) {
        self.number += 1;
        let got = self.receive(seq);
        assert_eq!(
            got, expected,
            "case {} failed: seq {seq} gave {got:?}, expected {expected:?}",
            self.number
        );
    }
}

const T_LIM: u64 = WINDOW_SIZE + 1;
const R: u64 = REJECT_AFTER_MESSAGES;

#[test]
fn numbered_cases() {
    let mut f = Table::new();
    f.t(0, Accepted); /*  1 */
    f.t(1, Accepted); /*  2 */
    f.t(1, Duplicate); /*  3 */
    f.t(9, Accepted); /*  4 */
    f.t(8, Accepted); /*  5 */
    f.t(7, Accepted); /*  6 */
    f.t(7, Duplicate); /*  7 */
    f.t(T_LIM, Accepted); /*  8 */
    f.t(T_LIM - 1, Accepted); /*  9 */
    f.t(T_LIM - 1, Duplicate); /* 10 */
    f.t(T_LIM - 2, Accepted); /* 11 */
    f.t(2, Accepted); /* 12 */
    f.t(2, Duplicate); /* 13 */
    f.t(T_LIM + 16, Accepted); /* 14 */
    f.t(3, TooOld); /* 15 */
    f.t(T_LIM + 16, Duplicate); /* 16 */
    f.t(T_LIM * 4, Accepted); /* 17 */
    f.t(T_LIM * 4 - (T_LIM - 1), Accepted); /* 18 */
    f.t(10, TooOld); /* 19 */
    f.t(T_LIM * 4 - T_LIM, TooOld); /* 20 */
    f.t(T_LIM * 4 - (T_LIM + 1), TooOld); /* 21 */
    f.t(T_LIM * 4 - (T_LIM - 2), Accepted); /* 22 */
    f.t(T_LIM * 4 + 1 - T_LIM, Duplicate); /* 23 */
    f.t(0, TooOld); /* 24 */
    f.t(R, PastLimit); /* 25 */
    f.t(R - 1, Accepted); /* 26 */
    f.t(R, PastLimit); /* 27 */
    f.t(R - 1, Duplicate); /* 28 */
    f.t(R - 2, Accepted); /* 29 */
    f.t(R + 1, PastLimit); /* 30 */
    f.t(R + 2, PastLimit); /* 31 */
    f.t(R - 2, Duplicate); /* 32 */
    f.t(R - 3, Accepted); /* 33 */
    f.t(0, TooOld); /* 34 */
    // Beyond the Go table: a restarted sender's next incarnation, and the top
    // of the sequence space, which must neither overflow nor be refused.
    f.t(1 << COUNTER_BITS, Accepted); /* 35 */
    f.t(R - 4, TooOld); /* 36 */
    let top = (u64::from(MAX_INCARNATION) << COUNTER_BITS) | (R - 1);
    f.t(top, Accepted); /* 37 */
    f.t(top, Duplicate); /* 38 */
    f.t(top - WINDOW_SIZE, Accepted); /* 39 */
    f.t(top - WINDOW_SIZE - 1, TooOld); /* 40 */
    f.t(top + 1, PastLimit); /* 41 */
}

#[test]
fn bulk_1_ascending_then_zero() {
    let mut f = Table::new();
    for i in 1..=WINDOW_SIZE {
        f.t(i, Accepted);
    }
    f.t(0, Accepted);
    f.t(0, Duplicate);
}

#[test]
fn bulk_2_ascending_then_one_past_the_window() {
    let mut f = Table::new();
    for i in 2..=WINDOW_SIZE + 1 {
        f.t(i, Accepted);
    }
    f.t(1, Accepted);
    f.t(0, TooOld);
}

#[test]
fn bulk_3_descending_from_the_edge() {
    let mut f = Table::new();
    for i in (1..=WINDOW_SIZE + 1).rev() {
        f.t(i, Accepted);
    }
}

#[test]
fn bulk_4_descending_then_too_old() {
    let mut f = Table::new();
    for i in (2..=WINDOW_SIZE + 2).rev() {
        f.t(i, Accepted);
    }
    f.t(0, TooOld);
}

#[test]
fn bulk_5_descending_then_advance() {
    let mut f = Table::new();
    for i in (1..=WINDOW_SIZE).rev() {
        f.t(i, Accepted);
    }
    f.t(WINDOW_SIZE + 1, Accepted);
    f.t(0, TooOld);
}

#[test]
fn bulk_6_descending_zero_then_advance() {
    let mut f = Table::new();
    for i in (1..=WINDOW_SIZE).rev() {
        f.t(i, Accepted);
    }
    f.t(0, Accepted);
    f.t(WINDOW_SIZE + 1, Accepted);
}

#[test]
fn check_never_moves_the_window() {
    // A forged frame far ahead passes the read-only check but its tag fails,
    // so it is never marked: older legitimate frames stay acceptable.
    let mut w = ReplayWindow::new();
    w.mark(100).unwrap();
    assert_eq!(w.check(100 + 10 * WINDOW_SIZE), Ok(()));
    assert_eq!(w.latest(), 100);
    assert_eq!(w.check(99), Ok(()));
    assert!(w.mark(99).is_ok());
}

#[test]
fn two_copies_checked_before_either_is_marked_yield_one() {
    // Copies from underlays A and B both pass the check before either is
    // opened; the second mark must refuse.
    let mut w = ReplayWindow::new();
    assert_eq!(w.check(5), Ok(()));
    assert_eq!(w.check(5), Ok(()));
    assert!(w.mark(5).is_ok());
    assert_eq!(w.mark(5), Err(Rejected::Duplicate));
}

#[test]
fn a_jump_clears_stale_bits_of_the_reused_ring_words() {
    // After a jump of exactly one ring lap, the ring words that held 0..64
    // describe new positions and must read as unseen.
    let mut w = ReplayWindow::new();
    for s in 0..64 {
        w.mark(s).unwrap();
    }
    let lap = WINDOW_SIZE + 64;
    w.mark(lap + 63).unwrap();
    for s in lap..lap + 63 {
        assert_eq!(w.check(s), Ok(()), "seq {s} reads as seen");
    }
}

#[test]
fn lost_counts_gaps_once_they_leave_the_window() {
    let mut w = ReplayWindow::new();
    // The first mark is the floor: 0..1000 were never claimed by the sender.
    assert_eq!(w.mark(1000).map(|m| m.lost), Ok(0));
    // 1001 and 1002 missing; 1004 arrives before 1003.
    assert_eq!(w.mark(1003).map(|m| (m.late, m.lost)), Ok((false, 0)));
    assert_eq!(w.mark(1004).map(|m| m.lost), Ok(0));
    assert_eq!(w.mark(1001).map(|m| m.late), Ok(true), "a late fill");
    assert_eq!(w.unfilled(), 1, "1002 may still come");
    // Move exactly far enough that 1002 is behind the window.
    let edge = 1002 + WINDOW_SIZE + 1;
    assert_eq!(w.mark(edge - 1).map(|m| m.lost), Ok(0), "1002 still inside");
    assert_eq!(w.check(1002), Ok(()));
    // Everything between 1004 and edge - 1 is missing as well.
    let m = w.mark(edge).unwrap();
    assert_eq!(m.lost, 1, "only 1002 left the window");
    assert_eq!(w.check(1002), Err(Rejected::TooOld));
    // In the window now: 1003 ..= edge, of which 1003, 1004, edge - 1 and edge arrived.
    assert_eq!(w.unfilled(), WINDOW_SIZE + 1 - 4);
    // A long jump pushes out every gap from 1003 on, and the whole stretch
    // of positions never seen: 10 windows' worth less the 4 received.
    let m = w.mark(edge + 10 * WINDOW_SIZE).unwrap();
    assert_eq!(m.lost, 10 * WINDOW_SIZE - 4);
}

#[test]
fn a_new_incarnation_is_a_restart_not_a_loss_of_billions() {
    let mut w = ReplayWindow::new();
    let first = 3 << COUNTER_BITS;
    w.mark(first + 1).unwrap();
    w.mark(first + 3).unwrap();
    let m = w.mark((4 << COUNTER_BITS) + 1).unwrap();
    assert_eq!(
        (m.restarted, m.lost),
        (true, 1),
        "only the gap at first + 2, still in the window, is lost"
    );
    let m = w.mark((4 << COUNTER_BITS) + 2).unwrap();
    assert_eq!((m.restarted, m.lost, m.late), (false, 0, false));
}
