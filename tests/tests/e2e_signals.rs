//! Issue 16, items 1, 2, 5 and 7: an agent an operator can stop, reload and
//! read. Real `von up` agents and a real `von keymgr` in namespaces
//! (topology in `keymgr_common/mod.rs`):
//!
//! - SIGTERM while the key manager is unreachable (the agent waits for its
//!   first view) stops it within 2 s, exit 0, no control socket left; SIGHUP
//!   meanwhile does not kill it. Under journald (`JOURNAL_STREAM`) its lines
//!   carry no timestamp.
//! - A joined agent survives SIGHUP with no rekey, then SIGTERM stops it
//!   within 2 s after a leave: interface and control socket gone. Its log
//!   lines (a file) each start with a timestamp.
//! - A first start creates state_dir (0700) and saves the first view there.
//! - Reload: a config that fails validation is refused with its error and
//!   the agent keeps running unchanged; a valid one changes the VON's rate
//!   (UDP through it before and after) and DSCP (tcpdump on the underlay)
//!   and MTU (the interface's) live, with no rekey, no re-join and no ping
//!   lost.
//! - An operator error prints no backtrace, even with RUST_BACKTRACE=1.

mod keymgr_common;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use keymgr_common::{KmWorld, von_field};
use von_tests::sniff::Sniffer;
use von_tests::{Ping, PingReport, Result, UNDERLAY_PORT, Underlay, iperf3};

/// SIGTERM/SIGINT must stop the agent within this, in every state.
const STOP_WITHIN: Duration = Duration::from_secs(2);

/// Whether `line` starts with tracing's UTC timestamp (`2026-12-02T13:02:14.1Z`).
fn stamped(line: &str) -> bool {
    let b = line.as_bytes();
    b.len() > 20
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
}

#[test]
fn sigterm_stops_an_agent_waiting_for_its_first_view() -> Result<()> {
    if !von_tests::e2e_enabled("e2e signals: waiting for a first view")? {
        return Ok(());
    }
    // No key manager is started: h1 waits for a first view for ever.
    let mut w = KmWorld::new(1)?;
    let state = w.dir().join("h1-state");
    assert!(!state.exists(), "the test starts without a state_dir");
    w.spawn_agent_env(1, &[("JOURNAL_STREAM", "8:12345")])?;
    w.wait(10, "h1 waiting for the first view", |w| {
        w.log("h1")
            .contains("waiting for the key manager's first view")
    })?;
    // Item 7: state_dir exists, 0700, before any view arrives.
    let mode = std::fs::metadata(&state)
        .expect("state_dir created on start")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700, "state_dir mode {mode:o}");

    // SIGHUP does not kill it, in this state either.
    w.signal_agent(1, "HUP")?;
    std::thread::sleep(Duration::from_millis(500));
    assert!(w.agent_running(1), "SIGHUP killed the agent:\n{}", w.logs());

    let stopped = w.stop_agent_within(1, "TERM", STOP_WITHIN)?;
    let (took, status) = stopped.unwrap_or_else(|| {
        panic!(
            "SIGTERM did not stop h1 within {STOP_WITHIN:?}:\n{}",
            w.logs()
        )
    });
    eprintln!(
        "waiting for a first view: SIGTERM stopped h1 in {} ms ({status})",
        took.as_millis()
    );
    assert!(status.success(), "exit status {status}:\n{}", w.logs());
    assert!(
        !w.dir().join("h1.sock").exists(),
        "control.sock left behind"
    );
    let log = w.log("h1");
    assert!(log.contains("SIGHUP"), "SIGHUP not logged:\n{log}");
    assert!(log.contains("SIGTERM: stopping"), "{log}");
    // Under journald no line carries a timestamp (journald stamps them).
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty());
    assert!(
        lines.iter().all(|l| !stamped(l)),
        "timestamps under journald:\n{log}"
    );
    Ok(())
}

