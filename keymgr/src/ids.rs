//! The identifiers and key type the key manager shares with the data plane.
//!
//! Re-exported from `von-crypto` so that a view installed by the agent names
//! members and epochs with exactly the types the frame parser uses.

pub use von_crypto::{Cipher, Epoch, GroupKey, MemberId, OnId};
