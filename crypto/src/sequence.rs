//! Sequence numbers that are never reused under one key, across crashes too.
//!
//! The nonce is `sender ‖ seq` with no random part, so reusing a sequence under
//! one key would repeat a nonce and break the AEAD. The 64-bit sequence is split:
//!
//! ```text
//!  63            34 33                                   0
//! +----------------+--------------------------------------+
//! | incarnation    | counter (restarts at 0 per epoch key) |
//! | (30 bits)      | (34 bits, hard limit REJECT_AFTER)    |
//! +----------------+--------------------------------------+
//! ```
//!
//! The incarnation is the second of the sender's start, counted from
//! [`INCARNATION_EPOCH_UNIX`] (the agent's `state.rs` reads the clock, keeps
//! the last one on disk only to refuse a clock that went back, and hands it
//! to [`SendCounter::new`]). A restarted sender therefore starts above every
//! sequence it used before under any key it may still hold, even when its
//! state directory was lost or restored from an old copy. This module is the pure logic; the reasoning and
//! the agent's duties are in `docs/crypto.md`.

/// Bits of the sequence that hold the counter.
pub const COUNTER_BITS: u32 = 34;
/// Bits of the sequence that hold the incarnation.
pub const INCARNATION_BITS: u32 = 64 - COUNTER_BITS;
/// Mask of the counter bits.
pub const COUNTER_MASK: u64 = (1 << COUNTER_BITS) - 1;
/// Largest incarnation that fits; the agent must not start past it.
pub const MAX_INCARNATION: u32 = (1 << INCARNATION_BITS) - 1;
/// Unix time of incarnation 0: 2025-01-01T00:00:00Z. One incarnation per
/// second lasts 2^30 s, until 2059-01.
pub const INCARNATION_EPOCH_UNIX: u64 = 1_735_689_600;
/// Messages after which a sender asks the key manager for a new epoch (2^31).
pub const REKEY_AFTER_MESSAGES: u64 = 1 << 31;
/// Messages after which a sender stops sending, and receivers refuse, under one
/// key (2^33): 4 times the rekey point, so the key manager has ample time.
/// Below the counter's 2^34 values, so receivers can see a frame past it.
pub const REJECT_AFTER_MESSAGES: u64 = 1 << 33;

const _: () = assert!(REJECT_AFTER_MESSAGES <= COUNTER_MASK);
const _: () = assert!(REKEY_AFTER_MESSAGES < REJECT_AFTER_MESSAGES);

/// Why a sequence number cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SequenceError {
    /// The sender has used up the messages one key allows.
    #[error(
        "sequence counter {counter} reached the limit of {REJECT_AFTER_MESSAGES} messages under one key; a new epoch key is needed before sending more"
    )]
    Exhausted {
        /// The counter part of the sequence.
        counter: u64,
    },
    /// The persisted incarnation does not fit in its bits.
    #[error(
        "incarnation {incarnation} exceeds the maximum {MAX_INCARNATION} (the clock is past 2059-01 or wrong); check the system clock"
    )]
    IncarnationTooLarge {
        /// The incarnation given.
        incarnation: u32,
    },
}

/// Whether the sender should ask for a new key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rekey {
    /// Keep sending; no action.
    NotYet,
    /// Past [`REKEY_AFTER_MESSAGES`]: ask the key manager for a new epoch.
    Requested,
}

/// The next sequence number to send, and whether to ask for a rekey.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Next {
    /// Sequence number to put in the frame.
    pub seq: u64,
    /// Whether the key is worn enough that a rekey should be requested.
    pub rekey: Rekey,
}

/// Hands out the sequence numbers of one sender under one epoch key.
///
/// Make a new one for every epoch key; it never wraps and refuses past
/// [`REJECT_AFTER_MESSAGES`].
#[derive(Debug, Clone)]
pub struct SendCounter {
    high: u64,
    counter: u64,
}

impl SendCounter {
    /// A counter for a new key, under the incarnation the agent persisted for
    /// this start.
    pub fn new(incarnation: u32) -> Result<Self, SequenceError> {
        if incarnation > MAX_INCARNATION {
            return Err(SequenceError::IncarnationTooLarge { incarnation });
        }
        Ok(SendCounter {
            high: u64::from(incarnation) << COUNTER_BITS,
            counter: 0,
        })
    }

    /// The incarnation this counter sends under.
    pub fn incarnation(&self) -> u32 {
        // The high part came from a u32 no wider than INCARNATION_BITS.
        (self.high >> COUNTER_BITS) as u32
    }

