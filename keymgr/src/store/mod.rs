//! Where the key manager's durable state lives: the epoch counter, the
//! committed members and the revocations.
//!
//! A small trait so that the embedded default ([`RedbStore`]) can later give
//! way to a replicated store such as etcd, where several key managers share
//! one epoch counter. The one rule every implementation keeps: an epoch
//! returned by [`Store::advance_epoch`] is durable before the call returns,
//! so no crash can ever hand out the same epoch twice (with two keys).

mod redb;

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr};

pub use self::redb::RedbStore;
use crate::ids::{Epoch, MemberId};

/// A committed member as stored: enough to rebuild the view after a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMember {
    /// Member id.
    pub id: MemberId,
    /// Member name (certificate).
    pub name: String,
    /// VON address.
    pub address: Ipv4Addr,
    /// Underlay A endpoint.
    pub a: SocketAddr,
    /// Underlay B endpoint.
    pub b: SocketAddr,
    /// The member's Noise public key, to wrap the next key for it.
    pub noise_public: [u8; 32],
}

/// Everything a key manager reloads when it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Persisted {
    /// The highest epoch ever handed out (0 when none).
    pub epoch: Epoch,
    /// The members of the last committed view.
    pub members: Vec<StoredMember>,
    /// Revoked member names.
    pub revoked: BTreeSet<String>,
}

impl Default for Persisted {
    fn default() -> Self {
        Self {
            epoch: Epoch(0),
            members: Vec::new(),
            revoked: BTreeSet::new(),
        }
    }
}

/// The durable state behind a key manager.
pub trait Store: Send {
    /// Everything stored, for a restart.
    fn load(&self) -> Result<Persisted, StoreError>;
    /// Durably reserve the epoch after max(`after`, stored) and return it.
    fn advance_epoch(&mut self, after: Epoch) -> Result<Epoch, StoreError>;
    /// Replace the stored committed members.
    fn save_members(&mut self, members: &[StoredMember]) -> Result<(), StoreError>;
    /// Add `name` to the revocations; false when it already was there.
    fn revoke(&mut self, name: &str) -> Result<bool, StoreError>;
    /// The revoked names.
    fn revoked(&self) -> Result<BTreeSet<String>, StoreError>;
}

/// The store failed; the key manager stops rather than risk an epoch reuse.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be opened, read or written.
    #[error("key manager store {path}: {detail}; check the path, its permissions and free space")]
    Io {
        /// Database file.
        path: String,
        /// What the database said.
        detail: String,
    },
    /// Another process (a running key manager) holds the database.
    #[error(
        "key manager store {path} is in use by another process; talk to the running key manager through its control socket instead"
    )]
    Locked {
        /// Database file.
        path: String,
    },
    /// A stored record could not be decoded.
    #[error("key manager store {path}: corrupt record {key:?}: {detail}")]
    Corrupt {
        /// Database file.
        path: String,
        /// Which record.
        key: String,
        /// Why.
        detail: String,
    },
    /// The 32-bit epoch space is used up.
    #[error("the {what} counter is exhausted (at {at}); create a new VON with a new ON id")]
    Exhausted {
        /// Which counter.
        what: &'static str,
        /// Its value.
        at: u32,
    },
}

/// A store in memory: for tests, and for nothing that must survive a crash.
#[derive(Debug, Default)]
pub struct MemStore {
    state: Persisted,
}

impl MemStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Store for MemStore {
    fn load(&self) -> Result<Persisted, StoreError> {
        Ok(self.state.clone())
    }

    fn advance_epoch(&mut self, after: Epoch) -> Result<Epoch, StoreError> {
        let base = after.0.max(self.state.epoch.0);
        let next = base.checked_add(1).ok_or(StoreError::Exhausted {
            what: "epoch",
            at: base,
        })?;
        self.state.epoch = Epoch(next);
        Ok(Epoch(next))
    }

    fn save_members(&mut self, members: &[StoredMember]) -> Result<(), StoreError> {
        self.state.members = members.to_vec();
        Ok(())
    }

    fn revoke(&mut self, name: &str) -> Result<bool, StoreError> {
        Ok(self.state.revoked.insert(name.to_owned()))
    }

    fn revoked(&self) -> Result<BTreeSet<String>, StoreError> {
        Ok(self.state.revoked.clone())
    }
}
