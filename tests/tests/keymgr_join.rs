//! Issue 5, end-to-end tests 1, 2 and 3: three members join a key manager
//! with certificates and every pair pings; one leaves cleanly and the others
//! move to the next epoch; one is killed with SIGKILL, its lease expires, the
//! others rekey and lose nothing between themselves meanwhile. Topology in
//! `keymgr_common/mod.rs`.

mod keymgr_common;

use std::time::Duration;

use keymgr_common::{KmWorld, von_field};
use von_tests::{Ping, Result};

#[test]
fn members_join_ping_leave_and_expire() -> Result<()> {
    if !von_tests::e2e_enabled("e2e keymgr join")? {
        return Ok(());
    }
    let mut w = KmWorld::joined(3)?;
    let e0 = w.epoch(1)?;
    eprintln!("three members joined; epoch {e0}");

    // Each member shows its lease (3 s, renewed every 1 s), in JSON and in
    // the table.
    for n in 1..=3 {
        let lease = von_field(&w.status(n)?, "lease");
        let left = lease["expires_in_ms"]
            .as_i64()
            .expect("keymgr mode has a lease");
        assert!((1..=3_000).contains(&left), "h{n}: lease {lease}");
        let text = w.status_text(n)?;
        assert!(text.contains("lease expires in"), "h{n}:\n{text}");
    }

    // Test 1: every ordered pair pings.
    for from in 1..=3 {
        for to in (1..=3).filter(|&t| t != from) {
            let r = Ping::new(KmWorld::address(to), 10)
                .interval(Duration::from_millis(20))
                .run(w.topo.host(from).ns())?;
            assert_eq!(r.lost(), 0, "h{from} -> h{to}:\n{}\n{}", r.output, w.logs());
        }
    }

    // Test 2: h3 leaves cleanly (SIGTERM): h1 and h2 move to e0 + 1 at once.
    w.stop_agent(3, "TERM")?;
    w.wait(5, "epoch + 1 after h3 left", |w| {
        (1..=2).all(|n| w.epoch(n).ok() == Some(e0 + 1) && w.members(n).ok() == Some(2))
    })?;
    let km = w.keymgr_status()?;
    let mut names: Vec<&str> = km["members"]
        .as_array()
        .expect("members")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["h1", "h2"], "{km}");

    // Test 3: bring h3 back, then kill h2 (SIGKILL) while h1 pings h3: its
    // lease (3 s) runs out, the group rekeys, and h1 <-> h3 lose nothing.
    w.start_agent(3)?;
    w.wait(15, "h3 back in the view", |w| {
        (1..=3).all(|n| w.members(n).ok() == Some(3))
    })?;
    let e1 = w.epoch(1)?;
    let ping = Ping::new(KmWorld::address(3), 400)
        .interval(Duration::from_millis(20))
        .spawn(w.topo.host(1).ns())?;
    std::thread::sleep(Duration::from_secs(1));
    w.stop_agent(2, "KILL")?;
    w.wait(10, "h2's lease to expire and the group to rekey", |w| {
        [1, 3]
            .iter()
            .all(|&n| w.epoch(n).ok() > Some(e1) && w.members(n).ok() == Some(2))
    })?;
    let out = ping.wait(Duration::from_secs(30))?;
    let r = von_tests::PingReport::parse(&out)?;
    eprintln!(
        "h2 killed: epoch {e1} -> {}; h1 -> h3 ping during the expiry: {} sent, {} lost",
        w.epoch(1)?,
        r.transmitted,
        r.lost()
    );
    assert!(r.transmitted > 100, "{}", r.output);
    assert_eq!(
        r.lost(),
        0,
        "h1 -> h3 lost packets while h2 expired:\n{}\n{}",
        r.output,
        w.logs()
    );
    for n in [1, 3] {
        let c = w.status(n)?.von("grid")?;
        assert_eq!(c.get("auth_failures")?, 0, "h{n}");
    }
    Ok(())
}
