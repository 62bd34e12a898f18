//! Issue 16, item 1: a reload adds and removes whole VONs and changes a
//! VON's MTU, and the VONs it does not name are not touched (`wg syncconf`).
//!
//! Two hosts run VON `grid` (static views, real agents in namespaces). A ping
//! through grid runs across every step and must lose nothing; grid's
//! counters only grow (the same VON instance throughout) and the agents log
//! `VON up` for it once.
//!
//! 1. VON `lab` is added to both files, SIGHUP: von-lab comes up on both
//!    hosts and carries a ping; the leak guard covers it.
//! 2. lab's MTU is changed to 1300: applied live (the interface's MTU, and
//!    `von status`), no restart.
//! 3. VON `busy` is added on h1, but its interface name is taken by another
//!    link: it does not start, the log says why, grid and lab run on; once
//!    the link is gone, the next reload starts it.
//! 4. lab and busy are removed from h1's file: their interfaces and guard
//!    rules go, status lists grid alone.
//!
//! A second test restarts a keymgr-mode VON whose interface changed: it
//! leaves (`reason=left` at the key manager), joins again on the new
//! interface and carries a ping.
//!
//! Run: `VON_E2E=require VON_BIN=target/release/von cargo test -p von-tests --release --test e2e_reload_vons -- --nocapture`

use std::time::{Duration, Instant};

use von_tests::{Ping, PingReport, Result, Topology, VonSpec, process};

/// How long a reload may take to show on a busy 2-core machine.
const APPLIED_WITHIN: Duration = Duration::from_secs(15);

fn wait(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + APPLIED_WITHIN;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "not within {APPLIED_WITHIN:?}: {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn link(topo: &Topology, n: usize, dev: &str) -> Option<String> {
    let out = topo
        .host(n)
        .ns()
        .ip(&["-o", "link", "show", "dev", dev])
        .ok()?;
    out.status.success().then(|| out.stdout.clone())
}

