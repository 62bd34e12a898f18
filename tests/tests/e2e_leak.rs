//! Issue 11, item 3: no plaintext leak around the VON, no injection from the
//! underlay (the TunnelVision, TunnelCrack LocalNet and CVE-2019-14899
//! classes). The agent's nftables table `inet von` lets a VON address leave
//! and enter only through the VON's TUN; a conflicting route shows in `von
//! status` and the log. docs/leaks.md has the design.
//!
//! ```text
//!  (1) the operator's bad route               (2) a non-member on the LANs
//!  ┌──── h1 ────┐          ┌──── h2 ────┐    ┌──── h3 (no agent) ─────────┐
//!  │ ping ──► 100.64.1.2   │ tcpdump ua │    │ route 100.64.1.0/24 via h2 │
//!  │ route 100.64.1.2/32   │ tcpdump ub │    │ UDP, TCP, spoofed UDP ─────┼─► h2's
//!  │   via 192.0.2.2 dev ua│            │    └────────────────────────────┘  listener on
//!  │ ua ──────── veth A ───┼─► ua       │                                    100.64.1.2:9999
//!  │ ub ──────── veth B ───┼─► ub       │       (hosts on bridges lana/lanb for (2))
//!  └────────────┘          └────────────┘
//! ```
//!
//! (3) A member gone rogue (it holds grid's key) seals packets for h1's
//! address in another VON and for h1's underlay address: they authenticate,
//! and reach no listener, since a VON's TUN only takes its own VON's traffic.
//!
//! (4) The table's life: other tables (one named `von` in family `ip`) are
//! never touched; a table removed under the agent is put back; after SIGKILL
//! it stays, and the next start replaces it; a clean stop removes it.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use von_tests::netns::QUICK;
use von_tests::process::{self, Background};
use von_tests::sniff;
use von_tests::vonbin::von_bin;
use von_tests::{
    Error, Netns, Ping, Result, Status, Tool, Topology, Underlay, VonSpec, packet, wait_for,
};

/// Every VON address of these tests (100.64.X.0/24 per VON).
const VON_NET: &str = "net 100.64.0.0/16";
/// How long the agent may take to see a change: its check runs every 2 s.
const SEEN: Duration = Duration::from_secs(20);

