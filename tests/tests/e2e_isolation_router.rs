//! Issue 8: an ON is a share of every router on its paths, set aside for it
//! alone. A router between the VON members and greedy cross traffic gives
//! the VON its reserved rate under any flood, never more even when idle;
//! admission, two-phase commit and leases leave nothing half-installed.
//!
//! ```text
//!   near side                      router (r1)                         far side
//!  ┌─ h1 (VON grid) ─┐        ┌──────────────────────┐        ┌─ h2 (VON grid) ─┐
//!  │ 100.64.1.1      ├─┐      │ lana ── routes ─► sha├─ 100 ─►│ 100.64.1.2      │
//!  └─────────────────┘ ├─ A ─►│ (proxy ARP)  HTB 1:  │ Mbit/s │                 │
//!  ┌─ x1 = h3 ───────┐ │      │                      │  each  ├─ x2 = h4 ───────┐
//!  │ iperf3 -c (TCP) ├─┘      │ lanb ── routes ─► shb├──────►│ iperf3 -s       │
//!  └─────────────────┘   B ──►│ von router, von      │        └─────────────────┘
//!                             │ reserve serve        │   (far: bridges lana/lanb
//!                             └──────────────────────┘    with h2, h4 and the
//!                                                          shared links' ends)
//! ```
//!
//! Both underlays cross the router, each on its own shared link (`sha`,
//! `shb`), so each link carries one copy of every VON frame and the VON
//! reserves its rate once per link (`--path r1:sha --path r1:shb`). The
//! flood runs on both links: flooding one would prove nothing, since the
//! receiver keeps whichever copy comes first.
//!
//! Issue 14: the same steps run three times, over IPv4 underlays, over IPv6
//! underlays (the router's links then carry IPv6 only, routed with proxy
//! NDP), and mixed (A over IPv4 on `sha`, B over IPv6 on `shb`); over IPv6
//! the router classifies by its IPv6 filters and books the 20 bytes more of
//! outer header per packet. Each run also sends frames
//! with IPv4 options / an IPv6 hop-by-hop header and shows they land in the
//! default class.

use std::time::{Duration, Instant};

use von_tests::ledger::{Path, PathCounters};
use von_tests::observe::sample;
use von_tests::router::{self, Flood, RouterNet, VonProcess, rtt_ms, von};
use von_tests::{Family, Netns, Ping, Result, Topology, Underlay, VonSpec, iperf3, wait_for};

/// What differs between the runs: the family of underlay A and of B (and
/// so of the router's links `sha` and `shb`).
#[derive(Clone, Copy)]
struct Over([Family; 2]);

impl Over {
    fn name(self) -> &'static str {
        match self.0 {
            [Family::V4, Family::V4] => "IPv4",
            [Family::V6, Family::V6] => "IPv6",
            [Family::V4, Family::V6] => "A over IPv4, B over IPv6",
            [Family::V6, Family::V4] => "A over IPv6, B over IPv4",
        }
    }

    fn any_v6(self) -> bool {
        self.0.contains(&Family::V6)
    }

    /// UDP payload so that the inner packet is the VON's MTU (the agent's
    /// default: 1432 over IPv4 only, 1412 once an underlay is IPv6): the
    /// size a reservation's wire rate is computed for by default.
    fn datagram(self) -> &'static str {
        if self.any_v6() { "1384" } else { "1404" }
    }

    /// What the router books on the link of underlay `i` (0: `sha`, 1:
    /// `shb`) for [`RESERVED`]: 82 bytes of outer headers and frame per
    /// inner packet over IPv4, 102 over IPv6, per 1432-byte packet over
    /// IPv4 only and 1412-byte one otherwise (docs/isolation.md).
    fn reserved_wire(self, i: usize) -> f64 {
        match (self.0[i], self.any_v6()) {
            (Family::V4, false) => 21_152_000.0,
            (Family::V4, true) => 21_168_000.0,
            (Family::V6, _) => 21_448_000.0,
        }
    }

    /// The path entry of underlay `i`'s link for `von reserve add --path`:
    /// ROUTER:DEV[:ipv6].
    fn link(self, i: usize, link: &str) -> String {
        match self.0[i] {
            Family::V4 => link.to_owned(),
            Family::V6 => format!("{link}:ipv6"),
        }
    }
}

