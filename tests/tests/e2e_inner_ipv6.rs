//! Issue 14: IPv6 inside a VON. Two VONs on one set of hosts: `grid`
//! dual-stack (100.64.1.0/24 and fd00:64:1::/64, h1 h2 h3) and `med`
//! IPv6-only (fd00:64:2::/64, h1 h2). Applications use IPv6 through the TUN
//! unchanged: ping, a TCP transfer checked byte for byte, UDP unicast and
//! multicast to ff02:: and ff05:: groups. The TUN has no link-local
//! address, so the kernel's own traffic never shows as a policy drop; a
//! spoofed inner IPv6 source is dropped at the sender's edge and, sealed by
//! a member gone rogue, at the receiver's, each counted; a route sending
//! an IPv6 VON address out of an underlay is a leak the guard drops.
//!
//! ```text
//!  ┌────────── h1 ───────────┐ ┌────────── h2 ───────────┐ ┌────────── h3 ───────────┐
//!  │ von-grid 100.64.1.1     │ │ von-grid 100.64.1.2     │ │ von-grid 100.64.1.3     │
//!  │          fd00:64:1::1   │ │          fd00:64:1::2   │ │          fd00:64:1::3   │
//!  │ von-med  fd00:64:2::1   │ │ von-med  fd00:64:2::2   │ │                         │
//!  │ [von up]                │ │ [von up]                │ │ [von up]                │
//!  │ ua .2.1      ub .100.1  │ │ ua .2.2      ub .100.2  │ │ ua .2.3      ub .100.3  │
//!  └──┬────────────┬─────────┘ └──┬────────────┬─────────┘ └──┬────────────┬─────────┘
//!  ┌──┴────────────┴──────────────┴────────────┴──────────────┴────────────┴─────────┐
//!  │ sw:  lana = LAN A 192.0.2.0/24             lanb = LAN B 198.51.100.0/24         │
//!  └─────────────────────────────────────────────────────────────────────────────────┘
//! ```

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use von_tests::{Ping, Result, Tool, Topology, VonSpec, forge, link, stream};

const PINGS: u32 = 20;
const TCP_BYTES: u64 = 50_000_000;
const DATAGRAMS: u64 = 100;

