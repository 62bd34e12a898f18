//! IPv6 inside a VON: demux by inner IPv6 destination, the inner-source
//! check for IPv6, link-local multicast to every member, the kernel's own
//! link-local packets dropped at the edge, and IPv6-only and dual-stack
//! views. The twin VON is dual-stack (100.64.0.0/24 and fd00:7::/64).

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::Instant;

use proptest::prelude::*;
use von_crypto::frame::{HEADER_LEN, TAG_LEN};
use von_crypto::{Epoch, Flags, FrameKey, FrameType, Header, MemberId};
use von_packet::twin::{
    self, TwinNet, address, address6, endpoints, ipv4_packet, ipv6_packet, snapshot_with,
};
use von_packet::{
    DropReason, Ipv4Prefix, Ipv6Prefix, Member, Prefixes, Snapshot, SnapshotError, Targets,
};

const FAST: u64 = 10_000_000_000;

fn v6(text: &str) -> Ipv6Addr {
    text.parse().unwrap()
}

/// A frame sealed under the twin key as `sender`, as an insider could make.
fn sealed(sender: u32, seq: u64, inner: &[u8]) -> Vec<u8> {
    let key = FrameKey::new(&twin::group_key());
    let header = Header {
        on_id: twin::ON_ID,
        frame_type: FrameType::Data,
        flags: Flags::new(key.cipher()),
        sender: MemberId(sender),
        epoch: twin::EPOCH,
        seq,
    };
    let mut buf = vec![0u8; HEADER_LEN + inner.len() + TAG_LEN];
    buf[HEADER_LEN..HEADER_LEN + inner.len()].copy_from_slice(inner);
    let n = key.seal_in_place(&header, &mut buf, inner.len()).unwrap();
    buf.truncate(n);
    buf
}

/// Every host of `net` switched to a view of only `prefixes`' families.
fn only(net: &mut TwinNet, prefixes: Prefixes) {
    let n = net.hosts.len();
    for (i, h) in net.hosts.iter().enumerate() {
        let keys = [(twin::EPOCH, twin::group_key())];
        let snap = snapshot_with(n, 2, i, prefixes, twin::EPOCH, &keys);
        h.snapshot.store(Arc::new(snap));
    }
}

fn v6_only() -> Prefixes {
    Prefixes {
        v4: None,
        ..twin::prefixes()
    }
}

#[test]
fn ipv6_unicast_reaches_its_member_once_byte_for_byte() {
    let mut net = TwinNet::new(3, FAST, 1);
    let t0 = Instant::now();
    let mut sent = Vec::new();
    for i in 0..200u32 {
        let p = ipv6_packet(address6(0), address6(2), 20 + i as usize * 6, i as u8);
        assert_eq!(net.send(t0, 0, &p), Ok(2), "one member, on A and on B");
        sent.push(p);
    }
    net.step(t0);
    assert_eq!(net.hosts[2].delivered, sent);
    assert!(net.hosts[1].delivered.is_empty(), "demux by inner address");
    let c = net.hosts[2].counters.snapshot();
    assert_eq!(
        (c.delivered, c.duplicates, c.inner_source_rejected),
        (200, 200, 0)
    );
}

#[test]
fn a_dual_stack_member_sends_both_families_to_the_same_endpoints() {
    let net = TwinNet::new(3, FAST, 1);
    let snap = net.hosts[0].snapshot.load();
    assert_eq!(snap.targets(address(1)), Targets::Some(&[endpoints(1)][..]));
    assert_eq!(
        snap.targets6(address6(1)),
        Targets::Some(&[endpoints(1)][..])
    );
    assert_eq!(snap.targets6(address6(0)), Targets::Me);
}

