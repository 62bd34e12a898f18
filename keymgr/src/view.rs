//! The membership view: who belongs to a VON at one epoch.
//!
//! A view is what every member installs next to the group key; the data plane
//! refuses frames from any sender id not in it. It travels in `Prepare` and
//! `Commit` messages, so it is plain serde data with raw integers on the wire.

use std::net::Ipv4Addr;
use von_config::UnderlayEndpoints;

use serde::{Deserialize, Serialize};

use crate::ids::{Epoch, MemberId, OnId};

/// One member as the data plane needs it: who, its VON address, and where to
/// send its copies on underlay A and underlay B.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Assigned by the key manager, stable per member name.
    pub id: MemberId,
    /// The name in the member's certificate.
    pub name: String,
    /// The member's address inside the VON.
    pub address: Ipv4Addr,
    /// Where it receives, per underlay name.
    pub underlay: UnderlayEndpoints,
}

/// The members of a VON at one epoch, sorted by member id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    /// The VON's ON id, first in every frame.
    pub on_id: OnId,
    /// The key epoch this view is installed with.
    pub epoch: Epoch,
    /// Sorted by id; ids are unique.
    pub members: Vec<Member>,
}

impl View {
    /// The member with this id, if it belongs to the view.
    pub fn member(&self, id: MemberId) -> Option<&Member> {
        self.members
            .binary_search_by_key(&id.0, |m| m.id.0)
            .ok()
            .map(|i| &self.members[i])
    }

    /// True when `id` belongs to the view.
    pub fn contains(&self, id: MemberId) -> bool {
        self.member(id).is_some()
    }

    /// The view as sent on the wire.
    pub fn to_wire(&self) -> WireView {
        WireView {
            on_id: self.on_id.0,
            epoch: self.epoch.0,
            members: self
                .members
                .iter()
                .map(|m| WireMember {
                    id: m.id.0,
                    name: m.name.clone(),
                    address: m.address,
                    underlay: m.underlay.clone(),
                })
                .collect(),
        }
    }
}

/// [`Member`] on the wire, and in the view an agent saves in its state
/// directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "WireMemberFile")]
pub struct WireMember {
    /// Member id.
    pub id: u32,
    /// Member name from its certificate.
    pub name: String,
    /// VON address.
    pub address: Ipv4Addr,
    /// Where it receives, per underlay name.
    pub underlay: UnderlayEndpoints,
}

/// [`WireMember`] as read: a view saved by the first release names its
/// endpoints `a` and `b`; they read as the underlays named `a` and `b`, so an
/// agent upgraded in place still starts from its saved view.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireMemberFile {
    id: u32,
    name: String,
    address: Ipv4Addr,
    underlay: Option<UnderlayEndpoints>,
    a: Option<std::net::SocketAddr>,
    b: Option<std::net::SocketAddr>,
}

impl TryFrom<WireMemberFile> for WireMember {
    type Error = String;
    fn try_from(m: WireMemberFile) -> Result<Self, String> {
        let underlay = match (m.underlay, m.a, m.b) {
            (Some(u), None, None) => u,
            (None, Some(a), Some(b)) => {
                UnderlayEndpoints::from_names([("a", a), ("b", b)]).map_err(|e| e.to_string())?
            }
            _ => {
                return Err(format!(
                    "member {}: give `underlay` (or the old `a` and `b`)",
                    m.id
                ));
            }
        };
        Ok(WireMember {
            id: m.id,
            name: m.name,
            address: m.address,
            underlay,
        })
    }
}

/// [`View`] on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireView {
    /// ON id.
    pub on_id: u32,
    /// Key epoch.
    pub epoch: u32,
    /// Members, any order on the wire.
    pub members: Vec<WireMember>,
}

impl WireView {
    /// Back to a [`View`]: sorted by id, duplicate ids refused.
    pub fn into_view(self) -> Result<View, DuplicateMember> {
        let mut members: Vec<Member> = self
            .members
            .into_iter()
            .map(|m| Member {
                id: MemberId(m.id),
                name: m.name,
                address: m.address,
                underlay: m.underlay.clone(),
            })
            .collect();
        members.sort_by_key(|m| m.id.0);
        if let Some(w) = members.windows(2).find(|w| w[0].id.0 == w[1].id.0) {
            return Err(DuplicateMember(w[0].id.0));
        }
        Ok(View {
            on_id: OnId(self.on_id),
            epoch: Epoch(self.epoch),
            members,
        })
    }
}

