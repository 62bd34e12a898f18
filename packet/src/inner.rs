//! Just enough of the inner IP header for the VON's policy checks.
//!
//! The pipeline looks at the inner packet only to check its source and
//! destination against the view; everything else is the applications'
//! business. A VON carries IPv4, IPv6 or both (a dual-stack VON); the
//! version nibble says which, and only the fixed header is read: an IPv6
//! packet's extension headers are not walked (docs/dataplane.md, "IPv6
//! inside a VON", says why that is safe).

use std::net::{Ipv4Addr, Ipv6Addr};

/// Shortest valid IPv4 header (no options).
pub const IPV4_MIN_HEADER: usize = 20;
/// The IPv6 fixed header; extension headers follow it.
pub const IPV6_HEADER: usize = 40;

mod field {
    use std::ops::Range;
    pub const VERSION_IHL: usize = 0;
    pub const SRC: Range<usize> = 12..16;
    pub const DST: Range<usize> = 16..20;
    pub const SRC6: Range<usize> = 8..24;
    pub const DST6: Range<usize> = 24..40;
}

/// Source and destination of an inner IPv4 packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Addrs {
    /// Inner source address.
    pub src: Ipv4Addr,
    /// Inner destination address.
    pub dst: Ipv4Addr,
}

/// Source and destination of an inner IPv6 packet (its fixed header's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6Addrs {
    /// Inner source address.
    pub src: Ipv6Addr,
    /// Inner destination address.
    pub dst: Ipv6Addr,
}

/// The addresses of an inner packet of either family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InnerAddrs {
    /// An IPv4 packet.
    V4(Ipv4Addrs),
    /// An IPv6 packet.
    V6(Ipv6Addrs),
}

/// Reads source and destination, or `None` if `packet` is not a complete IPv4
/// header (version 4, IHL at least 5, header within the buffer).
pub fn ipv4_addrs(packet: &[u8]) -> Option<Ipv4Addrs> {
    let first = *packet.get(field::VERSION_IHL)?;
    let header_len = usize::from(first & 0x0f) * 4;
    if first >> 4 != 4 || header_len < IPV4_MIN_HEADER || packet.len() < header_len {
        return None;
    }
    let addr = |r: std::ops::Range<usize>| {
        let b = &packet[r];
        Ipv4Addr::new(b[0], b[1], b[2], b[3])
    };
    Some(Ipv4Addrs {
        src: addr(field::SRC),
        dst: addr(field::DST),
    })
}

/// Reads source and destination, or `None` if `packet` is not a complete IPv6
/// fixed header (version 6, 40 bytes within the buffer).
pub fn ipv6_addrs(packet: &[u8]) -> Option<Ipv6Addrs> {
    if packet.len() < IPV6_HEADER || packet[field::VERSION_IHL] >> 4 != 6 {
        return None;
    }
    let addr = |r: std::ops::Range<usize>| {
        let mut b = [0u8; 16];
        b.copy_from_slice(&packet[r]);
        Ipv6Addr::from(b)
    };
    Some(Ipv6Addrs {
        src: addr(field::SRC6),
        dst: addr(field::DST6),
    })
}

/// Reads the addresses of an IPv4 or IPv6 packet; `None` for anything else.
pub fn inner_addrs(packet: &[u8]) -> Option<InnerAddrs> {
    match packet.first()? >> 4 {
        4 => ipv4_addrs(packet).map(InnerAddrs::V4),
        6 => ipv6_addrs(packet).map(InnerAddrs::V6),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(src: [u8; 4], dst: [u8; 4]) -> Vec<u8> {
        let mut p = vec![0x45, 0, 0, 20, 0, 0, 0x40, 0, 64, 1, 0, 0];
        p.extend_from_slice(&src);
        p.extend_from_slice(&dst);
        p
    }

    fn header6(src: Ipv6Addr, dst: Ipv6Addr) -> Vec<u8> {
        let mut p = vec![0x60, 0, 0, 0, 0, 0, 58, 64];
        p.extend_from_slice(&src.octets());
        p.extend_from_slice(&dst.octets());
        p
    }

    #[test]
    fn reads_source_and_destination() {
        let p = header([100, 64, 0, 1], [100, 64, 0, 2]);
        assert_eq!(
            ipv4_addrs(&p),
            Some(Ipv4Addrs {
                src: Ipv4Addr::new(100, 64, 0, 1),
                dst: Ipv4Addr::new(100, 64, 0, 2),
            })
        );
    }

    #[test]
    fn reads_ipv6_source_and_destination() {
        let (s, d) = ("fd00:7::1".parse().unwrap(), "fd00:7::2".parse().unwrap());
        let p = header6(s, d);
        let want = Ipv6Addrs { src: s, dst: d };
        assert_eq!(ipv6_addrs(&p), Some(want));
        assert_eq!(inner_addrs(&p), Some(InnerAddrs::V6(want)));
        assert!(matches!(
            inner_addrs(&header([1, 2, 3, 4], [5, 6, 7, 8])),
            Some(InnerAddrs::V4(_))
        ));
    }

    #[test]
    fn refuses_what_is_not_a_whole_ipv6_header() {
        let good = header6(Ipv6Addr::LOCALHOST, Ipv6Addr::LOCALHOST);
        assert_eq!(ipv6_addrs(&good[..39]), None);
        assert_eq!(inner_addrs(&good[..39]), None);
        let mut v4 = good.clone();
        v4[0] = 0x45;
        assert_eq!(ipv6_addrs(&v4), None);
        let mut v5 = good.clone();
        v5[0] = 0x50;
        assert_eq!(inner_addrs(&v5), None);
        assert_eq!(inner_addrs(&[]), None);
    }

    #[test]
    fn refuses_what_is_not_a_whole_ipv4_header() {
        let good = header([1, 2, 3, 4], [5, 6, 7, 8]);
        assert_eq!(ipv4_addrs(&[]), None);
        assert_eq!(ipv4_addrs(&good[..19]), None);
        let mut v6 = good.clone();
        v6[0] = 0x60;
        assert_eq!(ipv4_addrs(&v6), None);
        let mut short_ihl = good.clone();
        short_ihl[0] = 0x44;
        assert_eq!(ipv4_addrs(&short_ihl), None);
        let mut options = good.clone();
        options[0] = 0x46; // 24-byte header, but only 20 bytes present
        assert_eq!(ipv4_addrs(&options), None);
    }
}
