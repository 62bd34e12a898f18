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
