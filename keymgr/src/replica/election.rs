//! Who leads: each replica holds an etcd lease and keeps it alive; the
//! replica that creates the `leader` key under its lease leads, the others
//! stand by and try again when the key is gone (its lease expired or was
//! revoked at a clean shutdown).
//!
//! Timeline of a failover after `kill -9` of the leader: etcd expires its
//! lease `ttl` after the last keep-alive (plus etcd's expiry sweep, up to
//! 0.5 s); a standby's next poll (every [`POLL`]) finds no `leader` key and
//! creates it. With the default ttl of 2 s that is 2–2.7 s.
//!
//! A leader that cannot reach etcd gives up leading on its own when its
//! lease's time, counted from the last keep-alive answer, runs out: at most
//! one request's latency after etcd itself would expire it. Safety does not
//! rest on that clock: every write is fenced (see `store::etcd`), so a
//! replica that still believes it leads can serve but never reserve an
//! epoch or commit one.

use std::time::Duration;

use etcd_client::{Compare, CompareOp, PutOptions, Txn, TxnOp};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tracing::{info, warn};

use super::{Etcd, EtcdError, ReplicaInfo, Role, Term};

/// How often a standby looks for a free `leader` key.
pub const POLL: Duration = Duration::from_millis(200);

/// How often the lease is kept alive: often enough that a leader rides out
/// an etcd raft election (about 1–1.5 s) inside a 2 s lease.
pub const KEEPALIVE: Duration = Duration::from_millis(250);

/// A running election; dropping it stops campaigning without revoking the
/// lease (as a crash would); [`resign`](Self::resign) hands over at once.
#[derive(Debug)]
pub struct Election {
    role: watch::Receiver<Role>,
    cmds: mpsc::UnboundedSender<Cmd>,
}

/// What the key manager asks of its campaign.
#[derive(Debug)]
enum Cmd {
    /// Give up this term (a fenced or failed write) and campaign afresh.
    StepDown,
    /// Revoke the lease and stop; answered when done.
    Resign(oneshot::Sender<()>),
}

impl Election {
    /// Campaign as `me` with leases of `ttl` (whole seconds, at least 2:
    /// etcd's own minimum with its default timings).
    pub fn start(etcd: Etcd, me: ReplicaInfo, ttl: Duration) -> Self {
        let (tx, role) = watch::channel(Role::Starting);
        let (cmds, cmd_rx) = mpsc::unbounded_channel();
        let ttl_secs = i64::try_from(ttl.as_secs().max(2)).unwrap_or(2);
        let task = Campaign {
            etcd: etcd.clone(),
            me,
            ttl: Duration::from_secs(ttl_secs as u64),
            ttl_secs,
            tx,
            lease: None,
        };
        etcd.handle().spawn(task.run(cmd_rx));
        Self { role, cmds }
    }

    /// The current role; `changed()` wakes on every change.
    pub fn role(&self) -> watch::Receiver<Role> {
        self.role.clone()
    }

    /// Stop leading (or standing by) and revoke the lease, so a standby
    /// takes over at its next poll instead of after the ttl.
    pub async fn resign(self) {
        let (done, wait) = oneshot::channel();
        if self.cmds.send(Cmd::Resign(done)).is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(3), wait).await;
        }
    }

    /// End the current term (the key manager could not write under it):
    /// the lease is revoked and a new one campaigns, so this replica never
    /// sits on a seat it cannot use.
    pub fn step_down(&self) {
        let _ = self.cmds.send(Cmd::StepDown);
    }
}

/// This replica's lease.
struct Held {
    id: i64,
    /// Until when it is surely alive on etcd: the last answered keep-alive's
    /// send time plus the ttl etcd granted.
    valid_until: Instant,
    next_keepalive: Instant,
}

struct Campaign {
    etcd: Etcd,
    me: ReplicaInfo,
    ttl: Duration,
    ttl_secs: i64,
    tx: watch::Sender<Role>,
    lease: Option<Held>,
}

impl Campaign {
    async fn run(mut self, mut cmds: mpsc::UnboundedReceiver<Cmd>) {
        loop {
            tokio::select! {
                cmd = cmds.recv() => {
                    // Dropped without resigning: stop as a crash would, and
                    // let the lease run out on etcd.
                    let Some(cmd) = cmd else { return };
                    self.revoke().await;
                    self.publish(Role::Standby { leader: None });
                    if let Cmd::Resign(done) = cmd {
                        info!(replica = %self.me.name, "resigned; lease revoked");
                        let _ = done.send(());
                        return;
                    }
                }
                () = tokio::time::sleep(POLL) => {}
            }
            if let Err(e) = self.step().await {
                self.publish(Role::Unavailable {
                    reason: e.to_string(),
                });
            }
        }
    }

    /// Give the lease back (best effort: unanswered, it expires by itself).
    async fn revoke(&mut self) {
        if let Some(held) = self.lease.take() {
            let id = held.id;
            let _ = self
                .etcd
                .call(|mut c| async move { c.lease_revoke(id).await })
                .await;
        }
    }

