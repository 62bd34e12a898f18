//! Issue 11, item 4: one bad member must not freeze a VON. h1 and h2 are
//! members; h3 presents certificates the CA's ledger would have refused
//! (issued straight from the CA key): first an address outside the VON
//! prefix, then h1's address. The key manager refuses each join with the
//! reason, h3 logs it once and keeps retrying, h1 and h2 stay on their epoch
//! (the key manager never reports an epoch they did not install) and keep
//! pinging. Then h2 is revoked while h3 still retries: h2 is cut off within
//! seconds, learns that it is revoked (status, one log line) and backs off.
//! Topology in `keymgr_common/mod.rs`.

mod keymgr_common;

use std::time::{Duration, Instant};

use keymgr_common::{KmWorld, von_field};
use serde_json::Value;
use von_tests::{Ping, PingReport, Result};

/// The key manager's `refused` entry for `name`: (count, reason).
fn refused(w: &KmWorld, name: &str) -> Option<(u64, String)> {
    let km = w.keymgr_status().ok()?;
    km["refused"].as_array()?.iter().find_map(|r| {
        (r["name"] == name).then(|| {
            (
                r["count"].as_u64().unwrap_or(0),
                r["reason"].as_str().unwrap_or_default().to_owned(),
            )
        })
    })
}

fn log(w: &KmWorld, name: &str) -> String {
    std::fs::read_to_string(w.path(&format!("{name}.log"))).unwrap_or_default()
}

/// The key manager's committed epoch equals what h1 and h2 send under, and
/// both have the two-member view: nothing was committed they refused.
fn members_hold_the_committed_epoch(w: &KmWorld, epoch: u64) -> Result<()> {
    let km = w.keymgr_status()?;
    assert_eq!(
        km["epoch"].as_u64(),
        Some(epoch),
        "the key manager reports an epoch the members did not install: {km}"
    );
    for n in 1..=2 {
        assert_eq!(w.epoch(n)?, epoch, "h{n}");
        assert_eq!(w.members(n)?, 2, "h{n}");
    }
    Ok(())
}

fn pings(w: &KmWorld, from: usize, to: usize) -> Result<PingReport> {
    Ping::new(KmWorld::address(to), 10)
        .interval(Duration::from_millis(20))
        .run(w.topo.host(from).ns())
}

