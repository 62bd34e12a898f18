//! Forwarding the data plane's "sequence limit near" to the key manager.
//!
//! The outbound half only records, in a plain field, the latest send epoch
//! whose counter passed `REKEY_AFTER_MESSAGES` (`Outbound::rekey_requested`).
//! The driver's outbound loop polls that once per wake-up (a batch, a queue
//! release or a keepalive round) through [`NearLimit::poll`], which sends
//! each epoch to the member session at most once: packets never touch the
//! channel, and a counter that stays past the mark does not flood the key
//! manager. An epoch at or below one already reported is never sent again
//! (epochs only grow), so an old flag left over after the rekey is silent.

use tokio::sync::mpsc;
use tracing::info;
use von_crypto::Epoch;

/// One VON's reporter, owned by its outbound loop.
#[derive(Debug)]
pub struct NearLimit {
    tx: mpsc::UnboundedSender<Epoch>,
    reported: Option<Epoch>,
}

impl NearLimit {
    /// A reporter sending into the member session's `near_limit` channel.
    pub fn new(tx: mpsc::UnboundedSender<Epoch>) -> Self {
        NearLimit { tx, reported: None }
    }

    /// Reports `requested` (from `Outbound::rekey_requested`) if it names an
    /// epoch above every one reported before. Returns whether it sent.
    pub fn poll(&mut self, requested: Option<Epoch>) -> bool {
        let Some(epoch) = requested else {
            return false;
        };
        if self.reported.is_some_and(|r| epoch.0 <= r.0) {
            return false;
        }
        // Remember it even if the session is gone (agent stopping): one
        // attempt per epoch, never a retry per packet.
        self.reported = Some(epoch);
        info!(
            epoch = epoch.0,
            "send counter past the rekey point; asking the key manager for a new epoch"
        );
        self.tx.send(epoch).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_epoch_is_reported_once_and_never_an_older_one() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut near = NearLimit::new(tx);
        // Table: what the outbound half says → whether it is sent.
        let steps = [
            (None, false),
            (Some(Epoch(3)), true),
            (Some(Epoch(3)), false), // still past the mark: no repeat
            (None, false),
            (Some(Epoch(2)), false), // older than reported
            (Some(Epoch(4)), true),  // the next key wore out as well
            (Some(Epoch(4)), false),
        ];
        for (i, (requested, sent)) in steps.into_iter().enumerate() {
            assert_eq!(near.poll(requested), sent, "step {i}: {requested:?}");
        }
        assert_eq!(rx.try_recv().ok(), Some(Epoch(3)));
        assert_eq!(rx.try_recv().ok(), Some(Epoch(4)));
        assert!(rx.try_recv().is_err(), "nothing else was sent");
    }

    #[test]
    fn a_closed_session_is_not_retried() {
        let (tx, rx) = mpsc::unbounded_channel();
        drop(rx);
        let mut near = NearLimit::new(tx);
        assert!(!near.poll(Some(Epoch(5))));
        assert!(!near.poll(Some(Epoch(5))));
    }
}
