//! Hand-built IPv4 packets for the tests that play an attacker or a broken
//! peer: a UDP datagram to an agent's underlay port, an ICMP echo request to
//! put inside a forged frame, and re-addressing a captured datagram.

use std::net::{Ipv4Addr, Ipv6Addr};

const IPV4_HEADER: usize = 20;
const UDP_HEADER: usize = 8;
const ICMP_ECHO_HEADER: usize = 8;

/// An IPv4/UDP packet with valid checksums and a non-zero IP id, so a raw
/// socket sends it unchanged.
pub fn udp(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16, payload: &[u8]) -> Vec<u8> {
    let udp_len = UDP_HEADER + payload.len();
    let mut p = ipv4_header(src, dst, 17, udp_len);
    p.extend_from_slice(&sport.to_be_bytes());
    p.extend_from_slice(&dport.to_be_bytes());
    p.extend_from_slice(&len16(udp_len).to_be_bytes());
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(payload);
    let mut pseudo = Vec::with_capacity(12 + udp_len);
    pseudo.extend_from_slice(&src.octets());
    pseudo.extend_from_slice(&dst.octets());
    pseudo.extend_from_slice(&[0, 17]);
    pseudo.extend_from_slice(&len16(udp_len).to_be_bytes());
    pseudo.extend_from_slice(&p[IPV4_HEADER..]);
    let sum = checksum(&pseudo);
    p[IPV4_HEADER + 6..IPV4_HEADER + 8].copy_from_slice(&sum.to_be_bytes());
    p
}

/// An IPv4 ICMP echo request carrying `payload`.
pub fn icmp_echo(src: Ipv4Addr, dst: Ipv4Addr, id: u16, seq: u16, payload: &[u8]) -> Vec<u8> {
    let mut p = ipv4_header(src, dst, 1, ICMP_ECHO_HEADER + payload.len());
    let mut icmp = vec![8, 0, 0, 0];
    icmp.extend_from_slice(&id.to_be_bytes());
    icmp.extend_from_slice(&seq.to_be_bytes());
    icmp.extend_from_slice(payload);
    let sum = checksum(&icmp);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    p.extend_from_slice(&icmp);
    p
}

/// An IPv6 ICMPv6 echo request carrying `payload`, with a valid checksum
/// over the IPv6 pseudo-header (RFC 8200, section 8.1).
pub fn icmp6_echo(src: Ipv6Addr, dst: Ipv6Addr, id: u16, seq: u16, payload: &[u8]) -> Vec<u8> {
    let mut icmp = vec![128, 0, 0, 0];
    icmp.extend_from_slice(&id.to_be_bytes());
    icmp.extend_from_slice(&seq.to_be_bytes());
    icmp.extend_from_slice(payload);
    let len = len16(icmp.len());
    let mut pseudo = Vec::with_capacity(40 + icmp.len());
    pseudo.extend_from_slice(&src.octets());
    pseudo.extend_from_slice(&dst.octets());
    pseudo.extend_from_slice(&u32::from(len).to_be_bytes());
    pseudo.extend_from_slice(&[0, 0, 0, 58]);
    pseudo.extend_from_slice(&icmp);
    let sum = checksum(&pseudo);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    let mut p = vec![0x60, 0, 0, 0];
    p.extend_from_slice(&len.to_be_bytes());
    p.extend_from_slice(&[58, 64]);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    p.extend_from_slice(&icmp);
    p
}

/// The same IPv4/UDP packet between other addresses: IP header checksum
/// recomputed, UDP checksum zeroed ("none", valid in IPv4; a capture on a
/// veth holds an unfinished one because of checksum offload). The UDP
/// payload is untouched.
pub fn readdress_udp(packet: &[u8], src: Ipv4Addr, dst: Ipv4Addr) -> Option<Vec<u8>> {
    let mut p = packet.to_vec();
    let ihl = usize::from(p.first()? & 0x0f) * 4;
    if ihl < IPV4_HEADER || p.len() < ihl + UDP_HEADER || p[9] != 17 {
        return None;
    }
    p[12..16].copy_from_slice(&src.octets());
    p[16..20].copy_from_slice(&dst.octets());
    p[10..12].copy_from_slice(&[0, 0]);
    let sum = checksum(&p[..ihl]);
    p[10..12].copy_from_slice(&sum.to_be_bytes());
    p[ihl + 6..ihl + 8].copy_from_slice(&[0, 0]);
    Some(p)
}

/// The UDP payload of an IPv4/UDP packet (a von frame, for a recording of
/// an underlay), or `None` if the packet is too short for its headers.
pub fn udp_payload(packet: &[u8]) -> Option<&[u8]> {
    let ihl = usize::from(packet.first()? & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([*packet.get(2)?, *packet.get(3)?]));
    packet.get(ihl + UDP_HEADER..total.min(packet.len()))
}

/// The Internet checksum (RFC 1071) of `data`.
pub fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c.get(1).copied().unwrap_or(0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    // Folded above: the sum fits in 16 bits.
    !u16::try_from(sum).unwrap_or(u16::MAX)
}

fn ipv4_header(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, payload_len: usize) -> Vec<u8> {
    let mut h = vec![0u8; IPV4_HEADER];
    h[0] = 0x45;
    h[2..4].copy_from_slice(&len16(IPV4_HEADER + payload_len).to_be_bytes());
    h[4..6].copy_from_slice(&0x1234u16.to_be_bytes());
    h[8] = 64;
    h[9] = protocol;
    h[12..16].copy_from_slice(&src.octets());
    h[16..20].copy_from_slice(&dst.octets());
    let sum = checksum(&h);
    h[10..12].copy_from_slice(&sum.to_be_bytes());
    h
}

/// Test packets are far below 64 KiB; saturate rather than wrap if not.
fn len16(len: usize) -> u16 {
    u16::try_from(len).unwrap_or(u16::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
    const B: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);

    #[test]
    fn checksums_verify_to_zero() {
        let p = udp(A, 4789, B, 4789, b"hello von");
        assert_eq!(checksum(&p[..20]), 0, "IP header");
        let mut pseudo = Vec::new();
        pseudo.extend_from_slice(&A.octets());
        pseudo.extend_from_slice(&B.octets());
        pseudo.extend_from_slice(&[0, 17, 0, 17]);
        pseudo.extend_from_slice(&p[20..]);
        assert_eq!(checksum(&pseudo), 0, "UDP with pseudo-header");
        let e = icmp_echo(A, B, 1, 2, &[0xaa; 33]);
        assert_eq!(checksum(&e[20..]), 0, "ICMP");
        assert_eq!(e.len(), 20 + 8 + 33);
    }

    #[test]
    fn readdressing_keeps_the_payload() {
        let p = udp(A, 4789, B, 4789, b"frame");
        let c = Ipv4Addr::new(198, 51, 100, 1);
        let d = Ipv4Addr::new(198, 51, 100, 2);
        let q = readdress_udp(&p, c, d).expect("udp");
        assert_eq!(&q[12..20], &[198, 51, 100, 1, 198, 51, 100, 2]);
        assert_eq!(checksum(&q[..20]), 0);
        assert_eq!(&q[28..], b"frame");
        assert_eq!(readdress_udp(&[0x45, 0, 0], c, d), None);
    }
}
