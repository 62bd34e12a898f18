//! The key manager as a sans-IO state machine.
//!
//! The QUIC server (or a test) feeds it events — a member joined, acknowledged
//! an epoch, renewed, left, was revoked, time passed — and sends the
//! [`Output`]s it returns. It never reads a clock or a socket: `now` is passed
//! in, and [`KeyManager::poll_timeout`] says when to call [`KeyManager::tick`]
//! next. That is what lets a unit test expire leases and rekey 1000 members
//! without sleeping.
//!
//! Rekey flow (every membership change, key age, a sender near its limit):
//! 1. reserve epoch N+1 in the store — durable before any key for it exists;
//! 2. draw a fresh group key, wrap it for each member, send `Prepare`;
//! 3. members install N+1 for receiving only and `Ack`;
//! 4. when all have acknowledged, or at the ack deadline without the silent
//!    ones, send `Commit` with the final view: members send under N+1 and keep
//!    accepting N for the grace window;
//! 5. a member dropped in step 4 saw N+1's key, so another rekey follows.
//!
//! Changes arriving while a rekey is in flight are folded into the next one.

mod rekey;
#[cfg(test)]
mod tests;
mod types;

pub use types::{Departure, Identity, JoinError, Output};

/// How often a member was refused, and the latest reason: what
/// `von keymgr status` shows so a misbehaving member is visible.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// The latest reason, as the member was told.
    pub reason: String,
    /// Refusals so far (joins refused, views it refused).
    pub count: u64,
}

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};
use von_config::UnderlayEndpoints;

use tracing::{info, warn};
use von_crypto::cert::VonPrefix;

use crate::ids::{Cipher, Epoch, GroupKey, MemberId, OnId};
use crate::proto::ServerMsg;
use crate::repeats::{Repeats, Verdict};
use crate::store::{Store, StoreError, StoredMember};
use crate::view::{Member, View};
use crate::wrap::KeyWrapper;

/// After a restart, reloaded members have at least this long to reconnect
/// before their lease counts as expired: a member notices the restart only
/// when its QUIC connection to the old process times out (6 s idle) and its
/// reconnect backoff (up to 5 s) runs out.
pub const RESTART_GRACE: Duration = Duration::from_secs(15);

/// The key manager's policy for one VON.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The VON's ON id.
    pub on_id: OnId,
    /// The VON's prefix: every member's certificate must name it, with a
    /// host address inside it (from the key manager's own certificate).
    pub prefix: VonPrefix,
    /// The AEAD every member seals with.
    pub cipher: Cipher,
    /// A member that has not renewed for this long has left.
    pub lease: Duration,
    /// How often members are told to renew (well below `lease`).
    pub renew_every: Duration,
    /// How long a prepare waits for acknowledgements before dropping the
    /// silent members.
    pub ack_timeout: Duration,
    /// Rekey when the current key is this old.
    pub key_max_age: Duration,
    /// How long receivers keep accepting the previous epoch after a commit.
    pub grace: Duration,
}

/// An admitted member and its lease.
#[derive(Debug, Clone)]
struct Entry {
    member: Member,
    noise_public: [u8; 32],
    lease_until: Instant,
}

/// The view members send under, and its key.
struct Committed {
    view: View,
    /// [`View::digest`] of `view`.
    digest: crate::view::ViewDigest,
    /// Members sent the whole view on request (`NeedView`), at most once.
    resent: BTreeSet<MemberId>,
    /// None after a restart: keys are never stored, members keep theirs.
    key: Option<GroupKey>,
    /// When this key was committed (or the key manager restarted).
    since: Instant,
}

/// A prepared epoch awaiting acknowledgements.
struct Pending {
    view: View,
    /// [`View::digest`] of `view`.
    digest: crate::view::ViewDigest,
    /// Members sent the whole view on request (`NeedView`), at most once.
    resent: BTreeSet<MemberId>,
    key: GroupKey,
    /// Members of `view` that have not acknowledged yet.
    awaiting: BTreeSet<MemberId>,
    deadline: Instant,
    /// Whether the driver has reported the prepare sent
    /// ([`KeyManager::handed_over`]); until then the deadline may move.
    handed_over: bool,
}