#[test]
fn ipv6_multicast_of_link_local_scope_and_wider_reaches_every_other_member() {
    let mut net = TwinNet::new(4, FAST, 1);
    let t0 = Instant::now();
    for dst in ["ff02::1", "ff02::fb", "ff05::1:3", "ff0e::114"] {
        let p = ipv6_packet(address6(1), v6(dst), 32, 9);
        assert_eq!(net.send(t0, 1, &p), Ok(6), "three others, twice ({dst})");
    }
    net.step(t0);
    for (i, h) in net.hosts.iter().enumerate() {
        assert_eq!(h.delivered.len(), if i == 1 { 0 } else { 4 }, "host {i}");
    }
    // Interface-local and reserved scopes never leave a host.
    for dst in ["ff01::1", "ff00::1"] {
        let p = ipv6_packet(address6(1), v6(dst), 32, 9);
        assert_eq!(
            net.send(t0, 1, &p),
            Err(DropReason::DestinationNotMember),
            "{dst}"
        );
    }
}

#[test]
fn the_kernels_link_local_packets_are_dropped_at_the_edge_and_counted_apart() {
    let mut net = TwinNet::new(2, FAST, 1);
    let t0 = Instant::now();
    // A router solicitation (fe80:: to ff02::2), an MLDv2 report from ::
    // (no link-local address on the TUN) and a link-local ping.
    for (src, dst) in [
        ("fe80::1234", "ff02::2"),
        ("::", "ff02::16"),
        ("fe80::1", "fd00:7::2"),
    ] {
        let p = ipv6_packet(v6(src), v6(dst), 16, 0);
        assert_eq!(net.send(t0, 0, &p), Err(DropReason::LinkLocal), "{src}");
    }
    let c = net.hosts[0].counters.snapshot();
    assert_eq!((c.link_local, c.policy_drops, c.tx_packets), (3, 0, 0));
    assert!(!DropReason::LinkLocal.is_suspicious(), "no warning per RS");
}

#[test]
fn ipv6_policy_refuses_foreign_sources_and_destinations() {
    let mut net = TwinNet::new(2, FAST, 1);
    let t0 = Instant::now();
    let cases = [
        (address6(1), address6(1), DropReason::SourceNotSelf),
        (v6("fd00:7::99"), address6(1), DropReason::SourceNotSelf),
        (v6("2001:db8::1"), address6(1), DropReason::SourceNotSelf),
        (
            address6(0),
            v6("fd00:7::9"),
            DropReason::DestinationNotMember,
        ),
        (
            address6(0),
            v6("2001:db8::1"),
            DropReason::DestinationNotMember,
        ),
        (address6(0), v6("fe80::2"), DropReason::DestinationNotMember),
        (address6(0), address6(0), DropReason::NoOtherMember),
        // An IPv4-mapped destination is not the member's IPv4 address.
        (
            address6(0),
            v6("::ffff:100.64.0.2"),
            DropReason::DestinationNotMember,
        ),
    ];
    for (src, dst, reason) in cases {
        let p = ipv6_packet(src, dst, 10, 0);
        assert_eq!(net.send(t0, 0, &p), Err(reason), "{src} -> {dst}");
    }
    // A truncated fixed header is not a packet.
    let short = &ipv6_packet(address6(0), address6(1), 0, 0)[..39];
    assert_eq!(net.send(t0, 0, short), Err(DropReason::NotIp));
    let c = net.hosts[0].counters.snapshot();
    assert_eq!(c.policy_drops, cases.len() as u64 + 1);
}

#[test]
fn an_insider_spoofing_an_ipv6_source_is_refused_and_counted() {
    let mut net = TwinNet::new(3, FAST, 1);
    // Member id 1 seals packets claiming member 3's IPv6 address, an
    // address outside the VON, a link-local one, and its own IPv4 address
    // in an IPv4-mapped IPv6 source.
    let lies = [
        address6(2),
        v6("2001:db8::1"),
        v6("fe80::1"),
        v6("::ffff:100.64.0.1"),
    ];
    for (i, src) in lies.iter().enumerate() {
        let p = ipv6_packet(*src, address6(1), 20, 0);
        net.inject_raw(twin::A, 1, sealed(1, (1 << 40) + i as u64, &p));
    }
    // Its own IPv6 address passes.
    let honest = ipv6_packet(address6(0), address6(1), 20, 1);
    net.inject_raw(twin::A, 1, sealed(1, (1 << 40) + 10, &honest));
    net.step(Instant::now());
    let c = net.hosts[1].counters.snapshot();
    assert_eq!((c.inner_source_rejected, c.delivered), (4, 1));
    assert_eq!(net.hosts[1].delivered, vec![honest]);
}

