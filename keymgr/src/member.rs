//! The member's side of the control protocol, sans-IO: which keys to send
//! and receive under, moved only by the key manager's messages and time.
//!
//! Flow, for epoch N current and N+1 arriving:
//! 1. `Prepare(N+1)`: unwrap the key (Noise; refused at or below an epoch we
//!    hold), accept N+1 for receiving, reply `Ack(N+1)`; keep sending under N.
//! 2. `Commit(N+1)`: send under N+1, install its (final) view, keep accepting
//!    N until `now + grace`.
//! 3. `tick` past the grace: erase N's key; only N+1 is accepted.
//!
//! The agent turns [`MemberKeys::keys`] into the pipeline's snapshot after
//! every call that returns `changed`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use std::collections::HashMap;

use tracing::{debug, info, warn};
use von_crypto::cert::VonPrefix;
use von_crypto::wrap::Recipient;

use crate::ids::{Cipher, Epoch, GroupKey, MemberId};
use crate::proto::{ClientMsg, Refusal, ServerMsg};
use crate::view::{View, ViewDigest, ViewUpdate};

/// The keys a member holds.
#[derive(Debug)]
pub struct MemberKeys {
    /// None until the first connection names the key manager's Noise key.
    recipient: Option<Recipient>,
    current: Option<(View, GroupKey)>,
    previous: Option<(Epoch, GroupKey, Instant)>,
    /// The prepared view, its key and the view's digest.
    prepared: Option<(View, GroupKey, ViewDigest)>,
    /// None only in tests that drive the protocol without a data plane.
    rules: Option<ViewRules>,
}

/// What a member does after a message.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Reaction {
    /// Send this to the key manager.
    pub reply: Option<ClientMsg>,
    /// The key set changed: install a new pipeline snapshot.
    pub changed: bool,
    /// A view this member will not install: (epoch, why). Already answered
    /// with `Refuse` in `reply` when it came in a prepare.
    pub refused: Option<(Epoch, String)>,
}

/// The key set the data plane uses, borrowed from [`MemberKeys`].
#[derive(Debug)]
pub struct KeySet<'a> {
    /// The committed view: who may send to us and whom we send to.
    pub view: Option<&'a View>,
    /// The epoch and key to seal under.
    pub send: Option<(Epoch, &'a GroupKey)>,
    /// Every epoch accepted on receive, newest first.
    pub receive: Vec<(Epoch, &'a GroupKey)>,
}

/// A key manager message could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum MemberError {
    /// The wrapped key did not open (wrong VON, recipient, sender or epoch).
    #[error("refused the group key for epoch {epoch}: {source}")]
    Unwrap {
        /// The epoch of the prepare.
        epoch: u32,
        /// Why.
        source: von_crypto::wrap::WrapError,
    },
    /// The message itself is malformed.
    #[error("bad {what} from the key manager: {detail}")]
    Malformed {
        /// Which message.
        what: &'static str,
        /// What is wrong.
        detail: String,
    },
    /// The key manager refused or dropped us.
    #[error("the key manager refused this member ({}): {reason}", code.as_str())]
    Refused {
        /// What kind of refusal.
        code: Refusal,
        /// Its words.
        reason: String,
    },
}

/// What every member checks in a view before acknowledging it: the rules
/// the data plane enforces (agent's `Snapshot::new`), checked at the prepare
/// so a bad view is refused out loud (`Refuse`) instead of acknowledged and
/// then silently not installed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ViewRules {
    /// This member's id: it must be in the view.
    pub me: MemberId,
    /// The VON prefix from this member's certificate: every address must be
    /// a host of it.
    pub prefix: VonPrefix,
}

impl ViewRules {
    /// Why `view` cannot be installed, if it cannot.
    pub fn check(&self, view: &View) -> Result<(), String> {
        if !view.contains(self.me) {
            return Err(format!("this member (id {}) is not in the view", self.me.0));
        }
        let mut addresses = HashMap::with_capacity(view.members.len());
        let mut names = HashMap::with_capacity(view.members.len());
        for m in &view.members {
            if !self.prefix.contains_host(m.address) {
                return Err(format!(
                    "member {} has address {}, not a host of the VON prefix {}",
                    m.name, m.address, self.prefix
                ));
            }
            if let Some(other) = addresses.insert(m.address, &m.name) {
                return Err(format!(
                    "VON address {} is given to both {other} and {}",
                    m.address, m.name
                ));
            }
            if let Some(other) = names.insert(m.name.as_str(), m.id) {
                return Err(format!(
                    "member name {} is given to ids {} and {}",
                    m.name, other.0, m.id.0
                ));
            }
        }
        Ok(())
    }
}