/// The key manager of one VON.
pub struct KeyManager<S: Store, W: KeyWrapper> {
    settings: Settings,
    store: S,
    wrapper: W,
    members: BTreeMap<MemberId, Entry>,
    revoked: BTreeSet<String>,
    /// The highest epoch reserved in the store.
    epoch: Epoch,
    committed: Committed,
    pending: Option<Pending>,
    /// Membership or key age calls for a rekey once none is in flight.
    dirty: bool,
    /// Members that refused a view, kept out until then: without this a
    /// member refusing every view would force a rekey at every rejoin.
    held_out: BTreeMap<String, (Instant, Epoch)>,
    /// Refusals by member name, for status.
    refused: BTreeMap<String, Refused>,
    /// Refused joins logged, by member name and reason (numbers left out):
    /// a member retrying is logged once, then summed up once a minute.
    refusals_logged: Repeats<(String, String)>,
    /// After a replica takes over: hold the takeover rekey until these
    /// reloaded members have rejoined, or until the instant (then prepare
    /// without waiting; the absent ones drop out at the ack deadline).
    takeover: Option<(Instant, BTreeSet<MemberId>)>,
}

impl<S: Store, W: KeyWrapper> std::fmt::Debug for KeyManager<S, W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyManager")
            .field("on_id", &self.settings.on_id)
            .field("members", &self.members.len())
            .field("epoch", &self.epoch)
            .field("committed", &self.committed.view.epoch)
            .field("pending", &self.pending.as_ref().map(|p| p.view.epoch))
            .finish_non_exhaustive()
    }
}

impl<S: Store, W: KeyWrapper> KeyManager<S, W> {
    /// Start from what `store` holds. Stored members get a fresh lease
    /// (at least [`RESTART_GRACE`]) from `now` to reconnect; the epoch
    /// counter continues above the stored one.
    pub fn new(settings: Settings, store: S, wrapper: W, now: Instant) -> Result<Self, StoreError> {
        let persisted = store.load()?;
        let lease_until = now + settings.lease.max(RESTART_GRACE);
        let mut seen_addresses = BTreeSet::new();
        let mut seen_names = BTreeSet::new();
        let members: BTreeMap<MemberId, Entry> = persisted
            .members
            .into_iter()
            .filter(|m| !persisted.revoked.contains(&m.name))
            .filter(|m| {
                // State written before admission checked these (or under
                // another prefix) must not come back as a view members refuse.
                let fits = settings.prefix.contains_host(m.address)
                    && seen_addresses.insert(m.address)
                    && seen_names.insert(m.name.clone());
                if !fits {
                    warn!(member = %m.name, address = %m.address, prefix = %settings.prefix, "stored member not reloaded: address outside the prefix or shared");
                }
                fits
            })
            .map(|m| {
                let entry = Entry {
                    member: Member {
                        id: m.id,
                        name: m.name,
                        address: m.address,
                        underlay: m.underlay.clone(),
                    },
                    noise_public: m.noise_public,
                    lease_until,
                };
                (m.id, entry)
            })
            .collect();
        let view = View {
            on_id: settings.on_id,
            epoch: persisted.epoch,
            members: members.values().map(|e| e.member.clone()).collect(),
        };
        if !members.is_empty() {
            info!(
                epoch = persisted.epoch.0,
                members = members.len(),
                "reloaded state; members have one lease to reconnect"
            );
        }
        Ok(Self {
            settings,
            store,
            wrapper,
            members,
            revoked: persisted.revoked,
            epoch: persisted.epoch,
            committed: Committed {
                digest: view.digest(),
                view,
                key: None,
                since: now,
                resent: BTreeSet::new(),
            },
            pending: None,
            dirty: false,
            held_out: BTreeMap::new(),
            refused: BTreeMap::new(),
            refusals_logged: Repeats::default(),
            takeover: None,
        })
    }

