//! The view and keys of one VON as one immutable value, swapped atomically.
//!
//! The packet path reads a [`Snapshot`] through `arc_swap` and never waits on
//! the control plane: static mode builds one at start, the key manager's client
//! builds a new one at every view or epoch change and stores it. The snapshot
//! already carries what an epoch switch without loss needs: the epoch to send
//! under, and every epoch accepted on receive (N and N+1 during the grace
//! window). A member absent from the view is refused by sender id at once,
//! whatever key it holds. Mutable per-sender state (windows, send counters)
//! lives outside, in the pipeline, keyed by (sender, epoch).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use von_crypto::{Epoch, FrameKey, GroupKey, MemberId, OnId};

use super::action::Endpoints;

/// An IPv4 subnet: the VON's address range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Prefix {
    network: Ipv4Addr,
    len: u8,
}

impl Ipv4Prefix {
    /// The prefix `addr/len`, host bits cleared; `None` if `len > 32`.
    pub fn new(addr: Ipv4Addr, len: u8) -> Option<Self> {
        let mask = Self::mask_of(len)?;
        Some(Ipv4Prefix {
            network: Ipv4Addr::from(u32::from(addr) & mask),
            len,
        })
    }

    /// The network address.
    pub fn network(self) -> Ipv4Addr {
        self.network
    }

    /// The prefix length.
    pub fn prefix_len(self) -> u8 {
        self.len
    }

    /// Whether `addr` lies inside.
    pub fn contains(self, addr: Ipv4Addr) -> bool {
        let mask = Self::mask_of(self.len).unwrap_or(0);
        u32::from(addr) & mask == u32::from(self.network)
    }

    /// The directed broadcast address (all host bits set).
    pub fn broadcast(self) -> Ipv4Addr {
        let mask = Self::mask_of(self.len).unwrap_or(0);
        Ipv4Addr::from(u32::from(self.network) | !mask)
    }

    fn mask_of(len: u8) -> Option<u32> {
        match len {
            0 => Some(0),
            1..=32 => Some(u32::MAX << (32 - u32::from(len))),
            _ => None,
        }
    }
}

/// An IPv6 subnet: the VON's IPv6 address range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6Prefix {
    network: Ipv6Addr,
    len: u8,
}

impl Ipv6Prefix {
    /// The prefix `addr/len`, host bits cleared; `None` if `len > 128`.
    pub fn new(addr: Ipv6Addr, len: u8) -> Option<Self> {
        let mask = Self::mask_of(len)?;
        Some(Ipv6Prefix {
            network: Ipv6Addr::from(u128::from(addr) & mask),
            len,
        })
    }

    /// The network address (also the subnet-router anycast address).
    pub fn network(self) -> Ipv6Addr {
        self.network
    }

    /// The prefix length.
    pub fn prefix_len(self) -> u8 {
        self.len
    }

    /// Whether `addr` lies inside.
    pub fn contains(self, addr: Ipv6Addr) -> bool {
        let mask = Self::mask_of(self.len).unwrap_or(0);
        u128::from(addr) & mask == u128::from(self.network)
    }

    fn mask_of(len: u8) -> Option<u128> {
        match len {
            0 => Some(0),
            1..=128 => Some(u128::MAX << (128 - u32::from(len))),
            _ => None,
        }
    }
}

/// A VON's address ranges: IPv4, IPv6 or both (a dual-stack VON). At least
/// one is present in every [`Snapshot`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Prefixes {
    /// The IPv4 prefix, if the VON carries IPv4.
    pub v4: Option<Ipv4Prefix>,
    /// The IPv6 prefix, if the VON carries IPv6.
    pub v6: Option<Ipv6Prefix>,
}

impl From<Ipv4Prefix> for Prefixes {
    fn from(v4: Ipv4Prefix) -> Self {
        Prefixes {
            v4: Some(v4),
            v6: None,
        }
    }
}

impl From<Ipv6Prefix> for Prefixes {
    fn from(v6: Ipv6Prefix) -> Self {
        Prefixes {
            v4: None,
            v6: Some(v6),
        }
    }
}

/// One member as the view names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Member id, as in the frame header.
    pub id: MemberId,
    /// Human name (certificate subject).
    pub name: String,
    /// The member's IPv4 VON address; `None` in a VON without IPv4.
    pub address: Option<Ipv4Addr>,
    /// The member's IPv6 VON address; `None` in a VON without IPv6 (or for
    /// a member admitted with an IPv4 address only).
    pub address6: Option<Ipv6Addr>,
    /// Where the member receives frames, per underlay of this agent.
    pub endpoints: Endpoints,
}