/// iperf3's offered rate (UDP payload) in steps 1 and 2: traffic inside the
/// contract. The reservation is 20 Mbit/s of inner packets; each 1404-byte
/// payload is a 1432-byte inner packet, so 19 Mbit/s of payload is 19.38
/// Mbit/s inside the VON, 97 % of its share. This was 20M once: 20.40
/// Mbit/s of inner packets, 2 % above the reservation, which the router is
/// right to refuse (step 3 checks it gives no more), and which passed only
/// while the class queue could hold the whole run's excess (issue 18).
const UDP_RATE: &str = "19M";
const RESERVED: f64 = 20e6;
/// How far apart a lapsed class may vanish from the router's two links: one
/// expiry pass removes it from each in turn (a `tc` call apiece), and this
/// test polls each link with a `tc` call of its own.
const LAPSE_SKEW: Duration = Duration::from_secs(1);
/// Look-alike frames sent with and without an extension header (step 5b).
const MARKED: u32 = 400;
/// The router's metrics port (on its loopback).
const METRICS: u16 = 9479;

#[test]
fn a_reserved_on_keeps_its_share_and_no_more() -> Result<()> {
    isolation(Over([Family::V4; 2]))
}

#[test]
fn a_reserved_on_keeps_its_share_over_ipv6_underlays() -> Result<()> {
    isolation(Over([Family::V6; 2]))
}

/// Issue 14: A over IPv4 on `sha`, B over IPv6 on `shb`, on one router.
#[test]
fn a_reserved_on_keeps_its_share_over_mixed_underlays() -> Result<()> {
    isolation(Over([Family::V4, Family::V6]))
}