#[test]
fn ipv6_inside_dual_stack_and_ipv6_only_vons() -> Result<()> {
    if !von_tests::e2e_enabled("e2e inner IPv6")? {
        return Ok(());
    }
    let tool = Tool::new(env!("CARGO_BIN_EXE_von-e2e-tool"));
    let mut topo = Topology::new(3)?;
    let grid = VonSpec::new("grid", 7, 1, &[1, 2, 3]).dual_stack();
    let med = VonSpec::new("med", 8, 2, &[1, 2]).ipv6_only();
    topo.start(&[grid.clone(), med.clone()])?;

    // The interfaces: the VON addresses and nothing else, in particular no
    // fe80:: address the kernel would pick as a source for ff02:: groups.
    for n in 1..=3u8 {
        let l = link::link(topo.host(usize::from(n)).ns(), &grid.interface())?;
        assert_eq!(l.addresses, vec![grid.address(n)], "h{n} grid IPv4");
        assert_eq!(l.addresses6, vec![grid.address6(n)], "h{n} grid IPv6");
    }
    for n in 1..=2u8 {
        let l = link::link(topo.host(usize::from(n)).ns(), &med.interface())?;
        assert!(
            l.addresses.is_empty(),
            "h{n} med has IPv4: {:?}",
            l.addresses
        );
        assert_eq!(l.addresses6, vec![med.address6(n)], "h{n} med IPv6");
    }

    // Ping: every ordered pair of grid over IPv6 and over IPv4, and med.
    let mut pairs: Vec<(IpAddr, usize, &str)> = Vec::new();
    for from in 1..=3u8 {
        for to in (1..=3u8).filter(|&t| t != from) {
            pairs.push((grid.address6(to).into(), usize::from(from), "grid v6"));
            pairs.push((grid.address(to).into(), usize::from(from), "grid v4"));
        }
    }
    pairs.push((med.address6(2).into(), 1, "med v6"));
    pairs.push((med.address6(1).into(), 2, "med v6"));
    for (to, from, what) in &pairs {
        let r = Ping::new(*to, PINGS)
            .interval(Duration::from_millis(20))
            .run(topo.host(*from).ns())?;
        assert_eq!(
            (r.transmitted, r.received, r.duplicates),
            (PINGS, PINGS, 0),
            "{what} h{from} -> {to}:\n{}",
            r.output
        );
    }
    eprintln!(
        "ping: {} ordered pairs ({} over IPv6), {PINGS} each, 0 lost, 0 duplicates",
        pairs.len(),
        pairs.iter().filter(|p| p.0.is_ipv6()).count()
    );

    // TCP over IPv6, checked byte for byte: dual-stack grid, IPv6-only med.
    let seed = u64::from(std::process::id());
    for (von, bytes) in [(&grid, TCP_BYTES), (&med, TCP_BYTES / 5)] {
        let listen = SocketAddr::new(von.address6(2).into(), 9000);
        let got = tool.stream(
            topo.host(2).ns(),
            listen,
            topo.host(1).ns(),
            seed,
            bytes,
            Duration::from_secs(600),
        )?;
        eprintln!(
            "TCP over IPv6 in {}: {} bytes to {listen} in {:.1} s ({:.0} Mbit/s)",
            von.name,
            got.received,
            got.seconds,
            got.received as f64 * 8.0 / got.seconds / 1e6
        );
        assert_eq!(got.received, bytes, "{} byte count", von.name);
        assert_eq!(
            got.first_mismatch, None,
            "{} first differing byte",
            von.name
        );
        assert_eq!(
            got.sha256,
            stream::expected_sha256(seed, bytes),
            "{}",
            von.name
        );
    }

    // UDP unicast over IPv6.
    let dir = topo.dir().path().to_owned();
    let to = SocketAddr::new(grid.address6(3).into(), 9100);
    let rx = tool.udp_recv(
        topo.host(3).ns(),
        to,
        None,
        DATAGRAMS,
        30,
        &dir.join("udp.ready"),
    )?;
    tool.udp_send(topo.host(1).ns(), to, None, DATAGRAMS, 1200)?;
    let got = rx.finish()?;
    eprintln!("UDP over IPv6: {got:?}");
    assert_eq!(
        (got.received, got.damaged, got.duplicates),
        (DATAGRAMS, 0, 0)
    );
    assert_eq!(got.sources, vec![grid.address6(1).to_string()]);

    // Multicast to a link-local-scope and a site-local-scope group: every
    // other member gets every datagram once, from h1's VON address (no
    // link-local source exists to be picked).
    let iface = grid.interface();
    for group in ["ff02::7e57", "ff05::7e57"] {
        let group: Ipv6Addr = group.parse().expect("literal group");
        let port = 9200;
        let any = SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), port);
        let receivers = [2usize, 3]
            .iter()
            .map(|&n| {
                let ready = dir.join(format!("mcast{n}.ready"));
                tool.udp_recv(
                    topo.host(n).ns(),
                    any,
                    Some((group, &iface)),
                    DATAGRAMS,
                    30,
                    &ready,
                )
            })
            .collect::<Result<Vec<_>>>()?;
        let to = SocketAddr::new(group.into(), port);
        tool.udp_send(topo.host(1).ns(), to, Some(&iface), DATAGRAMS, 300)?;
        for (rx, n) in receivers.into_iter().zip([2, 3]) {
            let got = rx.finish()?;
            eprintln!("multicast {group} at h{n}: {got:?}");
            assert_eq!(
                (got.received, got.damaged, got.duplicates),
                (DATAGRAMS, 0, 0),
                "{group} at h{n}"
            );
            assert_eq!(
                got.sources,
                vec![grid.address6(1).to_string()],
                "{group} at h{n}"
            );
        }
    }

    // Nothing the kernels emitted on their own (MLD reports for the groups
    // just joined, from ::) was a policy drop: those are `link_local`.
    for n in 1..=3 {
        let mut vons = vec!["grid"];
        if n < 3 {
            vons.push("med");
        }
        for von in vons {
            let c = topo.agent(n).counters(von)?;
            eprintln!(
                "h{n} {von}: link_local {}, policy_drops {}, inner_source_rejected {}",
                c.get("link_local")?,
                c.get("policy_drops")?,
                c.get("inner_source_rejected")?
            );
            assert_eq!(c.get("policy_drops")?, 0, "h{n} {von}");
            assert_eq!(c.get("inner_source_rejected")?, 0, "h{n} {von}");
            assert_eq!(c.get("auth_failures")?, 0, "h{n} {von}");
            if von == "grid" && n > 1 {
                // h2 and h3 joined the groups: their kernels reported it.
                assert!(c.get("link_local")? > 0, "h{n} sent no MLD report to drop");
            }
        }
    }

    // Status shows the IPv6 addresses, in JSON and in the table.
    let status = topo.agent(1).status()?;
    let v = status.json()["vons"]
        .as_array()
        .and_then(|a| a.iter().find(|v| v["name"] == "med"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(v["address6"], med.address6(1).to_string(), "{v}");
    assert_eq!(
        (v["prefix6_len"].as_u64(), v["address"].is_null()),
        (Some(64), true),
        "{v}"
    );
    let text = topo.agent(1).status_text()?;
    for want in [
        format!("{}/24 {}/64", grid.address(1), grid.address6(1)),
        format!("{}/64", med.address6(1)),
        format!("{} {}", grid.address(2), grid.address6(2)),
    ] {
        assert!(text.contains(&want), "status lacks {want:?}:\n{text}");
    }

    // The leak guard's ip6 rules: a route sending an address of the
    // IPv6-only VON out of an underlay is a leak, dropped and counted.
    // (The lab's IPv4 underlays have IPv6 off; it must be on for the route.)
    topo.host(1)
        .ns()
        .exec_ok(["sysctl", "-qw", "net.ipv6.conf.ua.disable_ipv6=0"])?;
    topo.host(1).ns().ip(&[
        "-6",
        "route",
        "add",
        &format!("{}/128", med.address6(2)),
        "dev",
        "ua",
    ])?;
    let r = Ping::new(med.address6(2), 5)
        .interval(Duration::from_millis(100))
        .wait(1)
        .run(topo.host(1).ns())?;
    assert_eq!(r.received, 0, "a leaked ping was answered:\n{}", r.output);
    let leaks = von_tests::wait_for(
        "h1's guard to count 5 IPv6 leaks",
        Duration::from_secs(10),
        || {
            let s = topo.agent(1).status()?;
            let g = s.json()["vons"]
                .as_array()
                .and_then(|a| a.iter().find(|v| v["name"] == "med"))
                .map(|v| v["guard"].clone())
                .unwrap_or_default();
            Ok(if g["leaks_dropped"] == 5 {
                Ok(g)
            } else {
                Err(format!("guard {g}"))
            })
        },
    )?;
    eprintln!("IPv6 leak via ua: guard of med {leaks}");
    assert_eq!(leaks["injections_dropped"], 0, "{leaks}");

    // A spoofed inner source at the sender's edge: h2 gives its TUN a
    // second address and pings from it; its pipeline refuses every request.
    let h2 = topo.host(2);
    let spoofed: Ipv6Addr = "fd00:64:1::99".parse().expect("literal address");
    h2.ns().ip(&[
        "-6",
        "addr",
        "add",
        &format!("{spoofed}/128"),
        "dev",
        &iface,
        "nodad",
    ])?;
    let before = topo.agent(2).counters("grid")?;
    let r = Ping::new(grid.address6(1), 5)
        .interval(Duration::from_millis(50))
        .wait(1)
        .source(spoofed)
        .run(h2.ns())?;
    assert_eq!(r.received, 0, "spoofed pings answered:\n{}", r.output);
    let after = topo.agent(2).counters("grid")?;
    let drops = before.delta(&after, "policy_drops")?;
    eprintln!("spoofed IPv6 source {spoofed} at h2: {drops} policy drops of 5 sent");
    assert_eq!(drops, 5, "policy drops for the spoofed source");
    assert_eq!(before.delta(&after, "tx_packets")?, 0, "nothing sealed");

    // And sealed by h2 gone rogue (the group key, its own member id): its
    // own IPv6 source is delivered, a foreign one authenticates and is
    // refused by h1's inner-source check.
    let key = topo.group_key("grid").expect("grid was started");
    let seq0 =
        u64::from(von_crypto::sequence::MAX_INCARNATION) << von_crypto::sequence::COUNTER_BITS;
    let cases = [
        ("own source", grid.address6(2), 1, 0),
        ("foreign source", spoofed, 0, 1),
        ("another member's source", grid.address6(3), 0, 1),
    ];
    for (i, (what, src, delivered, rejected)) in (0u64..).zip(cases) {
        let frame = forge::echo6_frame(&key, grid.on_id, 2, seq0 + i, src, grid.address6(1))?;
        let got = forge::judged_at(&topo, &tool, 2, 1, "grid", &frame)?;
        eprintln!(
            "rogue IPv6 frame with {what} {src}: delivered +{}, inner_source_rejected +{}, auth_failures +{}",
            got.0, got.1, got.2
        );
        assert_eq!(got, (delivered, rejected, 0), "{what}");
    }
    Ok(())
}