/// Why a snapshot cannot be built from the given parts.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SnapshotError {
    /// This host's member is not in the view.
    #[error(
        "member id {0} (this host) is not in the view; check `member` in the [[von]] static table"
    )]
    SelfNotInView(u32),
    /// Two members share an id.
    #[error("member id {0} appears twice in the view")]
    DuplicateId(u32),
    /// Two members share a VON address.
    #[error("VON address {0} is given to two members")]
    DuplicateAddress(IpAddr),
    /// A member's address lies outside the VON's prefix, or is its network or broadcast address.
    #[error(
        "member {name} has address {address}, not a host address of the VON prefix {network}/{len}"
    )]
    AddressOutsidePrefix {
        name: String,
        address: IpAddr,
        network: IpAddr,
        len: u8,
    },
    /// A member has an address of a family the VON does not carry.
    #[error(
        "member {name} has address {address}, but the VON has no {family} prefix (add one to the view's prefix, or drop the address)"
    )]
    NoPrefixForAddress {
        name: String,
        address: IpAddr,
        family: &'static str,
    },
    /// A member has no VON address at all.
    #[error("member {0} has no VON address")]
    NoAddress(String),
    /// The VON has neither an IPv4 nor an IPv6 prefix.
    #[error("the VON has no prefix (give it an IPv4 prefix, an IPv6 prefix, or both)")]
    NoPrefix,
    /// The epoch to send under has no key among the accepted ones.
    #[error("send epoch {0} has no key among the accepted epochs")]
    NoSendKey(u32),
    /// Two keys for one epoch.
    #[error("epoch {0} has two keys")]
    DuplicateEpoch(u32),
    /// A member's endpoints are not laid out over this agent's underlays.
    #[error("member {name} has endpoints for {got} underlays, this agent runs {want}")]
    UnderlayCount {
        name: String,
        got: usize,
        want: usize,
    },
}

/// The view and keys of one VON at one moment. Immutable once built.
#[derive(Debug)]
pub struct Snapshot {
    on_id: OnId,
    me: usize,
    underlays: usize,
    prefixes: Prefixes,
    members: Vec<Member>,
    /// `members[i].endpoints`, so a unicast target is a one-element slice.
    endpoints: Vec<Endpoints>,
    /// Every member's endpoints but ours: the targets of broadcast/multicast.
    others: Vec<Endpoints>,
    by_id: HashMap<MemberId, usize>,
    by_address: HashMap<Ipv4Addr, usize>,
    by_address6: HashMap<Ipv6Addr, usize>,
    send_epoch: Epoch,
    keys: Vec<(Epoch, FrameKey)>,
}

