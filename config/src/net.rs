//! Network values: endpoints, prefixes, DSCP and MTU.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use crate::ValueError;
use crate::macros::{serde_via_int, serde_via_str};

/// An `IP:PORT` with a non-zero port (peers must know where to send).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Endpoint(SocketAddr);

impl Endpoint {
    /// The socket address.
    pub fn addr(self) -> SocketAddr {
        self.0
    }
}

impl From<Endpoint> for SocketAddr {
    fn from(endpoint: Endpoint) -> Self {
        endpoint.0
    }
}

impl FromStr for Endpoint {
    type Err = ValueError;
    fn from_str(text: &str) -> Result<Self, ValueError> {
        // Echo the operator's own IP in the example when it is fine.
        let example = text
            .parse::<IpAddr>()
            .ok()
            .or_else(|| {
                let (ip, _) = text.rsplit_once(':')?;
                ip.trim_matches(['[', ']']).parse().ok()
            })
            .map_or_else(
                || "192.0.2.1:4789".to_owned(),
                |ip| SocketAddr::new(ip, 4789).to_string(),
            );
        let addr: SocketAddr = text.parse().map_err(|_| {
            ValueError::new(format_args!(
                "{text:?} is not IP:PORT (example: {example:?})"
            ))
        })?;
        if addr.port() == 0 {
            return Err(ValueError::new(format_args!(
                "{text:?} has port 0; choose a fixed port so peers can reach it (example: {example:?})"
            )));
        }
        Ok(Self(addr))
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

serde_via_str!(Endpoint);

/// A network prefix `ADDRESS/LENGTH` with no host bits set, e.g. `100.64.0.0/24`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Prefix {
    network: IpAddr,
    len: u8,
}

impl Prefix {
    /// The network address.
    pub fn network(self) -> IpAddr {
        self.network
    }

    /// The prefix length in bits.
    pub fn prefix_len(self) -> u8 {
        self.len
    }

    /// Whether `addr` lies inside this prefix (same family, same leading bits).
    pub fn contains(self, addr: IpAddr) -> bool {
        match (self.network, addr) {
            (IpAddr::V4(net), IpAddr::V4(a)) => (u32::from(a) & mask32(self.len)) == u32::from(net),
            (IpAddr::V6(net), IpAddr::V6(a)) => {
                (u128::from(a) & mask128(self.len)) == u128::from(net)
            }
            _ => false,
        }
    }

    /// The IPv4 broadcast address, for prefixes that have one (length <= 30).
    pub fn broadcast(self) -> Option<IpAddr> {
        match self.network {
            IpAddr::V4(net) if self.len <= 30 => Some(IpAddr::from(
                (u32::from(net) | !mask32(self.len)).to_be_bytes(),
            )),
            _ => None,
        }
    }
}

fn mask32(len: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0)
}

fn mask128(len: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0)
}

impl FromStr for Prefix {
    type Err = ValueError;
    fn from_str(text: &str) -> Result<Self, ValueError> {
        let fail = |why: &str| {
            ValueError::new(format_args!(
                "{text:?} is not a prefix: {why} (example: \"100.64.0.0/24\")"
            ))
        };
        let (ip, len) = text
            .split_once('/')
            .ok_or_else(|| fail("it has no \"/LENGTH\""))?;
        let ip: IpAddr = ip
            .parse()
            .map_err(|_| fail("the address is not an IP address"))?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let len: u8 = len
            .parse()
            .ok()
            .filter(|l| *l <= max)
            .ok_or_else(|| fail(&format!("the length must be 0 to {max}")))?;
        let network = match ip {
            IpAddr::V4(a) => IpAddr::from((u32::from(a) & mask32(len)).to_be_bytes()),
            IpAddr::V6(a) => IpAddr::from((u128::from(a) & mask128(len)).to_be_bytes()),
        };
        if network != ip {
            return Err(ValueError::new(format_args!(
                "{text:?} has host bits set (did you mean \"{network}/{len}\"?)"
            )));
        }
        Ok(Self { network, len })
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.len)
    }
}

