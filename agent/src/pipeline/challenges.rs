//! The challenges a VON's two halves share (see `von_crypto::freshness`).
//!
//! The inbound half learns each peer's challenge from its keepalives; the
//! outbound half echoes it in the keepalives it sends that peer, and answers
//! a challenge it has not answered yet at once, not at the next round, so a
//! restarted peer accepts this member's traffic about one round trip after
//! its start. Touched per keepalive, never per data packet: a mutex is fine.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

use tokio::sync::Notify;
use von_crypto::MemberId;
use von_crypto::freshness::Challenge;

/// This start's challenge and the latest one heard from every peer.
#[derive(Debug)]
pub struct Challenges {
    own: Challenge,
    heard: Mutex<HashMap<MemberId, Heard>>,
    /// Some peer's challenge is not answered yet.
    pending: AtomicBool,
    /// Wakes the outbound loop to answer.
    wake: Notify,
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
            wake: Notify::new(),
        }
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
        self.wake.notify_one();
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

    /// Completes when a challenge waits for an answer (for the driver).
    pub async fn answer_wanted(&self) {
        self.wake.notified().await;
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
}
