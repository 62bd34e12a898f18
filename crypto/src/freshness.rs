//! A restarted receiver learns, freshly, where each sender stands.
//!
//! Replay windows live in memory. After a start a receiver therefore trusts
//! no sender's frames until that sender has proven its *current* sequence
//! position: the receiver puts a random [`Challenge`] in every keepalive it
//! sends; a sender echoes the latest challenge it heard from that receiver
//! in its own keepalives, together with the next sequence of each of its send
//! counters ([`Position`]). Only a frame made after the challenge can carry
//! it, so a keepalive that echoes it is fresh, and every frame sealed before
//! it has a lower sequence. The receiver turns that answer into a [`Floor`]:
//! frames below it were sealed before the receiver could vouch for them and
//! are refused as [`Stale`], whatever a replayer recorded. Nothing is stored,
//! so a lost or restored state directory cannot reopen a replay.
//!
//! The keepalive's plaintext ([`KeepaliveBody`], versioned) is:
//!
//! ```text
//!  0        1       2       3         4            20           36
//! +--------+-------+-------+---------+------------+------------+---------------------------+
//! | ver=1  | flags | count | 0       | challenge  | echo       | count x (epoch u32,       |
//! |        | b0:   | <= 4  |         | (16 bytes) | (16 bytes, |          next seq u64)    |
//! |        | echo  |       |         |            |  0 if none)|                           |
//! +--------+-------+-------+---------+------------+------------+---------------------------+
//! ```
//!
//! Flag b1 (`timing`) appends [`Timing`], 24 bytes after the positions, for
//! path health (RTT, jitter, loss per peer and underlay; see the packet
//! core's `keepalive.rs`):
//!
//! ```text
//! +------------------+-----------------+------------------+-------------------+
//! | round u32        | hold_us u32     | stamp_us u64     | echo_us u64       |
//! | keepalives sent  | echo held for   | sender's clock   | latest stamp heard|
//! | this peer on     | this long by    | (its own base)   | from the recipient|
//! | this underlay    | the sender      |                  | here, 0 = none    |
//! +------------------+-----------------+------------------+-------------------+
//! ```
//!
//! The data frame is unchanged. The reasoning, its cost and what an attacker
//! can still do are in `docs/crypto.md` ("Replay across a receiver restart").

use crate::frame::{Epoch, OVERHEAD};
use crate::sequence::incarnation_of;

/// Bytes of a challenge.
pub const CHALLENGE_LEN: usize = 16;
/// Send counters a keepalive reports at most (a sender keeps one per epoch
/// still accepted: two during a rekey's grace window).
pub const MAX_POSITIONS: usize = 4;
/// The only keepalive body version this code speaks.
pub const BODY_VERSION: u8 = 1;
/// Bytes before the positions.
const FIXED_LEN: usize = 4 + 2 * CHALLENGE_LEN;
/// Bytes of one position.
const POSITION_LEN: usize = 12;
/// Bytes of the timing extension.
pub const TIMING_LEN: usize = 24;
/// Longest keepalive body.
pub const MAX_BODY_LEN: usize = FIXED_LEN + MAX_POSITIONS * POSITION_LEN + TIMING_LEN;
/// Longest keepalive frame: header, body, tag.
pub const MAX_KEEPALIVE_LEN: usize = OVERHEAD + MAX_BODY_LEN;
/// Flag bit: the echo field holds a challenge.
const FLAG_ECHO: u8 = 0x01;
/// Flag bit: the body ends with a [`Timing`].
const FLAG_TIMING: u8 = 0x02;

/// What a keepalive carries for path health (flag `timing`). Sent only
/// inside the authenticated, window-checked keepalive, so an on-path
/// attacker can delay it (which is what RTT measures) but not forge it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timing {
    /// How many keepalives the sender sent this recipient on this underlay
    /// in this start, this one included (gaps are loss).
    pub round: u32,
    /// Microseconds the sender held `echo_us` before sending it back.
    pub hold_us: u32,
    /// The sender's clock, microseconds since its own base (never 0).
    pub stamp_us: u64,
    /// The latest `stamp_us` the sender heard from the recipient on this
    /// underlay; 0 if none.
    pub echo_us: u64,
}