fn isolation(over: Over) -> Result<()> {
    if !von_tests::e2e_enabled("e2e isolation router")? {
        return Ok(());
    }
    let _heavy = von_tests::heavy();
    eprintln!("underlays over {}", over.name());
    let datagram = over.datagram();
    let reserved_wire = [over.reserved_wire(0), over.reserved_wire(1)];
    let (path_a, path_b) = (over.link(0, "r1:sha"), over.link(1, "r1:shb"));
    let mut topo = Topology::with_underlays(4, &over.0)?;
    let net = RouterNet::insert(&topo, &[2, 4])?;
    let grid = VonSpec::new("grid", 7, 1, &[1, 2]);
    topo.start(std::slice::from_ref(&grid))?;
    let r = topo.switch().expect("bridged topology").name().to_owned();
    let rns = topo.switch().expect("bridged topology");

    // Router control on mutual TLS, certificates from `von cert issue`.
    let pki = router::ControlPki::new(&topo)?;
    pki.issue("router", "r1")?;
    pki.issue("reserve", "rs1")?;
    let router_toml = topo.dir().write(
        "router.toml",
        &format!(
            "name = \"r1\"\nlisten = \"{}\"\n{}metrics = \"127.0.0.1:{METRICS}\"\n\n[[link]]\ndev = \"sha\"\ncapacity = \"100mbit\"\n\n[[link]]\ndev = \"shb\"\ncapacity = \"100mbit\"\n",
            router::CONTROL,
            pki.toml("r1")
        ),
    )?;
    let socket = topo.dir().path().join("reserve.sock");
    let state = topo.dir().path().join("reserve.redb");
    // r2 is configured but never started: the unreachable participant.
    let service_toml = topo.dir().write(
        "reserve.toml",
        &format!(
            "socket = \"{}\"\nstate = \"{}\"\n{}lease = \"2s\"\n\n[[router]]\nname = \"r1\"\naddr = \"{}\"\n\n[[router]]\nname = \"r2\"\naddr = \"127.0.0.1:7301\"\n",
            socket.display(),
            state.display(),
            pki.toml("rs1"),
            router::CONTROL
        ),
    )?;
    let router_proc =
        VonProcess::spawn(rns, &["router", "--config", &router_toml.to_string_lossy()])?;
    let serve = [
        "reserve",
        "serve",
        "--config",
        &service_toml.to_string_lossy(),
    ];
    let service = VonProcess::spawn(rns, &serve)?;
    let sock = socket.to_string_lossy().into_owned();
    wait_for(
        "the HTB root on sha and shb",
        Duration::from_secs(20),
        || {
            let (a, b) = (router::classes(rns, "sha")?, router::classes(rns, "shb")?);
            Ok(
                if a.contains("1:2") && b.contains("1:2") && socket.exists() {
                    Ok(())
                } else {
                    Err(a)
                },
            )
        },
    )?;
    eprintln!("router {r}: HTB roots installed, service up");

    let h1 = topo.host(1).ns();
    let idle = ping(h1, &grid)?;
    eprintln!(
        "idle: VON ping RTT median {:.3} ms, mean {:.3} ms",
        idle.0, idle.1
    );

    // 1. No reservation: the flood fills both links and the VON suffers.
    let f1 = under_flood(&topo, rns, &grid, datagram)?;
    let rtt1 = f1.rtt;
    eprintln!(
        "1 unreserved: VON ping RTT median {:.3} ms (mean {:.3}), {UDP_RATE} UDP loss {:.2} %, cross traffic {:.1} Mbit/s\n{}",
        rtt1.0,
        rtt1.1,
        f1.loss,
        f1.cross / 1e6,
        f1.report
    );

    // 2. Reserve 20 Mbit/s on both shared links.
    let out = von(
        rns,
        &[
            "reserve", "add", "--socket", &sock, "--name", "grid", "--on-id", "7", "--rate",
            "20mbit", "--path", &path_a, "--path", &path_b,
        ],
    )?;
    assert!(
        out.status.success(),
        "reserve failed: {}{}",
        out.stdout,
        out.stderr
    );
    wait_for(
        "the ON class on sha and shb",
        Duration::from_secs(10),
        || {
            let (a, b) = (router::classes(rns, "sha")?, router::classes(rns, "shb")?);
            Ok(if a.contains("1:10") && b.contains("1:10") {
                Ok(())
            } else {
                Err(a)
            })
        },
    )?;
    let f2 = under_flood(&topo, rns, &grid, datagram)?;
    let (rtt2, loss2, cross2) = (f2.rtt, f2.loss, f2.cross);
    eprintln!(
        "2 reserved: VON ping RTT median {:.3} ms (mean {:.3}), {UDP_RATE} UDP loss {:.2} %, cross traffic {:.1} Mbit/s\n{}",
        rtt2.0,
        rtt2.1,
        loss2,
        cross2 / 1e6,
        f2.report
    );
    // The class carried the VON on both links (a missing class would read
    // as 0 drops), and dropped none of it.
    assert!(
        f2.places
            .on_class_sent
            .iter()
            .all(|&n| n >= f2.places.sealed),
        "the ON class did not carry the VON's frames on both links\n{}",
        f2.report
    );
    assert_eq!(
        f2.places.on_class_dropped,
        [0, 0],
        "the router's reserved class dropped VON frames under the flood\n{}",
        f2.report
    );
    assert!(
        loss2 < 0.5,
        "reserved VON lost {loss2:.2} % under the flood"
    );
    assert!(
        rtt2.0 <= (idle.0 * 5.0).max(idle.0 + 2.0),
        "reserved VON's median RTT {:.3} ms vs idle {:.3} ms",
        rtt2.0,
        idle.0
    );
    assert!(
        rtt2.0 * 5.0 < rtt1.0,
        "the reservation made no difference to RTT: {rtt1:?} vs {rtt2:?}"
    );
    // The cross traffic gets the rest: 100 Mbit/s per link less 21.2 reserved.
    assert!(
        cross2 > 2.0 * 60e6,
        "cross traffic got only {:.1} Mbit/s",
        cross2 / 1e6
    );

    // 3. Idle link: offered 60 Mbit/s, the VON gets its 20 and no more on
    //    either link, though its own agent's shaper is at 10 Gbit/s. The
    //    router's claim is per link: each copy (A on sha, B on shb) is
    //    policed to the reserved wire rate. What the receiver keeps is the
    //    union of the two policed copies: HTB drops different packets on
    //    each link, so with the agent's shaper out of the way the union may
    //    exceed 20 Mbit/s (it did: 21.8 in one run). With the agent's own
    //    shaper at the contract, as configured in practice, it cannot.
    let on_bytes = |link: &str| -> Result<f64> {
        let text = router::scrape(rns, METRICS)?;
        Ok(sample(
            &text,
            "von_router_bytes_total",
            &[("router", "r1"), ("link", link), ("on_id", "7")],
        )
        .unwrap_or(0.0))
    };
    // Sample the class counters in steady state (from 1 s to 3 s into the
    // 4 s run): after the run the class's queue still drains for a while,
    // which would count as sending above the rate.
    let h2 = topo.host(2).ns();
    let (r3, per_link) = std::thread::scope(|scope| {
        let sampler = scope.spawn(|| -> Result<[f64; 2]> {
            std::thread::sleep(Duration::from_secs(1));
            let t0 = std::time::Instant::now();
            let before = (on_bytes("sha")?, on_bytes("shb")?);
            std::thread::sleep(Duration::from_secs(2));
            let after = (on_bytes("sha")?, on_bytes("shb")?);
            let dt = t0.elapsed().as_secs_f64();
            Ok([
                (after.0 - before.0) * 8.0 / dt,
                (after.1 - before.1) * 8.0 / dt,
            ])
        });
        let r3 = iperf3(
            h2,
            grid.address(2),
            h1,
            &["-u", "-b", "60M", "-l", datagram, "-t", "4"],
            Duration::from_secs(4),
        );
        let per_link = sampler.join().expect("sampler thread");
        (r3, per_link)
    });
    let (r3, per_link) = (r3?, per_link?);
    let got = r3.received_bps();
    eprintln!(
        "3 idle link, 60 Mbit/s offered: ON 7 sent {:.2} Mbit/s on sha and {:.2} on shb \
         (reserved wire rates {:.3} and {:.3}); the receiver kept {:.2} Mbit/s of UDP payload",
        per_link[0] / 1e6,
        per_link[1] / 1e6,
        reserved_wire[0] / 1e6,
        reserved_wire[1] / 1e6,
        got / 1e6
    );
    for ((link, bps), reserved_wire) in ["sha", "shb"].iter().zip(per_link).zip(reserved_wire) {
        assert!(
            bps <= reserved_wire * 1.05,
            "ON 7 exceeded its reservation on {link}: {bps:.0} bit/s"
        );
        assert!(
            bps >= reserved_wire * 0.8,
            "ON 7 got only {bps:.0} bit/s of its reservation on {link}"
        );
    }
    assert!(
        got >= RESERVED * 0.8,
        "the VON got only {got:.0} bit/s of its 20 Mbit/s"
    );

    // 4. Admission: 80 Mbit/s more would overbook 100 Mbit/s links.
    let before = (router::classes(rns, "sha")?, router::classes(rns, "shb")?);
    let out = von(
        rns,
        &[
            "reserve", "add", "--socket", &sock, "--name", "med", "--on-id", "8", "--rate",
            "80mbit", "--path", &path_a, "--path", &path_b,
        ],
    )?;
    eprintln!(
        "4 admission: {}",
        out.stderr.lines().next().unwrap_or_default()
    );
    assert!(
        !out.status.success(),
        "an overbooking reservation was accepted"
    );
    assert!(
        out.stderr.contains("link sha would be overbooked by"),
        "{}",
        out.stderr
    );
    assert_nothing_new(rns, &before)?;

    // 5. Two-phase commit: r1 prepares, r2 is unreachable: r1 aborts.
    let out = von(
        rns,
        &[
            "reserve", "add", "--socket", &sock, "--name", "far", "--on-id", "9", "--rate",
            "1mbit", "--path", "r1:sha", "--path", "r2:eth0",
        ],
    )?;
    eprintln!(
        "5 two-phase commit: {}",
        out.stderr.lines().next().unwrap_or_default()
    );
    assert!(
        !out.status.success(),
        "a reservation over an unreachable router was accepted"
    );
    assert!(out.stderr.contains("router r2"), "{}", out.stderr);
    assert_nothing_new(rns, &before)?;
    let mut args = vec![
        "router",
        "status",
        "--addr",
        router::CONTROL,
        "--name",
        "r1",
    ];
    let flags = pki.flags("rs1");
    args.extend(flags.iter().map(String::as_str));
    args.push("--json");
    let status = von(rns, &args)?;
    let json: serde_json::Value =
        serde_json::from_str(&status.stdout).expect("router status is JSON");
    assert_eq!(
        json["holds"], 0,
        "r1 still holds an aborted transaction: {}",
        status.stdout
    );
    let reserved: Vec<u64> = json["reservations"]
        .as_array()
        .map(|a| a.iter().filter_map(|r| r["on_id"].as_u64()).collect())
        .unwrap_or_default();
    assert_eq!(reserved, vec![7], "{}", status.stdout);
    assert!(
        json["reservations"][0]["classes"][0]["counters"]["bytes"].as_u64() > Some(0),
        "per-ON bytes: {}",
        status.stdout
    );

    // Metrics: per-ON and default-class counters and the reserved rate.
    let text = router::scrape(rns, METRICS)?;
    let on = |name: &str, link: &str, on_id: &str| {
        sample(
            &text,
            name,
            &[("router", "r1"), ("link", link), ("on_id", on_id)],
        )
    };
    let (on_bytes, on_drops) = (
        on("von_router_bytes_total", "sha", "7"),
        on("von_router_drops_total", "sha", "7"),
    );
    let default_bytes = on("von_router_bytes_total", "sha", "default");
    eprintln!(
        "metrics: ON 7 on sha {on_bytes:?} bytes, {on_drops:?} drops; default class {default_bytes:?} bytes"
    );
    assert!(on_bytes > Some(0.0), "per-ON bytes in metrics:\n{text}");
    assert!(on_drops.is_some(), "per-ON drops in metrics:\n{text}");
    assert!(default_bytes > Some(0.0), "default class:\n{text}");
    assert_eq!(
        [
            on("von_router_reserved_rate_bits_per_second", "sha", "7"),
            on("von_router_reserved_rate_bits_per_second", "shb", "7")
        ],
        reserved_wire.map(Some),
        "{text}"
    );

    // 5b. Extension headers (issue 14): datagrams that look like ON 7's
    //     frames (its port, DSCP and ON id) but carry IPv4 options or an
    //     IPv6 hop-by-hop header go to the default class; the same
    //     datagrams without them go to ON 7's class. Sent from h1 to h2's
    //     agent on underlay A, so they leave by `sha`; h2's agent drops them
    //     as frames that do not open.
    let from = topo.host(1).underlay_ip(Underlay::A);
    let to = topo.host(2).underlay_endpoint(Underlay::A);
    let counts = || -> Result<(u64, u64)> {
        let c = von_tests::ledger::tc_classes(rns, "sha")?;
        let packets = |id: &str| c.get(id).map_or(0, |x| x.packets);
        Ok((packets("1:10"), packets("1:2")))
    };
    let mut moved = [(0, 0); 2];
    for (i, extension) in [true, false].into_iter().enumerate() {
        let before = counts()?;
        router::send_marked(h1, from, to, 7, 46, extension, MARKED)?;
        std::thread::sleep(Duration::from_millis(300));
        let after = counts()?;
        moved[i] = (after.0 - before.0, after.1 - before.1);
    }
    let [(ext_on, ext_default), (plain_on, plain_default)] = moved;
    let header = match over.0[0] {
        Family::V4 => "IPv4 options",
        Family::V6 => "an IPv6 hop-by-hop header",
    };
    eprintln!(
        "5b extension headers: {MARKED} look-alikes of ON 7's frames with {header}: {ext_on} in ON 7's class, \
         {ext_default} in the default class; without: {plain_on} and {plain_default}"
    );
    assert!(
        ext_default >= u64::from(MARKED) && ext_on < u64::from(MARKED / 4),
        "frames with {header} must fall into the default class: {ext_on} in ON 7's, {ext_default} in the default"
    );
    assert!(
        plain_on >= u64::from(MARKED) && plain_default < u64::from(MARKED / 4),
        "the same frames without {header} must be ON 7's: {plain_on} in ON 7's, {plain_default} in the default"
    );

    // 6. Crash and restart within the lease: the registry comes back from
    //    its redb file and the service resumes renewing.
    service.stop("KILL")?;
    let restarted = VonProcess::spawn(rns, &serve)?;
    wait_for(
        "the restarted service to list ON 7",
        Duration::from_secs(10),
        || {
            let out = von(rns, &["reserve", "list", "--socket", &sock])?;
            Ok(
                if out.status.success() && out.stdout.contains("ON 7 (grid)") {
                    Ok(())
                } else {
                    Err(format!("{}{}", out.stdout, out.stderr))
                },
            )
        },
    )?;
    // Three leases later the class is still there: renewed, not lapsed.
    std::thread::sleep(Duration::from_secs(6));
    for dev in ["sha", "shb"] {
        assert!(
            router::classes(rns, dev)?.contains("1:10"),
            "the class on {dev} went after the service restarted"
        );
    }
    let out = von(rns, &["reserve", "list", "--socket", &sock])?;
    assert!(out.stdout.contains("ON 7 (grid)"), "{}", out.stdout);
    let out = von(
        rns,
        &[
            "reserve", "add", "--socket", &sock, "--name", "other", "--on-id", "7", "--rate",
            "1mbit", "--path", "r1:sha",
        ],
    )?;
    assert!(
        out.stderr.contains("already registered for VON \"grid\""),
        "ON-id uniqueness after the restart: {}",
        out.stderr
    );
    eprintln!("6 restart: the registry came back; class kept for 3 leases; ON id 7 still taken");

    // 7. Lease: a killed service stops renewing; the class goes by itself,
    //    from every link of the router. The router applies a lapse link by
    //    link in one pass, so each link is waited for and the skew between
    //    them is measured (docs/isolation.md).
    let killed = Instant::now();
    restarted.stop("KILL")?;
    assert!(
        router::classes(rns, "sha")?.contains("1:10")
            && router::classes(rns, "shb")?.contains("1:10"),
        "the class went before the lease lapsed"
    );
    let mut gone: [Option<Duration>; 2] = [None, None];
    wait_for(
        "the lapsed ON's class to go from sha and shb",
        Duration::from_secs(8),
        || {
            for (i, link) in ["sha", "shb"].into_iter().enumerate() {
                if gone[i].is_none() && !router::classes(rns, link)?.contains("1:10") {
                    gone[i] = Some(killed.elapsed());
                }
            }
            Ok(if gone.iter().all(Option::is_some) {
                Ok(())
            } else {
                Err(format!("{gone:?}"))
            })
        },
    )?;
    let [Some(on_a), Some(on_b)] = gone else {
        unreachable!("wait_for returned Ok only once both were seen gone")
    };
    let skew = on_a.abs_diff(on_b);
    eprintln!(
        "7 lease: class removed {:.2} s (sha) and {:.2} s (shb) after the service was killed (lease 2 s); seen apart by {:.0} ms",
        on_a.as_secs_f64(),
        on_b.as_secs_f64(),
        skew.as_secs_f64() * 1e3
    );
    assert!(
        skew < LAPSE_SKEW,
        "a lapsed lease must mean one thing across the router's links: sha and shb were {skew:?} apart"
    );

    // The router removes what it installed on exit.
    let out = router_proc.stop("TERM")?;
    let qdisc = rns.exec_ok(["tc", "qdisc", "show", "dev", "sha"])?.stdout;
    assert!(
        !qdisc.contains("htb"),
        "qdisc left behind: {qdisc}\n{}",
        out.stderr
    );
    drop(net);
    Ok(())
}

