//! The challenges a VON's two halves share (see `von_crypto::freshness`).
//!
//! The inbound half learns each peer's challenge from its keepalives; the
//! outbound half echoes it in the keepalives it sends that peer, and answers
//! a challenge it has not answered yet at once, not at the next round, so a
//! restarted peer accepts this member's traffic about one round trip after
//! its start. Touched per keepalive, never per data packet: a mutex is fine.
//!
//! "At once" crosses from the inbound task to the outbound one. The core
//! does not know the runtime: it keeps a flag and a [`std::task::Waker`]
//! slot, and [`Challenges::poll_answer_wanted`] is the poll the driver turns
//! into a future (`std::future::poll_fn` in the agent), as quinn-proto hands
//! wake-ups to quinn. No tokio type crosses this line.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::task::{Context, Poll, Waker};

use von_crypto::MemberId;
use von_crypto::freshness::Challenge;

use super::probes::Probes;

/// This start's challenge and the latest one heard from every peer.
#[derive(Debug)]
pub struct Challenges {
    own: Challenge,
    heard: Mutex<HashMap<MemberId, Heard>>,
    /// Some peer's challenge is not answered yet.
    pending: AtomicBool,
    /// The outbound driver waiting in [`Challenges::poll_answer_wanted`].
    waiter: Mutex<Option<Waker>>,
    /// Path-health timing, shared the same way (`probes.rs`).
    probes: Probes,
}

/// The latest challenge heard from one peer.
#[derive(Debug, Clone, Copy)]
struct Heard {
    /// The peer's incarnation when it sent it: a challenge is drawn once per
    /// start, so a keepalive of an older incarnation (a replay) never
    /// replaces a newer one.
    incarnation: u32,
    challenge: Challenge,
    answered: bool,
}

impl Challenges {
    /// The board of a start whose own challenge is `own`.
    pub fn new(own: Challenge) -> Self {
        Challenges {
            own,
            heard: Mutex::new(HashMap::new()),
            pending: AtomicBool::new(false),
            waiter: Mutex::new(None),
            probes: Probes::default(),
        }
    }

    /// The keepalive timing both halves share.
    pub fn probes(&self) -> &Probes {
        &self.probes
    }

    /// This start's challenge.
    pub fn own(&self) -> Challenge {
        self.own
    }

    /// An authenticated keepalive of `peer`'s `incarnation` carried
    /// `challenge`. A new one is answered at once.
    pub fn heard(&self, peer: MemberId, incarnation: u32, challenge: Challenge) {
        let mut heard = self.lock();
        match heard.get(&peer) {
            Some(h) if h.incarnation > incarnation => return,
            Some(h) if h.challenge == challenge => return,
            _ => {}
        }
        heard.insert(
            peer,
            Heard {
                incarnation,
                challenge,
                answered: false,
            },
        );
        drop(heard);
        self.pending.store(true, Relaxed);
        let waiter = self.waiter.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(w) = waiter {
            w.wake();
        }
    }

    /// The challenge to echo to `peer`, if any was heard.
    pub fn echo_for(&self, peer: MemberId) -> Option<Challenge> {
        self.lock().get(&peer).map(|h| h.challenge)
    }

    /// Whether some challenge waits for an answer.
    pub fn answer_pending(&self) -> bool {
        self.pending.load(Relaxed)
    }

    /// Takes the peers whose challenge waits for an answer, into `out`.
    pub fn take_pending(&self, out: &mut Vec<MemberId>) {
        if !self.pending.swap(false, Relaxed) {
            return;
        }
        for (peer, h) in self.lock().iter_mut() {
            if !h.answered {
                h.answered = true;
                out.push(*peer);
            }
        }
    }

    /// `Ready` when a challenge waits for an answer; else `Pending`, and
    /// `cx`'s waker is woken by the next [`Challenges::heard`] that wants one.
    /// Only the latest caller's waker is kept (one outbound driver per VON).
    pub fn poll_answer_wanted(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.answer_pending() {
            return Poll::Ready(());
        }
        let mut waiter = self.waiter.lock().unwrap_or_else(|p| p.into_inner());
        *waiter = Some(cx.waker().clone());
        drop(waiter);
        // A `heard` between the check and the store set the flag and found
        // no waker: look again so that wake-up is not lost.
        if self.answer_pending() {
            return Poll::Ready(());
        }
        Poll::Pending
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<MemberId, Heard>> {
        // Nothing can be left half-written: every update is one insert.
        self.heard.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_older_incarnation_never_replaces_a_newer_challenge() {
        let c = Challenges::new(Challenge([0; 16]));
        let (p, old, new) = (MemberId(2), Challenge([1; 16]), Challenge([2; 16]));
        c.heard(p, 5, new);
        let mut out = Vec::new();
        c.take_pending(&mut out);
        assert_eq!(out, vec![p]);
        c.heard(p, 4, old);
        assert_eq!(c.echo_for(p), Some(new));
        assert!(
            !c.answer_pending(),
            "a replayed old challenge wants nothing"
        );
        c.heard(p, 5, new);
        assert!(!c.answer_pending(), "the same challenge is answered once");
        c.heard(p, 6, old);
        assert_eq!(c.echo_for(p), Some(old));
        out.clear();
        c.take_pending(&mut out);
        assert_eq!(out, vec![p]);
    }

    #[test]
    fn a_new_challenge_wakes_the_waiting_driver_once() {
        use std::sync::Arc;
        use std::sync::atomic::AtomicUsize;
        use std::task::Wake;

        struct Count(AtomicUsize);
        impl Wake for Count {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, Relaxed);
            }
        }
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        let c = Challenges::new(Challenge([0; 16]));
        assert!(c.poll_answer_wanted(&mut cx).is_pending());
        c.heard(MemberId(2), 1, Challenge([1; 16]));
        assert_eq!(count.0.load(Relaxed), 1, "heard wakes the waiter");
        assert!(c.poll_answer_wanted(&mut cx).is_ready());
        let mut out = Vec::new();
        c.take_pending(&mut out);
        assert!(c.poll_answer_wanted(&mut cx).is_pending(), "answered");
        c.heard(MemberId(2), 1, Challenge([1; 16]));
        assert_eq!(count.0.load(Relaxed), 1, "the same challenge wakes nobody");
    }
}
