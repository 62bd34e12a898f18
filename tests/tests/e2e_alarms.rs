//! Issue 15: every alarm raised by the real fault and cleared when it ends,
//! with the detection times printed. Two hosts in one VON over underlays A
//! and B, real agents, real faults:
//!
//! - a cut (`ip link set ub down` in h1): `redundancy_lost` at h2 for h1 on b;
//! - an MTU black hole on B (nft in h2 drops UDP datagrams over 500 bytes
//!   arriving on ub): keepalives pass, large data copies do not:
//!   `latent_error` at h2 for h1 on b;
//! - traffic over the contract (pings of 1400 bytes every 2 ms against a
//!   1 Mbit/s rate): `contract_exceeded` at h1;
//! - a flood of forged frames on B from a spoofed source: `attack_auth_failures`
//!   at h2 naming underlay b and the outer source;
//! - a route conflict (a host route for the peer's VON address via ua):
//!   `route_conflict` at h1.
//!
//! Each alarm must also show in `von status` (table) and be logged once
//! raised and once cleared; the first test also runs `alarm_hook`.

use std::thread::sleep;
use std::time::{Duration, Instant};

use serde_json::Value;
use von_tests::{Ping, Result, Tool, Topology, UNDERLAY_PORT, Underlay, VonSpec};

/// The active alarms of agent `n` named `alarm`.
fn alarms(topo: &Topology, n: usize, alarm: &str) -> Result<Vec<Value>> {
    let s = topo.agent(n).status()?;
    Ok(s.json()["alarms"]
        .as_array()
        .map(|a| a.iter().filter(|x| x["alarm"] == alarm).cloned().collect())
        .unwrap_or_default())
}

/// Waits up to `limit` for agent `n` to show (`present`) or not show the
/// alarm `alarm` matching `pick`; returns how long it took and the alarm.
fn wait_alarm(
    topo: &Topology,
    n: usize,
    alarm: &str,
    present: bool,
    limit: Duration,
    pick: impl Fn(&Value) -> bool,
) -> Result<(Duration, Option<Value>)> {
    let start = Instant::now();
    loop {
        let found = alarms(topo, n, alarm)?.into_iter().find(|a| pick(a));
        if found.is_some() == present {
            return Ok((start.elapsed(), found));
        }
        if start.elapsed() > limit {
            panic!(
                "h{n}: alarm {alarm} still {} after {limit:?}; status:\n{}\nlog:\n{}",
                if present { "absent" } else { "present" },
                topo.agent(n).status_text()?,
                topo.agent(n).log_report()
            );
        }
        sleep(Duration::from_millis(100));
    }
}

fn lines_with(log: &str, needle: &str, alarm: &str, subject: &str) -> usize {
    log.lines()
        .filter(|l| {
            l.contains(needle) && l.contains(&format!("alarm={alarm} ")) && l.contains(subject)
        })
        .count()
}

/// Raised and cleared alarms each log exactly one line (`subject`: a
/// further part of the line that picks this alarm's subject).
fn assert_logged_once(topo: &Topology, n: usize, alarm: &str, subject: &str) {
    let log = topo.agent(n).log();
    for what in ["alarm raised", "alarm cleared"] {
        assert_eq!(
            lines_with(&log, what, alarm, subject),
            1,
            "h{n}: {what} {alarm} {subject}; log:\n{log}"
        );
    }
}

fn setup(rate: Option<&str>, hook: Option<&str>) -> Result<(Topology, VonSpec)> {
    let mut topo = Topology::new(2)?;
    let mut grid = VonSpec::new("grid", 7, 1, &[1, 2]);
    if let Some(r) = rate {
        grid = grid.rate(r);
    }
    match hook {
        None => topo.start(std::slice::from_ref(&grid))?,
        Some(script) => {
            let view = topo.write_view(&grid)?;
            for n in 1..=2 {
                let host = topo.host(n);
                let hook = topo.dir().write(
                    &format!("hook-h{n}.sh"),
                    &script.replace("HOST", &n.to_string()),
                )?;
                std::fs::set_permissions(
                    &hook,
                    std::os::unix::fs::PermissionsExt::from_mode(0o755),
                )
                .expect("chmod the hook");
                let toml = format!(
                    "alarm_hook = \"{}\"\n{}{}",
                    hook.display(),
                    topo.agent_config_head(host),
                    Topology::von_table(host, &grid, &view)
                );
                let iface = vec![(grid.interface(), grid.address(n as u8))];
                topo.start_agent(n, &toml, iface)?;
            }
        }
    }
    // Both links up in both directions before a fault.
    sleep(Duration::from_secs(2));
    Ok((topo, grid))
}