/// A receiver's random challenge, drawn once per start.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Challenge(pub [u8; CHALLENGE_LEN]);

impl Challenge {
    /// A fresh challenge from the operating system's CSPRNG.
    pub fn generate() -> Result<Self, ring::error::Unspecified> {
        let mut bytes = [0u8; CHALLENGE_LEN];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)?;
        Ok(Challenge(bytes))
    }
}

impl core::fmt::Debug for Challenge {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Challenge({}…)", hex::encode(&self.0[..4]))
    }
}

/// Where one of the sender's send counters stands: every frame it sealed
/// under `epoch` in this incarnation has a sequence below `next`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// The epoch of the counter.
    pub epoch: Epoch,
    /// The sequence the counter hands out next.
    pub next: u64,
}

/// Why a keepalive body cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// An empty keepalive: an agent from before keepalives carried a body.
    #[error("keepalive without a body (the sender predates freshness proofs; upgrade it)")]
    Empty,
    /// A body version this code does not speak.
    #[error("keepalive body version {version} is not supported (this agent speaks {BODY_VERSION})")]
    UnsupportedVersion {
        /// The version byte.
        version: u8,
    },
    /// Reserved bits or bytes set, or more positions than allowed.
    #[error(
        "keepalive body sets reserved bits or claims {count} positions (at most {MAX_POSITIONS})"
    )]
    Invalid {
        /// The count byte.
        count: u8,
    },
    /// Shorter or longer than its count says.
    #[error("keepalive body of {len} bytes does not match its count of positions")]
    Length {
        /// Bytes received.
        len: usize,
    },
}

/// The plaintext of a keepalive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeepaliveBody {
    /// The sender's own challenge for this start.
    pub challenge: Challenge,
    /// The latest challenge the sender heard from the keepalive's recipient.
    pub echo: Option<Challenge>,
    positions: [Position; MAX_POSITIONS],
    count: u8,
    /// Path-health timing, if carried.
    pub timing: Option<Timing>,
}

impl KeepaliveBody {
    /// A body without positions.
    pub fn new(challenge: Challenge, echo: Option<Challenge>) -> Self {
        KeepaliveBody {
            challenge,
            echo,
            positions: [Position {
                epoch: Epoch(0),
                next: 0,
            }; MAX_POSITIONS],
            count: 0,
            timing: None,
        }
    }

    /// Adds a position; `false` (and nothing added) once [`MAX_POSITIONS`]
    /// are held.
    pub fn push(&mut self, position: Position) -> bool {
        let Some(slot) = self.positions.get_mut(usize::from(self.count)) else {
            return false;
        };
        *slot = position;
        self.count += 1;
        true
    }

    /// The positions carried.
    pub fn positions(&self) -> &[Position] {
        &self.positions[..usize::from(self.count)]
    }

    /// Bytes [`KeepaliveBody::emit`] writes.
    pub fn len(&self) -> usize {
        FIXED_LEN
            + usize::from(self.count) * POSITION_LEN
            + if self.timing.is_some() { TIMING_LEN } else { 0 }
    }

