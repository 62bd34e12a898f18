//! Issue 16, item 4: `von status` finds its agent from the config, prints
//! an aligned table, tells each failure apart and says plainly when the
//! member is revoked. Real `von up` agents and a real `von keymgr` in
//! namespaces (topology in `keymgr_common/mod.rs`):
//!
//! - no socket: "no agent: ... does not exist";
//! - a socket file nothing listens on: "no agent answers ... crashed";
//! - an agent waiting for its first view (no key manager yet), found via
//!   `--config` alone: "waits for its first view", the VON and its key
//!   manager, exit 1; `--json` prints the waiting document;
//! - the same socket as user nobody: "permission denied ... sudo";
//! - joined, the peer table has one group of columns per underlay, each
//!   state column aligned under its header, the peer up on both;
//! - revoked: "REVOKED by the key manager" first thing under the VON.

mod keymgr_common;

use std::process::Command;
use std::time::Duration;

use keymgr_common::KmWorld;
use von_tests::Result;
use von_tests::process;
use von_tests::vonbin::von_bin;

/// `von ARGS` in h1's namespace, optionally as user nobody.
fn status(w: &KmWorld, args: &[&str], nobody: bool) -> Result<process::Output> {
    let ns = w.topo.host(1).ns();
    let mut cmd: Command = if nobody {
        let mut c = ns.command("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(von_bin()?);
        c
    } else {
        ns.command(von_bin()?)
    };
    cmd.arg("status").args(args);
    process::run(&mut cmd, Duration::from_secs(10))
}

#[test]
fn status_finds_its_agent_and_tells_each_state_apart() -> Result<()> {
    if !von_tests::e2e_enabled("e2e status")? {
        return Ok(());
    }
    let mut w = KmWorld::new(2)?;
    let config = w.path("h1.toml");
    let sock = w.path("h1.sock");

    // No agent at all.
    let missing = w.path("nothing-here.sock");
    let out = status(&w, &["--socket", &missing], false)?;
    assert!(!out.status.success());
    assert!(
        out.stderr
            .contains(&format!("no agent: {missing} does not exist")),
        "{}",
        out.stderr
    );

    // A socket file that nothing listens on (an agent that was killed).
    let stale = w.dir().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).expect("bind"));
    let out = status(&w, &["--socket", &stale.display().to_string()], false)?;
    assert!(!out.status.success());
    assert!(
        out.stderr.contains("no agent answers on") && out.stderr.contains("crashed"),
        "{}",
        out.stderr
    );

    // h1 waits for its first view (no key manager yet); found via --config.
    w.spawn_agent(1)?;
    w.wait(10, "h1 waiting for the first view", |w| {
        w.log("h1")
            .contains("waiting for the key manager's first view")
    })?;
    w.wait(5, "h1's waiting answer", |w| {
        status(w, &["--config", &config], false)
            .is_ok_and(|o| o.stderr.contains("waits for its first view"))
    })?;
    let out = status(&w, &["--config", &config], false)?;
    eprintln!("waiting: {}", out.stderr.trim());
    assert!(!out.status.success(), "waiting is not running: exit 1");
    assert!(
        out.stderr.contains("VON grid: key manager 192.0.2.4:4433"),
        "{}",
        out.stderr
    );
    let json = status(&w, &["--json", "--config", &config], false)?;
    let doc: serde_json::Value = serde_json::from_str(json.stdout.trim()).expect("JSON");
    assert_eq!(doc["waiting"][0]["name"], "grid", "{doc}");

    // The same socket as a user the agent's socket does not admit.
    let out = status(&w, &["--config", &config], true)?;
    eprintln!("as nobody: {}", out.stderr.trim());
    assert!(!out.status.success());
    assert!(
        out.stderr.contains("permission denied") && out.stderr.contains("sudo von status"),
        "{}",
        out.stderr
    );

    // Joined: the table.
    w.start_keymgr()?;
    w.wait(20, "h1 joined", |w| w.epoch(1).is_ok())?;
    w.start_agent(2)?;
    w.wait(15, "h1 hears h2 on both underlays", |w| {
        w.status(1).is_ok_and(|s| {
            let p = &s.json()["vons"][0]["peers"][0];
            p["underlay"]["a"]["state"] == "up" && p["underlay"]["b"]["state"] == "up"
        })
    })?;
    let out = status(&w, &["--config", &config], false)?;
    assert!(out.status.success(), "{}", out.stderr);
    let text = out.stdout;
    eprintln!("{text}");
    let lines: Vec<&str> = text.lines().collect();
    let header = lines
        .iter()
        .position(|l| l.trim_start().starts_with("peer "))
        .unwrap_or_else(|| panic!("no peer table:\n{text}"));
    let (head, row) = (lines[header], lines[header + 1]);
    assert!(row.trim_start().starts_with("h2 "), "{text}");
    for column in ["a: state", "b: state"] {
        let at = head
            .find(column)
            .unwrap_or_else(|| panic!("no {column:?} column:\n{text}"));
        assert!(
            row.get(at..).is_some_and(|r| r.starts_with("up ")),
            "{column:?} is not aligned with h2's state:\n{head}\n{row}"
        );
    }
    for column in ["a: last heard", "b: last heard"] {
        let at = head.find(column).expect("last heard column");
        let cell = row.get(at..).unwrap_or_default();
        assert!(
            cell.split("  ")
                .next()
                .unwrap_or_default()
                .ends_with(" ago"),
            "{column:?}:\n{head}\n{row}"
        );
    }
    // Bytes per peer and underlay (received) and per underlay (both ways).
    for column in ["a: received", "b: received"] {
        let at = head.find(column).expect("received column");
        let cell = row.get(at..).unwrap_or_default();
        let cell = cell.split("  ").next().unwrap_or_default();
        assert!(
            cell.ends_with(" B") || cell.ends_with("iB"),
            "{column:?} is a byte count:\n{head}\n{row}"
        );
        assert!(
            !cell.starts_with("0 "),
            "{column:?} counted nothing:\n{head}\n{row}"
        );
    }
    let json = w.status(1)?;
    let v = &json.json()["vons"][0];
    for u in ["a", "b"] {
        let from_h2 = v["peers"][0]["underlay"][u]["rx_bytes"]
            .as_u64()
            .unwrap_or(0);
        let sent = v["counters"]["underlay"][u]["tx_bytes"]
            .as_u64()
            .unwrap_or(0);
        let received = v["counters"]["underlay"][u]["rx_bytes"]
            .as_u64()
            .unwrap_or(0);
        eprintln!(
            "underlay {u}: {sent} bytes sent, {received} received, {from_h2} of them from h2"
        );
        assert!(from_h2 > 0 && sent > 0 && received >= from_h2, "{v}");
    }
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.trim_start().starts_with("underlay "))
            .count(),
        2,
        "one underlay table header per VON and host-wide:\n{text}"
    );
    assert!(!text.contains("REVOKED"), "{text}");
    // --socket still overrides the config.
    let out = status(
        &w,
        &["--config", "/nonexistent.toml", "--socket", &sock],
        false,
    )?;
    assert!(out.status.success(), "{}", out.stderr);

    // Revoked: said plainly.
    w.keymgr_ctl(&["revoke", "--name", "h2"])?;
    w.wait(10, "h2 to know it is revoked", |w| {
        w.status(2)
            .is_ok_and(|s| s.json()["vons"][0]["keymgr"]["state"] == "revoked")
    })?;
    let text = w.status_text(2)?;
    eprintln!("{text}");
    let von_line = text
        .lines()
        .position(|l| l.starts_with("von grid"))
        .expect("von line");
    let warning = text
        .lines()
        .position(|l| l.contains("! REVOKED by the key manager"))
        .unwrap_or_else(|| panic!("no REVOKED line:\n{text}"));
    assert!(
        warning <= von_line + 2,
        "the revocation is not said first:\n{text}"
    );
    Ok(())
}