#[test]
fn a_cut_raises_redundancy_lost_and_the_restore_clears_it_and_the_hook_hears_both() -> Result<()> {
    if !von_tests::e2e_enabled("e2e alarm redundancy")? {
        return Ok(());
    }
    let (topo, _grid) = setup(
        None,
        Some("#!/bin/sh\ncat >> \"$(dirname \"$0\")/hook-HOST.out\"\n"),
    )?;
    assert!(alarms(&topo, 2, "redundancy_lost")?.is_empty());
    topo.host(1).cut(Underlay::B)?;
    let b = |a: &Value| a["peer"] == "h1" && a["underlay"] == "b";
    let (raised, alarm) = wait_alarm(&topo, 2, "redundancy_lost", true, Duration::from_secs(6), b)?;
    let alarm = alarm.expect("raised");
    assert_eq!(alarm["severity"], "major", "{alarm}");
    assert_eq!(alarm["von"], "grid");
    let text = topo.agent(2).status_text()?;
    assert!(
        text.contains("redundancy_lost") && text.contains("MAJOR"),
        "von status shows it:\n{text}"
    );
    topo.host(1).restore(Underlay::B)?;
    let (cleared, _) = wait_alarm(
        &topo,
        2,
        "redundancy_lost",
        false,
        Duration::from_secs(8),
        b,
    )?;
    eprintln!(
        "redundancy_lost: raised {:.1} s after the cut of B, cleared {:.1} s after the restore",
        raised.as_secs_f64(),
        cleared.as_secs_f64()
    );
    assert!(
        raised <= Duration::from_secs(4),
        "detection within 2.5 s + 1 s evaluation"
    );
    assert_logged_once(&topo, 2, "redundancy_lost", "underlay=b");
    // The hook got the raise and the clear, as JSON lines.
    sleep(Duration::from_secs(1));
    let out = std::fs::read_to_string(topo.dir().path().join("hook-2.out")).unwrap_or_default();
    let events: Vec<Value> = out
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|e: &Value| e["alarm"] == "redundancy_lost")
        .collect();
    eprintln!("hook on h2 received: {out}");
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["event"].as_str()).collect();
    assert_eq!(kinds, ["raised", "cleared"], "hook output:\n{out}");
    assert_eq!(events[0]["underlay"], "b");
    Ok(())
}

#[test]
fn an_mtu_black_hole_on_b_raises_latent_error_while_keepalives_pass() -> Result<()> {
    if !von_tests::e2e_enabled("e2e alarm latent")? {
        return Ok(());
    }
    let (topo, grid) = setup(None, None)?;
    let h2 = topo.host(2).ns();
    // B drops every datagram over 500 bytes arriving at h2: keepalives (140)
    // pass, 1000-byte pings do not.
    h2.exec_ok([
        "nft",
        "add table inet vonlatent; \
         add chain inet vonlatent in { type filter hook input priority -10; }; \
         add rule inet vonlatent in iifname ub meta length > 500 counter drop",
    ])?;
    let ping = Ping::new(grid.address(2), 1500)
        .size(1000)
        .interval(Duration::from_millis(10));
    let running = ping.spawn(topo.host(1).ns())?;
    let b = |a: &Value| a["peer"] == "h1" && a["underlay"] == "b";
    let (raised, alarm) = wait_alarm(&topo, 2, "latent_error", true, Duration::from_secs(8), b)?;
    eprintln!(
        "latent_error: raised {:.1} s after the black hole: {}",
        raised.as_secs_f64(),
        alarm.unwrap_or_default()
    );
    // The link itself stays up: keepalives pass.
    let s = topo.agent(2).status()?;
    assert_eq!(
        s.json()["vons"][0]["peers"][0]["underlay"]["b"]["state"],
        "up"
    );
    assert!(alarms(&topo, 2, "redundancy_lost")?.is_empty(), "not a cut");
    h2.exec_ok(["nft", "delete", "table", "inet", "vonlatent"])?;
    let (cleared, _) = wait_alarm(&topo, 2, "latent_error", false, Duration::from_secs(10), b)?;
    eprintln!(
        "latent_error: cleared {:.1} s after the black hole ended",
        cleared.as_secs_f64()
    );
    let r = von_tests::PingReport::parse(&running.wait(ping.timeout())?)?;
    eprintln!(
        "pings: {} sent, {} received (A carried them)",
        r.transmitted, r.received
    );
    assert_eq!(r.lost(), 0, "A carried every ping: {}", r.output);
    assert_logged_once(&topo, 2, "latent_error", "underlay=b");
    Ok(())
}

