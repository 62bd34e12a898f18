//! Just enough of the inner IPv4 header for the VON's policy checks.
//!
//! The pipeline looks at the inner packet only to check its source and
//! destination against the view; everything else is the applications' business.
//! VON addresses are IPv4 (100.64.0.0/10), so anything else is refused.

use std::net::Ipv4Addr;

/// Shortest valid IPv4 header (no options).
pub const IPV4_MIN_HEADER: usize = 20;

mod field {
    use std::ops::Range;
    pub const VERSION_IHL: usize = 0;
    pub const SRC: Range<usize> = 12..16;
    pub const DST: Range<usize> = 16..20;
}

/// Source and destination of an inner IPv4 packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Addrs {
    /// Inner source address.
    pub src: Ipv4Addr,
    /// Inner destination address.
    pub dst: Ipv4Addr,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn header(src: [u8; 4], dst: [u8; 4]) -> Vec<u8> {
        let mut p = vec![0x45, 0, 0, 20, 0, 0, 0x40, 0, 64, 1, 0, 0];
        p.extend_from_slice(&src);
        p.extend_from_slice(&dst);
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