serde_via_str!(Prefix);

/// A DSCP code point, 0..=63, carried by a VON's outer packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Dscp(u8);

impl Dscp {
    /// Expedited Forwarding (RFC 3246): the default for a VON.
    pub const EF: Self = Self(46);

    /// The code point (the upper six bits of the TOS byte).
    pub fn value(self) -> u8 {
        self.0
    }

    /// The TOS / traffic class byte to set on a socket: DSCP << 2, ECN zero.
    pub fn tos(self) -> u8 {
        self.0 << 2
    }
}

impl TryFrom<i64> for Dscp {
    type Error = ValueError;
    fn try_from(n: i64) -> Result<Self, ValueError> {
        u8::try_from(n)
            .ok()
            .filter(|d| *d <= 63)
            .map(Self)
            .ok_or_else(|| {
                ValueError::new(format_args!(
                    "{n} is not a DSCP value; use 0 to 63 (46 = EF, the default)"
                ))
            })
    }
}

serde_via_int!(Dscp, u8);

/// The inner MTU of a VON interface.
///
/// Bounds: at least 576, the datagram size every IPv4 host must accept
/// (RFC 791); at most 65535 − 20 (IPv4 header) − 8 (UDP) − 40 (frame
/// overhead) = 65467, so that a sealed frame still fits one IPv4 datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Mtu(u16);

/// Bytes a sealed frame adds to an inner packet: the 24-byte header and the
/// 16-byte tag (mirrors `von_crypto::frame::OVERHEAD`; `agent/src/lib.rs` asserts at
/// build time that they agree).
pub const FRAME_OVERHEAD: u16 = 40;
/// Outer IPv4 and UDP headers.
pub const OUTER_IPV4_UDP: u16 = 20 + 8;
/// Outer IPv6 (without extension headers) and UDP headers.
pub const OUTER_IPV6_UDP: u16 = 40 + 8;

impl Mtu {
    /// The smallest MTU (RFC 791's 576).
    pub const MIN: u16 = 576;
    /// The largest MTU whose sealed frame fits one IPv4 datagram.
    pub const MAX: u16 = u16::MAX - OUTER_IPV4_UDP - FRAME_OVERHEAD;
    /// The default: an Ethernet underlay's 1500 less IPv4, UDP and frame.
    pub const DEFAULT: Self = Self(1500 - OUTER_IPV4_UDP - FRAME_OVERHEAD);

    /// The default over IPv6 underlays: 1500 less IPv6, UDP and frame.
    pub const DEFAULT_IPV6: Self = Self(1500 - OUTER_IPV6_UDP - FRAME_OVERHEAD);

    /// The MTU in bytes.
    pub const fn bytes(self) -> u16 {
        self.0
    }

    /// The default for a VON whose copies leave from `underlays`: every copy
    /// must fit its own 1500-byte link, so the smallest family default wins
    /// (1432 over IPv4 only, 1412 once any underlay is IPv6).
    pub fn default_over(underlays: impl IntoIterator<Item = std::net::IpAddr>) -> Self {
        if underlays.into_iter().any(|ip| ip.is_ipv6()) {
            Self::DEFAULT_IPV6
        } else {
            Self::DEFAULT
        }
    }
}

impl TryFrom<i64> for Mtu {
    type Error = ValueError;
    fn try_from(n: i64) -> Result<Self, ValueError> {
        u16::try_from(n)
            .ok()
            .filter(|m| (Self::MIN..=Self::MAX).contains(m))
            .map(Self)
            .ok_or_else(|| {
                ValueError::new(format_args!(
                    "{n} is not a usable MTU; use {} to {} (default {}: 1500 less IPv4, UDP and the 40-byte frame)",
                    Self::MIN,
                    Self::MAX,
                    Self::DEFAULT.0
                ))
            })
    }
}