impl Snapshot {
    /// Builds a snapshot. `keys` are the epochs accepted on receive;
    /// `send_epoch` must be one of them.
    pub fn new(
        on_id: OnId,
        me: MemberId,
        prefixes: impl Into<Prefixes>,
        members: Vec<Member>,
        send_epoch: Epoch,
        keys: &[(Epoch, GroupKey)],
    ) -> Result<Self, SnapshotError> {
        let prefixes = prefixes.into();
        if prefixes.v4.is_none() && prefixes.v6.is_none() {
            return Err(SnapshotError::NoPrefix);
        }
        let mut by_id = HashMap::with_capacity(members.len());
        let mut by_address = HashMap::with_capacity(members.len());
        let mut by_address6 = HashMap::new();
        for (i, m) in members.iter().enumerate() {
            if m.address.is_none() && m.address6.is_none() {
                return Err(SnapshotError::NoAddress(m.name.clone()));
            }
            if let Some(a) = m.address {
                check_host(&m.name, IpAddr::V4(a), prefixes)?;
                if by_address.insert(a, i).is_some() {
                    return Err(SnapshotError::DuplicateAddress(IpAddr::V4(a)));
                }
            }
            if let Some(a) = m.address6 {
                check_host(&m.name, IpAddr::V6(a), prefixes)?;
                if by_address6.insert(a, i).is_some() {
                    return Err(SnapshotError::DuplicateAddress(IpAddr::V6(a)));
                }
            }
            if by_id.insert(m.id, i).is_some() {
                return Err(SnapshotError::DuplicateId(m.id.0));
            }
        }
        let me = *by_id.get(&me).ok_or(SnapshotError::SelfNotInView(me.0))?;
        let underlays = members[me].endpoints.len();
        if let Some(m) = members.iter().find(|m| m.endpoints.len() != underlays) {
            return Err(SnapshotError::UnderlayCount {
                name: m.name.clone(),
                got: m.endpoints.len(),
                want: underlays,
            });
        }
        let mut expanded: Vec<(Epoch, FrameKey)> = Vec::with_capacity(keys.len());
        for (epoch, key) in keys {
            if expanded.iter().any(|(e, _)| e == epoch) {
                return Err(SnapshotError::DuplicateEpoch(epoch.0));
            }
            expanded.push((*epoch, FrameKey::new(key)));
        }
        if !expanded.iter().any(|(e, _)| *e == send_epoch) {
            return Err(SnapshotError::NoSendKey(send_epoch.0));
        }
        let endpoints = members.iter().map(|m| m.endpoints.clone()).collect();
        let others = members
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != me)
            .map(|(_, m)| m.endpoints.clone())
            .collect();
        Ok(Snapshot {
            on_id,
            me,
            underlays,
            prefixes,
            members,
            endpoints,
            others,
            by_id,
            by_address,
            by_address6,
            send_epoch,
            keys: expanded,
        })
    }

    /// The VON's ON id.
    pub fn on_id(&self) -> OnId {
        self.on_id
    }

    /// This host's member.
    pub fn me(&self) -> &Member {
        &self.members[self.me]
    }

    /// How many underlays this agent sends every frame on.
    pub fn underlays(&self) -> usize {
        self.underlays
    }

    /// The VON's prefixes (IPv4, IPv6 or both).
    pub fn prefixes(&self) -> Prefixes {
        self.prefixes
    }

    /// Every member, ours included.
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// The member with id `id`.
    pub fn member(&self, id: MemberId) -> Option<&Member> {
        self.by_id.get(&id).map(|&i| &self.members[i])
    }

    /// The epoch frames are sent under.
    pub fn send_epoch(&self) -> Epoch {
        self.send_epoch
    }

    /// The epochs accepted on receive.
    pub fn accepted_epochs(&self) -> impl Iterator<Item = Epoch> + '_ {
        self.keys.iter().map(|(e, _)| *e)
    }

    /// The key of an accepted epoch.
    pub fn key(&self, epoch: Epoch) -> Option<&FrameKey> {
        self.keys.iter().find(|(e, _)| *e == epoch).map(|(_, k)| k)
    }

    /// The key to send under.
    pub fn send_key(&self) -> &FrameKey {
        // `new` refused a send epoch without a key.
        self.key(self.send_epoch)
            .unwrap_or_else(|| unreachable!("send epoch checked in Snapshot::new"))
    }

    /// Where to send a packet for inner IPv4 destination `dst`: one
    /// member's endpoints, every other member's for broadcast/multicast, or
    /// `None`.
    pub fn targets(&self, dst: Ipv4Addr) -> Targets<'_> {
        if let Some(&i) = self.by_address.get(&dst) {
            return self.unicast(i);
        }
        let group = self
            .prefixes
            .v4
            .is_some_and(|p| dst.is_multicast() || dst.is_broadcast() || dst == p.broadcast());
        self.group(group)
    }

    /// Where to send a packet for inner IPv6 destination `dst`: one
    /// member's endpoints, every other member's for multicast of link-local
    /// scope or wider (`ff02::/16` and up, as IPv4 multicast goes to all),
    /// or `None`. Interface-local (`ff01::/16`) and reserved-scope
    /// (`ff00::/16`) groups never leave a host.
    pub fn targets6(&self, dst: Ipv6Addr) -> Targets<'_> {
        if let Some(&i) = self.by_address6.get(&dst) {
            return self.unicast(i);
        }
        let scope = dst.segments()[0] & 0x000f;
        let group = self.prefixes.v6.is_some() && dst.is_multicast() && scope >= 2;
        self.group(group)
    }

    fn unicast(&self, i: usize) -> Targets<'_> {
        if i == self.me {
            Targets::Me
        } else {
            Targets::Some(&self.endpoints[i..=i])
        }
    }

    fn group(&self, group: bool) -> Targets<'_> {
        if !group {
            Targets::NotMember
        } else if self.others.is_empty() {
            Targets::Me
        } else {
            Targets::Some(&self.others)
        }
    }
}

/// Whether `address` is a host address of the VON's prefix of its family:
/// inside it, and for IPv4 neither its network nor its broadcast address
/// (below /31), for IPv6 not its subnet-router anycast address (below /127).
fn check_host(name: &str, address: IpAddr, prefixes: Prefixes) -> Result<(), SnapshotError> {
    let outside = |network: IpAddr, len: u8| SnapshotError::AddressOutsidePrefix {
        name: name.to_owned(),
        address,
        network,
        len,
    };
    let missing = |family| SnapshotError::NoPrefixForAddress {
        name: name.to_owned(),
        address,
        family,
    };
    match address {
        IpAddr::V4(a) => {
            let p = prefixes.v4.ok_or_else(|| missing("IPv4"))?;
            let host =
                p.contains(a) && (p.prefix_len() >= 31 || (a != p.network() && a != p.broadcast()));
            if !host {
                return Err(outside(p.network().into(), p.prefix_len()));
            }
        }
        IpAddr::V6(a) => {
            let p = prefixes.v6.ok_or_else(|| missing("IPv6"))?;
            let host =
                p.contains(a) && !a.is_multicast() && (p.prefix_len() >= 127 || a != p.network());
            if !host {
                return Err(outside(p.network().into(), p.prefix_len()));
            }
        }
    }
    Ok(())
}

/// Result of [`Snapshot::targets`].
#[derive(Debug, PartialEq, Eq)]
pub enum Targets<'a> {
    /// Send to these members' endpoints.
    Some(&'a [Endpoints]),
    /// Only this member would receive it.
    Me,
    /// Not a member and not broadcast/multicast.
    NotMember,
}
