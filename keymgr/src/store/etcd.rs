//! The replicated store: the key manager's state in etcd, shared by the
//! VON's key manager replicas, every write fenced by the writer's term.
//!
//! Keys under the VON's prefix (see [`Keys`](crate::replica::Keys)):
//! `epoch` (decimal), `members/<id>` (JSON, the last committed view),
//! `revoked/<name>`. Group keys are never stored: a replica that takes over
//! rekeys at once, and members keep forwarding on the keys they hold until
//! then, so no key ever needs to survive its replica.
//!
//! The fence: a term is the create-revision of the `leader` key this replica
//! wrote under its lease. Every epoch reservation and every commit is one
//! etcd transaction that first compares that key's create-revision with the
//! term. If the lease ran out, or another replica has since created the key,
//! the compare fails and nothing is written, however sure the writer is that
//! it still leads (a replica partitioned from etcd, a paused process). So an
//! epoch is reserved by one term only, and its key drawn by that term only.

use std::collections::BTreeSet;

use etcd_client::{Compare, CompareOp, GetOptions, Txn, TxnOp};

use super::{Persisted, Record, Store, StoreError, StoredMember};
use crate::ids::Epoch;
use crate::replica::{Etcd, EtcdError, Term};

/// The key manager's state in etcd, written under one term of leadership.
#[derive(Debug, Clone)]
pub struct EtcdStore {
    etcd: Etcd,
    term: Term,
}

impl EtcdStore {
    /// A store whose writes succeed only while `term` is the current one.
    pub fn new(etcd: Etcd, term: Term) -> Self {
        Self { etcd, term }
    }

    fn fence(&self) -> Compare {
        Compare::create_revision(
            self.etcd.keys().leader(),
            CompareOp::Equal,
            self.term.revision,
        )
    }

    /// Why the fence failed, from the `leader` key the failed transaction read.
    fn fenced(&self, resp: &etcd_client::TxnResponse) -> StoreError {
        let now = resp.op_responses().into_iter().find_map(|r| match r {
            etcd_client::TxnOpResponse::Get(g) => g.kvs().first().map(|kv| {
                format!(
                    "the leader key now holds {:?} from revision {}",
                    String::from_utf8_lossy(kv.value()),
                    kv.create_revision()
                )
            }),
            _ => None,
        });
        StoreError::Fenced {
            detail: now.unwrap_or_else(|| {
                format!(
                    "no leader key; our term (revision {}) has ended",
                    self.term.revision
                )
            }),
        }
    }
}

fn corrupt(key: &str, detail: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        path: "etcd".into(),
        key: key.to_owned(),
        detail: detail.to_string(),
    }
}

/// Reads everything under the VON's prefix (one linearizable range read).
pub(crate) async fn load(etcd: &Etcd) -> Result<Persisted, StoreError> {
    let keys = etcd.keys().clone();
    let resp = etcd
        .call(|mut c| {
            let prefix = keys.prefix().to_owned();
            async move { c.get(prefix, Some(GetOptions::new().with_prefix())).await }
        })
        .await?;
    let mut out = Persisted::default();
    let (epoch, members, revoked) = (keys.epoch(), keys.members(), keys.revocations());
    for kv in resp.kvs() {
        let key = String::from_utf8_lossy(kv.key()).into_owned();
        if key == epoch {
            let text = String::from_utf8_lossy(kv.value());
            out.epoch = Epoch(text.parse().map_err(|e| corrupt(&key, e))?);
        } else if let Some(id) = key.strip_prefix(&members) {
            let id: u32 = id.parse().map_err(|e| corrupt(&key, e))?;
            out.members
                .push(Record::decode(id, kv.value()).map_err(|e| corrupt(&key, e))?);
        } else if let Some(name) = key.strip_prefix(&revoked) {
            out.revoked.insert(name.to_owned());
        }
    }
    Ok(out)
}

impl Store for EtcdStore {
    fn load(&self) -> Result<Persisted, StoreError> {
        let etcd = self.etcd.clone();
        block(&self.etcd, async move { load(&etcd).await })
    }

    fn advance_epoch(&mut self, after: Epoch) -> Result<Epoch, StoreError> {
        let this = self.clone();
        block(&self.etcd, async move { this.advance(after).await })
    }

    fn save_members(&mut self, members: &[StoredMember]) -> Result<(), StoreError> {
        let this = self.clone();
        let members = members.to_vec();
        block(&self.etcd, async move { this.commit(&members).await })
    }

    fn revoke(&mut self, name: &str) -> Result<bool, StoreError> {
        let etcd = self.etcd.clone();
        let name = name.to_owned();
        block(&self.etcd, async move {
            Ok(crate::replica::revoke(&etcd, &name).await?)
        })
    }