/// A received view named one member id twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the view names member id {0} twice; the key manager that sent it is faulty")]
pub struct DuplicateMember(pub u32);

/// SHA-256 over a view's canonical form (see [`View::digest`]).
pub type ViewDigest = [u8; 32];

impl View {
    /// SHA-256 over the canonical form of the whole view: a label, the ON id,
    /// the epoch, the member count, then each member in id order (id, name,
    /// address, each underlay by name with its endpoint), every variable
    /// field length-prefixed. What a member checks after rebuilding a view
    /// from a delta (`proto::ViewUpdate`): equal digests mean it holds the
    /// very view the key manager built for that epoch of that VON.
    pub fn digest(&self) -> ViewDigest {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(b"von view digest v1\0");
        ctx.update(&self.on_id.0.to_be_bytes());
        ctx.update(&self.epoch.0.to_be_bytes());
        ctx.update(&(self.members.len() as u32).to_be_bytes());
        for m in &self.members {
            // Destructured without `..`: a new member field fails to compile
            // here until the digest covers it.
            let Member {
                id,
                name,
                address,
                underlay,
            } = m;
            ctx.update(&id.0.to_be_bytes());
            ctx.update(&(name.len() as u32).to_be_bytes());
            ctx.update(name.as_bytes());
            ctx.update(&address.octets());
            ctx.update(&(underlay.len() as u32).to_be_bytes());
            for (u, ep) in underlay.iter() {
                let u = u.as_str().as_bytes();
                ctx.update(&[u.len() as u8]);
                ctx.update(u);
                match ep {
                    std::net::SocketAddr::V4(a) => {
                        ctx.update(&[4]);
                        ctx.update(&a.ip().octets());
                    }
                    std::net::SocketAddr::V6(a) => {
                        ctx.update(&[6]);
                        ctx.update(&a.ip().octets());
                        ctx.update(&a.flowinfo().to_be_bytes());
                        ctx.update(&a.scope_id().to_be_bytes());
                    }
                }
                ctx.update(&ep.port().to_be_bytes());
            }
        }
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.finish().as_ref());
        out
    }
}

impl From<&Member> for WireMember {
    fn from(m: &Member) -> Self {
        WireMember {
            id: m.id.0,
            name: m.name.clone(),
            address: m.address,
            underlay: m.underlay.clone(),
        }
    }
}

impl From<WireMember> for Member {
    fn from(m: WireMember) -> Self {
        Member {
            id: MemberId(m.id),
            name: m.name,
            address: m.address,
            underlay: m.underlay,
        }
    }
}

/// A view as a `Prepare` or `Commit` carries it: the whole view, or the
/// change from a view the member holds (its committed view for a prepare,
/// the prepared view of the same epoch for a commit), with the digest of
/// the whole resulting view either way.
///
/// A delta costs O(changes) bytes instead of O(n): a rekey of n members
/// with nothing changed sends n prepares of ~100 bytes each, not n copies of
/// an ~92 n-byte view (docs/scale.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ViewUpdate {
    /// ON id.
    pub on_id: u32,
    /// The epoch of the resulting view.
    pub epoch: u32,
    /// The epoch of the view this changes; absent: `members` is the whole
    /// view.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<u32>,
    /// Whole view: every member. Delta: members new or changed since the
    /// base (any order).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<WireMember>,
    /// Delta only: ids in the base that are gone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removed: Vec<u32>,
    /// [`View::digest`] of the resulting view, hex.
    pub digest: String,
}

/// A view update could not be turned into a view.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpdateError {
    /// A delta against a view this member does not hold.
    #[error("a change of the view of epoch {base}, but this member holds {have}")]
    NoBase {
        /// The delta's base epoch.
        base: u32,
        /// What the member holds (`none` or `epoch N`).
        have: String,
    },
    /// The rebuilt view is not the one the key manager built.
    #[error("view digest mismatch at epoch {epoch}: rebuilt {got}, key manager says {want}")]
    Digest {
        /// The view's epoch.
        epoch: u32,
        /// What this member computed.
        got: String,
        /// What the key manager sent.
        want: String,
    },
    /// The update is inconsistent in itself.
    #[error("{0}")]
    Malformed(String),
}

impl ViewUpdate {
    /// The whole `view`.
    pub fn full(view: &View, digest: &ViewDigest) -> Self {
        Self {
            on_id: view.on_id.0,
            epoch: view.epoch.0,
            base: None,
            members: view.members.iter().map(WireMember::from).collect(),
            removed: Vec::new(),
            digest: hex::encode(digest),
        }
    }