#[test]
fn a_more_specific_route_via_an_underlay_sends_nothing_in_the_clear() -> Result<()> {
    if !von_tests::e2e_enabled("e2e leak (route)")? {
        return Ok(());
    }
    let mut topo = Topology::new(2)?;
    let grid = VonSpec::new("grid", 7, 1, &[1, 2]);
    topo.start(std::slice::from_ref(&grid))?;
    let (h1, h2) = (topo.host(1), topo.host(2));
    let peer = grid.address(2);

    // Through the VON first: the guard leaves VON traffic alone.
    let r = Ping::new(peer, 3).interval(ms(200)).run(h1.ns())?;
    assert_eq!(r.received, 3, "{}", r.output);

    // The operator's mistake, and pings while it stands: with and without
    // the VON address as source. Both underlays are watched on h2's side.
    let sniffers = sniff::both_underlays(h2.ns(), VON_NET, topo.dir().path())?;
    let via = h2.underlay_addr(Underlay::A).to_string();
    let bad_route = ["100.64.1.2/32", "via", via.as_str(), "dev", "ua"];
    h1.ns().ip(&[&["route", "add"][..], &bad_route].concat())?;
    let plain = Ping::new(peer, 5).interval(ms(200)).wait(1).run(h1.ns())?;
    let sourced = Ping::new(peer, 5)
        .interval(ms(200))
        .wait(1)
        .source(grid.address(1))
        .run(h1.ns())?;
    let seen = sniff::stop_all(sniffers)?;
    eprintln!(
        "leak: {} plaintext packet(s) on h2's underlays while 10 pings followed the bad route \
         (replies: {} + {})",
        seen.len(),
        plain.received,
        sourced.received
    );
    assert_eq!(
        seen,
        Vec::<String>::new(),
        "plaintext to or from VON addresses"
    );
    assert_eq!(plain.received + sourced.received, 0, "{}", plain.output);

    // The conflict shows, and the 10 echo requests were counted as leaks.
    let status = wait_status(&topo, 1, "the route conflict in status", |s| {
        let g = guard(s, "grid")?;
        Ok(has_conflict(g, "route", "100.64.1.2/32", "ua") && g["leaks_dropped"] == 10)
    })?;
    let g = guard(&status, "grid")?;
    eprintln!(
        "leak: h1 leaks_dropped {} injections_dropped {}; conflict {}",
        g["leaks_dropped"], g["injections_dropped"], g["route_conflicts"]
    );
    assert_eq!(g["injections_dropped"], 0, "{g}");
    let h2_guard = guard(&topo.agent(2).status()?, "grid")?.clone();
    assert_eq!(h2_guard["injections_dropped"], 0, "nothing reached h2");
    let human = human_status(h1.ns(), &topo.dir().path().join("h1/control.sock"))?;
    assert!(
        human.contains("route conflict 100.64.1.2/32") && human.contains("dropped 10 leaving"),
        "{human}"
    );

    // The route goes: the conflict clears, the VON carries the pings again.
    h1.ns().ip(&[&["route", "del"][..], &bad_route].concat())?;
    wait_status(&topo, 1, "the conflict to clear", |s| {
        Ok(guard(s, "grid")?["route_conflicts"] == Value::Array(vec![]))
    })?;
    let r = Ping::new(peer, 3).interval(ms(200)).run(h1.ns())?;
    assert_eq!(r.received, 3, "{}", r.output);

    // An underlay network that covers the VON prefix: reported, and the
    // VON (its /24 more specific) goes on carrying the pings.
    let covering = ["100.64.0.0/16", "dev", "ua"];
    h1.ns().ip(&[&["route", "add"][..], &covering].concat())?;
    wait_status(&topo, 1, "the underlay conflict", |s| {
        Ok(has_conflict(
            guard(s, "grid")?,
            "underlay",
            "100.64.0.0/16",
            "ua",
        ))
    })?;
    let r = Ping::new(peer, 3).interval(ms(200)).run(h1.ns())?;
    assert_eq!(r.received, 3, "{}", r.output);
    h1.ns().ip(&[&["route", "del"][..], &covering].concat())?;

    // Logged once when it appeared, once when it cleared.
    let log = std::fs::read_to_string(topo.dir().path().join("h1/agent.log")).unwrap_or_default();
    let count = |needle: &str| log.lines().filter(|l| l.contains(needle)).count();
    assert_eq!(count("route conflict: 100.64.1.2/32"), 1, "{log}");
    assert_eq!(
        count("route conflict: underlay network 100.64.0.0/16"),
        1,
        "{log}"
    );
    let cleared = |dst: &str| {
        log.lines()
            .filter(|l| l.contains("route conflict cleared") && l.contains(dst))
            .count()
    };
    assert_eq!(cleared("dst=100.64.1.2/32"), 1, "{log}");
    for line in log.lines().filter(|l| l.contains("route conflict")) {
        eprintln!("leak: h1 logged: {line}");
    }
    Ok(())
}

