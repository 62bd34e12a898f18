//! What a reservation is, and how a contracted rate becomes a rate on the
//! wire of a router's link.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Bytes a VON adds to each inner packet on an Ethernet link, as a router's
/// HTB counts them (`skb->len` includes the MAC header), for a copy sent over
/// IPv4: Ethernet 14 + outer IPv4 20 + UDP 8 + von frame 40 (24 header + 16
/// tag). Built from von-config's constants; the agent asserts they equal
/// von-crypto's frame.
pub const WIRE_OVERHEAD: u64 =
    14 + von_config::OUTER_IPV4_UDP as u64 + von_config::FRAME_OVERHEAD as u64;

/// The same for a copy sent over IPv6: the fixed IPv6 header is 40 bytes,
/// 20 more than IPv4's (von sends no extension headers).
pub const WIRE_OVERHEAD_IPV6: u64 =
    14 + von_config::OUTER_IPV6_UDP as u64 + von_config::FRAME_OVERHEAD as u64;

/// The address family a copy of a VON's frames crosses a link in: it sets
/// the outer header's size, so the wire rate booked for that copy.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// Outer IPv4 (the default: what a path entry without a family means).
    #[default]
    Ipv4,
    /// Outer IPv6.
    Ipv6,
}

impl Family {
    /// Bytes each inner packet costs on the wire on top of itself.
    pub const fn wire_overhead(self) -> u64 {
        match self {
            Self::Ipv4 => WIRE_OVERHEAD,
            Self::Ipv6 => WIRE_OVERHEAD_IPV6,
        }
    }

    /// Whether this is IPv4 (for serde's `skip_serializing_if`: a path entry
    /// over IPv4 is stored as it was before families existed).
    pub fn is_ipv4(&self) -> bool {
        *self == Self::Ipv4
    }

    /// The inner packet size a reservation is sized for by default when its
    /// copies cross links in `families`: the agent's default MTU over those
    /// underlays (`von_config::Mtu::default_over`), 1412 once any is IPv6.
    pub fn default_packet(families: impl IntoIterator<Item = Self>) -> u16 {
        if families.into_iter().any(|f| f == Self::Ipv6) {
            von_config::Mtu::DEFAULT_IPV6.bytes()
        } else {
            DEFAULT_PACKET
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Ipv4 => "ipv4",
            Self::Ipv6 => "ipv6",
        })
    }
}

/// Inner packet size a reservation is sized for unless told otherwise: the
/// agent's default VON MTU (1500 - 20 - 8 - 40), so a full-size packet is a
/// full 1514-byte Ethernet frame on the router.
pub const DEFAULT_PACKET: u16 = 1432;

/// Rates on routers are whole kbyte/s: the kernel keeps HTB rates in bytes
/// per second and `tc` prints them in round units, so the desired and the
/// installed value compare exactly.
const RATE_QUANTUM: u64 = 8_000;

/// The rate on the wire of one link for a VON contracted at `rate_bps` of
/// inner packets of `packet` bytes (rounded up to [`RATE_QUANTUM`]).
///
/// The agent's shaper counts inner IP packets; each becomes
/// `packet + WIRE_OVERHEAD` bytes on the router. Smaller packets cost more
/// overhead per bit: a VON of mostly small packets reserves with a smaller
/// `packet`.
pub fn wire_rate(rate_bps: u64, packet: u16) -> u64 {
    wire_rate_over(rate_bps, packet, Family::Ipv4)
}

/// [`wire_rate`] for a copy sent over `family` (IPv6 costs 20 bytes more per
/// packet than IPv4).
pub fn wire_rate_over(rate_bps: u64, packet: u16, family: Family) -> u64 {
    let packet = u128::from(packet.max(1));
    let wire = u128::from(rate_bps) * (packet + u128::from(family.wire_overhead())) / packet;
    let wire = u64::try_from(wire).unwrap_or(u64::MAX);
    wire.div_ceil(RATE_QUANTUM).saturating_mul(RATE_QUANTUM)
}

/// One egress interface of one router that a copy of a VON's frames leaves
/// by, and the family that copy crosses it in: written `router:dev`
/// (`r1:sha`, over IPv4) or `router:dev:ipv6` (`r1:shb:ipv6`). Interface
/// names cannot hold `:`, so the third field is unambiguous.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct LinkId {
    /// The router's name in the service's configuration.
    pub router: String,
    /// The egress interface on that router.
    pub dev: String,
    /// The outer family of the copy on this link (absent in the registry
    /// and on the wire means IPv4, as before families existed).
    #[serde(default, skip_serializing_if = "Family::is_ipv4")]
    pub family: Family,
}

