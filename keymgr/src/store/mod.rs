//! Where the key manager's durable state lives: the epoch counter, the
//! committed members and the revocations.
//!
//! A small trait with the embedded default ([`RedbStore`]) and the
//! replicated one ([`EtcdStore`]), where several key managers share one
//! epoch counter. The one rule every implementation keeps: an epoch
//! returned by [`Store::advance_epoch`] is durable before the call returns,
//! so no crash can ever hand out the same epoch twice (with two keys). The
//! etcd store adds a second: every write is fenced by the writer's term of
//! leadership, so a replica that lost it cannot reserve or commit anything.

mod etcd;
mod redb;

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr};

pub use self::etcd::EtcdStore;
pub use self::redb::RedbStore;
use von_config::{UnderlayEndpoints, UnderlayName};

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
    /// Where it receives, per underlay name.
    pub underlay: UnderlayEndpoints,
    /// The member's Noise public key, to wrap the next key for it.
    pub noise_public: [u8; 32],
}

/// [`StoredMember`] as both stores write it: JSON, keyed by member id.
///
/// Records written before underlays were named carry `a` and `b` instead of
/// `underlay`; they read as the underlays named `a` and `b` (the names the
/// first release's `[underlay.a]` and `[underlay.b]` gave them), so a store
/// from then loads unchanged and is rewritten in the new form at the next
/// commit.
#[derive(serde::Serialize, serde::Deserialize)]
struct Record {
    name: String,
    address: Ipv4Addr,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    underlay: Option<UnderlayEndpoints>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    a: Option<SocketAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    b: Option<SocketAddr>,
    noise_public: String,
}

impl Record {
    fn encode(m: &StoredMember) -> Vec<u8> {
        let record = Record {
            name: m.name.clone(),
            address: m.address,
            underlay: Some(m.underlay.clone()),
            a: None,
            b: None,
            noise_public: hex::encode(m.noise_public),
        };
        // A struct of strings and addresses always serializes.
        serde_json::to_vec(&record).expect("member record serializes")
    }

    fn decode(id: u32, bytes: &[u8]) -> Result<StoredMember, String> {
        let r: Record = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        let noise_public = hex::decode(&r.noise_public)
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .ok_or("noise key is not 64 hex digits")?;
        let underlay = match (r.underlay, r.a, r.b) {
            (Some(u), None, None) => u,
            (None, Some(a), Some(b)) => {
                let name = |n: &str| n.parse::<UnderlayName>().map_err(|e| e.to_string());
                UnderlayEndpoints::new([(name("a")?, a), (name("b")?, b)])
                    .map_err(|e| e.to_string())?
            }
            _ => return Err("record has neither `underlay` nor both `a` and `b`".into()),
        };
        Ok(StoredMember {
            id: MemberId(id),
            name: r.name,
            address: r.address,
            underlay,
            noise_public,
        })
    }
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
    /// The replicated store could not be reached (no etcd quorum). The
    /// write may or may not have happened; the replica steps down.
    #[error("{0}")]
    Unavailable(#[from] crate::replica::EtcdError),
    /// This replica no longer leads: another one took over, so nothing it
    /// writes is accepted (the fence in every etcd transaction).
    #[error("this key manager replica lost the leadership ({detail}); another replica carries on")]
    Fenced {
        /// What etcd showed instead of our term.
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

impl StoreError {
    /// True when the store is fine but this replica may not write to it
    /// (lost leadership, or no quorum): step down, don't stop.
    pub fn is_leadership(&self) -> bool {
        matches!(self, Self::Unavailable(_) | Self::Fenced { .. })
    }
}

impl<S: Store + ?Sized> Store for Box<S> {
    fn load(&self) -> Result<Persisted, StoreError> {
        (**self).load()
    }
    fn advance_epoch(&mut self, after: Epoch) -> Result<Epoch, StoreError> {
        (**self).advance_epoch(after)
    }
    fn save_members(&mut self, members: &[StoredMember]) -> Result<(), StoreError> {
        (**self).save_members(members)
    }
    fn revoke(&mut self, name: &str) -> Result<bool, StoreError> {
        (**self).revoke(name)
    }
    fn revoked(&self) -> Result<BTreeSet<String>, StoreError> {
        (**self).revoked()
    }
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