#[test]
fn a_non_member_on_the_underlay_reaches_no_listener_on_a_von_address() -> Result<()> {
    if !von_tests::e2e_enabled("e2e leak (injection)")? {
        return Ok(());
    }
    let tool = Tool::new(env!("CARGO_BIN_EXE_von-e2e-tool"));
    let mut topo = Topology::new(3)?;
    // h3 shares both LANs but is no member: no agent, no key.
    let grid = VonSpec::new("grid", 7, 1, &[1, 2]);
    topo.start(std::slice::from_ref(&grid))?;
    let (h1, h2, h3) = (topo.host(1), topo.host(2), topo.host(3));
    let target = SocketAddr::from((grid.address(2), 9999));
    // Loose reverse-path filtering, as a default Linux host has it: the
    // guard must not depend on it.
    for key in ["all", "default", "ua", "ub"] {
        h2.ns()
            .exec_ok(["sysctl", "-qw", &format!("net.ipv4.conf.{key}.rp_filter=0")])?;
    }

    let listener = listen(h2.ns(), target, &topo.dir().path().join("listen.ready"), 20)?;
    // Read before anything is sent; judged after the listener has spoken.
    let before = topo.agent(2).status()?;

    // On A: h3 routes the VON prefix to h2 and sends from its own address,
    // then with a member's VON address as a spoofed source.
    let (mut sent_udp, mut h3_connected) = (0, false);
    for (u, via) in [
        (Underlay::A, h2.underlay_addr(Underlay::A)),
        (Underlay::B, h2.underlay_addr(Underlay::B)),
    ] {
        let via = via.to_string();
        h3.ns().ip(&[
            "route",
            "replace",
            "100.64.1.0/24",
            "via",
            &via,
            "dev",
            u.interface(),
        ])?;
        let script = "for i in 1 2 3 4 5; do echo injected > /dev/udp/100.64.1.2/9999; done";
        h3.ns().exec_ok(["bash", "-c", script])?;
        for i in 0..5 {
            let spoofed = packet::udp(grid.address(1), 40_000 + i, grid.address(2), 9999, b"x");
            tool.send_raw(h3.ns(), &spoofed)?;
        }
        sent_udp += 10;
        if u == Underlay::A {
            // A TCP connection from h3's own address: the SYN goes nowhere.
            let tcp = "exec 3<>/dev/tcp/100.64.1.2/9999";
            let out = h3
                .ns()
                .exec(["timeout", "3", "bash", "-c", tcp], Duration::from_secs(30))?;
            h3_connected = out.status.success();
        }
    }

    // A member through the VON does reach the listener: it counts.
    let legit = "for i in 1 2 3; do echo member > /dev/udp/100.64.1.2/9999; done; \
                 exec 3<>/dev/tcp/100.64.1.2/9999";
    h1.ns().exec_ok(["timeout", "10", "bash", "-c", legit])?;
    let heard = heard(listener)?;
    eprintln!("injection: the listener on {target} counted {heard} (the member sent 3 UDP, 1 TCP)");
    assert_eq!(heard["udp"], 3, "only the member's 3 datagrams: {heard}");
    assert_eq!(heard["tcp"], 1, "only the member's connection: {heard}");
    assert!(!h3_connected, "h3's TCP connection was refused by no one");

    // Every injected datagram and at least one SYN were counted.
    let before = guard(&before, "grid")?;
    let after = wait_status(&topo, 2, "the injections counted", |s| {
        Ok(delta(before, guard(s, "grid")?, "injections_dropped") > sent_udp)
    })?;
    let got = delta(before, guard(&after, "grid")?, "injections_dropped");
    eprintln!("injection: h2 injections_dropped +{got} ({sent_udp} UDP sent by h3, then TCP SYNs)");
    assert_eq!(
        delta(before, guard(&after, "grid")?, "leaks_dropped"),
        0,
        "nothing of the VON's own left around the TUN"
    );
    Ok(())
}

