//! The names and the address a certificate vouches for, as types that cannot
//! hold a bad value: a VON name fits an interface name (`von-` + name), a
//! member name fits a file name (`NAME.crt`), and a VON address lies inside
//! a private or shared range and is a usable host of its own prefix.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use super::CertError;

/// Longest VON name: the interface is `von-` + name and Linux allows 15 bytes.
pub const VON_NAME_MAX: usize = 11;
/// Longest member name: a DNS label, so it can also name a TLS server.
pub const MEMBER_NAME_MAX: usize = 63;

/// The name of a VON: `[a-z0-9-]{1,11}`, not starting with `-`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct VonName(String);

/// The name of a member (or of the key manager) inside one VON:
/// `[a-z0-9-]{1,63}`, not starting with `-`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MemberName(String);

/// A member's VON address with the VON's prefix length, e.g. `100.64.0.1/24`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VonAddr {
    addr: Ipv4Addr,
    prefix_len: u8,
}

/// Address ranges a VON may use: RFC 6598 shared space and RFC 1918 private space.
/// A VON is a private network; public, loopback, link-local or multicast
/// addresses on its interface would shadow real routes.
pub const ALLOWED_RANGES: [(Ipv4Addr, u8); 4] = [
    (Ipv4Addr::new(100, 64, 0, 0), 10),
    (Ipv4Addr::new(10, 0, 0, 0), 8),
    (Ipv4Addr::new(172, 16, 0, 0), 12),
    (Ipv4Addr::new(192, 168, 0, 0), 16),
];
/// Narrowest VON prefix: a /30 still has two hosts besides network and broadcast.
pub const MAX_PREFIX_LEN: u8 = 30;

impl VonName {
    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl MemberName {
    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl VonAddr {
    /// Checks `addr/prefix_len` against [`ALLOWED_RANGES`] and [`MAX_PREFIX_LEN`].
    pub fn new(addr: Ipv4Addr, prefix_len: u8) -> Result<Self, CertError> {
        let text = format!("{addr}/{prefix_len}");
        let bad = |reason: &str| CertError::BadAddress {
            addr: text.clone(),
            reason: reason.to_owned(),
        };
        if prefix_len > MAX_PREFIX_LEN {
            return Err(bad(
                "the prefix must be /30 or wider so the VON has room for members",
            ));
        }
        let inside = ALLOWED_RANGES
            .iter()
            .any(|&(net, len)| len <= prefix_len && mask(addr, len) == net);
        if !inside {
            return Err(bad(
                "use an address and prefix inside 100.64.0.0/10, 10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16",
            ));
        }
        let host = u32::from(addr) & !prefix_mask(prefix_len);
        if host == 0 {
            return Err(bad(
                "that is the network address of its prefix; pick a host address",
            ));
        }
        if host == !prefix_mask(prefix_len) {
            return Err(bad(
                "that is the broadcast address of its prefix; pick a host address",
            ));
        }
        Ok(Self { addr, prefix_len })
    }

    /// The member's own address.
    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    /// The length of the VON's prefix.
    pub fn prefix_len(&self) -> u8 {
        self.prefix_len
    }

    /// The VON's network address (the address with host bits cleared).
    pub fn network(&self) -> Ipv4Addr {
        mask(self.addr, self.prefix_len)
    }
}

/// A VON's prefix, e.g. `100.64.0.0/24`: the network every member address
/// must be a host of. The CA records it (`von ca init --prefix`) and the key
/// manager learns it from its own certificate, so both refuse a member whose
/// certificate names another prefix or an address outside this one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VonPrefix {
    network: Ipv4Addr,
    len: u8,
}

impl VonPrefix {
    /// Checks `network/len` against [`ALLOWED_RANGES`] and [`MAX_PREFIX_LEN`];
    /// `network` must have no host bits set.
    pub fn new(network: Ipv4Addr, len: u8) -> Result<Self, CertError> {
        let text = format!("{network}/{len}");
        let bad = |reason: String| CertError::BadAddress {
            addr: text.clone(),
            reason,
        };
        if len > MAX_PREFIX_LEN {
            return Err(bad(
                "the prefix must be /30 or wider so the VON has room for members".into(),
            ));
        }
        if mask(network, len) != network {
            return Err(bad(format!(
                "host bits are set; the network is {}/{len}",
                mask(network, len)
            )));
        }
        let inside = ALLOWED_RANGES
            .iter()
            .any(|&(net, l)| l <= len && mask(network, l) == net);
        if !inside {
            return Err(bad(
                "use a prefix inside 100.64.0.0/10, 10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16"
                    .into(),
            ));
        }
        Ok(Self { network, len })
    }

    /// The prefix `addr` names (its address with host bits cleared).
    pub fn of(addr: &VonAddr) -> Self {
        Self {
            network: addr.network(),
            len: addr.prefix_len,
        }
    }

    /// The network address.
    pub fn network(&self) -> Ipv4Addr {
        self.network
    }

    /// The prefix length.
    pub fn prefix_len(&self) -> u8 {
        self.len
    }

    /// True when `addr` is a host address of this prefix: inside it, and
    /// neither its network nor its broadcast address.
    pub fn contains_host(&self, addr: Ipv4Addr) -> bool {
        let host = u32::from(addr) & !prefix_mask(self.len);
        mask(addr, self.len) == self.network && host != 0 && host != !prefix_mask(self.len)
    }