impl Default for MemberKeys {
    fn default() -> Self {
        Self::new()
    }
}

impl MemberKeys {
    /// A member with no keys yet.
    pub fn new() -> Self {
        Self {
            recipient: None,
            current: None,
            previous: None,
            prepared: None,
            rules: None,
        }
    }

    /// Check every view against `rules` before acknowledging or installing it.
    pub fn with_rules(mut self, rules: ViewRules) -> Self {
        self.rules = Some(rules);
        self
    }

    /// A member resuming from its state directory with `view` and its key.
    pub fn restore(view: View, key: GroupKey) -> Self {
        Self {
            current: Some((view, key)),
            ..Self::new()
        }
    }

    /// Open future keys with `recipient`: called on every connection, with
    /// the key manager's Noise key from the certificate it just presented.
    pub fn set_recipient(&mut self, recipient: Recipient) {
        self.recipient = Some(recipient);
    }

    /// The newest epoch held, committed or prepared (`have_epoch` in `Join`).
    pub fn newest_epoch(&self) -> Option<Epoch> {
        let current = self.current.as_ref().map(|(v, _)| v.epoch);
        let prepared = self.prepared.as_ref().map(|(v, _, _)| v.epoch);
        current.max(prepared)
    }

    /// The committed view and its key, to save in the state directory.
    pub fn current(&self) -> Option<(&View, &GroupKey)> {
        self.current.as_ref().map(|(v, k)| (v, k))
    }

    /// Apply one message from the key manager.
    pub fn handle(&mut self, now: Instant, msg: ServerMsg) -> Result<Reaction, MemberError> {
        match msg {
            ServerMsg::Joined { .. } => Ok(Reaction::default()),
            ServerMsg::Refused { code, reason } => Err(MemberError::Refused { code, reason }),
            ServerMsg::Prepare {
                view,
                cipher,
                wrapped_key,
            } => self.prepare(Arc::unwrap_or_clone(view), &cipher, &wrapped_key),
            ServerMsg::Commit { view, grace_ms } => self.commit(
                now,
                Arc::unwrap_or_clone(view),
                Duration::from_millis(grace_ms),
            ),
        }
    }

    /// Erase the previous epoch's key once its grace window has passed.
    pub fn tick(&mut self, now: Instant) -> bool {
        match &self.previous {
            Some((epoch, _, until)) if *until <= now => {
                debug!(epoch = epoch.0, "grace window over; previous key erased");
                self.previous = None;
                true
            }
            _ => false,
        }
    }