    /// This manager's replica just took over from another: rekey (the
    /// previous leader's key is unknown here, and a prepare it left in
    /// flight must not be committed by anyone) once every reloaded member
    /// has rejoined, or at `now + wait`, whichever comes first.
    pub fn take_over(&mut self, now: Instant, wait: Duration) {
        self.dirty = true;
        let waiting: BTreeSet<MemberId> = self.members.keys().copied().collect();
        if !waiting.is_empty() {
            self.takeover = Some((now + wait, waiting));
        }
    }

    /// The revoked names.
    pub fn revoked(&self) -> &BTreeSet<String> {
        &self.revoked
    }

    /// A member with a verified certificate connected and sent `Join`.
    /// Returns its id and what to send; the first output is its `Joined`.
    pub fn member_joined(
        &mut self,
        now: Instant,
        who: Identity,
        underlay: UnderlayEndpoints,
        have_epoch: Option<Epoch>,
    ) -> Result<(MemberId, Vec<Output>), JoinError> {
        if let Err(e) = self.admit(now, &who) {
            let key = (who.name.clone(), crate::tls::once_key(&e.to_string()));
            match self.refusals_logged.note(&key, now) {
                Verdict::First => warn!(member = %who.name, reason = %e, "join refused"),
                Verdict::Summary { count } => warn!(
                    member = %who.name,
                    count,
                    reason = %e,
                    "join still refused: {count} more refused joins since the last line"
                ),
                Verdict::Quiet => {}
            }
            self.note_refusal(&who.name, e.to_string());
            return Err(e);
        }
        // Admitted: a later refusal of this name is news again.
        self.refusals_logged
            .forget_if(|(name, _)| *name == who.name);
        let id = who.id;
        let member = Member {
            id,
            name: who.name,
            address: who.address,
            underlay,
        };
        let mut out = vec![Output::Send {
            to: id,
            msg: ServerMsg::Joined {
                member_id: id.0,
                renew_ms: millis(self.settings.renew_every),
                lease_ms: millis(self.settings.lease),
            },
        }];
        let lease_until = now + self.settings.lease;
        if let Some((_, waiting)) = &mut self.takeover {
            waiting.remove(&id);
        }
        match self.members.get_mut(&id) {
            Some(e) if e.member == member && e.noise_public == who.noise_public => {
                // A reconnect: same member, same endpoints. No view change;
                // bring it up to date if it missed messages.
                e.lease_until = lease_until;
                self.catch_up(id, have_epoch, &mut out);
            }
            _ => {
                info!(member = %member.name, id = id.0, "joined");
                let entry = Entry {
                    member,
                    noise_public: who.noise_public,
                    lease_until,
                };
                self.members.insert(id, entry);
                self.dirty = true;
            }
        }
        self.drive(now, &mut out)?;
        Ok((id, out))
    }

    /// `member` acknowledged `epoch`.
    pub fn ack(
        &mut self,
        now: Instant,
        member: MemberId,
        epoch: Epoch,
    ) -> Result<Vec<Output>, StoreError> {
        let mut out = Vec::new();
        if let Some(p) = &mut self.pending {
            if p.view.epoch == epoch {
                p.awaiting.remove(&member);
            }
        }
        self.drive(now, &mut out)?;
        Ok(out)
    }

    /// `member` will not install the prepared view of `epoch`, for `reason`.
    /// It leaves that view (so the others commit without it) and is held out
    /// for one lease: the view it saw is replaced by the rekey that follows.
    pub fn refuse(
        &mut self,
        now: Instant,
        member: MemberId,
        epoch: Epoch,
        reason: &str,
    ) -> Result<Vec<Output>, StoreError> {
        let mut out = Vec::new();
        let awaited = self
            .pending
            .as_ref()
            .is_some_and(|p| p.view.epoch == epoch && p.awaiting.contains(&member));
        if awaited {
            if let Some(name) = self.members.get(&member).map(|e| e.member.name.clone()) {
                warn!(member = %name, epoch = epoch.0, %reason, "member refused the prepared view; dropping it from the view");
                self.note_refusal(
                    &name,
                    format!("refused the view of epoch {}: {reason}", epoch.0),
                );
                self.held_out
                    .insert(name, (now + self.settings.lease, epoch));
            }
            self.remove(member, Departure::RefusedView, &mut out);
        }
        self.drive(now, &mut out)?;
        Ok(out)
    }