#[test]
fn a_rogue_member_reaches_no_other_address_of_the_host() -> Result<()> {
    if !von_tests::e2e_enabled("e2e leak (rogue member)")? {
        return Ok(());
    }
    let tool = Tool::new(env!("CARGO_BIN_EXE_von-e2e-tool"));
    let mut topo = Topology::new(2)?;
    let grid = VonSpec::new("grid", 7, 1, &[1, 2]);
    let med = VonSpec::new("med", 8, 2, &[1, 2]);
    topo.start(&[grid.clone(), med.clone()])?;
    let (h1, h2) = (topo.host(1), topo.host(2));
    let key = topo.group_key("grid").expect("grid was started");
    let targets = [
        SocketAddr::from((med.address(1), 9999)),
        SocketAddr::from((h1.underlay_addr(Underlay::A), 9998)),
    ];
    let listeners = targets
        .iter()
        .enumerate()
        .map(|(i, t)| {
            listen(
                h1.ns(),
                *t,
                &topo.dir().path().join(format!("ready{i}")),
                15,
            )
        })
        .collect::<Result<Vec<_>>>()?;
    let before = topo.agent(1).status()?;

    // The rogue frames: grid's key, h2's member id and grid address as the
    // inner source (so the receiver's own checks pass), a sequence in the
    // last incarnation, far above h2's real one (so the window takes it and
    // the freshness floor, set by h2's proven counter, lies below it).
    let seq0 =
        u64::from(von_crypto::sequence::MAX_INCARNATION) << von_crypto::sequence::COUNTER_BITS;
    for (i, t) in (0u64..).zip(&targets) {
        let std::net::IpAddr::V4(dst) = t.ip() else {
            unreachable!("IPv4 targets")
        };
        let inner = packet::udp(grid.address(2), 5555, dst, t.port(), b"rogue");
        let frame = von_tests::forge::seal(&key, grid.on_id, 2, 1, seq0 + i, &inner)?;
        let datagram = packet::udp(
            h2.underlay_addr(Underlay::A),
            von_tests::UNDERLAY_PORT,
            h1.underlay_addr(Underlay::A),
            von_tests::UNDERLAY_PORT,
            &frame,
        );
        tool.send_raw(h2.ns(), &datagram)?;
    }
    // The honest ways to those sockets still work: through VON med, and
    // plain UDP on the underlay to h1's underlay address.
    let honest = format!(
        "echo med > /dev/udp/{}/{}; echo underlay > /dev/udp/{}/{}",
        targets[0].ip(),
        targets[0].port(),
        targets[1].ip(),
        targets[1].port()
    );
    h2.ns().exec_ok(["bash", "-c", &honest])?;

    let counts = listeners
        .into_iter()
        .map(heard)
        .collect::<Result<Vec<_>>>()?;
    for (t, heard) in targets.iter().zip(&counts) {
        eprintln!("rogue member: the listener on {t} counted {heard} (1 honest datagram sent)");
    }
    for (t, heard) in targets.iter().zip(&counts) {
        assert_eq!(
            heard["udp"], 1,
            "only the honest datagram reached {t}: {heard}"
        );
    }
    let after = wait_status(&topo, 1, "the rogue frames counted", |s| {
        Ok(delta(
            guard(&before, "grid")?,
            guard(s, "grid")?,
            "injections_dropped",
        ) >= 2)
    })?;
    let c = |s: &Status, name: &str| s.von("grid").and_then(|c| c.get(name));
    assert_eq!(
        c(&after, "delivered")? - c(&before, "delivered")?,
        2,
        "the pipeline delivered both to the TUN (they authenticate)"
    );
    assert_eq!(
        delta(
            guard(&before, "grid")?,
            guard(&after, "grid")?,
            "injections_dropped"
        ),
        2,
        "both counted as injections on grid"
    );
    assert_eq!(
        delta(
            guard(&before, "med")?,
            guard(&after, "med")?,
            "injections_dropped"
        ),
        0,
        "med's honest datagram passed"
    );
    Ok(())
}

