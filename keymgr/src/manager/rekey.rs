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
use crate::view::{View, ViewDigest, ViewUpdate};
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
                self.committed.digest = self.committed.view.digest();
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
        let digest = view.digest();
        // Members holding the committed view get the change from it (O(changes)
        // bytes); the others (new joiners; everyone after a restart or a
        // takeover, when this process committed no view) get the whole view.
        // A member whose view differs anyway asks for the whole one
        // (`NeedView`).
        let c = &self.committed;
        let delta = c
            .key
            .is_some()
            .then(|| Arc::new(ViewUpdate::delta(&c.view, &view, &digest)));
        let mut full: Option<Arc<ViewUpdate>> = None;
        let cipher = self.settings.cipher.as_str().to_owned();
        for (to, w) in wrapped {
            let update = match &delta {
                Some(d) if c.view.contains(to) => d.clone(),
                _ => full
                    .get_or_insert_with(|| Arc::new(ViewUpdate::full(&view, &digest)))
                    .clone(),
            };
            out.push(Output::Send {
                to,
                msg: ServerMsg::Prepare {
                    view: update,
                    cipher: cipher.clone(),
                    wrapped_key: hex::encode(w),
                },
            });
        }
        info!(epoch = epoch.0, members = view.members.len(), "prepared");
        self.pending = Some(Pending {
            awaiting: view.members.iter().map(|m| m.id).collect(),
            view,
            digest,
            key,
            deadline: now + self.settings.ack_timeout,
            handed_over: false,
            resent: Default::default(),
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
        for id in std::mem::take(&mut p.awaiting) {
            self.remove(id, Departure::Silent, out);
        }
        let mut removed = Vec::new();
        p.view.members.retain(|m| {
            let stays = self.members.contains_key(&m.id);
            if !stays {
                removed.push(m.id.0);
            }
            stays
        });
        if !removed.is_empty() {
            // Someone outside the final view unwrapped this key: replace it.
            self.dirty = true;
            p.digest = p.view.digest();
        }
        let stored = self.stored_members(&p.view);
        self.store.save_members(&stored)?;
        // Every member of the final view holds the prepared view of this
        // epoch: the commit names who dropped out (usually nobody) and the
        // digest of the result, not the whole view again.
        let update = Arc::new(ViewUpdate {
            on_id: p.view.on_id.0,
            epoch: p.view.epoch.0,
            base: Some(p.view.epoch.0),
            members: Vec::new(),
            removed,
            digest: hex::encode(p.digest),
        });
        let grace_ms = millis(self.settings.grace);
        for m in &p.view.members {
            out.push(Output::Send {
                to: m.id,
                msg: ServerMsg::Commit {
                    view: update.clone(),
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
            digest: p.digest,
            key: Some(p.key),
            since: now,
            resent: Default::default(),
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
            if let Some(msg) = self.prepare_for(id, &c.view, &c.digest, key) {
                out.push(Output::Send { to: id, msg });
                out.push(Output::Send {
                    to: id,
                    msg: self.full_commit(),
                });
            }
        }
        // Without a committed key (restarted), the member keeps the one it has.
        if let Some(p) = &self.pending {
            if p.awaiting.contains(&id) {
                if let Some(msg) = self.prepare_for(id, &p.view, &p.digest, &p.key) {
                    out.push(Output::Send { to: id, msg });
                }
            }
        }
    }

    /// `id` could not rebuild the view update of `epoch`: send it the whole
    /// view, once per member and epoch (a member asking again gets nothing
    /// more: the whole view cannot fail to rebuild unless something is
    /// broken, and answering every time would let one member make the key
    /// manager wrap and send without end).
    pub(super) fn send_whole_view(&mut self, id: MemberId, epoch: Epoch, out: &mut Vec<Output>) {
        if let Some(p) = self.pending.as_mut().filter(|p| p.view.epoch == epoch) {
            if !p.awaiting.contains(&id) || !p.resent.insert(id) {
                return;
            }
            let p = self.pending.as_ref().expect("checked above");
            if let Some(msg) = self.prepare_for(id, &p.view, &p.digest, &p.key) {
                info!(
                    member = id.0,
                    epoch = epoch.0,
                    "sent the whole prepared view on request"
                );
                out.push(Output::Send { to: id, msg });
            }
        } else if self.committed.view.epoch == epoch
            && self.committed.view.contains(id)
            && self.committed.resent.insert(id)
        {
            info!(
                member = id.0,
                epoch = epoch.0,
                "sent the whole committed view on request"
            );
            out.push(Output::Send {
                to: id,
                msg: self.full_commit(),
            });
        }
    }

    fn full_commit(&self) -> ServerMsg {
        let c = &self.committed;
        ServerMsg::Commit {
            view: Arc::new(ViewUpdate::full(&c.view, &c.digest)),
            grace_ms: millis(self.settings.grace),
        }
    }

    fn prepare_for(
        &self,
        id: MemberId,
        view: &View,
        digest: &ViewDigest,
        key: &GroupKey,
    ) -> Option<ServerMsg> {
        let entry = self.members.get(&id)?;
        let wrapped = self
            .wrapper
            .wrap(&entry.noise_public, view.epoch, key)
            .ok()?;
        Some(ServerMsg::Prepare {
            view: Arc::new(ViewUpdate::full(view, digest)),
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