    /// When [`tick`](Self::tick) has work to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.previous.as_ref().map(|(_, _, until)| *until)
    }

    /// The keys for the data plane.
    pub fn keys(&self) -> KeySet<'_> {
        let mut receive = Vec::with_capacity(3);
        if let Some((v, k, _)) = &self.prepared {
            receive.push((v.epoch, k));
        }
        if let Some((v, k)) = &self.current {
            receive.push((v.epoch, k));
        }
        if let Some((e, k, _)) = &self.previous {
            receive.push((*e, k));
        }
        KeySet {
            view: self.current.as_ref().map(|(v, _)| v),
            send: self.current.as_ref().map(|(v, k)| (v.epoch, k)),
            receive,
        }
    }

    fn prepare(
        &mut self,
        update: ViewUpdate,
        cipher: &str,
        wrapped: &str,
    ) -> Result<Reaction, MemberError> {
        let epoch = Epoch(update.epoch);
        let ack = Some(ClientMsg::Ack { epoch: epoch.0 });
        if self
            .prepared
            .as_ref()
            .is_some_and(|(v, _, d)| v.epoch == epoch && hex::encode(d) == update.digest)
        {
            // A resend after a reconnect: our first ack may have been lost.
            return Ok(Reaction {
                reply: ack,
                ..Reaction::default()
            });
        }
        let base = self.current.as_ref().map(|(v, _)| v);
        let (view, digest) = match rebuild("prepare", update, base)? {
            Ok(v) => v,
            Err(need) => return Ok(need),
        };
        if let Err(reason) = self.rules.map_or(Ok(()), |r| r.check(&view)) {
            // Say no before touching the key: the key manager drops us from
            // this view so the others are not stalled by it.
            debug!(epoch = epoch.0, %reason, "prepared view refused");
            return Ok(Reaction {
                reply: Some(ClientMsg::Refuse {
                    epoch: epoch.0,
                    reason: reason.clone(),
                }),
                changed: false,
                refused: Some((epoch, reason)),
            });
        }
        let cipher: Cipher = cipher.parse().map_err(|e| malformed("prepare", e))?;
        let bytes = hex::decode(wrapped).map_err(|e| malformed("prepare", e))?;
        let recipient = self.recipient.as_ref().ok_or_else(|| {
            malformed(
                "prepare",
                "no key manager Noise key known yet; connect first",
            )
        })?;
        let opened = recipient
            .unwrap(&bytes, self.newest_epoch())
            .map_err(|source| MemberError::Unwrap {
                epoch: epoch.0,
                source,
            })?;
        if opened.epoch != epoch || opened.key.cipher() != cipher {
            return Err(malformed(
                "prepare",
                format!(
                    "view says epoch {} ({cipher}), wrapped key says epoch {} ({})",
                    epoch.0,
                    opened.epoch.0,
                    opened.key.cipher()
                ),
            ));
        }
        // The fingerprint (not the key) lets an operator or a test check
        // across members and logs that each epoch had exactly one key.
        info!(
            epoch = epoch.0,
            members = view.members.len(),
            fingerprint = %fingerprint(&opened.key),
            "prepared"
        );
        self.prepared = Some((view, opened.key, digest));
        Ok(Reaction {
            reply: ack,
            changed: true,
            refused: None,
        })
    }

    fn commit(
        &mut self,
        now: Instant,
        update: ViewUpdate,
        grace: Duration,
    ) -> Result<Reaction, MemberError> {
        let epoch = Epoch(update.epoch);
        let Some((prepared, _, digest)) =
            self.prepared.as_ref().filter(|(v, _, _)| v.epoch == epoch)
        else {
            // A duplicate, or we missed the prepare: keep what we have; the
            // key manager resends on reconnect.
            debug!(epoch = epoch.0, "commit without a matching prepare ignored");
            return Ok(Reaction::default());
        };
        let unchanged = update.base == Some(epoch.0)
            && update.members.is_empty()
            && update.removed.is_empty()
            && update.digest == hex::encode(digest);
        let rebuilt = if unchanged {
            // The usual commit: nobody dropped out, the prepared view stands.
            None
        } else {
            match rebuild("commit", update, Some(prepared))? {
                Ok(v) => Some(v),
                Err(need) => return Ok(need),
            }
        };
        let Some((prepared, key, digest)) = self.prepared.take() else {
            unreachable!("checked above");
        };
        let (view, digest) = rebuilt.unwrap_or((prepared, digest));
        if let Err(reason) = self.rules.map_or(Ok(()), |r| r.check(&view)) {
            // The key manager committed a view unlike the one we accepted:
            // keep sending under the old epoch, loudly.
            debug!(epoch = epoch.0, %reason, "committed view refused");
            return Ok(Reaction {
                reply: None,
                // The prepared epoch left the receive set.
                changed: true,
                refused: Some((epoch, reason)),
            });
        }
        if let Some((old, old_key)) = self.current.take() {
            self.previous = Some((old.epoch, old_key, now + grace));
        }
        // The digest names the view across members' logs: one epoch, one view.
        info!(
            epoch = epoch.0,
            members = view.members.len(),
            view = %hex::encode(&digest[..8]),
            "committed"
        );
        self.current = Some((view, key));
        Ok(Reaction {
            changed: true,
            ..Reaction::default()
        })
    }
}