#[test]
fn the_table_is_the_agents_own_from_start_to_stop_and_after_a_kill() -> Result<()> {
    if !von_tests::e2e_enabled("e2e leak (table)")? {
        return Ok(());
    }
    let mut topo = Topology::new(2)?;
    let grid = VonSpec::new("grid", 7, 1, &[1, 2]);
    // Someone else's tables, one of them named `von` in family ip.
    let others = "table inet keepme {\n chain input {\n  type filter hook input priority 0; policy accept;\n  \
                  ip saddr 203.0.113.9 drop\n }\n}\ntable ip von {\n chain output {\n  \
                  type filter hook output priority 0; policy accept;\n  ip daddr 203.0.113.9 drop\n }\n}\n";
    nft_script(topo.host(1).ns(), others)?;
    let theirs = |topo: &Topology| -> Result<String> {
        let n = topo.host(1).ns();
        Ok(format!(
            "{}{}",
            n.exec_ok(["nft", "list", "table", "inet", "keepme"])?
                .stdout,
            n.exec_ok(["nft", "list", "table", "ip", "von"])?.stdout
        ))
    };
    let before = theirs(&topo)?;
    topo.start(std::slice::from_ref(&grid))?;
    assert_eq!(ours(topo.host(1).ns())?, 1, "the agent's table is in place");
    let r = Ping::new(grid.address(2), 3)
        .interval(ms(200))
        .run(topo.host(1).ns())?;
    assert_eq!(r.received, 3, "{}", r.output);

    // Removed under the running agent: put back at its next check.
    topo.host(1)
        .ns()
        .exec_ok(["nft", "delete", "table", "inet", "von"])?;
    wait_status(&topo, 1, "the table put back", |s| {
        Ok(
            s.json()["leak_guard"]["reinstalls"] == 1
                && s.json()["leak_guard"]["installed"] == true,
        )
    })?;
    assert_eq!(ours(topo.host(1).ns())?, 1);

    // SIGKILL: the table stays (the host stays guarded while no agent runs).
    process::signal(topo.agent(1).pid(), "KILL")?;
    wait_for("the agent to die", Duration::from_secs(10), || {
        Ok(if topo.agent_mut(1).running() {
            Err("running".into())
        } else {
            Ok(())
        })
    })?;
    assert_eq!(ours(topo.host(1).ns())?, 1, "a killed agent's table stays");

    // The next start replaces it: one table, fresh counters, VON works.
    let base = topo.dir().path().join("h1");
    let socket = base.join("control.sock");
    let mut cmd = topo.host(1).ns().command(von_bin()?);
    cmd.arg("up").arg("--config").arg(base.join("von.toml"));
    let agent = Background::spawn(&mut cmd)?;
    let status = wait_for("the restarted agent", Duration::from_secs(60), || {
        Ok(json_status(topo.host(1).ns(), &socket).map_err(|e| e.to_string()))
    })?;
    assert_eq!(status.json()["leak_guard"]["installed"], true);
    assert_eq!(status.json()["leak_guard"]["reinstalls"], 0);
    assert_eq!(ours(topo.host(1).ns())?, 1, "replaced, not doubled");
    let r = Ping::new(grid.address(2), 3)
        .interval(ms(200))
        .run(topo.host(1).ns())?;
    assert_eq!(r.received, 3, "{}", r.output);

    // A clean stop removes it, and only it.
    process::signal(agent.pid(), "TERM")?;
    let out = agent.wait(Duration::from_secs(30))?;
    assert_eq!(ours(topo.host(1).ns())?, 0, "removed on a clean stop");
    assert_eq!(theirs(&topo)?, before, "other tables untouched");
    for line in [
        "replaced a leak guard table left by an agent that did not stop cleanly",
        "leak guard removed",
    ] {
        assert!(
            out.stderr.contains(line),
            "{line:?} not logged:\n{}",
            out.stderr
        );
    }
    eprintln!("table: kept after SIGKILL, replaced at the next start, removed on a clean stop");

    // Without nft the agent does not run a VON unguarded: it refuses to
    // start, names the fix, and leaves no interface behind. (PATH holds
    // `ip` alone, for `ip netns exec`.)
    let bare = topo.dir().path().join("no-nft");
    std::fs::create_dir_all(&bare).map_err(|source| Error::Io {
        what: "create directory",
        path: bare.clone(),
        source,
    })?;
    let ip = process::run_ok(
        std::process::Command::new("sh").args(["-c", "command -v ip"]),
        QUICK,
    )?;
    let link = bare.join("ip");
    std::os::unix::fs::symlink(ip.stdout.trim(), &link).map_err(|source| Error::Io {
        what: "link",
        path: link,
        source,
    })?;
    let mut cmd = topo.host(1).ns().command(von_bin()?);
    cmd.arg("up")
        .arg("--config")
        .arg(base.join("von.toml"))
        .env("PATH", &bare);
    let out = Background::spawn(&mut cmd)?.wait(Duration::from_secs(60))?;
    assert!(
        !out.status.success(),
        "started without nft:\n{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("apt-get install nftables"),
        "{}",
        out.stderr
    );
    let link = topo
        .host(1)
        .ns()
        .exec(["ip", "link", "show", "von-grid"], QUICK)?;
    assert!(
        !link.status.success(),
        "an interface was left: {}",
        link.stdout
    );
    assert_eq!(ours(topo.host(1).ns())?, 0);
    Ok(())
}