    /// Never empty: the fixed part is always there.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Writes the body at the start of `buf`; returns its length, or `None`
    /// if `buf` is too short.
    pub fn emit(&self, buf: &mut [u8]) -> Option<usize> {
        let len = self.len();
        let out = buf.get_mut(..len)?;
        out[0] = BODY_VERSION;
        out[1] = if self.echo.is_some() { FLAG_ECHO } else { 0 }
            | if self.timing.is_some() {
                FLAG_TIMING
            } else {
                0
            };
        out[2] = self.count;
        out[3] = 0;
        out[4..20].copy_from_slice(&self.challenge.0);
        out[20..36].copy_from_slice(&self.echo.map_or([0; CHALLENGE_LEN], |c| c.0));
        for (p, chunk) in self
            .positions()
            .iter()
            .zip(out[FIXED_LEN..].chunks_exact_mut(POSITION_LEN))
        {
            chunk[..4].copy_from_slice(&p.epoch.0.to_be_bytes());
            chunk[4..].copy_from_slice(&p.next.to_be_bytes());
        }
        if let Some(t) = self.timing {
            let at = len - TIMING_LEN;
            out[at..at + 4].copy_from_slice(&t.round.to_be_bytes());
            out[at + 4..at + 8].copy_from_slice(&t.hold_us.to_be_bytes());
            out[at + 8..at + 16].copy_from_slice(&t.stamp_us.to_be_bytes());
            out[at + 16..at + 24].copy_from_slice(&t.echo_us.to_be_bytes());
        }
        Some(len)
    }

    /// Reads a body; any byte string gives a body or an error, never a panic.
    pub fn parse(bytes: &[u8]) -> Result<Self, BodyError> {
        let (&version, rest) = bytes.split_first().ok_or(BodyError::Empty)?;
        if version != BODY_VERSION {
            return Err(BodyError::UnsupportedVersion { version });
        }
        let len = bytes.len();
        let (&flags, &count, &reserved) = match rest {
            [flags, count, reserved, ..] => (flags, count, reserved),
            _ => return Err(BodyError::Length { len }),
        };
        if flags & !(FLAG_ECHO | FLAG_TIMING) != 0
            || reserved != 0
            || usize::from(count) > MAX_POSITIONS
        {
            return Err(BodyError::Invalid { count });
        }
        let timed = flags & FLAG_TIMING != 0;
        let positions_end = FIXED_LEN + usize::from(count) * POSITION_LEN;
        if len != positions_end + if timed { TIMING_LEN } else { 0 } {
            return Err(BodyError::Length { len });
        }
        let challenge = |at: usize| {
            let mut c = [0u8; CHALLENGE_LEN];
            c.copy_from_slice(&bytes[at..at + CHALLENGE_LEN]);
            Challenge(c)
        };
        let mut body = KeepaliveBody::new(
            challenge(4),
            (flags & FLAG_ECHO != 0).then(|| challenge(20)),
        );
        if timed {
            let t = &bytes[positions_end..];
            let u32_at = |at: usize| u32::from_be_bytes([t[at], t[at + 1], t[at + 2], t[at + 3]]);
            let u64_at = |at: usize| (u64::from(u32_at(at)) << 32) | u64::from(u32_at(at + 4));
            body.timing = Some(Timing {
                round: u32_at(0),
                hold_us: u32_at(4),
                stamp_us: u64_at(8),
                echo_us: u64_at(16),
            });
        }
        for chunk in bytes[FIXED_LEN..positions_end].chunks_exact(POSITION_LEN) {
            let mut epoch = [0u8; 4];
            let mut next = [0u8; 8];
            epoch.copy_from_slice(&chunk[..4]);
            next.copy_from_slice(&chunk[4..]);
            body.push(Position {
                epoch: Epoch(u32::from_be_bytes(epoch)),
                next: u64::from_be_bytes(next),
            });
        }
        Ok(body)
    }
}

/// A frame sealed before the sender proved its position to this receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "frame sealed before the sender's proof of freshness (a replay, or delayed across the restart)"
)]
pub struct Stale;

/// What a receiver knows of one sender once it answered this start's
/// challenge: which of its frames can be new to this receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Floor {
    /// The sender's incarnation when it answered.
    incarnation: u32,
    /// The newest epoch the sender had a counter for when it answered.
    newest: Epoch,
    positions: [Position; MAX_POSITIONS],
    count: u8,
}