#[test]
fn traffic_over_the_contract_raises_contract_exceeded() -> Result<()> {
    if !von_tests::e2e_enabled("e2e alarm contract")? {
        return Ok(());
    }
    let (topo, grid) = setup(Some("1mbit"), None)?;
    // 1400 bytes every 2 ms: 5.6 Mbit/s against 1 Mbit/s, for 6 s.
    let ping = Ping::new(grid.address(2), 3000)
        .size(1400)
        .interval(Duration::from_millis(2));
    let running = ping.spawn(topo.host(1).ns())?;
    let any = |_: &Value| true;
    let (raised, alarm) = wait_alarm(
        &topo,
        1,
        "contract_exceeded",
        true,
        Duration::from_secs(8),
        any,
    )?;
    let alarm = alarm.expect("raised");
    eprintln!(
        "contract_exceeded: raised {:.1} s after the flood began: {alarm}",
        raised.as_secs_f64()
    );
    assert_eq!(alarm["peer"], "h1", "the member over its contract");
    let _ = running.wait(ping.timeout());
    let (cleared, _) = wait_alarm(
        &topo,
        1,
        "contract_exceeded",
        false,
        Duration::from_secs(10),
        any,
    )?;
    eprintln!(
        "contract_exceeded: cleared {:.1} s after the flood ended",
        cleared.as_secs_f64()
    );
    assert_logged_once(&topo, 1, "contract_exceeded", "peer=h1");
    Ok(())
}

#[test]
fn a_flood_of_forged_frames_raises_an_attack_alarm_naming_underlay_and_source() -> Result<()> {
    if !von_tests::e2e_enabled("e2e alarm attack")? {
        return Ok(());
    }
    let tool = Tool::new(env!("CARGO_BIN_EXE_von-e2e-tool"));
    let (topo, _grid) = setup(None, None)?;
    let (h1, h2) = (topo.host(1), topo.host(2));
    // Frames naming member 1 under a key nobody holds, from a spoofed port
    // of h1's B address: they fail the AEAD at h2.
    let wrong = [0x5au8; 32];
    let incarnation = u64::from(von_crypto::sequence::MAX_INCARNATION - 1);
    let src = h1.underlay_addr(Underlay::B);
    let frames: Vec<Vec<u8>> = (0..300u64)
        .map(|i| {
            let seq = (incarnation << von_crypto::sequence::COUNTER_BITS) | (i + 1);
            let frame = von_tests::forge::seal(&wrong, 7, 1, 1, seq, &[0x45; 100]).expect("seal");
            von_tests::packet::udp(
                src,
                40_000,
                h2.underlay_addr(Underlay::B),
                UNDERLAY_PORT,
                &frame,
            )
        })
        .collect();
    let before = topo.agent(2).counters("grid")?;
    let sent = Instant::now();
    tool.send_raw_all(h1.ns(), &frames, &topo.dir().path().join("forged.hex"))?;
    let any = |_: &Value| true;
    let (raised, alarm) = wait_alarm(
        &topo,
        2,
        "attack_auth_failures",
        true,
        Duration::from_secs(5),
        any,
    )?;
    let alarm = alarm.expect("raised");
    let after = topo.agent(2).counters("grid")?;
    eprintln!(
        "attack_auth_failures: raised {:.1} s after the flood ({} auth failures): {alarm}",
        raised.as_secs_f64(),
        before.delta(&after, "auth_failures")?
    );
    assert_eq!(alarm["underlay"], "b", "{alarm}");
    assert_eq!(alarm["source"], format!("{src}:40000"), "{alarm}");
    let (cleared, _) = wait_alarm(
        &topo,
        2,
        "attack_auth_failures",
        false,
        Duration::from_secs(15),
        any,
    )?;
    eprintln!(
        "attack_auth_failures: cleared {:.1} s after it was raised ({:.1} s after the flood)",
        cleared.as_secs_f64(),
        sent.elapsed().as_secs_f64()
    );
    assert_logged_once(
        &topo,
        2,
        "attack_auth_failures",
        &format!("source={src}:40000"),
    );
    Ok(())
}

