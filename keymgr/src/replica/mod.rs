//! Key manager replicas: two or three `von keymgr` processes per VON share
//! their state in etcd; one leads (serves members, rekeys), the others stand
//! by with the members' connections held open, and take over when the
//! leader's etcd lease lapses.
//!
//! - [`etcd`]: the connection (a runtime thread, one client per endpoint);
//! - [`election`]: the lease, the `leader` key, the role;
//! - the state itself is [`crate::store::EtcdStore`], fenced by the [`Term`].

pub mod election;
pub mod etcd;

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

pub use self::election::Election;
pub use self::etcd::{EndpointHealth, Etcd, EtcdError, Keys};

/// One term of leadership: the `leader` key's create-revision, unique for
/// every time any replica takes the seat, and the lease it lives under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Term {
    /// The revision at which this replica created the `leader` key.
    pub revision: i64,
    /// The etcd lease holding it.
    pub lease: i64,
}

/// A replica as the others see it (`leader` and `replicas/<name>` values).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaInfo {
    /// Its name (`[etcd] replica` in keymgr.toml).
    pub name: String,
    /// The QUIC address members reach it on.
    pub listen: SocketAddr,
}

/// What this replica is now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// Not yet heard from etcd.
    Starting,
    /// Another replica leads (named when known); members' joins are held.
    Standby {
        /// The leader's name.
        leader: Option<String>,
    },
    /// This replica leads for this term.
    Leader(Term),
    /// etcd does not answer (no quorum, or cut off): nobody here leads;
    /// members forward on the keys they hold.
    Unavailable {
        /// etcd's answers.
        reason: String,
    },
}

impl Role {
    /// `leader`, `standby`, `unavailable` or `starting`, for status and metrics.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Standby { .. } => "standby",
            Self::Leader(_) => "leader",
            Self::Unavailable { .. } => "unavailable",
        }
    }
}

/// Adds `name` to the VON's revocations in etcd; true if it is new. Not
/// fenced: any replica (a standby too) may add one, adding twice is
/// harmless, and whoever leads applies it at its next commit (a replica
/// taking over loads them before its first).
pub async fn revoke(etcd: &Etcd, name: &str) -> Result<bool, EtcdError> {
    use etcd_client::{Compare, CompareOp, Txn, TxnOp};
    let key = etcd.keys().revoked(name);
    let resp = etcd
        .call(|mut c| {
            let key = key.clone();
            async move {
                c.txn(
                    Txn::new()
                        .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
                        .and_then([TxnOp::put(key, "1", None)]),
                )
                .await
            }
        })
        .await?;
    Ok(resp.succeeded())
}

/// The VON's revoked names in etcd.
pub async fn revocations(etcd: &Etcd) -> Result<std::collections::BTreeSet<String>, EtcdError> {
    let prefix = etcd.keys().revocations();
    let resp = etcd
        .call(|mut c| {
            let p = prefix.clone();
            async move {
                c.get(
                    p,
                    Some(
                        etcd_client::GetOptions::new()
                            .with_prefix()
                            .with_keys_only(),
                    ),
                )
                .await
            }
        })
        .await?;
    Ok(resp
        .kvs()
        .iter()
        .filter_map(|kv| {
            String::from_utf8_lossy(kv.key())
                .strip_prefix(&prefix)
                .map(str::to_owned)
        })
        .collect())
}

/// The live replicas and the leader, read from etcd.
pub async fn replicas(etcd: &Etcd) -> Result<(Vec<ReplicaInfo>, Option<String>), EtcdError> {
    let keys = etcd.keys().clone();
    let resp = etcd
        .call(|mut c| {
            let prefix = keys.replicas();
            async move {
                c.get(prefix, Some(etcd_client::GetOptions::new().with_prefix()))
                    .await
            }
        })
        .await?;
    let replicas = resp
        .kvs()
        .iter()
        .filter_map(|kv| serde_json::from_slice(kv.value()).ok())
        .collect();
    let leader = etcd
        .call(|mut c| {
            let k = keys.leader();
            async move { c.get(k, None).await }
        })
        .await?
        .kvs()
        .first()
        .and_then(|kv| serde_json::from_slice::<ReplicaInfo>(kv.value()).ok())
        .map(|r| r.name);
    Ok((replicas, leader))
}
