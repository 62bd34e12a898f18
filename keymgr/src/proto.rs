//! The control protocol between a member and its key manager.
//!
//! One bidirectional QUIC stream per connection carries messages in both
//! directions, each as a 4-byte big-endian length followed by that many bytes
//! of JSON. JSON because a view is small, rare and worth reading in a packet
//! capture of a test; the length prefix because QUIC streams are byte streams.
//! Group keys never travel in the clear here: `Prepare` carries the key
//! wrapped with Noise for the one member it is addressed to.

use std::sync::Arc;
use von_config::UnderlayEndpoints;

use serde::{Deserialize, Serialize};

use crate::view::ViewUpdate;

/// The largest message either side accepts: a 1000-member view is ~120 KiB.
pub const MAX_MESSAGE: usize = 4 << 20;

/// The ALPN protocol id both sides require, so nothing else talks to us.
/// Version 2 added `Refuse` (a member's "no" to a prepared view) and the
/// `code` of `Refused`; version 3 replaced each member's `a` and `b`
/// endpoints with `underlay`, a map from underlay name to endpoint (1 to 4
/// named underlays). An older peer fails the handshake with "no application
/// protocol" instead of misreading a message: upgrade key managers and
/// agents together (docs/upgrade.md). Version 4 made the view in `Prepare`
/// and `Commit` a [`ViewUpdate`] (a delta against the member's view plus the
/// digest of the whole view) and added `NeedView`.
pub const ALPN: &[u8] = b"von-keymgr/4";

/// Member → key manager.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientMsg {
    /// First message: where to reach this member, and the newest epoch it
    /// holds (from its state directory), if any.
    Join {
        /// Where it receives, per underlay name.
        underlay: UnderlayEndpoints,
        /// The newest epoch the member has installed.
        have_epoch: Option<u32>,
    },
    /// The member has unwrapped and installed (for receiving) this epoch.
    Ack {
        /// The prepared epoch.
        epoch: u32,
    },
    /// The member will not install the prepared view of `epoch` (it breaks
    /// the rules every member checks: its own place, unique ids, names and
    /// addresses inside the VON prefix). The key manager drops it from that
    /// view rather than stall the others.
    Refuse {
        /// The prepared epoch.
        epoch: u32,
        /// Why, in words an operator can act on.
        reason: String,
    },
    /// Keep the lease alive.
    Renew,
    /// A clean departure.
    Leave,
    /// The member's send counter under `epoch` nears its limit.
    SequenceNearLimit {
        /// The epoch whose key is nearly used up.
        epoch: u32,
    },
    /// The view update of `epoch` (a prepare's or a commit's) did not
    /// rebuild here: its base is not the view this member holds, or the
    /// rebuilt view's digest differs. The key manager answers with the whole
    /// view, once per member and epoch.
    NeedView {
        /// The epoch of the update.
        epoch: u32,
    },
}

/// Key manager → member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ServerMsg {
    /// Admitted: the member's id and its lease terms.
    Joined {
        /// The member's id, stable per name.
        member_id: u32,
        /// How often to send `Renew`.
        renew_ms: u64,
        /// A lease not renewed for this long is a departure.
        lease_ms: u64,
    },
    /// The next view and its key: install for receiving, acknowledge, but keep
    /// sending under the current epoch until `Commit`.
    Prepare {
        /// The view at the new epoch: a change of the member's committed
        /// view, or the whole view (each form shared by all the prepares of
        /// a rekey that use it).
        view: Arc<ViewUpdate>,
        /// Cipher text form, e.g. `aes-256-gcm`.
        cipher: String,
        /// The group key wrapped for this member (hex).
        wrapped_key: String,
    },
    /// Switch sending to `view.epoch`; keep accepting the previous epoch for
    /// `grace_ms`, then erase its key. `view` is the final membership: members
    /// that never acknowledged the prepare are gone from it.
    Commit {
        /// The committed view: usually a change of the prepared view of the
        /// same epoch (empty but for the digest when nobody dropped out), or
        /// the whole view (shared by all the commits of a rekey).
        view: Arc<ViewUpdate>,
        /// How long receivers still accept the previous epoch.
        grace_ms: u64,
    },
    /// Refused or dropped, with the reason; the connection closes after this.
    Refused {
        /// What kind of refusal, so the member can react (a revoked member
        /// backs off far longer than one whose address is taken for now).
        code: Refusal,
        /// Why, in words an operator can act on.
        reason: String,
    },
}