    /// One round: hold a lease, keep it alive, then lead or look for a free seat.
    async fn step(&mut self) -> Result<(), EtcdError> {
        let now = Instant::now();
        if self.lease.is_none() {
            self.lease = Some(self.grant().await?);
        }
        let held = self.lease.as_mut().expect("lease just ensured");
        if now >= held.next_keepalive {
            let id = held.id;
            match self.etcd.call_once(|c| keep_alive(c, id)).await {
                Ok(ttl) if ttl > 0 => {
                    let answered = Instant::now();
                    held.valid_until = answered + Duration::from_secs(ttl as u64);
                    held.next_keepalive = answered + KEEPALIVE;
                }
                Ok(_) => {
                    self.lease = None;
                    return Err(EtcdError {
                        detail: "our lease expired on etcd".into(),
                    });
                }
                // Keep leading on the old answer until it runs out.
                Err(e) => warn!(error = %e, "lease keep-alive failed"),
            }
        }
        let held = self.lease.as_ref().expect("lease held");
        if Instant::now() >= held.valid_until {
            self.lease = None;
            return Err(EtcdError {
                detail: format!("no keep-alive answered for the lease's {:?}", self.ttl),
            });
        }
        let lease = held.id;
        let leader_key = self.etcd.keys().leader();
        let leading = matches!(*self.tx.borrow(), Role::Leader(_));
        let read = match self
            .etcd
            .call(|mut c| {
                let k = leader_key.clone();
                async move { c.get(k, None).await }
            })
            .await
        {
            Ok(r) => r,
            // A leader rides out a short etcd outage on its lease's time
            // (its writes fail meanwhile; the fence makes that safe).
            Err(e) if leading => {
                warn!(error = %e, "cannot read the leader key; leading on the lease's time");
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        if let Some(kv) = read.kvs().first() {
            let holder: Option<ReplicaInfo> = serde_json::from_slice(kv.value()).ok();
            if kv.lease() == lease {
                let term = Term {
                    revision: kv.create_revision(),
                    lease,
                };
                self.publish(Role::Leader(term));
            } else {
                self.publish(Role::Standby {
                    leader: holder.map(|h| h.name),
                });
            }
            return Ok(());
        }
        // No leader: try to become it.
        let value = serde_json::to_vec(&self.me).expect("replica info serializes");
        let resp = self
            .etcd
            .call(|mut c| {
                let (k, v) = (leader_key.clone(), value.clone());
                async move {
                    c.txn(
                        Txn::new()
                            .when([Compare::create_revision(k.clone(), CompareOp::Equal, 0)])
                            .and_then([TxnOp::put(
                                k,
                                v,
                                Some(PutOptions::new().with_lease(lease)),
                            )]),
                    )
                    .await
                }
            })
            .await?;
        if resp.succeeded() {
            let revision = resp.header().map_or(0, |h| h.revision());
            self.publish(Role::Leader(Term { revision, lease }));
        }
        Ok(())
    }

    /// A fresh lease, and this replica's presence key under it.
    async fn grant(&self) -> Result<Held, EtcdError> {
        let sent = Instant::now();
        let ttl = self.ttl_secs;
        let grant = self
            .etcd
            .call(|mut c| async move { c.lease_grant(ttl, None).await })
            .await?;
        let id = grant.id();
        let key = self.etcd.keys().replica(&self.me.name);
        let value = serde_json::to_vec(&self.me).expect("replica info serializes");
        self.etcd
            .call(|mut c| {
                let (k, v) = (key.clone(), value.clone());
                async move { c.put(k, v, Some(PutOptions::new().with_lease(id))).await }
            })
            .await?;
        Ok(Held {
            id,
            valid_until: sent + Duration::from_secs(grant.ttl().max(1) as u64),
            next_keepalive: sent + KEEPALIVE,
        })
    }

    fn publish(&self, role: Role) {
        self.tx.send_if_modified(|current| {
            if *current == role {
                return false;
            }
            match &role {
                Role::Leader(t) => {
                    info!(replica = %self.me.name, term = t.revision, "leading")
                }
                Role::Standby { leader } => {
                    info!(replica = %self.me.name, leader = leader.as_deref().unwrap_or("none"), "standing by")
                }
                Role::Unavailable { reason } => {
                    warn!(replica = %self.me.name, %reason, "etcd unavailable; not leading")
                }
                Role::Starting => {}
            }
            *current = role.clone();
            true
        });
    }
}

/// One keep-alive round trip; the ttl etcd granted (0: the lease is gone).
async fn keep_alive(mut c: etcd_client::Client, id: i64) -> Result<i64, etcd_client::Error> {
    let (mut keeper, mut stream) = c.lease_keep_alive(id).await?;
    keeper.keep_alive().await?;
    match stream.message().await? {
        Some(resp) => Ok(resp.ttl()),
        None => Ok(0),
    }
}
