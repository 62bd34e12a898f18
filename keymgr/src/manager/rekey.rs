//! Prepare and commit: the two halves of a rekey, and bringing a reconnected
//! member up to date.

use std::sync::Arc;
use std::time::Instant;

use ring::rand::{SecureRandom, SystemRandom};
use tracing::{info, warn};

use super::{Committed, Departure, KeyManager, Output, Pending, millis};
use crate::ids::{Epoch, GroupKey, MemberId};
use crate::proto::ServerMsg;
use crate::store::{Store, StoreError};
use crate::view::View;
use crate::wrap::KeyWrapper;

impl<S: Store, W: KeyWrapper> KeyManager<S, W> {
    /// Advance the protocol after any event: commit a complete or overdue
    /// prepare, then start the next rekey if one is due.
    pub(super) fn drive(&mut self, now: Instant, out: &mut Vec<Output>) -> Result<(), StoreError> {
        if let Some(p) = &self.pending {
            if p.awaiting.is_empty() || p.deadline <= now {
                self.commit(now, out)?;
            }
        }
        if let Some((until, waiting)) = &self.takeover {
            if *until > now && !waiting.is_empty() {
                return Ok(());
            }
            self.takeover = None;
        }
        if self.pending.is_none() && self.dirty {
            if self.members.is_empty() {
                self.dirty = false;
                // Nobody left to send a key to; the next joiner starts a rekey.
                self.committed.view.members.clear();
                self.committed.key = None;
                self.store.save_members(&[])?;
            } else {
                self.prepare(now, out)?;
            }
        }
        Ok(())
    }

    /// Reserve the next epoch, draw its key and send each member its copy.
    fn prepare(&mut self, now: Instant, out: &mut Vec<Output>) -> Result<(), StoreError> {
        // The epoch is durable before its key exists, so a crash after this
        // line can only skip an epoch, never reuse one.
        let epoch = self.store.advance_epoch(self.epoch)?;
        self.epoch = epoch;
        let key = fresh_key(self.settings.cipher);
        let mut view = View {
            on_id: self.settings.on_id,
            epoch,
            members: self.members.values().map(|e| e.member.clone()).collect(),
        };
        let mut wrapped = Vec::with_capacity(view.members.len());
        let mut failed = Vec::new();
        for m in &view.members {
            let entry = &self.members[&m.id];
            match self.wrapper.wrap(&entry.noise_public, epoch, &key) {
                Ok(w) => wrapped.push((m.id, w)),
                Err(e) => {
                    warn!(member = %m.name, error = %e, "dropping member");
                    failed.push(m.id);
                }
            }
        }
        for id in failed {
            self.remove(id, Departure::WrapFailed, out);
        }
        view.members.retain(|m| self.members.contains_key(&m.id));
        let wire = Arc::new(view.to_wire());
        let cipher = self.settings.cipher.as_str().to_owned();
        for (to, w) in wrapped {
            out.push(Output::Send {
                to,
                msg: ServerMsg::Prepare {
                    view: wire.clone(),
                    cipher: cipher.clone(),
                    wrapped_key: hex::encode(w),
                },
            });
        }
        info!(epoch = epoch.0, members = view.members.len(), "prepared");
        self.pending = Some(Pending {
            awaiting: view.members.iter().map(|m| m.id).collect(),
            view,
            key,
            deadline: now + self.settings.ack_timeout,
            handed_over: false,
        });
        // Removals above were part of building this view, not a new change.
        self.dirty = false;
        Ok(())
    }

    /// Switch everyone who acknowledged to the prepared epoch.
    fn commit(&mut self, now: Instant, out: &mut Vec<Output>) -> Result<(), StoreError> {
        let Some(mut p) = self.pending.take() else {
            return Ok(());
        };
        let prepared = p.view.members.len();
        for id in std::mem::take(&mut p.awaiting) {
            self.remove(id, Departure::Silent, out);
        }
        p.view.members.retain(|m| self.members.contains_key(&m.id));
        if p.view.members.len() < prepared {
            // Someone outside the final view unwrapped this key: replace it.
            self.dirty = true;
        }
        let stored = self.stored_members(&p.view);
        self.store.save_members(&stored)?;
        let wire = Arc::new(p.view.to_wire());
        let grace_ms = millis(self.settings.grace);
        for m in &p.view.members {
            out.push(Output::Send {
                to: m.id,
                msg: ServerMsg::Commit {
                    view: wire.clone(),
                    grace_ms,
                },
            });
        }
        info!(
            epoch = p.view.epoch.0,
            members = p.view.members.len(),
            "committed"
        );
        self.committed = Committed {
            view: p.view,
            key: Some(p.key),
            since: now,
        };
        Ok(())
    }

    /// A member reconnected without a view change: resend what it may have
    /// missed (the prepare in flight, or the committed epoch it lacks).
    pub(super) fn catch_up(&mut self, id: MemberId, have: Option<Epoch>, out: &mut Vec<Output>) {
        // Committed first: a member never installs an epoch below one it has.
        let c = &self.committed;
        let behind = c.view.contains(id) && have.is_none_or(|h| h < c.view.epoch);
        if let (true, Some(key)) = (behind, &c.key) {
            if let Some(msg) = self.prepare_for(id, &c.view, key) {
                out.push(Output::Send { to: id, msg });
                out.push(Output::Send {
                    to: id,
                    msg: ServerMsg::Commit {
                        view: Arc::new(c.view.to_wire()),
                        grace_ms: millis(self.settings.grace),
                    },
                });
            }
        }
        // Without a committed key (restarted), the member keeps the one it has.
        if let Some(p) = &self.pending {
            if p.awaiting.contains(&id) {
                if let Some(msg) = self.prepare_for(id, &p.view, &p.key) {
                    out.push(Output::Send { to: id, msg });
                }
            }
        }
    }

    fn prepare_for(&self, id: MemberId, view: &View, key: &GroupKey) -> Option<ServerMsg> {
        let entry = self.members.get(&id)?;
        let wrapped = self
            .wrapper
            .wrap(&entry.noise_public, view.epoch, key)
            .ok()?;
        Some(ServerMsg::Prepare {
            view: Arc::new(view.to_wire()),
            cipher: self.settings.cipher.as_str().to_owned(),
            wrapped_key: hex::encode(wrapped),
        })
    }
}

/// A new group key from the OS's CSPRNG.
fn fresh_key(cipher: crate::ids::Cipher) -> GroupKey {
    let mut secret = zeroize::Zeroizing::new([0u8; 32]);
    // The OS CSPRNG failing is not recoverable and must never yield a weak key.
    SystemRandom::new()
        .fill(secret.as_mut())
        .expect("the OS random number generator failed");
    GroupKey::new(cipher, *secret)
}