fn vons_in_status(topo: &Topology, n: usize) -> Vec<String> {
    let Ok(status) = topo.agent(n).status() else {
        return Vec::new();
    };
    status.json()["vons"]
        .as_array()
        .map(|v| {
            v.iter()
                .filter_map(|v| v["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether VON `von` on host `hN` hears its peer on every underlay (then a
/// restarted member's freshness is proven and data passes).
fn peer_up(topo: &Topology, n: usize, von: &str) -> bool {
    let Ok(status) = topo.agent(n).status() else {
        return false;
    };
    let vons = status.json()["vons"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    vons.iter().filter(|v| v["name"] == von).any(|v| {
        v["peers"][0]["underlay"]
            .as_object()
            .is_some_and(|u| !u.is_empty() && u.values().all(|l| l["state"] == "up"))
    })
}

fn guard_table(topo: &Topology, n: usize) -> String {
    topo.host(n)
        .ns()
        .exec(
            ["nft", "list", "table", "inet", "von"],
            Duration::from_secs(10),
        )
        .map(|o| o.stdout)
        .unwrap_or_default()
}

fn reload(topo: &Topology, n: usize, config: &str) -> Result<()> {
    std::fs::write(topo.config_path(n), config).expect("write von.toml");
    process::signal(topo.agent(n).pid(), "HUP")
}

#[test]
fn a_reload_adds_and_removes_whole_vons_and_changes_the_mtu() -> Result<()> {
    if !von_tests::e2e_enabled("e2e reload of whole VONs")? {
        return Ok(());
    }
    let grid = VonSpec::new("grid", 401, 41, &[1, 2]);
    let mut lab = VonSpec::new("lab", 402, 42, &[1, 2]);
    let busy = VonSpec::new("busy", 403, 43, &[1, 2]);
    let mut topo = Topology::new(2)?;
    topo.start(std::slice::from_ref(&grid))?;
    let base: Vec<String> = (1..=2)
        .map(|n| std::fs::read_to_string(topo.config_path(n)).expect("von.toml"))
        .collect();
    // A fresh start proves freshness to the peer before data passes.
    wait("grid's peers heard on every underlay", || {
        (1..=2).all(|n| peer_up(&topo, n, "grid"))
    });
    let grid_before = topo.agent(1).counters("grid")?;
    let ping = Ping::new(grid.address(2), 400)
        .interval(Duration::from_millis(50))
        .spawn(topo.host(1).ns())?;

    // 1. lab added on both hosts.
    let lab_view = topo.write_view(&lab)?;
    let busy_view = topo.write_view(&busy)?;
    for n in 1..=2 {
        let table = Topology::von_table(topo.host(n), &lab, &lab_view);
        reload(&topo, n, &format!("{}{table}", base[n - 1]))?;
    }
    let t0 = Instant::now();
    wait("von-lab up with its address on both hosts", || {
        (1..=2).all(|n| {
            link(&topo, n, "von-lab").is_some_and(|l| l.contains(",UP")) && peer_up(&topo, n, "lab")
        })
    });
    println!(
        "lab added: up on both hosts {:.1} s after the SIGHUPs",
        t0.elapsed().as_secs_f64()
    );
    let r = Ping::new(lab.address(2), 10)
        .interval(Duration::from_millis(50))
        .run(topo.host(1).ns())?;
    assert_eq!(r.lost(), 0, "ping through the added VON:\n{}", r.output);
    let table = guard_table(&topo, 1);
    assert!(
        table.contains("leaks_lab") && table.contains("leaks_grid"),
        "the guard covers both VONs:\n{table}"
    );

    // 2. lab's MTU, live.
    lab.mtu = Some(1300);
    let lab_table = |n: usize, von: &VonSpec| Topology::von_table(topo.host(n), von, &lab_view);
    reload(&topo, 1, &format!("{}{}", base[0], lab_table(1, &lab)))?;
    wait("von-lab's MTU 1300 on h1", || {
        link(&topo, 1, "von-lab").is_some_and(|l| l.contains("mtu 1300 "))
    });
    let status = topo.agent(1).status()?;
    let lab_status = status.json()["vons"]
        .as_array()
        .and_then(|v| v.iter().find(|v| v["name"] == "lab"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(lab_status["mtu"], 1300, "{lab_status}");
    let log = topo.agent(1).log();
    assert!(log.contains("mtu 1432 -> 1300: applied"), "{log}");
    assert_eq!(
        log.matches("VON up").count(),
        2,
        "lab restarted for an MTU change:\n{log}"
    );

    // 3. A VON that cannot start: its interface name is another link's.
    topo.host(1).ns().ip(&[
        "link",
        "add",
        "von-busy",
        "type",
        "veth",
        "peer",
        "name",
        "busy-peer",
    ])?;
    let with_busy = format!(
        "{}{}{}",
        base[0],
        lab_table(1, &lab),
        Topology::von_table(topo.host(1), &busy, &busy_view)
    );
    reload(&topo, 1, &with_busy)?;
    wait("the failed start logged", || {
        topo.agent(1).log().contains("VON busy did not start")
    });
    let failed = topo.agent(1).log();
    let line = failed
        .lines()
        .find(|l| l.contains("VON busy did not start"))
        .unwrap_or_default();
    println!("busy, interface taken: {line}");
    assert!(
        line.contains("von-busy"),
        "the reason names the interface: {line}"
    );
    assert_eq!(vons_in_status(&topo, 1), ["grid", "lab"]);
    // The link goes; the same file, reloaded, starts busy.
    topo.host(1).ns().ip(&["link", "del", "von-busy"])?;
    reload(&topo, 1, &with_busy)?;
    wait("busy started on the second reload", || {
        vons_in_status(&topo, 1).contains(&"busy".to_owned())
            && link(&topo, 1, "von-busy").is_some_and(|l| l.contains("link/none"))
    });

    // 4. lab and busy removed on h1.
    reload(&topo, 1, &base[0])?;
    wait("von-lab and von-busy gone from h1", || {
        link(&topo, 1, "von-lab").is_none()
            && link(&topo, 1, "von-busy").is_none()
            && vons_in_status(&topo, 1) == ["grid"]
    });
    let table = guard_table(&topo, 1);
    assert!(
        !table.contains("leaks_lab")
            && !table.contains("leaks_busy")
            && table.contains("leaks_grid"),
        "the guard covers grid alone:\n{table}"
    );
    let log = topo.agent(1).log();
    assert!(log.contains("VON lab removed: stopping it"), "{log}");

    // grid, untouched throughout.
    let r = PingReport::parse(&ping.wait(Duration::from_secs(40))?)?;
    println!(
        "grid across all reloads: {} pings sent, {} lost",
        r.transmitted,
        r.lost()
    );
    assert_eq!(r.lost(), 0, "grid lost pings:\n{}", r.output);
    let grid_after = topo.agent(1).counters("grid")?;
    let sealed = grid_before.delta(&grid_after, "tx_packets")?;
    assert!(
        sealed >= 400,
        "grid's counters went on from where they were: {sealed}"
    );
    let log = topo.agent(1).log();
    let grid_ups = log
        .lines()
        .filter(|l| l.contains("VON up") && l.contains("von=grid"))
        .count();
    assert_eq!(grid_ups, 1, "grid was restarted:\n{log}");
    assert!(topo.agent_mut(1).running() && topo.agent_mut(2).running());
    Ok(())
}

mod keymgr_common;

/// A keymgr-mode VON whose interface changes is restarted alone: it leaves
/// its group (the key manager rekeys without it), joins again under the new
/// interface, and carries traffic there; the other member's agent is not
/// restarted.
#[test]
fn a_reload_restarts_a_keymgr_von_whose_interface_changed() -> Result<()> {
    if !von_tests::e2e_enabled("e2e reload of a keymgr VON")? {
        return Ok(());
    }
    use keymgr_common::KmWorld;
    let w = KmWorld::joined(2)?;
    let e0 = w.epoch(1)?;
    let config = w.dir().join("h2.toml");
    let text = std::fs::read_to_string(&config).expect("h2.toml");
    let renamed = text.replacen(
        "rate = \"200mbit\"\n",
        "rate = \"200mbit\"\ninterface = \"vgrid2\"\n",
        1,
    );
    assert_ne!(renamed, text, "the test inserts an interface line");
    std::fs::write(&config, renamed).expect("write h2.toml");
    let t0 = Instant::now();
    w.signal_agent(2, "HUP")?;
    w.wait(20, "h2 on vgrid2, joined again", |w| {
        w.topo
            .host(2)
            .ns()
            .ip(&["-o", "link", "show", "dev", "vgrid2"])
            .is_ok_and(|o| o.status.success())
            && w.members(1).is_ok_and(|m| m == 2)
            && w.epoch(2).is_ok_and(|e| e >= e0 + 2)
    })?;
    println!(
        "h2's VON restarted on vgrid2 and rejoined {:.1} s after the SIGHUP; epoch {e0} -> {}",
        t0.elapsed().as_secs_f64(),
        w.epoch(1)?
    );
    let old = w
        .topo
        .host(2)
        .ns()
        .ip(&["-o", "link", "show", "dev", "von-grid"]);
    assert!(
        old.as_ref()
            .is_err_and(|e| e.to_string().contains("does not exist")),
        "von-grid still on h2: {old:?}"
    );
    let log = w.log("h2");
    assert!(log.contains("restarting this VON"), "{log}");
    let km = w.log("keymgr");
    let departure = km
        .lines()
        .find(|l| l.contains("left the view") && l.contains("h2"))
        .unwrap_or_default();
    assert!(
        departure.contains("reason=left"),
        "h2 left before it joined again:\n{km}"
    );
    let r = Ping::new(KmWorld::address(2), 10)
        .interval(Duration::from_millis(50))
        .run(w.topo.host(1).ns())?;
    assert_eq!(r.lost(), 0, "through the restarted VON:\n{}", r.output);
    Ok(())
}