    /// `next` as a change of `base` (both sorted by id, as views are): one
    /// merge walk, O(|base| + |next|).
    pub fn delta(base: &View, next: &View, digest: &ViewDigest) -> Self {
        let (mut members, mut removed) = (Vec::new(), Vec::new());
        let (mut b, mut n) = (
            base.members.iter().peekable(),
            next.members.iter().peekable(),
        );
        loop {
            match (b.peek(), n.peek()) {
                (None, None) => break,
                (Some(x), None) => {
                    removed.push(x.id.0);
                    b.next();
                }
                (None, Some(y)) => {
                    members.push(WireMember::from(*y));
                    n.next();
                }
                (Some(x), Some(y)) => match x.id.0.cmp(&y.id.0) {
                    std::cmp::Ordering::Less => {
                        removed.push(x.id.0);
                        b.next();
                    }
                    std::cmp::Ordering::Greater => {
                        members.push(WireMember::from(*y));
                        n.next();
                    }
                    std::cmp::Ordering::Equal => {
                        if x != y {
                            members.push(WireMember::from(*y));
                        }
                        b.next();
                        n.next();
                    }
                },
            }
        }
        Self {
            on_id: next.on_id.0,
            epoch: next.epoch.0,
            base: Some(base.epoch.0),
            members,
            removed,
            digest: hex::encode(digest),
        }
    }

    /// The view this update describes, given the views this member holds
    /// (`base` must be the view of epoch `self.base`), checked against the
    /// digest. Also returns the digest.
    pub fn apply(self, base: Option<&View>) -> Result<(View, ViewDigest), UpdateError> {
        let epoch = self.epoch;
        let view = match self.base {
            None => {
                if !self.removed.is_empty() {
                    return Err(UpdateError::Malformed(
                        "a whole view with removals".to_owned(),
                    ));
                }
                WireView {
                    on_id: self.on_id,
                    epoch,
                    members: self.members,
                }
                .into_view()
                .map_err(|e| UpdateError::Malformed(e.to_string()))?
            }
            Some(want) => {
                let base =
                    base.filter(|b| b.epoch.0 == want)
                        .ok_or_else(|| UpdateError::NoBase {
                            base: want,
                            have: base
                                .map_or("no view".to_owned(), |b| format!("epoch {}", b.epoch.0)),
                        })?;
                if base.on_id.0 != self.on_id {
                    return Err(UpdateError::Malformed(format!(
                        "a change of ON id {}'s view for ON id {}",
                        base.on_id.0, self.on_id
                    )));
                }
                let mut changed: Vec<Member> = self.members.into_iter().map(Member::from).collect();
                changed.sort_by_key(|m| m.id.0);
                if let Some(w) = changed.windows(2).find(|w| w[0].id == w[1].id) {
                    return Err(UpdateError::Malformed(
                        DuplicateMember(w[0].id.0).to_string(),
                    ));
                }
                let mut removed = self.removed;
                removed.sort_unstable();
                // Merge: base members not removed and not replaced, then the
                // changed ones, in id order.
                let mut members = Vec::with_capacity(base.members.len() + changed.len());
                let mut changed = changed.into_iter().peekable();
                for m in &base.members {
                    while let Some(c) = changed.next_if(|c| c.id.0 < m.id.0) {
                        members.push(c);
                    }
                    if let Some(c) = changed.next_if(|c| c.id == m.id) {
                        members.push(c);
                    } else if removed.binary_search(&m.id.0).is_err() {
                        members.push(m.clone());
                    }
                }
                members.extend(changed);
                View {
                    on_id: base.on_id,
                    epoch: Epoch(epoch),
                    members,
                }
            }
        };
        let digest = view.digest();
        if hex::encode(digest) != self.digest {
            return Err(UpdateError::Digest {
                epoch,
                got: hex::encode(&digest[..8]),
                want: self.digest.chars().take(16).collect(),
            });
        }
        Ok((view, digest))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: u32, name: &str, port: u16) -> Member {
        Member {
            id: MemberId(id),
            name: name.into(),
            address: Ipv4Addr::from(0x6440_0000 + id),
            underlay: UnderlayEndpoints::from_names([
                ("a", ([192, 0, 2, id as u8], port).into()),
                ("b", ([198, 51, 100, id as u8], 4789).into()),
            ])
            .unwrap(),
        }
    }

