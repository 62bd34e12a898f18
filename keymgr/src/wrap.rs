//! How the key manager seals a group key for one member, behind a trait so
//! the rekeying core stays testable without Noise handshakes.
//!
//! The real implementation is `von_crypto::wrap::Wrapper`: a
//! one-way Noise pattern from the key manager's static key to the member's
//! static X25519 key from its certificate, VON and epoch in the prologue.

use crate::ids::{Epoch, GroupKey};

/// Seals a group key so only the holder of `to`'s private key opens it.
pub trait KeyWrapper: Send {
    /// The wrapped key for the member whose Noise public key is `to`.
    fn wrap(&self, to: &[u8; 32], epoch: Epoch, key: &GroupKey) -> Result<Vec<u8>, WrapFailed>;
}

/// Wrapping failed; the member is dropped from the view being prepared.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("could not wrap the group key of epoch {epoch} for a member: {detail}")]
pub struct WrapFailed {
    /// The epoch being prepared.
    pub epoch: u32,
    /// What the wrapper said.
    pub detail: String,
}

/// The real wrapper: Noise K from the key manager's X25519 key.
impl KeyWrapper for von_crypto::wrap::Wrapper {
    fn wrap(&self, to: &[u8; 32], epoch: Epoch, key: &GroupKey) -> Result<Vec<u8>, WrapFailed> {
        let to = von_crypto::wrap::NoisePublic::from_bytes(*to);
        von_crypto::wrap::Wrapper::wrap(self, &to, epoch, key).map_err(|e| WrapFailed {
            epoch: epoch.0,
            detail: e.to_string(),
        })
    }
}