impl Floor {
    /// The floor set by an authenticated keepalive with sequence `seq`
    /// under `epoch` whose body echoed this receiver's challenge.
    ///
    /// The answer's own epoch always gets a position: a sender that left it
    /// out would otherwise open that epoch as "newer than any it had".
    pub fn from_answer(epoch: Epoch, seq: u64, body: &KeepaliveBody) -> Self {
        let mut floor = Floor {
            incarnation: incarnation_of(seq),
            newest: epoch,
            positions: body.positions,
            count: body.count,
        };
        for p in body.positions() {
            floor.newest = floor.newest.max(p.epoch);
        }
        if floor.position(epoch).is_none() {
            let own = Position {
                epoch,
                next: seq.saturating_add(1),
            };
            match floor.positions.get_mut(usize::from(floor.count)) {
                Some(slot) => {
                    *slot = own;
                    floor.count += 1;
                }
                // No room: replace the oldest epoch's position, which then
                // counts as dropped by the sender (refused from here on).
                None => {
                    if let Some(oldest) = floor.positions.iter_mut().min_by_key(|p| p.epoch) {
                        *oldest = own;
                    }
                }
            }
        }
        floor
    }

    /// Whether a frame of this sender under `epoch` with sequence `seq` can
    /// have been sealed after the answer (or at it: the answer itself).
    ///
    /// - a later incarnation: the sender restarted after answering;
    /// - an earlier one: sealed before the answer;
    /// - the same one: at or above the position the answer gave for that
    ///   epoch, or under an epoch newer than any the sender had then (a
    ///   sender opens a counter only for an epoch above all it had before in
    ///   the incarnation, see the agent's outbound half).
    pub fn check(&self, epoch: Epoch, seq: u64) -> Result<(), Stale> {
        let incarnation = incarnation_of(seq);
        if incarnation != self.incarnation {
            return if incarnation > self.incarnation {
                Ok(())
            } else {
                Err(Stale)
            };
        }
        match self.position(epoch) {
            Some(next) if seq >= next => Ok(()),
            Some(_) => Err(Stale),
            None if epoch > self.newest => Ok(()),
            None => Err(Stale),
        }
    }

    /// The sender's incarnation when it answered.
    pub fn incarnation(&self) -> u32 {
        self.incarnation
    }

