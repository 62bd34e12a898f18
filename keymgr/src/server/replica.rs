//! The server as one of a VON's replicas: standing by with members' joins
//! held, taking over when the election makes it leader, stepping down when
//! it stops being leader or cannot write under its term.
//!
//! Standing by, the replica accepts members' connections and their `Join`
//! but answers nothing: the joins wait here. Taking over, it builds a fresh
//! [`KeyManager`] on the etcd store fenced by its new term (members, epoch
//! and revocations as the last leader committed them), replays the held
//! joins, and rekeys as soon as every reloaded member is back (at most the
//! prepare timeout later). Stepping down, it drops the manager and closes
//! every member's connection; their links reconnect and are held again.

use std::collections::HashMap;
use von_config::UnderlayEndpoints;

use tokio::sync::mpsc;
use tracing::{info, warn};
use von_crypto::MemberId;
use von_crypto::cert::VonName;
use von_crypto::wrap::{NoiseSecret, Wrapper};

use super::{ConnCmd, Core, Event, ServerError, log_replaced, now};
use crate::Epoch;
use crate::manager::{Identity, KeyManager, Output, Settings};
use crate::replica::{Etcd, Role};
use crate::store::{EtcdStore, Store};

/// What a replica needs to lead when its turn comes.
#[derive(Debug)]
pub(super) struct Replica {
    pub(super) etcd: Etcd,
    pub(super) name: String,
    settings: Settings,
    noise: NoiseSecret,
    von: VonName,
    /// The election's last word.
    pub(super) role: Role,
    /// Joins waiting for this replica to lead, by member.
    held: HashMap<MemberId, Held>,
    /// Set when a write under the current term failed: the run loop tells
    /// the election to end the term.
    pub(super) lost_term: bool,
}

/// A member's `Join`, unanswered.
#[derive(Debug)]
struct Held {
    conn: u64,
    who: Identity,
    underlay: UnderlayEndpoints,
    have: Option<Epoch>,
    tx: mpsc::UnboundedSender<ConnCmd>,
}

impl Replica {
    pub(super) fn new(
        etcd: Etcd,
        name: String,
        settings: Settings,
        noise: NoiseSecret,
        von: VonName,
    ) -> Self {
        Self {
            etcd,
            name,
            settings,
            noise,
            von,
            role: Role::Starting,
            held: HashMap::new(),
            lost_term: false,
        }
    }

    /// How many joins wait here.
    pub(super) fn held(&self) -> usize {
        self.held.len()
    }
}

impl Core {
    /// The election says `role`: take over, stay, or step down.
    pub(super) fn set_role(&mut self, role: Role) -> Result<Vec<Output>, ServerError> {
        let Some(r) = self.replica.as_mut() else {
            return Ok(Vec::new());
        };
        r.role = role.clone();
        match role {
            Role::Leader(term) if self.km.is_none() => {
                let store = EtcdStore::new(r.etcd.clone(), term);
                let wrapper = Wrapper::new(r.noise.clone(), r.von.clone(), r.settings.on_id);
                let mut km = KeyManager::new(
                    r.settings.clone(),
                    Box::new(store) as Box<dyn Store>,
                    wrapper,
                    now(),
                )?;
                for name in km.revoked() {
                    self.revoked.insert(name);
                }
                km.take_over(now(), r.settings.ack_timeout);
                info!(
                    replica = %r.name,
                    term = term.revision,
                    epoch = km.view().epoch.0,
                    members = km.view().members.len(),
                    held = r.held.len(),
                    "taking over"
                );
                let held: Vec<Held> = r.held.drain().map(|(_, h)| h).collect();
                self.km = Some(km);
                let mut out = Vec::new();
                for h in held {
                    out.extend(self.handle(Event::Join {
                        conn: h.conn,
                        who: h.who,
                        underlay: h.underlay.clone(),
                        have: h.have,
                        tx: h.tx,
                    })?);
                }
                Ok(out)
            }
            Role::Leader(_) => Ok(Vec::new()),
            _ => {
                self.step_down("this key manager replica no longer leads; another takes over");
                Ok(Vec::new())
            }
        }
    }

    /// Stop leading: forget the manager (its state is in etcd) and close
    /// every member's connection, so each reconnects and waits here.
    pub(super) fn step_down(&mut self, why: &str) {
        if self.km.take().is_some() {
            warn!(reason = why, members = self.routes.len(), "stepping down");
            for (_, (_, tx)) in self.routes.drain() {
                let _ = tx.send(ConnCmd::Close(why.to_owned()));
            }
        }
    }

    /// An event while standing by: hold joins, drop the rest.
    pub(super) fn standby(&mut self, ev: Event) -> Result<Vec<Output>, ServerError> {
        let Some(r) = self.replica.as_mut() else {
            return Ok(Vec::new());
        };
        match ev {
            Event::Join {
                conn,
                who,
                underlay,
                have,
                tx,
            } => {
                let id = who.id;
                let name = who.name.clone();
                let held = Held {
                    conn,
                    who,
                    underlay,
                    have,
                    tx,
                };
                if let Some(old) = r.held.insert(id, held) {
                    log_replaced(&mut self.replaced, &name, now());
                    let _ = old
                        .tx
                        .send(ConnCmd::CloseQuiet("replaced by a newer connection".into()));
                }
            }
            Event::Closed { conn, member } => {
                if r.held.get(&member).is_some_and(|h| h.conn == conn) {
                    r.held.remove(&member);
                }
            }
            // Members talk to the leader; a standby has nothing to apply.
            Event::Msg { .. } => {}
            Event::Control { req, reply } => {
                let answer = self.standby_control(req);
                let _ = reply.send(answer);
            }
        }
        Ok(Vec::new())
    }

    fn standby_control(
        &mut self,
        req: super::ControlRequest,
    ) -> Result<super::ControlReply, String> {
        use super::ControlRequest;
        let r = self.replica.as_ref().expect("standing by means a replica");
        match req {
            ControlRequest::Status => {}
            // Any replica may add a revocation: it is in etcd at once, and
            // whoever leads applies it (at the latest when it takes over).
            ControlRequest::Revoke { name } => {
                let etcd = r.etcd.clone();
                let n = name.clone();
                let handle = etcd.clone();
                handle
                    .block(async move { crate::replica::revoke(&etcd, &n).await })
                    .map_err(|e| e.to_string())?;
                self.revoked.insert(&name);
                info!(member = %name, "revocation stored; the leader applies it");
            }
            ControlRequest::Rekey => {
                return Err(format!(
                    "this replica ({}) is {}; ask the leader{}",
                    r.name,
                    r.role.as_str(),
                    match &r.role {
                        Role::Standby { leader: Some(l) } => format!(" ({l})"),
                        _ => String::new(),
                    }
                ));
            }
        }
        Ok(super::ControlReply::standby(self))
    }
}