/// The view `update` describes on top of `base`, checked against its digest;
/// `Err(reaction)` asks the key manager for the whole view when that can
/// cure it (a delta against a view this member does not hold, or whose
/// result differs from the key manager's); an update that cannot be cured
/// (a whole view that does not match its own digest) is an error.
#[allow(clippy::type_complexity)]
fn rebuild(
    what: &'static str,
    update: ViewUpdate,
    base: Option<&View>,
) -> Result<Result<(View, ViewDigest), Reaction>, MemberError> {
    let epoch = update.epoch;
    let delta = update.base.is_some();
    match update.apply(base) {
        Ok(v) => Ok(Ok(v)),
        Err(e @ crate::view::UpdateError::NoBase { .. }) => {
            debug!(epoch, error = %e, "{what}: asking for the whole view");
            Ok(Err(need_view(epoch)))
        }
        Err(e @ crate::view::UpdateError::Digest { .. }) if delta => {
            // An honest key manager's delta rebuilds the same view: this
            // member's base differs from the key manager's. Say so, and take
            // nothing from the delta.
            warn!(epoch, error = %e, "{what}: the view rebuilt from the change differs; asking for the whole view");
            Ok(Err(need_view(epoch)))
        }
        Err(e) => Err(malformed(what, e)),
    }
}

fn need_view(epoch: u32) -> Reaction {
    Reaction {
        reply: Some(ClientMsg::NeedView { epoch }),
        ..Reaction::default()
    }
}

/// The first 8 bytes of SHA-256 over a label and the key, as hex: names a
/// group key in logs without revealing it.
pub fn fingerprint(key: &GroupKey) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(b"von group key fingerprint v1");
    ctx.update(key.secret_bytes());
    hex::encode(&ctx.finish().as_ref()[..8])
}

fn malformed(what: &'static str, e: impl std::fmt::Display) -> MemberError {
    MemberError::Malformed {
        what,
        detail: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::{WireMember, WireView};

    fn member(id: u32, name: &str, address: [u8; 4]) -> WireMember {
        WireMember {
            id,
            name: name.into(),
            address: address.into(),
            underlay: von_config::UnderlayEndpoints::from_names([
                ("a", ([192, 0, 2, id as u8], 4789).into()),
                ("b", ([198, 51, 100, id as u8], 4789).into()),
            ])
            .unwrap(),
        }
    }

    fn prepare(members: Vec<WireMember>) -> ServerMsg {
        let view = WireView {
            on_id: 7,
            epoch: 4,
            members,
        };
        // Views with duplicate ids do not build; the digest is of the rest.
        let digest = view
            .clone()
            .into_view()
            .map(|v| v.digest())
            .unwrap_or([0; 32]);
        ServerMsg::Prepare {
            view: Arc::new(ViewUpdate {
                on_id: view.on_id,
                epoch: view.epoch,
                base: None,
                members: view.members,
                removed: Vec::new(),
                digest: hex::encode(digest),
            }),
            cipher: "aes-256-gcm".into(),
            // Never opened: the view is checked first.
            wrapped_key: "00".into(),
        }
    }

    fn keys() -> MemberKeys {
        MemberKeys::new().with_rules(ViewRules {
            me: MemberId(1),
            prefix: "100.64.0.0/24".parse().unwrap(),
        })
    }

    #[test]
    fn a_view_breaking_the_rules_is_refused_at_the_prepare_not_acknowledged() {
        let cases = [
            (
                vec![
                    member(1, "h1", [100, 64, 0, 1]),
                    member(2, "h2", [100, 64, 0, 1]),
                ],
                "given to both h1 and h2",
            ),
            (
                vec![
                    member(1, "h1", [100, 64, 0, 1]),
                    member(2, "h2", [100, 64, 1, 2]),
                ],
                "not a host of the VON prefix 100.64.0.0/24",
            ),
            (
                vec![
                    member(1, "h1", [100, 64, 0, 1]),
                    member(2, "h1", [100, 64, 0, 2]),
                ],
                "member name h1 is given to ids 1 and 2",
            ),
            (vec![member(2, "h2", [100, 64, 0, 2])], "not in the view"),
        ];
        for (members, why) in cases {
            let mut k = keys();
            let r = k.handle(Instant::now(), prepare(members)).unwrap();
            match r.reply {
                Some(ClientMsg::Refuse { epoch: 4, reason }) => {
                    assert!(reason.contains(why), "{reason:?} lacks {why:?}")
                }
                other => panic!("expected a Refuse, got {other:?}"),
            }
            assert!(!r.changed, "nothing installed");
            assert_eq!(r.refused.map(|(e, _)| e), Some(Epoch(4)));
            assert_eq!(k.newest_epoch(), None);
        }
    }
}