    /// `member` could not rebuild the view update of `epoch` (no base, or
    /// the digest differs): it gets the whole view, once.
    pub fn need_view(
        &mut self,
        now: Instant,
        member: MemberId,
        epoch: Epoch,
    ) -> Result<Vec<Output>, StoreError> {
        let mut out = Vec::new();
        self.send_whole_view(member, epoch, &mut out);
        self.drive(now, &mut out)?;
        Ok(out)
    }

    /// `member` renewed its lease.
    pub fn renew(&mut self, now: Instant, member: MemberId) -> Result<Vec<Output>, StoreError> {
        let mut out = Vec::new();
        match self.members.get_mut(&member) {
            Some(e) => e.lease_until = now + self.settings.lease,
            None => out.push(Output::Disconnect {
                member,
                reason: Departure::NotMember,
            }),
        }
        self.drive(now, &mut out)?;
        Ok(out)
    }

    /// `member` left cleanly.
    pub fn leave(&mut self, now: Instant, member: MemberId) -> Result<Vec<Output>, StoreError> {
        let mut out = Vec::new();
        self.remove(member, Departure::Left, &mut out);
        self.drive(now, &mut out)?;
        Ok(out)
    }

    /// Revoke `name`: stored at once, out of the view at the next rekey
    /// (which this starts if the member is present).
    pub fn revoke(&mut self, now: Instant, name: &str) -> Result<Vec<Output>, StoreError> {
        let mut out = Vec::new();
        self.store.revoke(name)?;
        self.revoked.insert(name.to_owned());
        let found = self
            .members
            .values()
            .find(|e| e.member.name == name)
            .map(|e| e.member.id);
        if let Some(id) = found {
            self.remove(id, Departure::Revoked, &mut out);
        }
        self.drive(now, &mut out)?;
        Ok(out)
    }

    /// `member` reports its send counter under `epoch` nears the limit.
    pub fn sequence_near_limit(
        &mut self,
        now: Instant,
        member: MemberId,
        epoch: Epoch,
    ) -> Result<Vec<Output>, StoreError> {
        let mut out = Vec::new();
        if self.members.contains_key(&member) && epoch == self.committed.view.epoch {
            info!(
                member = member.0,
                epoch = epoch.0,
                "sender near its sequence limit; rekeying"
            );
            self.dirty = true;
        }
        self.drive(now, &mut out)?;
        Ok(out)
    }

    /// Rekey now, membership unchanged (operator's `von keymgr rekey`).
    pub fn force_rekey(&mut self, now: Instant) -> Result<Vec<Output>, StoreError> {
        let mut out = Vec::new();
        self.dirty = true;
        self.drive(now, &mut out)?;
        Ok(out)
    }

    /// Time passed: expire leases, give up on silent members, age the key.
    pub fn tick(&mut self, now: Instant) -> Result<Vec<Output>, StoreError> {
        let mut out = Vec::new();
        let expired: Vec<MemberId> = self
            .members
            .values()
            .filter(|e| e.lease_until <= now)
            .map(|e| e.member.id)
            .collect();
        for id in expired {
            self.remove(id, Departure::LeaseExpired, &mut out);
        }
        if !self.members.is_empty() && self.committed.since + self.settings.key_max_age <= now {
            self.dirty = true;
        }
        self.drive(now, &mut out)?;
        Ok(out)
    }

    /// The driver has handed the last step's outputs to the connections at
    /// `now`. A member's time to acknowledge a prepare counts from here, not
    /// from the start of the step: the step reserved the epoch in the store
    /// first, and a slow disk there must delay the rekey, never make every
    /// member look silent and drop it (issue 19).
    pub fn handed_over(&mut self, now: Instant) {
        if let Some(p) = self.pending.as_mut().filter(|p| !p.handed_over) {
            p.deadline = p.deadline.max(now + self.settings.ack_timeout);
            p.handed_over = true;
        }
    }