serde_via_int!(Mtu, u16);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        for good in ["192.0.2.1:4789", "[2001:db8::1]:4433", "0.0.0.0:4789"] {
            let e: Endpoint = good.parse().unwrap();
            assert_eq!(e.to_string(), good);
        }
        let err = |t: &str| t.parse::<Endpoint>().unwrap_err().to_string();
        assert_eq!(
            err("198.51.100.1:99999"),
            "\"198.51.100.1:99999\" is not IP:PORT (example: \"198.51.100.1:4789\")"
        );
        assert_eq!(
            err("192.0.2.7"),
            "\"192.0.2.7\" is not IP:PORT (example: \"192.0.2.7:4789\")"
        );
        assert!(err("2001:db8::1").contains("\"[2001:db8::1]:4789\""));
        assert_eq!(
            err("h1:4789"),
            "\"h1:4789\" is not IP:PORT (example: \"192.0.2.1:4789\")"
        );
        assert!(err("192.0.2.1:0").contains("port 0"));
        assert!(err("[2001:db8::1]:x").contains("\"[2001:db8::1]:4789\""));
    }

    #[test]
    fn prefixes() {
        let p: Prefix = "100.64.0.0/24".parse().unwrap();
        assert_eq!(p.prefix_len(), 24);
        assert!(p.contains("100.64.0.7".parse().unwrap()));
        assert!(!p.contains("100.64.1.7".parse().unwrap()));
        assert!(!p.contains("2001:db8::1".parse().unwrap()));
        assert_eq!(p.broadcast(), Some("100.64.0.255".parse().unwrap()));
        assert_eq!(p.to_string(), "100.64.0.0/24");
        let all: Prefix = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("203.0.113.9".parse().unwrap()));
        let host: Prefix = "100.64.0.1/32".parse().unwrap();
        assert_eq!(host.broadcast(), None);
        let v6: Prefix = "fd00:1::/64".parse().unwrap();
        assert!(v6.contains("fd00:1::9".parse().unwrap()));
        assert!(!v6.contains("fd00:2::9".parse().unwrap()));
        assert_eq!(v6.broadcast(), None);

        let err = |t: &str| t.parse::<Prefix>().unwrap_err().to_string();
        assert_eq!(
            err("100.64.0.1/24"),
            "\"100.64.0.1/24\" has host bits set (did you mean \"100.64.0.0/24\"?)"
        );
        assert_eq!(
            err("100.64.0.0"),
            "\"100.64.0.0\" is not a prefix: it has no \"/LENGTH\" (example: \"100.64.0.0/24\")"
        );
        assert!(err("100.64.0.0/33").contains("0 to 32"));
        assert!(err("fd00::/129").contains("0 to 128"));
        assert!(err("100.64.0/24").contains("not an IP address"));
    }

    #[test]
    fn dscp() {
        assert_eq!(Dscp::try_from(0).unwrap().value(), 0);
        assert_eq!(Dscp::try_from(63).unwrap().value(), 63);
        assert_eq!(Dscp::EF.tos(), 0xb8);
        assert_eq!(
            Dscp::try_from(64).unwrap_err().to_string(),
            "64 is not a DSCP value; use 0 to 63 (46 = EF, the default)"
        );
        assert!(Dscp::try_from(-1).is_err());
    }

    #[test]
    fn mtu() {
        assert_eq!(Mtu::DEFAULT.bytes(), 1432);
        assert_eq!(Mtu::MAX, 65467);
        assert_eq!(Mtu::try_from(576).unwrap().bytes(), 576);
        assert_eq!(Mtu::try_from(65467).unwrap().bytes(), 65467);
        assert_eq!(
            Mtu::try_from(575).unwrap_err().to_string(),
            "575 is not a usable MTU; use 576 to 65467 (default 1432: 1500 less IPv4, UDP and the 40-byte frame)"
        );
        assert!(Mtu::try_from(65468).is_err());
        assert!(Mtu::try_from(1 << 40).is_err());
    }
}