#[test]
fn joined_agent_survives_sighup_and_leaves_on_sigterm() -> Result<()> {
    if !von_tests::e2e_enabled("e2e signals: joined")? {
        return Ok(());
    }
    let mut w = KmWorld::new(2)?;
    let state = w.dir().join("h1-state");
    assert!(!state.exists(), "the test starts without a state_dir");
    w.start(2)?;
    let e0 = w.epoch(2)?;

    // Item 7: the first start created state_dir and saved the first view.
    let mode = std::fs::metadata(&state)
        .expect("state_dir created")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700, "state_dir mode {mode:o}");
    w.wait(5, "h1's first view saved", |_| {
        state.join("grid.keys.json").exists()
    })?;
    let log = w.log("h1");
    assert!(!log.contains("could not save"), "{log}");

    // SIGHUP: still running, still forwarding, no rekey.
    w.signal_agent(1, "HUP")?;
    std::thread::sleep(Duration::from_millis(700));
    assert!(w.agent_running(1), "SIGHUP killed the agent:\n{}", w.logs());
    assert_eq!(w.epoch(1)?, e0, "SIGHUP rekeyed");
    assert_eq!(w.epoch(2)?, e0, "SIGHUP rekeyed");
    let out = w.topo.host(1).ns().exec(
        ["ping", "-c", "3", "-i", "0.2", "-W", "1", "100.64.1.2"],
        Duration::from_secs(10),
    )?;
    assert!(out.status.success(), "ping after SIGHUP: {}", out.stdout);

    let (took, status) = w
        .stop_agent_within(1, "TERM", STOP_WITHIN)?
        .unwrap_or_else(|| panic!("SIGTERM did not stop h1 within {STOP_WITHIN:?}"));
    eprintln!(
        "joined: SIGTERM stopped h1 in {} ms ({status})",
        took.as_millis()
    );
    assert!(status.success(), "exit status {status}:\n{}", w.logs());
    let log = w.log("h1");
    assert!(log.contains("left the VON"), "no leave:\n{log}");
    assert!(
        !w.dir().join("h1.sock").exists(),
        "control.sock left behind"
    );
    let link = w
        .topo
        .host(1)
        .ns()
        .exec(["ip", "link", "show", "von-grid"], Duration::from_secs(5))?;
    assert!(!link.status.success(), "von-grid still exists");
    // The key manager saw the leave: h2's view shrinks to itself.
    w.wait(10, "h2's view without h1", |w| w.members(2).ok() == Some(1))?;
    // ...because h1 said `Leave`, not because its lease expired.
    let km = w.log("keymgr");
    let departure = km
        .lines()
        .find(|l| l.contains("left the view") && l.contains("h1"))
        .unwrap_or_default();
    assert!(departure.contains("reason=left"), "{km}");

    // Logs to a file: every line stamped.
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    let unstamped: Vec<&&str> = lines.iter().filter(|l| !stamped(l)).collect();
    assert!(
        unstamped.is_empty(),
        "lines without a timestamp: {unstamped:?}"
    );
    Ok(())
}

