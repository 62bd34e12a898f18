//! What a reservation is, and how a contracted rate becomes a rate on the
//! wire of a router's link.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Bytes a VON adds to each inner packet on an Ethernet link, as a router's
/// HTB counts them (`skb->len` includes the MAC header): Ethernet 14 + outer
/// IPv4 20 + UDP 8 + von frame 40 (24 header + 16 tag). Built from
/// von-config's constants; the agent asserts they equal von-crypto's frame.
pub const WIRE_OVERHEAD: u64 =
    14 + von_config::OUTER_IPV4_UDP as u64 + von_config::FRAME_OVERHEAD as u64;

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
    let packet = u128::from(packet.max(1));
    let wire = u128::from(rate_bps) * (packet + u128::from(WIRE_OVERHEAD)) / packet;
    let wire = u64::try_from(wire).unwrap_or(u64::MAX);
    wire.div_ceil(RATE_QUANTUM).saturating_mul(RATE_QUANTUM)
}

/// One egress interface of one router, written `router:dev` (`r1:sha`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct LinkId {
    /// The router's name in the service's configuration.
    pub router: String,
    /// The egress interface on that router.
    pub dev: String,
}

impl FromStr for LinkId {
    type Err = Error;
    fn from_str(text: &str) -> Result<Self> {
        let (router, dev) = text.split_once(':').ok_or_else(|| {
            Error::invalid(
                format!("link {text:?}"),
                "write ROUTER:DEV, the router's name and its egress interface (example: r1:eth1)",
            )
        })?;
        if router.is_empty() || dev.is_empty() || dev.len() > 15 {
            return Err(Error::invalid(
                format!("link {text:?}"),
                "router name and interface (at most 15 bytes) must both be given (example: r1:eth1)",
            ));
        }
        Ok(Self {
            router: router.to_owned(),
            dev: dev.to_owned(),
        })
    }
}

impl fmt::Display for LinkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.router, self.dev)
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
    /// Every link a copy of the VON's frames crosses, once per copy: a link
    /// carrying underlays A and B is listed twice.
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

    /// The rate on the wire for one copy.
    pub fn wire_rate(&self) -> u64 {
        wire_rate(self.rate_bps, self.packet)
    }

    /// Per router, the class each of its links needs: the wire rate times
    /// the copies crossing that link.
    pub fn per_router(&self) -> BTreeMap<String, Vec<OnClassSpec>> {
        let mut copies: BTreeMap<&LinkId, Copies> = BTreeMap::new();
        for link in &self.path {
            *copies.entry(link).or_default() += 1;
        }
        let mut out: BTreeMap<String, Vec<OnClassSpec>> = BTreeMap::new();
        for (link, n) in copies {
            out.entry(link.router.clone())
                .or_default()
                .push(OnClassSpec {
                    dev: link.dev.clone(),
                    on_id: self.on_id,
                    dscp: self.dscp,
                    port: self.port,
                    rate_bps: self.wire_rate().saturating_mul(u64::from(n)),
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
