//! What the key manager is told about a member, and what it answers.

use std::net::Ipv4Addr;

use crate::ids::MemberId;
use crate::proto::ServerMsg;
use crate::store::StoreError;

/// Who a joining member is, as its verified certificate says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Its sender id, chosen by the CA and carried in the certificate.
    pub id: MemberId,
    /// Member name.
    pub name: String,
    /// Its VON address.
    pub address: Ipv4Addr,
    /// Its static X25519 key, for key wrapping.
    pub noise_public: [u8; 32],
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send `msg` to the member's connection.
    Send {
        /// Recipient.
        to: MemberId,
        /// The message.
        msg: ServerMsg,
    },
    /// Close the member's connection, if it has one.
    Disconnect {
        /// Whom.
        member: MemberId,
        /// Why, for the log and the peer.
        reason: Departure,
    },
}

/// Why a member left the view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Departure {
    /// It said `Leave`.
    Left,
    /// It stopped renewing its lease.
    LeaseExpired,
    /// Its name was revoked.
    Revoked,
    /// It did not acknowledge a prepare in time.
    Silent,
    /// Its key could not be wrapped (bad Noise key in its certificate).
    WrapFailed,
    /// It renewed or acknowledged without being a member (lease long gone).
    NotMember,
}

impl std::fmt::Display for Departure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Left => "left",
            Self::LeaseExpired => "lease expired",
            Self::Revoked => "revoked",
            Self::Silent => "did not acknowledge the prepare in time",
            Self::WrapFailed => "its group key could not be wrapped",
            Self::NotMember => "not a member (lease expired); rejoin",
        })
    }
}

/// A join was refused.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    /// The member's name is revoked.
    #[error("member {name:?} is revoked; issue a new certificate under another name to readmit it")]
    Revoked {
        /// The revoked name.
        name: String,
    },
    /// Another current member already has this member id.
    #[error(
        "member {name:?} presents member id {id} which {holder:?} already holds; reissue one of the two certificates"
    )]
    IdTaken {
        /// The joining member.
        name: String,
        /// The id both certificates carry.
        id: u32,
        /// The member holding it.
        holder: String,
    },
    /// The store failed; no key was sent.
    #[error(transparent)]
    Store(#[from] StoreError),
}