    /// When [`tick`](Self::tick) must be called next, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let leases = self.members.values().map(|e| e.lease_until).min();
        let ack = self.pending.as_ref().map(|p| p.deadline);
        let age =
            (!self.members.is_empty()).then(|| self.committed.since + self.settings.key_max_age);
        let takeover = self.takeover.as_ref().map(|(until, _)| *until);
        [leases, ack, age, takeover].into_iter().flatten().min()
    }

    /// The view members currently send under.
    pub fn view(&self) -> &View {
        &self.committed.view
    }

    /// The epoch being prepared, if a rekey is in flight.
    pub fn pending_epoch(&self) -> Option<Epoch> {
        self.pending.as_ref().map(|p| p.view.epoch)
    }

    /// Admitted members (leased), whether or not yet in the committed view.
    pub fn member_count(&self) -> usize {
        self.members.len()
    }

    /// True if `name` is revoked.
    pub fn is_revoked(&self, name: &str) -> bool {
        self.revoked.contains(name)
    }

    /// Refusals so far, by member name.
    pub fn refusals(&self) -> &BTreeMap<String, Refused> {
        &self.refused
    }

    /// Count one refusal of `name` (also handshakes refused before a join).
    pub fn note_refusal(&mut self, name: &str, reason: String) {
        if self.refused.len() >= 4096 && !self.refused.contains_key(name) {
            return;
        }
        let r = self.refused.entry(name.to_owned()).or_insert(Refused {
            reason: String::new(),
            count: 0,
        });
        r.reason = reason;
        r.count += 1;
    }

    /// Whether `who` may join: not revoked or held out, its certificate names
    /// the VON's prefix and a host address in it, and no other current
    /// member shares its id, name or address. Checked before anything
    /// changes, so a bad member never reaches a view the others would refuse.
    fn admit(&mut self, now: Instant, who: &Identity) -> Result<(), JoinError> {
        if self.revoked.contains(&who.name) {
            return Err(JoinError::Revoked {
                name: who.name.clone(),
            });
        }
        self.held_out.retain(|_, (until, _)| *until > now);
        if let Some((until, epoch)) = self.held_out.get(&who.name) {
            return Err(JoinError::HeldOut {
                name: who.name.clone(),
                epoch: epoch.0,
                secs: until.saturating_duration_since(now).as_secs().max(1),
            });
        }
        let prefix = self.settings.prefix;
        if who.prefix_len != prefix.prefix_len() || !prefix.contains_host(who.address) {
            return Err(JoinError::OutsidePrefix {
                name: who.name.clone(),
                address: who.address,
                prefix_len: who.prefix_len,
                von_prefix: prefix,
            });
        }
        for e in self.members.values() {
            let m = &e.member;
            if m.id == who.id && m.name != who.name {
                return Err(JoinError::IdTaken {
                    name: who.name.clone(),
                    id: who.id.0,
                    holder: m.name.clone(),
                });
            }
            if m.id != who.id && m.name == who.name {
                return Err(JoinError::NameTaken {
                    name: who.name.clone(),
                    id: who.id.0,
                    holder: m.id.0,
                });
            }
            if m.id != who.id && m.address == who.address {
                return Err(JoinError::AddressTaken {
                    name: who.name.clone(),
                    address: who.address,
                    holder: m.name.clone(),
                });
            }
        }
        Ok(())
    }

    /// Drop `id` from the membership; the next rekey leaves it out.
    fn remove(&mut self, id: MemberId, reason: Departure, out: &mut Vec<Output>) {
        if let Some(p) = &mut self.pending {
            p.awaiting.remove(&id);
        }
        if let Some((_, waiting)) = &mut self.takeover {
            waiting.remove(&id);
        }
        if let Some(e) = self.members.remove(&id) {
            info!(member = %e.member.name, id = id.0, %reason, "left the view");
            self.dirty = true;
            out.push(Output::Disconnect { member: id, reason });
        }
    }

    fn stored_members(&self, view: &View) -> Vec<StoredMember> {
        view.members
            .iter()
            .filter_map(|m| self.members.get(&m.id))
            .map(|e| StoredMember {
                id: e.member.id,
                name: e.member.name.clone(),
                address: e.member.address,
                underlay: e.member.underlay.clone(),
                noise_public: e.noise_public,
            })
            .collect()
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