#[test]
fn reload_applies_rate_and_dscp_live_and_refuses_a_bad_config() -> Result<()> {
    if !von_tests::e2e_enabled("e2e signals: reload")? {
        return Ok(());
    }
    let w = KmWorld::joined(2)?;
    let e0 = w.epoch(1)?;
    let config = w.dir().join("h1.toml");
    let config_arg = config.display().to_string();
    let good = std::fs::read_to_string(&config).expect("h1.toml");
    assert!(good.contains("rate = \"200mbit\"\n"), "{good}");
    let (h1, h2) = (w.topo.host(1), w.topo.host(2));
    let udp = |what: &str| -> Result<f64> {
        let _heavy = von_tests::heavy();
        let r = iperf3(
            h2.ns(),
            KmWorld::address(2),
            h1.ns(),
            &["-u", "-b", "40M", "-l", "1200", "-t", "3"],
            Duration::from_secs(3),
        )?;
        eprintln!(
            "{what}: UDP h1 -> h2 offered 40 Mbit/s, delivered {:.2} Mbit/s",
            r.received_bps() / 1e6
        );
        Ok(r.received_bps())
    };
    let before = udp("rate 200mbit")?;
    assert!(before > 30e6, "before the reload: {before} bit/s");

    // Traffic h2 -> h1 across both reloads: nothing lost, no rekey.
    let ping = Ping::new(KmWorld::address(1), 150)
        .interval(Duration::from_millis(20))
        .spawn(h2.ns())?;

    // 1. A config that fails validation: `von reload` refuses it itself...
    std::fs::write(&config, good.replace("200mbit", "20Mbit")).expect("write h1.toml");
    let out = w.von_in(1, &["reload", "--config", &config_arg])?;
    assert!(!out.status.success(), "von reload accepted a bad file");
    assert!(out.stderr.contains("rate"), "{}", out.stderr);
    // ...and SIGHUP (systemctl reload) makes the agent refuse it and run on.
    w.signal_agent(1, "HUP")?;
    w.wait(5, "the refusal logged", |w| {
        w.log("h1").contains("reload refused")
    })?;
    let line = |w: &KmWorld, what: &str| -> String {
        let log = w.log("h1");
        log.lines()
            .find(|l| l.contains(what))
            .unwrap_or_default()
            .to_owned()
    };
    let refusal = line(&w, "reload refused");
    eprintln!("bad config: {refusal}");
    assert!(
        refusal.contains("h1.toml") && refusal.contains("rate"),
        "{refusal}"
    );
    assert_eq!(von_field(&w.status(1)?, "rate_bps"), 200_000_000);

    // 2. A valid file: rate, DSCP and MTU applied live.
    let changed = good.replace(
        "rate = \"200mbit\"\n",
        "rate = \"10mbit\"\ndscp = 10\nmtu = 1400\n",
    );
    std::fs::write(&config, changed).expect("write h1.toml");
    let out = w.von_in(1, &["reload", "--config", &config_arg])?;
    assert!(out.status.success(), "von reload: {}", out.stderr);
    w.wait(5, "the reload applied", |w| {
        w.log("h1").contains(": applied")
    })?;
    let applied = line(&w, ": applied");
    eprintln!("valid config:\n  {applied}");
    assert!(applied.contains("200mbit -> 10mbit"), "{applied}");
    assert!(applied.contains("dscp 46 -> 10"), "{applied}");
    assert!(applied.contains("mtu 1432 -> 1400"), "{applied}");
    assert!(!w.log("h1").contains("restart to apply"), "{}", w.log("h1"));
    w.wait(5, "the interface's MTU 1400", |w| {
        w.topo
            .host(1)
            .ns()
            .ip(&["-o", "link", "show", "dev", "von-grid"])
            .is_ok_and(|o| o.stdout.contains("mtu 1400 "))
    })?;

    let r = PingReport::parse(&ping.wait(Duration::from_secs(20))?)?;
    let s = w.status(1)?;
    eprintln!(
        "across both reloads: {} pings sent, {} lost; epoch {e0} -> {}; status rate_bps {} dscp {} mtu {}",
        r.transmitted,
        r.lost(),
        w.epoch(1)?,
        von_field(&s, "rate_bps"),
        von_field(&s, "dscp"),
        von_field(&s, "mtu"),
    );
    assert_eq!(r.lost(), 0, "lost across the reloads:\n{}", r.output);
    assert_eq!(w.epoch(1)?, e0, "a reload rekeyed");
    assert_eq!(w.epoch(2)?, e0, "a reload rekeyed");
    assert_eq!(von_field(&s, "rate_bps"), 10_000_000);
    assert_eq!(von_field(&s, "dscp"), 10);
    assert_eq!(von_field(&s, "mtu"), 1400, "the MTU applied live");
    assert!(
        !w.log("h1").contains("left the VON"),
        "the reload re-joined"
    );

    // The outer packets h1 sends now carry DSCP 10 (TOS 40), none 46 (184).
    let ua = h1.underlay_addr(Underlay::A);
    let tos =
        |t: u8| format!("src host {ua} and udp port {UNDERLAY_PORT} and (ip[1] & 0xfc) = {t}");
    let new_class = Sniffer::start(h1.ns(), "ua", &tos(40), w.dir())?;
    let old_class = Sniffer::start(h1.ns(), "ua", &tos(184), w.dir())?;
    let out = h1.ns().exec(
        ["ping", "-c", "5", "-i", "0.1", "-W", "1", "100.64.1.2"],
        Duration::from_secs(10),
    )?;
    assert!(
        out.status.success(),
        "ping after the reload: {}",
        out.stdout
    );
    let (new_lines, old_lines) = (new_class.stop()?, old_class.stop()?);
    eprintln!(
        "after the reload, h1's outer packets: {} with DSCP 10, {} with DSCP 46",
        new_lines.len(),
        old_lines.len()
    );
    assert!(new_lines.len() >= 5, "{new_lines:?}");
    assert!(old_lines.is_empty(), "{old_lines:?}");

    let after = udp("rate 10mbit (reloaded)")?;
    assert!(
        (7e6..=10e6 * 1.1).contains(&after),
        "after the reload to 10mbit: {after} bit/s"
    );
    Ok(())
}

#[test]
fn operator_errors_print_no_backtrace() -> Result<()> {
    if !von_tests::e2e_enabled("e2e signals: no backtrace")? {
        return Ok(());
    }
    let w = KmWorld::new(1)?;
    let missing = w.dir().join("missing.toml");
    let out = w
        .topo
        .host(1)
        .ns()
        .command(von_tests::vonbin::von_bin()?)
        .args(["up", "--config"])
        .arg(&missing)
        .env("RUST_BACKTRACE", "1")
        .env("RUST_LIB_BACKTRACE", "1")
        .output()
        .expect("run von up");
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("missing config, RUST_BACKTRACE=1:\n{stderr}");
    assert!(!out.status.success());
    assert!(stderr.starts_with("Error: "), "{stderr}");
    assert!(stderr.contains("missing.toml"), "{stderr}");
    assert!(
        !stderr.to_lowercase().contains("backtrace"),
        "backtrace printed:\n{stderr}"
    );
    Ok(())
}