#[test]
fn an_ipv6_only_von_carries_ipv6_and_refuses_ipv4() {
    let mut net = TwinNet::new(3, FAST, 1);
    only(&mut net, v6_only());
    let t0 = Instant::now();
    let p = ipv6_packet(address6(0), address6(1), 100, 3);
    assert_eq!(net.send(t0, 0, &p), Ok(2));
    // No IPv4 address: every IPv4 packet's source is foreign, and
    // 255.255.255.255 is no group of this VON.
    for dst in [address(1), Ipv4Addr::BROADCAST, Ipv4Addr::new(224, 0, 0, 1)] {
        let p4 = ipv4_packet(address(0), dst, 10, 0);
        assert_eq!(net.send(t0, 0, &p4), Err(DropReason::SourceNotSelf));
    }
    // An insider's IPv4 packet, sealed properly, is refused on receipt.
    let p4 = ipv4_packet(address(0), address(1), 10, 0);
    net.inject_raw(twin::A, 1, sealed(1, 1 << 41, &p4));
    net.step(t0);
    assert_eq!(net.hosts[1].delivered, vec![p]);
    assert_eq!(net.hosts[1].counters.snapshot().inner_source_rejected, 1);
}

#[test]
fn an_ipv4_only_von_refuses_ipv6_as_before() {
    let mut net = TwinNet::new(2, FAST, 1);
    only(
        &mut net,
        Prefixes {
            v6: None,
            ..twin::prefixes()
        },
    );
    let t0 = Instant::now();
    let p = ipv6_packet(address6(0), address6(1), 10, 0);
    assert_eq!(net.send(t0, 0, &p), Err(DropReason::SourceNotSelf));
    net.inject_raw(twin::A, 1, sealed(1, 1 << 41, &p));
    net.step(t0);
    assert!(net.hosts[1].delivered.is_empty());
    assert_eq!(net.hosts[1].counters.snapshot().inner_source_rejected, 1);
    assert_eq!(
        net.send(t0, 0, &ipv4_packet(address(0), address(1), 10, 0)),
        Ok(2)
    );
}

fn member(id: u32, v4: Option<Ipv4Addr>, v6: Option<Ipv6Addr>) -> Member {
    Member {
        id: MemberId(id),
        name: format!("h{id}"),
        address: v4,
        address6: v6,
        endpoints: endpoints(id as usize),
    }
}

fn build(prefixes: Prefixes, members: Vec<Member>) -> Result<Snapshot, SnapshotError> {
    let keys = [(Epoch(1), twin::group_key())];
    Snapshot::new(twin::ON_ID, MemberId(1), prefixes, members, Epoch(1), &keys)
}

