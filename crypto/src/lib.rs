//! The cryptographic core of von, kept apart from every socket and clock.
//!
//! Everything here is a pure function of its inputs: the frame layout, sealing
//! and opening, the replay/duplicate window, certificates and key wrapping.
//! That is what lets the packet pipeline, the key manager, the fuzzers and the
//! known-answer tests share one implementation, and why this crate forbids
//! `unsafe`.
#![forbid(unsafe_code)]

pub mod aead;
pub mod cert;
pub mod frame;
pub mod freshness;
pub mod sequence;
pub mod window;
pub mod wrap;

pub use aead::{AeadError, Cipher, FrameKey, GroupKey};
pub use frame::{Epoch, Flags, Frame, FrameError, FrameType, Header, MemberId, OnId};
pub use sequence::{Rekey, SendCounter, SequenceError};
pub use window::{Marked, Rejected, ReplayWindow};
