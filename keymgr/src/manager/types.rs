//! What the key manager is told about a member, and what it answers.

use std::net::Ipv4Addr;

use von_crypto::cert::VonPrefix;

use crate::ids::MemberId;
use crate::proto::{Refusal, ServerMsg};
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
    /// The VON prefix length its certificate names with the address.
    pub prefix_len: u8,
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
    /// It refused the prepared view (it would not install it).
    RefusedView,
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
            Self::RefusedView => "refused the prepared view; dropped so the others move on",
        })
    }
}

impl Departure {
    /// How the member is told, if it is still connected.
    pub fn refusal(self) -> Option<Refusal> {
        match self {
            Self::Left => None,
            Self::Revoked => Some(Refusal::Revoked),
            _ => Some(Refusal::Dropped),
        }
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
    /// The certificate's address or prefix is not the VON's.
    #[error(
        "member {name:?} has VON address {address}/{prefix_len}, not a host of the VON prefix {von_prefix}; reissue its certificate with an address inside {von_prefix}"
    )]
    OutsidePrefix {
        /// The joining member.
        name: String,
        /// Its address.
        address: Ipv4Addr,
        /// The prefix length its certificate names.
        prefix_len: u8,
        /// The VON's prefix.
        von_prefix: VonPrefix,
    },
    /// Another current member already has this name (under another id).
    #[error(
        "member name {name:?} (id {id}) is already held by member id {holder}; two certificates carry one name, reissue one of them"
    )]
    NameTaken {
        /// The name both certificates carry.
        name: String,
        /// The joining certificate's id.
        id: u32,
        /// The id of the member holding the name.
        holder: u32,
    },
    /// Another current member already has this VON address.
    #[error(
        "member {name:?} presents VON address {address} which {holder:?} already holds; reissue one of the two certificates with another address"
    )]
    AddressTaken {
        /// The joining member.
        name: String,
        /// The address both certificates carry.
        address: Ipv4Addr,
        /// The member holding it.
        holder: String,
    },
    /// The member refused a view recently and is kept out for a while.
    #[error(
        "member {name:?} refused the view of epoch {epoch} and is held out for {secs} s more; check its log for why"
    )]
    HeldOut {
        /// The member.
        name: String,
        /// The epoch it refused.
        epoch: u32,
        /// Seconds until it may rejoin.
        secs: u64,
    },
    /// The store failed; no key was sent.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl JoinError {
    /// The code the member is told along with the reason.
    pub fn refusal(&self) -> Refusal {
        match self {
            Self::Revoked { .. } => Refusal::Revoked,
            Self::OutsidePrefix { .. } => Refusal::OutsidePrefix,
            Self::IdTaken { .. } => Refusal::IdTaken,
            Self::NameTaken { .. } => Refusal::NameTaken,
            Self::AddressTaken { .. } => Refusal::AddressTaken,
            Self::HeldOut { .. } => Refusal::HeldOut,
            Self::Store(_) => Refusal::Dropped,
        }
    }
}