    /// True when `addr` belongs to this VON: same prefix, and a host of it.
    pub fn admits(&self, addr: &VonAddr) -> bool {
        Self::of(addr) == *self
    }
}

impl FromStr for VonPrefix {
    type Err = CertError;
    fn from_str(s: &str) -> Result<Self, CertError> {
        let bad = |reason: &str| CertError::BadAddress {
            addr: s.to_owned(),
            reason: reason.to_owned(),
        };
        let (net, len) = s
            .split_once('/')
            .ok_or_else(|| bad("write it as NETWORK/LENGTH, e.g. 100.64.0.0/24"))?;
        let net: Ipv4Addr = net
            .parse()
            .map_err(|_| bad("the network must be IPv4 dotted-quad, e.g. 100.64.0.0"))?;
        let len: u8 = len
            .parse()
            .map_err(|_| bad("the prefix length must be a number from 8 to 30"))?;
        Self::new(net, len)
    }
}

impl fmt::Display for VonPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.len)
    }
}

fn prefix_mask(len: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0)
}

fn mask(addr: Ipv4Addr, len: u8) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(addr) & prefix_mask(len))
}

fn check_label(kind: &'static str, text: &str, max: usize) -> Result<(), CertError> {
    let bad = |reason: String| CertError::BadName {
        kind,
        name: text.to_owned(),
        reason,
    };
    if text.is_empty() || text.len() > max {
        return Err(bad(format!(
            "it must be 1 to {max} characters long, not {}",
            text.len()
        )));
    }
    if let Some(c) = text
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Err(bad(format!("{c:?} is not allowed; use a-z, 0-9 and '-'")));
    }
    if text.starts_with('-') {
        return Err(bad("it must not start with '-'".to_owned()));
    }
    Ok(())
}

impl FromStr for VonName {
    type Err = CertError;
    fn from_str(s: &str) -> Result<Self, CertError> {
        check_label("VON name", s, VON_NAME_MAX)?;
        Ok(Self(s.to_owned()))
    }
}

impl FromStr for MemberName {
    type Err = CertError;
    fn from_str(s: &str) -> Result<Self, CertError> {
        check_label("member name", s, MEMBER_NAME_MAX)?;
        Ok(Self(s.to_owned()))
    }
}

impl FromStr for VonAddr {
    type Err = CertError;
    fn from_str(s: &str) -> Result<Self, CertError> {
        let bad = |reason: &str| CertError::BadAddress {
            addr: s.to_owned(),
            reason: reason.to_owned(),
        };
        let (addr, len) = s
            .split_once('/')
            .ok_or_else(|| bad("write it as ADDRESS/PREFIX, e.g. 100.64.0.1/24"))?;
        let addr: Ipv4Addr = addr
            .parse()
            .map_err(|_| bad("the address must be IPv4 dotted-quad, e.g. 100.64.0.1"))?;
        let len: u8 = len
            .parse()
            .map_err(|_| bad("the prefix length must be a number from 8 to 30"))?;
        Self::new(addr, len)
    }
}

impl fmt::Display for VonName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for MemberName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for VonAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        for ok in [
            "100.64.0.1/24",
            "10.1.2.3/8",
            "192.168.7.9/30",
            "172.31.0.1/16",
        ] {
            assert_eq!(ok.parse::<VonAddr>().unwrap().to_string(), ok);
        }
        for bad in [
            "100.64.0.0/24",   // network address
            "100.64.0.255/24", // broadcast address
            "100.64.0.1/9",    // prefix leaves 100.64/10
            "8.8.8.8/24",      // public
            "127.0.0.1/8",     // loopback
            "100.64.0.1/31",   // too narrow
            "100.64.0.1",      // no prefix
            "100.64.0.1/x",
            "fd00::1/64",
        ] {
            assert!(
                matches!(bad.parse::<VonAddr>(), Err(CertError::BadAddress { ref addr, .. }) if addr == bad),
                "{bad} accepted"
            );
        }
        let a: VonAddr = "100.64.3.7/22".parse().unwrap();
        assert_eq!(a.network(), Ipv4Addr::new(100, 64, 0, 0));
    }

    #[test]
    fn prefixes() {
        let p: VonPrefix = "100.64.0.0/24".parse().unwrap();
        assert_eq!(p.to_string(), "100.64.0.0/24");
        assert!(p.contains_host(Ipv4Addr::new(100, 64, 0, 1)));
        assert!(!p.contains_host(Ipv4Addr::new(100, 64, 0, 0)));
        assert!(!p.contains_host(Ipv4Addr::new(100, 64, 0, 255)));
        assert!(!p.contains_host(Ipv4Addr::new(100, 64, 1, 1)));
        assert!(p.admits(&"100.64.0.9/24".parse().unwrap()));
        assert!(!p.admits(&"100.64.1.9/24".parse().unwrap()), "outside");
        assert!(!p.admits(&"100.64.0.9/16".parse().unwrap()), "other length");
        for bad in ["100.64.0.1/24", "8.8.8.0/24", "100.64.0.0/31", "100.64.0.0"] {
            assert!(bad.parse::<VonPrefix>().is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn names() {
        assert!("grid".parse::<VonName>().is_ok());
        assert!("grid-prot-12".parse::<VonName>().is_err()); // 12 > 11
        assert!("Grid".parse::<VonName>().is_err());
        assert!("-x".parse::<MemberName>().is_err());
        assert!("".parse::<MemberName>().is_err());
        assert!("../etc".parse::<MemberName>().is_err());
        assert!("h1".parse::<MemberName>().is_ok());
    }
}