    fn view(epoch: u32, members: &[(u32, u16)]) -> View {
        View {
            on_id: OnId(7),
            epoch: Epoch(epoch),
            members: members
                .iter()
                .map(|&(id, port)| member(id, &format!("h{id}"), port))
                .collect(),
        }
    }

    #[test]
    fn a_delta_rebuilds_the_next_view_exactly() {
        // A small exhaustive-ish walk: every mix of removals, additions and
        // changed endpoints over ids 1..=6.
        for mask in 0u32..(1 << 12) {
            let base: Vec<(u32, u16)> = (1..=6)
                .filter(|i| mask & (1 << (i - 1)) != 0)
                .map(|i| (i, 4789))
                .collect();
            // Some kept members change an endpoint.
            let next: Vec<(u32, u16)> = (1..=6)
                .filter(|i| mask & (1 << (i + 5)) != 0)
                .map(|i| (i, if (mask ^ i) % 3 == 0 { 5000 } else { 4789 }))
                .collect();
            let (b, n) = (view(3, &base), view(4, &next));
            let d = ViewUpdate::delta(&b, &n, &n.digest());
            let (got, digest) = d.clone().apply(Some(&b)).unwrap();
            assert_eq!(got, n, "mask {mask:#x}: {d:?}");
            assert_eq!(digest, n.digest());
            // And through JSON.
            let wire: ViewUpdate =
                serde_json::from_slice(&serde_json::to_vec(&d).unwrap()).unwrap();
            assert_eq!(wire.apply(Some(&b)).unwrap().0, n);
        }
    }

    #[test]
    fn the_digest_binds_epoch_on_id_and_every_field() {
        let v = view(4, &[(1, 4789), (2, 4789)]);
        let d = v.digest();
        let mut other = v.clone();
        other.epoch = Epoch(5);
        assert_ne!(other.digest(), d, "epoch");
        let mut other = v.clone();
        other.on_id = OnId(8);
        assert_ne!(other.digest(), d, "ON id");
        let mut other = v.clone();
        other.members[1].name = "h2x".into();
        assert_ne!(other.digest(), d, "name");
        let mut other = v.clone();
        other.members[1].address = Ipv4Addr::new(100, 64, 9, 9);
        assert_ne!(other.digest(), d, "address");
        let other = view(4, &[(1, 4789), (2, 4790)]);
        assert_ne!(other.digest(), d, "endpoint");
        let other = view(4, &[(1, 4789)]);
        assert_ne!(other.digest(), d, "a member fewer");
        // Names are length-prefixed: "h1"+"2" is not "h"+"12".
        let mut a = v.clone();
        a.members[0].name = "ab".into();
        a.members[1].name = "c".into();
        let mut b = v.clone();
        b.members[0].name = "a".into();
        b.members[1].name = "bc".into();
        assert_ne!(a.digest(), b.digest());
        assert_eq!(
            view(4, &[(1, 4789), (2, 4789)]).digest(),
            d,
            "deterministic"
        );
    }

    #[test]
    fn a_delta_on_another_base_is_caught() {
        let b = view(3, &[(1, 4789), (2, 4789)]);
        let n = view(4, &[(1, 4789), (2, 4789), (3, 4789)]);
        let d = ViewUpdate::delta(&b, &n, &n.digest());
        // No view, or another epoch: no base.
        assert!(matches!(
            d.clone().apply(None),
            Err(UpdateError::NoBase { base: 3, .. })
        ));
        let old = view(2, &[(1, 4789), (2, 4789)]);
        assert!(matches!(
            d.clone().apply(Some(&old)),
            Err(UpdateError::NoBase { .. })
        ));
        // The right epoch but another membership (a different history):
        // the digest refutes the result.
        let other = view(3, &[(1, 4789), (2, 4789), (9, 4789)]);
        assert!(matches!(
            d.clone().apply(Some(&other)),
            Err(UpdateError::Digest { epoch: 4, .. })
        ));
        // Another VON's view.
        let mut foreign = b.clone();
        foreign.on_id = OnId(8);
        assert!(matches!(
            d.apply(Some(&foreign)),
            Err(UpdateError::Malformed(_))
        ));
    }

    #[test]
    fn a_whole_view_is_checked_too() {
        let v = view(4, &[(1, 4789), (2, 4789)]);
        let mut u = ViewUpdate::full(&v, &v.digest());
        assert_eq!(u.clone().apply(None).unwrap().0, v);
        u.members.pop();
        assert!(matches!(u.apply(None), Err(UpdateError::Digest { .. })));
    }
}
