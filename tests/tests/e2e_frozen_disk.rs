//! Issue 19: nothing the control plane does may stop packet forwarding. The
//! state directories of both members and of the key manager are ext4 images
//! of the test's own, frozen with `fsfreeze` for 5 s while iperf3 sends UDP
//! at 20 Mbit/s from h1 to h2 and a rekey is requested: every fsync the key
//! manager and the agents make blocks until the thaw.
//!
//! Asserted, for the standalone key manager (`von keymgr` on h4) and for one
//! embedded in h1's agent (the case that stalled h1's packet loops):
//! - 0 datagrams lost: iperf3's count, h1's TUN queue (`tx_dropped`), and
//!   every packet h1 sealed delivered by h2;
//! - no link went down on either member (`downs` of every peer unchanged);
//! - `von status` answered on both members throughout the freeze;
//! - the rekey requested during the freeze commits on both members after
//!   the thaw, with no member rejoining (the QUIC sessions stayed up).
//!
//! Topology in `keymgr_common/mod.rs`; h1's, h2's and the key manager's
//! state_dir each sit on a [`FreezableDisk`].

mod keymgr_common;

use std::time::{Duration, Instant};

use keymgr_common::{KmWorld, von_field};
use von_tests::disk::FreezableDisk;
use von_tests::{Result, iperf3};

/// How long the disks stay frozen.
const FREEZE: Duration = Duration::from_secs(5);
/// How long iperf3 sends: the freeze sits in the middle.
const LOAD_SECS: u64 = 14;

#[test]
fn frozen_disks_under_a_standalone_key_manager_lose_no_packet() -> Result<()> {
    if !von_tests::e2e_enabled("e2e frozen disk, standalone key manager")? {
        return Ok(());
    }
    frozen_disks(KmWorld::new(2)?)
}

#[test]
fn frozen_disks_under_an_embedded_key_manager_lose_no_packet() -> Result<()> {
    if !von_tests::e2e_enabled("e2e frozen disk, embedded key manager")? {
        return Ok(());
    }
    frozen_disks(KmWorld::new_embedded(2)?)
}

fn frozen_disks(mut w: KmWorld) -> Result<()> {
    let _heavy = von_tests::heavy();
    let dir = w.topo.dir().path().to_owned();
    // Mounted over the paths the configs name, before anything starts.
    let disks = ["h1-state", "h2-state", "km-state"]
        .into_iter()
        .map(|name| FreezableDisk::create(&dir, name))
        .collect::<Result<Vec<_>>>()?;
    w.start(2)?;
    let w = &w;
    let e0 = w.epoch(1)?;
    let before = [w.status(1)?, w.status(2)?];
    let tun_before = w.tun_tx_dropped(1)?;

    let (report, probe) = std::thread::scope(|scope| -> Result<_> {
        let load = scope.spawn(|| {
            iperf3(
                w.topo.host(2).ns(),
                KmWorld::address(2),
                w.topo.host(1).ns(),
                &[
                    "-u",
                    "-b",
                    "20M",
                    "-t",
                    &LOAD_SECS.to_string(),
                    "-l",
                    "1200",
                ],
                Duration::from_secs(LOAD_SECS),
            )
        });
        std::thread::sleep(Duration::from_secs(4));
        disks.iter().try_for_each(FreezableDisk::freeze)?;
        let frozen = Instant::now();
        // The rekey blocks in the key manager's store until the thaw.
        let rekey = scope.spawn(|| w.keymgr_ctl(&["rekey"]));
        let probe = probe_while(w, frozen + FREEZE);
        disks.iter().try_for_each(FreezableDisk::thaw)?;
        let thawed = frozen.elapsed();
        let rekeyed = rekey.join().expect("rekey thread");
        w.wait(10, "the rekey requested while frozen to commit", |w| {
            (1..=2).all(|n| w.epoch(n).ok() == Some(e0 + 1))
        })?;
        eprintln!(
            "frozen for {:.2} s; rekey command: {}; committed on both {:.2} s after the freeze began",
            thawed.as_secs_f64(),
            if rekeyed.is_ok() { "ok" } else { "failed" },
            frozen.elapsed().as_secs_f64()
        );
        rekeyed?;
        Ok((load.join().expect("iperf3 thread")?, probe))
    })?;

    let after = [w.status(1)?, w.status(2)?];
    let tun_drops = w.tun_tx_dropped(1)? - tun_before;
    let (c0, c1) = (before[0].von("grid")?, after[0].von("grid")?);
    let sealed = c0.delta(&c1, "tx_packets")?;
    let delivered = before[1]
        .von("grid")?
        .delta(&after[1].von("grid")?, "delivered")?;
    let lost = report.lost_packets.unwrap_or(u64::MAX);
    eprintln!(
        "iperf3 UDP 20 Mbit/s: {} datagrams, {lost} lost; h1 sealed {sealed}, h2 delivered {delivered}; \
         h1 TUN queue drops {tun_drops}; status answered {} times while frozen, slowest {:.0} ms",
        report.packets.unwrap_or(0),
        probe.answers,
        probe.slowest.as_secs_f64() * 1e3
    );
    assert_eq!(
        probe.failures,
        0,
        "von status failed while frozen\n{}",
        w.logs()
    );
    assert!(
        probe.answers >= 10,
        "von status answered only {} times",
        probe.answers
    );
    assert_eq!(tun_drops, 0, "h1's TUN queue dropped packets\n{}", w.logs());
    assert_eq!(delivered, sealed, "the VON lost datagrams\n{}", w.logs());
    assert_eq!(lost, 0, "iperf3 lost datagrams\n{}", w.logs());
    for n in 0..2 {
        assert_eq!(
            downs(&before[n]),
            downs(&after[n]),
            "h{} saw a link go down\n{}",
            n + 1,
            w.logs()
        );
    }
    let joins = std::fs::read_to_string(dir.join("h2.log"))
        .unwrap_or_default()
        .matches("joined")
        .count();
    assert_eq!(
        joins,
        1,
        "h2 joined again: its session did not survive\n{}",
        w.logs()
    );
    Ok(())
}

/// What polling `von status` on both members saw.
struct Probe {
    answers: u32,
    failures: u32,
    slowest: Duration,
}

/// Polls `von status` on h1 and h2 every 200 ms until `until`.
fn probe_while(w: &KmWorld, until: Instant) -> Probe {
    let mut p = Probe {
        answers: 0,
        failures: 0,
        slowest: Duration::ZERO,
    };
    while Instant::now() < until {
        for n in 1..=2 {
            let asked = Instant::now();
            match w.status(n) {
                Ok(_) => p.answers += 1,
                Err(e) => {
                    eprintln!("h{n}: von status: {e}");
                    p.failures += 1;
                }
            }
            p.slowest = p.slowest.max(asked.elapsed());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    p
}

/// Every time a link of any peer went down, summed over peers and underlays.
fn downs(s: &von_tests::Status) -> u64 {
    let peers = von_field(s, "peers");
    peers
        .as_array()
        .expect("peers is a list")
        .iter()
        .flat_map(|p| {
            let links = p["underlay"].as_object().expect("underlay is a map");
            links
                .values()
                .map(|l| l["downs"].as_u64().expect("downs"))
                .collect::<Vec<_>>()
        })
        .sum()
}