impl FromStr for LinkId {
    type Err = Error;
    fn from_str(text: &str) -> Result<Self> {
        let (router, rest) = text.split_once(':').ok_or_else(|| {
            Error::invalid(
                format!("link {text:?}"),
                "write ROUTER:DEV[:ipv6], the router's name and its egress interface (example: r1:eth1)",
            )
        })?;
        let (dev, family) = match rest.split_once(':') {
            None => (rest, Family::Ipv4),
            Some((dev, "ipv4" | "4")) => (dev, Family::Ipv4),
            Some((dev, "ipv6" | "6")) => (dev, Family::Ipv6),
            Some((_, other)) => {
                return Err(Error::invalid(
                    format!("link {text:?}"),
                    format!(
                        "family {other:?} is neither ipv4 nor ipv6: write ROUTER:DEV for a copy over IPv4, ROUTER:DEV:ipv6 for one over IPv6"
                    ),
                ));
            }
        };
        if router.is_empty() || dev.is_empty() || dev.len() > 15 {
            return Err(Error::invalid(
                format!("link {text:?}"),
                "router name and interface (at most 15 bytes) must both be given (example: r1:eth1)",
            ));
        }
        Ok(Self {
            router: router.to_owned(),
            dev: dev.to_owned(),
            family,
        })
    }
}

impl fmt::Display for LinkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.router, self.dev)?;
        match self.family {
            Family::Ipv4 => Ok(()),
            Family::Ipv6 => write!(f, ":{}", self.family),
        }
    }
}

/// How many copies of each frame cross a link: a VON sends every frame once
/// per underlay, so a link that carries both underlays carries two.
pub type Copies = u32;

/// A request to reserve a share for one VON along its paths.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReservationSpec {
    /// The VON's name (for people; the registry keys on `on_id`).
    pub name: String,
    /// The VON's ON id: bytes 0..4 of every frame's UDP payload.
    pub on_id: u32,
    /// Contracted rate in bits per second of inner packets (the agent's `rate`).
    pub rate_bps: u64,
    /// Inner packet size the share is sized for (see [`wire_rate`]).
    pub packet: u16,
    /// The DSCP the VON's agents put on outer packets.
    pub dscp: u8,
    /// The UDP port the VON's frames are sent to.
    pub port: u16,
    /// Every link a copy of the VON's frames crosses, once per copy, with
    /// the copy's family: a link carrying underlays A and B is listed twice.
    pub path: Vec<LinkId>,
}

impl ReservationSpec {
    /// Checks the values a router relies on.
    pub fn validate(&self) -> Result<()> {
        let what = || format!("reservation {:?} (ON id {})", self.name, self.on_id);
        if self.rate_bps == 0 {
            return Err(Error::invalid(what(), "rate must be above zero"));
        }
        if self.dscp > 63 {
            return Err(Error::invalid(
                what(),
                format!("dscp {} is not in 0..=63", self.dscp),
            ));
        }
        if self.port == 0 {
            return Err(Error::invalid(
                what(),
                "port 0: give the VON's underlay port",
            ));
        }
        if self.packet < 64 {
            return Err(Error::invalid(
                what(),
                format!("packet {} is below 64 bytes", self.packet),
            ));
        }
        if self.path.is_empty() {
            return Err(Error::invalid(
                what(),
                "no path: list every ROUTER:DEV a copy of the VON's frames leaves by",
            ));
        }
        Ok(())
    }

    /// The rate on the wire for one copy over IPv4.
    pub fn wire_rate(&self) -> u64 {
        self.wire_rate_over(Family::Ipv4)
    }

    /// The rate on the wire for one copy over `family`.
    pub fn wire_rate_over(&self, family: Family) -> u64 {
        wire_rate_over(self.rate_bps, self.packet, family)
    }

    /// Per router, the class each of its links needs: the sum of the wire
    /// rates of the copies crossing that link, each at its own family's
    /// overhead (a link carrying A over IPv4 and B over IPv6 books one of
    /// each).
    pub fn per_router(&self) -> BTreeMap<String, Vec<OnClassSpec>> {
        let mut rates: BTreeMap<(&str, &str), u64> = BTreeMap::new();
        for link in &self.path {
            let r = rates.entry((&link.router, &link.dev)).or_default();
            *r = r.saturating_add(self.wire_rate_over(link.family));
        }
        let mut out: BTreeMap<String, Vec<OnClassSpec>> = BTreeMap::new();
        for ((router, dev), rate_bps) in rates {
            out.entry(router.to_owned()).or_default().push(OnClassSpec {
                dev: dev.to_owned(),
                on_id: self.on_id,
                dscp: self.dscp,
                port: self.port,
                rate_bps,
            });
        }
        out
    }
}