    fn revoked(&self) -> Result<BTreeSet<String>, StoreError> {
        Ok(self.load()?.revoked)
    }
}

impl EtcdStore {
    /// Reserve max(`after`, stored) + 1: one transaction comparing the fence
    /// and the counter's revision as read, so two writers can never both
    /// move it from the same value.
    async fn advance(&self, after: Epoch) -> Result<Epoch, StoreError> {
        let key = self.etcd.keys().epoch();
        let leader = self.etcd.keys().leader();
        // Only a concurrent write by another term moves the counter between
        // the read and the transaction, and that fails the fence; the retry
        // bound is a backstop, not a path.
        for _ in 0..100 {
            let read = self
                .etcd
                .call(|mut c| {
                    let key = key.clone();
                    async move { c.get(key, None).await }
                })
                .await?;
            let (stored, seen) = match read.kvs().first() {
                Some(kv) => {
                    let text = String::from_utf8_lossy(kv.value());
                    let n: u32 = text.parse().map_err(|e| corrupt(&key, e))?;
                    (n, kv.mod_revision())
                }
                None => (0, 0),
            };
            let base = stored.max(after.0);
            let next = base.checked_add(1).ok_or(StoreError::Exhausted {
                what: "epoch",
                at: base,
            })?;
            let fence = self.fence();
            let resp = self
                .etcd
                .call(|mut c| {
                    let (key, leader, fence) = (key.clone(), leader.clone(), fence.clone());
                    async move {
                        c.txn(
                            Txn::new()
                                .when([
                                    fence,
                                    Compare::mod_revision(key.clone(), CompareOp::Equal, seen),
                                ])
                                .and_then([TxnOp::put(key, next.to_string(), None)])
                                .or_else([TxnOp::get(leader, None)]),
                        )
                        .await
                    }
                })
                .await?;
            if resp.succeeded() {
                return Ok(Epoch(next));
            }
            if !self.still_leads(&resp) {
                return Err(self.fenced(&resp));
            }
        }
        Err(StoreError::Unavailable(EtcdError {
            detail: "the epoch counter kept moving under a valid term".into(),
        }))
    }

    /// Replace the committed members, fenced: the commit of an epoch.
    async fn commit(&self, members: &[StoredMember]) -> Result<(), StoreError> {
        let keys = self.etcd.keys().clone();
        let present = self
            .etcd
            .call(|mut c| {
                let prefix = keys.members();
                async move {
                    c.get(
                        prefix,
                        Some(GetOptions::new().with_prefix().with_keys_only()),
                    )
                    .await
                }
            })
            .await?;
        let keep: BTreeSet<String> = members.iter().map(|m| keys.member(m.id.0)).collect();
        // etcd refuses a put inside a range deleted by the same transaction,
        // so delete exactly the members that left.
        let mut ops: Vec<TxnOp> = present
            .kvs()
            .iter()
            .map(|kv| String::from_utf8_lossy(kv.key()).into_owned())
            .filter(|k| !keep.contains(k))
            .map(|k| TxnOp::delete(k, None))
            .collect();
        ops.extend(
            members
                .iter()
                .map(|m| TxnOp::put(keys.member(m.id.0), Record::encode(m), None)),
        );
        let fence = self.fence();
        let resp = self
            .etcd
            .call(|mut c| {
                let (ops, fence, leader) = (ops.clone(), fence.clone(), keys.leader());
                async move {
                    c.txn(
                        Txn::new()
                            .when([fence])
                            .and_then(ops)
                            .or_else([TxnOp::get(leader, None)]),
                    )
                    .await
                }
            })
            .await?;
        if resp.succeeded() {
            Ok(())
        } else {
            Err(self.fenced(&resp))
        }
    }

    /// Whether the `leader` key read by a failed transaction is still ours.
    fn still_leads(&self, resp: &etcd_client::TxnResponse) -> bool {
        resp.op_responses().into_iter().any(|r| match r {
            etcd_client::TxnOpResponse::Get(g) => g
                .kvs()
                .first()
                .is_some_and(|kv| kv.create_revision() == self.term.revision),
            _ => false,
        })
    }
}

/// Run a store operation on the etcd runtime and wait for it.
fn block<T: Send + 'static>(
    etcd: &Etcd,
    fut: impl std::future::Future<Output = Result<T, StoreError>> + Send + 'static,
) -> Result<T, StoreError> {
    // `block` carries etcd's own errors; the store's ride inside.
    etcd.block(async move { Ok(fut.await) })?
}
