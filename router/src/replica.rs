//! The reservation service as replicas on etcd: two or more
//! `von reserve serve` processes with `[etcd]` in reserve.toml share the
//! registry in etcd; one leads (answers `von reserve`, renews every lease on
//! the routers), the others stand by and answer [`ServiceResponse::Standby`].
//!
//! Leadership is the key manager's: the same [`Election`] (an etcd lease,
//! a `leader` key created under it, a poll for a free seat), only under the
//! service's own prefix (`/von/reserve` by default), so a key manager and
//! the service never compete for one seat.
//!
//! The fence: every write of [`EtcdRegistry`] is one etcd transaction that
//! first compares the `leader` key's create-revision with the writer's
//! [`Term`]. A replica whose term ended (its lease ran out, it was
//! partitioned, it paused) writes nothing, however sure it is that it leads:
//! so two replicas never both register one ON id, and a release asked of an
//! old leader never forgets a reservation the new leader renews.
//!
//! Keys under the prefix: `leader`, `replicas/<name>` (the election's) and
//! `reservations/<on_id>` (JSON of [`ReservationSpec`]).
//!
//! [`ServiceResponse::Standby`]: crate::service::ServiceResponse::Standby

use std::collections::BTreeMap;

use etcd_client::{Compare, CompareOp, GetOptions, Txn, TxnOp, TxnOpResponse, TxnResponse};
pub use von_keymgr::replica::{Election, Etcd, EtcdError, ReplicaInfo, Role, Term};

use crate::error::{Error, Result};
use crate::model::ReservationSpec;
use crate::store::Registry;

/// The registry in etcd, written under one term of leadership.
#[derive(Debug, Clone)]
pub struct EtcdRegistry {
    etcd: Etcd,
    term: Term,
}

impl EtcdRegistry {
    /// A registry whose writes succeed only while `term` is the current one.
    pub fn new(etcd: Etcd, term: Term) -> Self {
        Self { etcd, term }
    }

    /// The prefix of the reservations.
    fn prefix(&self) -> String {
        format!("{}reservations/", self.etcd.keys().prefix())
    }

    fn key(&self, on_id: u32) -> String {
        format!("{}{on_id}", self.prefix())
    }

    /// Runs `ops` if, and only if, our term is still the current one.
    fn fenced_txn(&self, what: String, ops: Vec<TxnOp>) -> Result<()> {
        let etcd = self.etcd.clone();
        let leader = self.etcd.keys().leader();
        let revision = self.term.revision;
        let resp: TxnResponse = self
            .etcd
            .block(async move {
                etcd.call(|mut c| {
                    let (leader, ops) = (leader.clone(), ops.clone());
                    async move {
                        c.txn(
                            Txn::new()
                                .when([Compare::create_revision(
                                    leader.clone(),
                                    CompareOp::Equal,
                                    revision,
                                )])
                                .and_then(ops)
                                .or_else([TxnOp::get(leader, None)]),
                        )
                        .await
                    }
                })
                .await
            })
            .map_err(|e| etcd_failed(&what, &e))?;
        if resp.succeeded() {
            return Ok(());
        }
        let now = resp.op_responses().into_iter().find_map(|r| match r {
            TxnOpResponse::Get(g) => g.kvs().first().map(|kv| {
                format!(
                    "the leader key now holds {} from revision {}",
                    String::from_utf8_lossy(kv.value()),
                    kv.create_revision()
                )
            }),
            _ => None,
        });
        Err(Error::invalid(
            what,
            format!(
                "fenced: this replica's term (revision {revision}) has ended ({}); nothing was \
                 written; ask the replica that leads now",
                now.unwrap_or_else(|| "no leader key".into())
            ),
        ))
    }
}

fn etcd_failed(what: &str, e: &EtcdError) -> Error {
    Error::invalid(what.to_owned(), e.to_string())
}

impl Registry for EtcdRegistry {
    fn load(&self) -> Result<BTreeMap<u32, ReservationSpec>> {
        let etcd = self.etcd.clone();
        let prefix = self.prefix();
        let p = prefix.clone();
        let resp = self
            .etcd
            .block(async move {
                etcd.call(|mut c| {
                    let p = p.clone();
                    async move { c.get(p, Some(GetOptions::new().with_prefix())).await }
                })
                .await
            })
            .map_err(|e| etcd_failed("loading the registry from etcd", &e))?;
        let mut out = BTreeMap::new();
        for kv in resp.kvs() {
            let key = String::from_utf8_lossy(kv.key()).into_owned();
            let damaged = |why: String| {
                Error::invalid(
                    format!("etcd key {key}"),
                    format!(
                        "{why}; the registry in etcd is damaged: fix or delete that key \
                         (etcdctl del {key})"
                    ),
                )
            };
            let id: u32 = key
                .strip_prefix(&prefix)
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| damaged("not reservations/<ON id>".into()))?;
            let spec: ReservationSpec =
                serde_json::from_slice(kv.value()).map_err(|e| damaged(e.to_string()))?;
            if spec.on_id != id {
                return Err(damaged(format!("its record names ON id {}", spec.on_id)));
            }
            out.insert(id, spec);
        }
        Ok(out)
    }

    fn put(&self, spec: &ReservationSpec) -> Result<()> {
        let json = serde_json::to_vec(spec)
            .map_err(|e| Error::Protocol(format!("encoding reservation {}: {e}", spec.on_id)))?;
        self.fenced_txn(
            format!("recording ON id {} in etcd", spec.on_id),
            vec![TxnOp::put(self.key(spec.on_id), json, None)],
        )
    }

    fn remove(&self, on_id: u32) -> Result<()> {
        self.fenced_txn(
            format!("forgetting ON id {on_id} in etcd"),
            vec![TxnOp::delete(self.key(on_id), None)],
        )
    }
}