/// What one router installs on one link for one ON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OnClassSpec {
    /// The egress interface.
    pub dev: String,
    /// The ON id the filter matches at UDP payload offset 0.
    pub on_id: u32,
    /// The DSCP the filter matches.
    pub dscp: u8,
    /// The UDP destination port the filter matches.
    pub port: u16,
    /// The class's rate and ceil, bits per second on the wire.
    pub rate_bps: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(path: &[&str]) -> ReservationSpec {
        ReservationSpec {
            name: "grid".into(),
            on_id: 7,
            rate_bps: 20_000_000,
            packet: DEFAULT_PACKET,
            dscp: 46,
            port: 4789,
            path: path
                .iter()
                .map(|p| p.parse().expect("valid link"))
                .collect(),
        }
    }

    #[test]
    fn wire_rate_adds_the_frame_overhead() {
        // 1432-byte inner packets become 1514-byte frames: 20 Mbit/s inner
        // is 21.146... Mbit/s on the wire, rounded up to whole kbyte/s.
        assert_eq!(wire_rate(20_000_000, 1432), 21_152_000);
        // Smaller packets cost proportionally more.
        assert_eq!(wire_rate(1_000_000, 82), 2_000_000);
        assert_eq!(wire_rate(8_000, 1432), 16_000);
    }

    #[test]
    fn a_link_carrying_both_underlays_gets_both_copies() {
        let s = spec(&["r1:sha", "r1:sha", "r2:eth0"]);
        let per = s.per_router();
        assert_eq!(per["r1"].len(), 1);
        assert_eq!(per["r1"][0].rate_bps, 2 * s.wire_rate());
        assert_eq!(per["r2"][0].rate_bps, s.wire_rate());
    }

    #[test]
    fn an_ipv6_copy_books_its_larger_header() {
        // 1412-byte inner packets (the agent's default MTU over IPv6) become
        // 1514-byte frames over IPv6: 102 bytes of Ethernet, IPv6, UDP, frame.
        assert_eq!(WIRE_OVERHEAD_IPV6, WIRE_OVERHEAD + 20);
        assert_eq!(wire_rate_over(20_000_000, 1412, Family::Ipv6), 21_448_000);
        assert_eq!(wire_rate_over(20_000_000, 1412, Family::Ipv4), 21_168_000);
        assert_eq!(
            wire_rate_over(20_000_000, 1432, Family::Ipv4),
            wire_rate(20_000_000, 1432)
        );
        // A mixed VON: A over IPv4 on sha, B over IPv6 on shb; both on eth0.
        let mut s = spec(&["r1:sha", "r1:shb:ipv6", "r2:eth0", "r2:eth0:ipv6"]);
        s.packet = 1412;
        let per = s.per_router();
        let rate = |r: &str, dev: &str| {
            per[r]
                .iter()
                .find(|c| c.dev == dev)
                .map(|c| c.rate_bps)
                .expect("class")
        };
        assert_eq!(rate("r1", "sha"), 21_168_000);
        assert_eq!(rate("r1", "shb"), 21_448_000);
        assert_eq!(per["r2"].len(), 1, "one class per link, both copies in it");
        assert_eq!(rate("r2", "eth0"), 21_168_000 + 21_448_000);
    }

    #[test]
    fn a_path_entry_names_its_family() {
        let l: LinkId = "r1:shb:ipv6".parse().expect("valid");
        assert_eq!((l.dev.as_str(), l.family), ("shb", Family::Ipv6));
        assert_eq!(l.to_string(), "r1:shb:ipv6");
        let l: LinkId = "r1:sha".parse().expect("valid");
        assert_eq!(l.family, Family::Ipv4);
        assert_eq!(l.to_string(), "r1:sha");
        assert_eq!("r1:sha:ipv4".parse::<LinkId>().expect("valid"), l);
        let err = "r1:sha:ip7".parse::<LinkId>().unwrap_err().to_string();
        assert!(
            err.contains("\"ip7\"") && err.contains("ROUTER:DEV:ipv6"),
            "{err}"
        );
        // The registry's rows from before families keep reading as IPv4,
        // and an IPv4 entry is stored exactly as it was.
        let old: LinkId = serde_json::from_str(r#"{"router":"r1","dev":"sha"}"#).expect("old row");
        assert_eq!(old, l);
        assert_eq!(
            serde_json::to_string(&l).expect("json"),
            r#"{"router":"r1","dev":"sha"}"#
        );
        let v6: LinkId = "r1:shb:6".parse().expect("valid");
        assert_eq!(
            serde_json::to_string(&v6).expect("json"),
            r#"{"router":"r1","dev":"shb","family":"ipv6"}"#
        );
    }

    #[test]
    fn the_default_packet_follows_the_agent_mtu() {
        assert_eq!(Family::default_packet([Family::Ipv4]), 1432);
        assert_eq!(Family::default_packet([Family::Ipv4, Family::Ipv6]), 1412);
        assert_eq!(Family::default_packet([]), 1432);
    }

    #[test]
    fn bad_links_and_values_are_refused() {
        assert!("r1".parse::<LinkId>().is_err());
        assert!(":eth0".parse::<LinkId>().is_err());
        assert!("r1:averyveryverylongname".parse::<LinkId>().is_err());
        let mut s = spec(&["r1:sha"]);
        s.dscp = 64;
        assert!(s.validate().unwrap_err().to_string().contains("dscp 64"));
        let mut s = spec(&[]);
        s.path.clear();
        assert!(s.validate().unwrap_err().to_string().contains("no path"));
    }
}