#[test]
fn a_route_conflict_is_an_alarm_until_the_route_goes() -> Result<()> {
    if !von_tests::e2e_enabled("e2e alarm route conflict")? {
        return Ok(());
    }
    let (topo, _grid) = setup(None, None)?;
    let h1 = topo.host(1);
    let via = topo.host(2).underlay_addr(Underlay::A).to_string();
    let bad = ["100.64.1.2/32", "via", via.as_str(), "dev", "ua"];
    h1.ns().ip(&[&["route", "add"][..], &bad].concat())?;
    let pick = |a: &Value| a["source"] == "100.64.1.2/32";
    let (raised, alarm) = wait_alarm(
        &topo,
        1,
        "route_conflict",
        true,
        Duration::from_secs(6),
        pick,
    )?;
    eprintln!(
        "route_conflict: raised {:.1} s after the route was added: {}",
        raised.as_secs_f64(),
        alarm.unwrap_or_default()
    );
    h1.ns().ip(&[&["route", "del"][..], &bad].concat())?;
    let (cleared, _) = wait_alarm(
        &topo,
        1,
        "route_conflict",
        false,
        Duration::from_secs(10),
        pick,
    )?;
    eprintln!(
        "route_conflict: cleared {:.1} s after the route went",
        cleared.as_secs_f64()
    );
    assert_logged_once(&topo, 1, "route_conflict", "source=100.64.1.2/32");
    Ok(())
}

/// Path health (RTT, jitter, loss per peer and underlay, from the
/// keepalives): h2 drops 30 % of what arrives on ub; h2's status shows the
/// loss on b and none on a, and an RTT on both.
#[test]
fn loss_on_one_underlay_shows_in_path_health() -> Result<()> {
    if !von_tests::e2e_enabled("e2e path health")? {
        return Ok(());
    }
    let (topo, _grid) = setup(None, None)?;
    topo.host(2).add_loss(Underlay::B, 30)?;
    // The loss average has a time constant of 16 keepalives (8 s).
    sleep(Duration::from_secs(15));
    let s = topo.agent(2).status()?;
    let links = &s.json()["vons"][0]["peers"][0]["underlay"];
    eprintln!(
        "h2's path health towards h1: a {} / b {}",
        links["a"], links["b"]
    );
    for u in ["a", "b"] {
        let rtt = links[u]["rtt_us"].as_u64().expect("an RTT was measured");
        assert!(
            rtt > 0 && rtt < 50_000,
            "{u}: rtt {rtt} µs between namespaces"
        );
    }
    let loss_a = links["a"]["loss_ppm"].as_u64().unwrap_or(u64::MAX);
    let loss_b = links["b"]["loss_ppm"].as_u64().unwrap_or(0);
    assert!(loss_a < 20_000, "a loses nothing: {loss_a} ppm");
    assert!(
        (100_000..=550_000).contains(&loss_b),
        "b loses about 30 %: {loss_b} ppm"
    );
    assert!(links["b"]["probes_lost"].as_u64().unwrap_or(0) >= 3);
    let text = topo.agent(2).status_text()?;
    assert!(
        text.contains("h1 via b"),
        "the table shows the path:\n{text}"
    );
    eprintln!(
        "{}",
        text.lines()
            .filter(|l| l.contains(" via "))
            .collect::<Vec<_>>()
            .join("\n")
    );
    topo.host(2).clear_loss()?;
    Ok(())
}