/// The helper's UDP and TCP listener on `addr` in `ns` for `secs` seconds,
/// returned once it listens.
fn listen(ns: &Netns, addr: SocketAddr, ready: &Path, secs: u32) -> Result<Background> {
    let mut cmd = ns.command(env!("CARGO_BIN_EXE_von-e2e-tool"));
    cmd.args([
        "listen",
        "--addr",
        &addr.to_string(),
        "--secs",
        &secs.to_string(),
    ])
    .arg("--ready")
    .arg(ready);
    let listener = Background::spawn(&mut cmd)?;
    wait_for("the listener", Duration::from_secs(30), || {
        Ok(if ready.exists() {
            Ok(())
        } else {
            Err("not yet".into())
        })
    })?;
    Ok(listener)
}

/// What the listener counted: `{"udp": n, "tcp": m}`.
fn heard(listener: Background) -> Result<Value> {
    let out = listener.wait(Duration::from_secs(60))?;
    serde_json::from_str(out.stdout.trim()).map_err(|e| Error::Parse {
        what: "listen output",
        reason: e.to_string(),
        text: out.stdout.clone(),
    })
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// `vons[name == von].guard` of a status document.
fn guard<'a>(status: &'a Status, von: &str) -> Result<&'a Value> {
    status.json()["vons"]
        .as_array()
        .and_then(|vons| vons.iter().find(|v| v["name"] == von))
        .map(|v| &v["guard"])
        .filter(|g| g.is_object())
        .ok_or_else(|| Error::Parse {
            what: "von status --json guard",
            reason: format!("VON {von:?} has no guard"),
            text: status.json().to_string(),
        })
}

fn has_conflict(guard: &Value, kind: &str, dst: &str, dev: &str) -> bool {
    guard["route_conflicts"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["kind"] == kind && c["dst"] == dst && c["dev"] == dev)
    })
}

fn delta(before: &Value, after: &Value, name: &str) -> u64 {
    after[name]
        .as_u64()
        .unwrap_or(0)
        .saturating_sub(before[name].as_u64().unwrap_or(0))
}

/// Polls host `hN`'s status until `done` holds (one check period longer, so
/// a counter has settled when `done` was trivially true).
fn wait_status(
    topo: &Topology,
    n: usize,
    what: &str,
    mut done: impl FnMut(&Status) -> Result<bool>,
) -> Result<Status> {
    std::thread::sleep(Duration::from_millis(2_500));
    wait_for(what, SEEN, || {
        let s = topo.agent(n).status()?;
        Ok(if done(&s)? {
            Ok(s)
        } else {
            Err(s.json()["vons"][0]["guard"].to_string())
        })
    })
}

/// How many tables named `von` of family inet `nft list tables` shows.
fn ours(ns: &Netns) -> Result<usize> {
    let out = ns.exec_ok(["nft", "list", "tables"])?;
    Ok(out
        .stdout
        .lines()
        .filter(|l| l.trim() == "table inet von")
        .count())
}

fn nft_script(ns: &Netns, script: &str) -> Result<()> {
    let sh = format!("nft -f - <<'EOF'\n{script}EOF\n");
    ns.exec_ok(["sh", "-c", &sh]).map(drop)
}

fn json_status(ns: &Netns, socket: &Path) -> Result<Status> {
    let out = ns.exec_ok([
        von_bin()?.as_os_str(),
        "status".as_ref(),
        "--json".as_ref(),
        "--socket".as_ref(),
        socket.as_os_str(),
    ])?;
    Status::parse(&out.stdout)
}

fn human_status(ns: &Netns, socket: &Path) -> Result<String> {
    let out = ns.exec_ok([
        von_bin()?.as_os_str(),
        "status".as_ref(),
        "--socket".as_ref(),
        socket.as_os_str(),
    ])?;
    Ok(out.stdout)
}