/// Why the key manager refused or dropped a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Refusal {
    /// Its name is revoked: it will never be admitted again.
    Revoked,
    /// Its certificate's address or prefix is not the VON's.
    OutsidePrefix,
    /// Another member holds its member id.
    IdTaken,
    /// Another member holds its name.
    NameTaken,
    /// Another member holds its VON address.
    AddressTaken,
    /// It refused a view recently; it may rejoin later.
    HeldOut,
    /// It was dropped from the view (silent, refused a view, lease gone).
    Dropped,
}

impl Refusal {
    /// True when retrying soon cannot help: the certificate itself is refused.
    pub fn is_permanent(self) -> bool {
        matches!(self, Self::Revoked | Self::OutsidePrefix)
    }

    /// The code's text form, as on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Revoked => "revoked",
            Self::OutsidePrefix => "outside_prefix",
            Self::IdTaken => "id_taken",
            Self::NameTaken => "name_taken",
            Self::AddressTaken => "address_taken",
            Self::HeldOut => "held_out",
            Self::Dropped => "dropped",
        }
    }
}

/// Encode one message with its length prefix.
pub fn encode<T: Serialize>(msg: &T) -> Vec<u8> {
    // Serializing these plain enums to JSON cannot fail: no maps with
    // non-string keys, no custom Serialize impls.
    let body = serde_json::to_vec(msg).expect("control messages always serialize");
    let mut out = Vec::with_capacity(4 + body.len());
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

/// Decode one message body (the bytes after the length prefix).
pub fn decode<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, ProtoError> {
    serde_json::from_slice(body).map_err(|e| ProtoError::Malformed(e.to_string()))
}

/// Check a length prefix before reading the body it announces.
pub fn body_len(prefix: [u8; 4]) -> Result<usize, ProtoError> {
    let len = u32::from_be_bytes(prefix) as usize;
    if len > MAX_MESSAGE {
        return Err(ProtoError::TooLong {
            len,
            max: MAX_MESSAGE,
        });
    }
    Ok(len)
}

/// A control message could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtoError {
    /// The length prefix announced more than we accept.
    #[error(
        "control message of {len} bytes exceeds the {max}-byte limit; is the peer a von key manager or member?"
    )]
    TooLong {
        /// Announced length.
        len: usize,
        /// Our limit.
        max: usize,
    },
    /// The body was not a message of this protocol version.
    #[error("malformed control message ({0}); are both sides the same von version?")]
    Malformed(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_prefix() {
        let msg = ClientMsg::Join {
            underlay: UnderlayEndpoints::from_names([
                ("a", "192.0.2.1:4789".parse().unwrap()),
                ("b", "198.51.100.1:4789".parse().unwrap()),
            ])
            .unwrap(),
            have_epoch: Some(7),
        };
        let bytes = encode(&msg);
        let len = body_len(bytes[..4].try_into().unwrap()).unwrap();
        assert_eq!(len, bytes.len() - 4);
        assert_eq!(decode::<ClientMsg>(&bytes[4..]).unwrap(), msg);
    }

    #[test]
    fn oversized_prefix_is_refused() {
        let err = body_len(((MAX_MESSAGE + 1) as u32).to_be_bytes()).unwrap_err();
        assert!(matches!(err, ProtoError::TooLong { .. }));
    }

    #[test]
    fn unknown_fields_are_refused() {
        let err = decode::<ClientMsg>(br#"{"type":"ack","epoch":1,"extra":1}"#).unwrap_err();
        assert!(matches!(err, ProtoError::Malformed(_)));
    }
}