#[test]
fn a_bad_member_is_refused_and_a_revocation_still_cuts_off() -> Result<()> {
    if !von_tests::e2e_enabled("e2e keymgr admission")? {
        return Ok(());
    }
    let mut w = KmWorld::joined(2)?;
    let e0 = w.epoch(1)?;

    // 1. Outside the prefix (100.64.1.0/24).
    w.issue_unchecked("h3", 0x0bad, "100.64.2.3/24");
    w.spawn_agent(3)?;
    w.wait(10, "the key manager to refuse or admit h3", |w| {
        refused(w, "h3").is_some()
            || w.keymgr_status()
                .is_ok_and(|km| km["epoch"].as_u64() > Some(e0))
    })?;
    // What main did: admit h3 and report an epoch every member refused.
    members_hold_the_committed_epoch(&w, e0)?;
    let (_, reason) = refused(&w, "h3").unwrap();
    assert!(
        reason.contains("100.64.2.3/24, not a host of the VON prefix 100.64.1.0/24"),
        "{reason}"
    );
    // It retries (after 5 s: a permanent refusal backs off), and logs once.
    w.wait(15, "h3 to retry", |w| {
        refused(w, "h3").is_some_and(|(n, _)| n >= 2)
    })?;
    let h3 = log(&w, "h3");
    assert_eq!(
        h3.matches("the key manager refused this member").count(),
        1,
        "logged once however often refused:\n{h3}"
    );
    assert!(
        h3.contains("outside the VON prefix") || h3.contains("not a host of the VON prefix"),
        "{h3}"
    );
    // The key manager too: one "join refused" line for h3 however often it
    // retried (then one summary a minute), and no "closing" line per retry.
    let attempts = refused(&w, "h3").map_or(0, |(n, _)| n);
    let km_log = w.log("keymgr");
    let h3_lines = |what: &str| {
        km_log
            .lines()
            .filter(|l| l.contains(what) && l.contains("h3"))
            .count()
    };
    assert_eq!(
        h3_lines("join refused"),
        1,
        "{attempts} refusals, logged once:\n{km_log}"
    );
    assert_eq!(h3_lines("closing"), 0, "{km_log}");
    members_hold_the_committed_epoch(&w, e0)?;
    for (from, to) in [(1, 2), (2, 1)] {
        let r = pings(&w, from, to)?;
        assert_eq!(r.lost(), 0, "h{from} -> h{to}:\n{}\n{}", r.output, w.logs());
    }
    let outside = refused(&w, "h3").unwrap().0;
    eprintln!(
        "h3 outside the prefix: refused {outside} times, logged once by h3 and once by the key manager \
         ({attempts} refusals when its log was read); h1/h2 on epoch {e0}, 0 of 20 pings lost"
    );

    // 2. h1's address.
    w.stop_agent(3, "KILL")?;
    w.issue_unchecked("h3", 0x0bad, "100.64.1.1/24");
    w.spawn_agent(3)?;
    w.wait(10, "the key manager to refuse h3 (h1's address)", |w| {
        refused(w, "h3").is_some_and(|(_, r)| r.contains("already holds"))
    })?;
    let (_, reason) = refused(&w, "h3").unwrap();
    assert!(
        reason.contains("100.64.1.1 which \"h1\" already holds"),
        "{reason}"
    );
    members_hold_the_committed_epoch(&w, e0)?;
    let r = pings(&w, 1, 2)?;
    assert_eq!(r.lost(), 0, "{}", r.output);
    let before_revoke = refused(&w, "h3").unwrap().0;

    // 3. Revoke h2 while h3 keeps retrying: h2's pings to h1 stop getting
    // through within seconds.
    let ping = Ping::new(KmWorld::address(1), 200)
        .interval(Duration::from_millis(50))
        .wait(1)
        .spawn(w.topo.host(2).ns())?;
    std::thread::sleep(Duration::from_secs(2));
    let revoked_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let t0 = Instant::now();
    w.keymgr_ctl(&["revoke", "--name", "h2"])?;
    w.wait(10, "h1 rekeyed without h2", |w| {
        w.epoch(1).ok() > Some(e0) && w.members(1).ok() == Some(1)
    })?;
    let rekeyed = t0.elapsed();
    let out = ping.wait(Duration::from_secs(30))?;
    let r = PingReport::parse(&out)?;
    let last = r.replies.iter().map(|p| p.at).fold(0.0, f64::max);
    let cut_after = last - revoked_at;
    assert!(
        r.replies.iter().any(|p| p.at < revoked_at),
        "h2 pinged h1 before the revocation:\n{}",
        r.output
    );
    assert!(
        cut_after < 5.0,
        "h2's pings still answered {cut_after:.2} s after the revocation:\n{}",
        r.output
    );
    let after = pings(&w, 2, 1)?;
    assert_eq!(
        after.received, 0,
        "revoked h2 still reaches h1:\n{}",
        after.output
    );

    // h2 knows it is revoked, says so once, and backs off.
    w.wait(10, "h2 to show it is revoked", |w| {
        w.status(2)
            .map(|s| von_field(&s, "keymgr")["state"] == "revoked")
            .unwrap_or(false)
    })?;
    let text = w.status_text(2)?;
    assert!(text.contains("key manager: revoked"), "{text}");
    std::thread::sleep(Duration::from_secs(12));
    let h2 = log(&w, "h2");
    assert_eq!(h2.matches("this member is revoked").count(), 1, "{h2}");
    // A revocation reads as one, never as an outage (issue 16, item 5).
    assert!(!h2.contains("key manager unreachable"), "{h2}");
    let km: Value = w.keymgr_status()?;
    let h2_attempts = refused(&w, "h2").map_or(0, |(n, _)| n);
    assert!(
        h2_attempts <= 4,
        "a revoked member backs off, {h2_attempts} handshakes in ~14 s: {km}"
    );
    let h3_after = refused(&w, "h3").unwrap().0;
    assert!(h3_after > before_revoke, "h3 kept retrying: {km}");
    eprintln!(
        "h2 revoked: h1 rekeyed {e0} -> {} in {:.2} s; h2's last ping answered {cut_after:.2} s after the revocation \
         ({} sent, {} answered); h2 shows revoked, logged once, {h2_attempts} handshakes in the 14 s after; \
         h3 refused {before_revoke} -> {h3_after} times meanwhile",
        w.epoch(1)?,
        rekeyed.as_secs_f64(),
        r.transmitted,
        r.received,
    );
    Ok(())
}