#[test]
fn views_that_break_the_ipv6_rules_are_refused() {
    let p6 = Ipv6Prefix::new(v6("fd00:7::"), 64);
    let both = twin::prefixes();
    let a = Some(address6(0));
    let err = |p, m| build(p, m).unwrap_err().to_string();
    assert!(
        err(both, vec![member(1, None, a), member(2, None, a)])
            .contains("fd00:7::1 is given to two members")
    );
    assert!(
        err(both, vec![member(1, None, Some(v6("fd00:8::1")))])
            .contains("not a host address of the VON prefix fd00:7::/64")
    );
    assert!(
        err(both, vec![member(1, None, Some(v6("fd00:7::")))]).contains("not a host address"),
        "the subnet-router anycast address is nobody's"
    );
    assert!(
        err(
            Prefixes { v4: None, v6: p6 },
            vec![member(1, Some(address(0)), a)]
        )
        .contains("the VON has no IPv4 prefix")
    );
    assert!(
        err(
            Prefixes {
                v4: Ipv4Prefix::new(Ipv4Addr::new(100, 64, 0, 0), 24),
                v6: None
            },
            vec![member(1, Some(address(0)), a)]
        )
        .contains("the VON has no IPv6 prefix")
    );
    assert_eq!(
        build(both, vec![member(1, None, None)]).unwrap_err(),
        SnapshotError::NoAddress("h1".into())
    );
    assert_eq!(
        build(Prefixes::default(), vec![member(1, None, a)]).unwrap_err(),
        SnapshotError::NoPrefix
    );
    // In a dual-stack VON a member may lack one family (a member admitted
    // before the VON got its IPv6 prefix): it is reached by the other.
    let mixed = build(
        both,
        vec![member(1, None, a), member(2, Some(address(1)), None)],
    )
    .unwrap();
    assert_eq!(
        mixed.targets(address(1)),
        Targets::Some(&[endpoints(2)][..])
    );
    assert_eq!(mixed.targets6(address6(1)), Targets::NotMember);
}

/// An IPv6 address near the twin's members: mostly inside fd00:7::/64 with
/// a small host part, sometimes multicast, link-local or foreign.
fn near() -> impl Strategy<Value = Ipv6Addr> {
    prop_oneof![
        (0u16..6).prop_map(|h| Ipv6Addr::new(0xfd00, 7, 0, 0, 0, 0, 0, h)),
        (0u16..16, 0u16..4).prop_map(|(scope, g)| Ipv6Addr::new(
            0xff00 | scope,
            0,
            0,
            0,
            0,
            0,
            0,
            g
        )),
        (0u16..3).prop_map(|h| Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, h)),
        any::<u128>().prop_map(Ipv6Addr::from),
    ]
}

proptest! {
    /// Outbound: a packet leaves exactly when its source is this member's
    /// IPv6 address and its destination another member's (to that member)
    /// or a group of link-local scope or wider (to all others); otherwise
    /// the reason is the model's.
    #[test]
    fn ipv6_policy_matches_the_model(src in near(), dst in near(), len in 0usize..200) {
        let mut net = TwinNet::new(3, FAST, 1);
        let p = ipv6_packet(src, dst, len, 0x5a);
        let got = net.send(Instant::now(), 0, &p);
        let members: Vec<Ipv6Addr> = (0..3).map(address6).collect();
        let scope = dst.segments()[0] & 0xf;
        let want = if src != address6(0) {
            if src.is_unspecified() || src.is_unicast_link_local() {
                Err(DropReason::LinkLocal)
            } else {
                Err(DropReason::SourceNotSelf)
            }
        } else if dst == address6(0) {
            Err(DropReason::NoOtherMember)
        } else if members.contains(&dst) {
            Ok(2)
        } else if dst.is_multicast() && scope >= 2 {
            Ok(4)
        } else {
            Err(DropReason::DestinationNotMember)
        };
        prop_assert_eq!(got, want);
    }

    /// Inbound: an authenticated frame's IPv6 packet is delivered exactly
    /// when its inner source is the sender's own IPv6 address, whatever the
    /// destination and the bytes after the fixed header.
    #[test]
    fn ipv6_inner_source_check_matches_the_model(
        src in near(), dst in near(), tail in proptest::collection::vec(any::<u8>(), 0..64)
    ) {
        let mut net = TwinNet::new(3, FAST, 1);
        let mut p = ipv6_packet(src, dst, 0, 0);
        p.extend_from_slice(&tail);
        net.inject_raw(twin::A, 1, sealed(1, 1 << 40, &p));
        net.step(Instant::now());
        let c = net.hosts[1].counters.snapshot();
        if src == address6(0) {
            prop_assert_eq!((c.delivered, c.inner_source_rejected), (1, 0));
            prop_assert_eq!(&net.hosts[1].delivered, &vec![p]);
        } else {
            prop_assert_eq!((c.delivered, c.inner_source_rejected), (0, 1));
        }
    }
}