    fn position(&self, epoch: Epoch) -> Option<u64> {
        self.positions[..usize::from(self.count)]
            .iter()
            .find(|p| p.epoch == epoch)
            .map(|p| p.next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sequence::COUNTER_BITS;

    const C: Challenge = Challenge([7; CHALLENGE_LEN]);
    const D: Challenge = Challenge([9; CHALLENGE_LEN]);

    fn seq(incarnation: u64, counter: u64) -> u64 {
        (incarnation << COUNTER_BITS) | counter
    }

    #[test]
    fn a_body_round_trips_with_and_without_echo() {
        for echo in [None, Some(D)] {
            let mut body = KeepaliveBody::new(C, echo);
            for e in 1..=MAX_POSITIONS as u32 {
                assert!(body.push(Position {
                    epoch: Epoch(e),
                    next: u64::from(e) * 1000,
                }));
            }
            assert!(!body.push(Position {
                epoch: Epoch(99),
                next: 1
            }));
            let mut buf = [0u8; MAX_BODY_LEN];
            let len = body.emit(&mut buf).unwrap();
            assert_eq!(len, MAX_BODY_LEN - TIMING_LEN);
            assert_eq!(KeepaliveBody::parse(&buf[..len]), Ok(body));
            body.timing = Some(Timing {
                round: 7,
                hold_us: 0x0102_0304,
                stamp_us: 0x1122_3344_5566_7788,
                echo_us: 99,
            });
            let len = body.emit(&mut buf).unwrap();
            assert_eq!(len, MAX_BODY_LEN);
            assert_eq!(KeepaliveBody::parse(&buf[..len]), Ok(body));
            assert!(
                matches!(
                    KeepaliveBody::parse(&buf[..len - 1]),
                    Err(BodyError::Length { .. })
                ),
                "a cut timing extension is refused"
            );
        }
    }

    #[test]
    fn bad_bodies_are_refused() {
        let body = KeepaliveBody::new(C, None);
        let mut buf = [0u8; MAX_BODY_LEN];
        let len = body.emit(&mut buf).unwrap();
        assert_eq!(KeepaliveBody::parse(&[]), Err(BodyError::Empty));
        assert!(matches!(
            KeepaliveBody::parse(&buf[..len - 1]),
            Err(BodyError::Length { .. })
        ));
        assert!(matches!(
            KeepaliveBody::parse(&buf[..3]),
            Err(BodyError::Length { .. })
        ));
        let mut v = buf;
        v[0] = 2;
        assert_eq!(
            KeepaliveBody::parse(&v[..len]),
            Err(BodyError::UnsupportedVersion { version: 2 })
        );
        for (at, value) in [(1, 0x04), (2, 5), (3, 1)] {
            let mut bad = buf;
            bad[at] = value;
            assert!(
                matches!(
                    KeepaliveBody::parse(&bad[..len]),
                    Err(BodyError::Invalid { .. })
                ),
                "byte {at} = {value}"
            );
        }
        assert!(body.emit(&mut [0u8; 10]).is_none());
    }

    #[test]
    fn the_floor_refuses_everything_sealed_before_the_answer() {
        // The sender answered under epoch 5 at counter 100 and also holds
        // epoch 4's counter at 7000 (a rekey's grace window).
        let mut body = KeepaliveBody::new(D, Some(C));
        body.push(Position {
            epoch: Epoch(5),
            next: seq(10, 101),
        });
        body.push(Position {
            epoch: Epoch(4),
            next: seq(10, 7000),
        });
        let f = Floor::from_answer(Epoch(5), seq(10, 100), &body);
        assert_eq!(f.incarnation(), 10);
        let cases = [
            (5, seq(10, 99), false, "epoch 5 before the answer"),
            (
                5,
                seq(10, 100),
                false,
                "the answer's own sequence is below next",
            ),
            (5, seq(10, 101), true, "epoch 5 after the answer"),
            (4, seq(10, 6999), false, "epoch 4 before the answer"),
            (4, seq(10, 7000), true, "epoch 4 after the answer"),
            (3, seq(10, 1 << 30), false, "an epoch the sender dropped"),
            (6, seq(10, 0), true, "an epoch newer than any it had"),
            (5, seq(9, 1 << 33), false, "an older incarnation, any epoch"),
            (6, seq(9, 0), false, "an older incarnation, newer epoch"),
            (3, seq(11, 0), true, "a later incarnation: restarted since"),
        ];
        for (epoch, s, ok, what) in cases {
            assert_eq!(f.check(Epoch(epoch), s).is_ok(), ok, "{what}");
        }
    }

    #[test]
    fn an_answer_without_its_own_epoch_still_floors_it() {
        let body = KeepaliveBody::new(D, Some(C));
        let f = Floor::from_answer(Epoch(2), seq(3, 50), &body);
        assert!(f.check(Epoch(2), seq(3, 50)).is_err());
        assert!(f.check(Epoch(2), seq(3, 51)).is_ok());
        assert!(f.check(Epoch(1), seq(3, 1 << 20)).is_err());
        let mut full = KeepaliveBody::new(D, Some(C));
        for e in 10..14 {
            full.push(Position {
                epoch: Epoch(e),
                next: seq(3, 0),
            });
        }
        let f = Floor::from_answer(Epoch(2), seq(3, 50), &full);
        assert!(f.check(Epoch(2), seq(3, 49)).is_err());
        assert!(f.check(Epoch(2), seq(3, 51)).is_ok());
        assert!(f.check(Epoch(10), seq(3, 5)).is_err(), "lost its slot");
    }

    #[test]
    fn challenges_differ() {
        let a = Challenge::generate().unwrap();
        let b = Challenge::generate().unwrap();
        assert_ne!(a, b);
    }
}