    /// Messages handed out so far.
    pub fn sent(&self) -> u64 {
        self.counter
    }

    /// The sequence the next call to [`SendCounter::next`] hands out: every
    /// frame this counter sealed so far has a lower one (what a keepalive
    /// tells a restarted receiver, see `crate::freshness`).
    pub fn position(&self) -> u64 {
        // The counter stops at REJECT_AFTER_MESSAGES, below COUNTER_MASK.
        self.high | self.counter
    }

    /// The next sequence number, or an error once the key is used up. After an
    /// error every later call errors too.
    // Not an Iterator: the end is an error the caller must act on, not `None`.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Next, SequenceError> {
        let counter = self.counter;
        if counter >= REJECT_AFTER_MESSAGES {
            return Err(SequenceError::Exhausted { counter });
        }
        self.counter = counter + 1;
        let rekey = if counter >= REKEY_AFTER_MESSAGES {
            Rekey::Requested
        } else {
            Rekey::NotYet
        };
        Ok(Next {
            seq: self.high | counter,
            rekey,
        })
    }
}

/// The counter part of a sequence number.
pub fn counter_of(seq: u64) -> u64 {
    seq & COUNTER_MASK
}

/// The incarnation part of a sequence number.
pub fn incarnation_of(seq: u64) -> u32 {
    // 64 - COUNTER_BITS = 30 bits always fit a u32.
    (seq >> COUNTER_BITS) as u32
}

/// Refuses a sequence whose counter is past the hard limit; receivers call
/// this before spending an AEAD operation on the frame.
pub fn check_receivable(seq: u64) -> Result<(), SequenceError> {
    let counter = counter_of(seq);
    if counter >= REJECT_AFTER_MESSAGES {
        return Err(SequenceError::Exhausted { counter });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incarnation_goes_in_the_high_bits() {
        let mut c = SendCounter::new(3).unwrap();
        assert_eq!(c.next().unwrap().seq, 3 << COUNTER_BITS);
        assert_eq!(c.next().unwrap().seq, (3 << COUNTER_BITS) | 1);
        assert_eq!(c.incarnation(), 3);
        assert_eq!(c.sent(), 2);
    }

    #[test]
    fn a_restart_starts_above_everything_sent_before() {
        let mut before = SendCounter::new(41).unwrap();
        before.counter = REJECT_AFTER_MESSAGES - 1;
        let last = before.next().unwrap().seq;
        let first_after = SendCounter::new(42).unwrap().next().unwrap().seq;
        assert!(first_after > last);
    }

    #[test]
    fn rekey_is_requested_from_the_threshold_on() {
        let mut c = SendCounter::new(0).unwrap();
        c.counter = REKEY_AFTER_MESSAGES - 1;
        assert_eq!(c.next().unwrap().rekey, Rekey::NotYet);
        assert_eq!(c.next().unwrap().rekey, Rekey::Requested);
        assert_eq!(c.next().unwrap().rekey, Rekey::Requested);
    }

    #[test]
    fn never_wraps_past_the_hard_limit() {
        let mut c = SendCounter::new(MAX_INCARNATION).unwrap();
        c.counter = REJECT_AFTER_MESSAGES - 1;
        let last = c.next().unwrap();
        assert_eq!(counter_of(last.seq), REJECT_AFTER_MESSAGES - 1);
        for _ in 0..3 {
            assert_eq!(
                c.next(),
                Err(SequenceError::Exhausted {
                    counter: REJECT_AFTER_MESSAGES
                })
            );
        }
    }

    #[test]
    fn incarnation_past_its_bits_is_refused() {
        assert!(SendCounter::new(MAX_INCARNATION).is_ok());
        assert_eq!(
            SendCounter::new(MAX_INCARNATION + 1).err(),
            Some(SequenceError::IncarnationTooLarge {
                incarnation: MAX_INCARNATION + 1
            })
        );
    }

    #[test]
    fn receivers_refuse_past_the_limit_in_any_incarnation() {
        for inc in [0u64, 1, u64::from(MAX_INCARNATION)] {
            let base = inc << COUNTER_BITS;
            assert!(check_receivable(base).is_ok());
            assert!(check_receivable(base | (REJECT_AFTER_MESSAGES - 1)).is_ok());
            assert!(check_receivable(base | REJECT_AFTER_MESSAGES).is_err());
            assert!(check_receivable(base | COUNTER_MASK).is_err());
        }
        assert_eq!(incarnation_of((7 << COUNTER_BITS) | 5), 7);
    }
}