/// Ping over the VON: (median, mean) RTT in ms.
fn ping(h1: &Netns, grid: &VonSpec) -> Result<(f64, f64)> {
    let r = Ping::new(grid.address(2), 40)
        .interval(Duration::from_millis(50))
        .run(h1)?;
    assert!(r.received >= 36, "VON ping lost too much:\n{}", r.output);
    Ok(rtt_ms(&r.output).expect("replies carry times"))
}

/// Floods both shared links from x1 to x2, measures the VON's ping and its
/// 20 Mbit/s UDP loss meanwhile; returns them with the flood's throughput
/// and where the UDP run's datagrams went, place by place.
fn under_flood(topo: &Topology, rns: &Netns, grid: &VonSpec, datagram: &str) -> Result<Flooded> {
    let (h1, h2, x1, x2) = (
        topo.host(1).ns(),
        topo.host(2).ns(),
        topo.host(3).ns(),
        topo.host(4).ns(),
    );
    let path = Path {
        von: &grid.name,
        interface: "von-grid",
        sender: h1,
        receiver: h2,
        router: rns,
        links: ["sha", "shb"],
        on_class: "1:10",
    };
    let floods = [
        Flood::start(x2, topo.host(4).underlay_ip(Underlay::A), 5301, x1, 12)?,
        Flood::start(x2, topo.host(4).underlay_ip(Underlay::B), 5302, x1, 12)?,
    ];
    std::thread::sleep(Duration::from_secs(2));
    let rtt = ping(h1, grid)?;
    let read = || path.read(&topo.agent(1).status()?, &topo.agent(2).status()?);
    let before = read()?;
    let udp = iperf3(
        h2,
        grid.address(2),
        h1,
        &["-u", "-b", UDP_RATE, "-l", datagram, "-t", "5"],
        Duration::from_secs(5),
    )?;
    let places = before.until(&read()?);
    let sent = udp.packets.unwrap_or(1).max(1);
    let lost = udp.lost_packets.unwrap_or(0);
    let mut cross = 0.0;
    for f in floods {
        cross += f.finish(Duration::from_secs(40))?;
    }
    Ok(Flooded {
        rtt,
        loss: lost as f64 * 100.0 / sent as f64,
        cross,
        report: format!("  iperf3: {sent} datagrams sent, {lost} lost\n{places}"),
        places,
    })
}

/// What [`under_flood`] measured.
struct Flooded {
    /// The VON's ping RTT (median, mean), ms.
    rtt: (f64, f64),
    /// iperf3's end-to-end UDP loss, %.
    loss: f64,
    /// The flood's throughput over both links, bit/s.
    cross: f64,
    places: PathCounters,
    /// iperf3's figures and the per-place accounting, for the log.
    report: String,
}

fn assert_nothing_new(rns: &Netns, before: &(String, String)) -> Result<()> {
    let after = (router::classes(rns, "sha")?, router::classes(rns, "shb")?);
    let ids = |t: &str| {
        t.lines()
            .filter_map(|l| l.split_whitespace().nth(2).map(str::to_owned))
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&before.0), ids(&after.0), "classes on sha changed");
    assert_eq!(ids(&before.1), ids(&after.1), "classes on shb changed");
    Ok(())
}
