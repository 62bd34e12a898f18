//! Issue 5, end-to-end test 5: 50 forced rekeys (`von keymgr rekey`) while
//! iperf3 sends UDP at 50 Mbit/s from h1 to h2: 0 datagrams lost, 0
//! authentication failures. "Lost" is counted where it happens: every
//! datagram h1's agent seals must reach h2's TUN, and whatever iperf3
//! still misses must be the receiving socket's drops (RcvbufErrors) on a
//! loaded machine, not the VON's. Topology in `keymgr_common/mod.rs`.

mod keymgr_common;

use std::time::{Duration, Instant};

use keymgr_common::KmWorld;
use von_tests::{Result, iperf3};

const REKEYS: u64 = 50;

#[test]
fn fifty_rekeys_under_udp_load_lose_nothing() -> Result<()> {
    if !von_tests::e2e_enabled("e2e keymgr rekey under load")? {
        return Ok(());
    }
    let _heavy = von_tests::heavy();
    let mut w = KmWorld::new(2)?;
    w.start_keymgr()?;
    for n in 1..=2 {
        w.start_agent(n)?;
    }
    w.wait(15, "both members on one epoch", |w| {
        w.members(1).ok() == Some(2)
            && w.members(2).ok() == Some(2)
            && w.epoch(1).ok() == w.epoch(2).ok()
    })?;
    let e0 = w.epoch(1)?;
    let before = [w.status(1)?.von("grid")?, w.status(2)?.von("grid")?];
    let rcvbuf_before = udp_rcvbuf_errors(&w, 2)?;

    // iperf3 in a scoped thread; rekeys from here, one after the other commits.
    let w = &w;
    let (report, took) = std::thread::scope(|scope| -> Result<_> {
        let load = scope.spawn(|| {
            iperf3(
                w.topo.host(2).ns(),
                KmWorld::address(2),
                w.topo.host(1).ns(),
                &["-u", "-b", "50M", "-t", "25", "-l", "1200", "-w", "4M"],
                Duration::from_secs(25),
            )
        });
        std::thread::sleep(Duration::from_secs(2));
        let started = Instant::now();
        for i in 1..=REKEYS {
            w.keymgr_ctl(&["rekey"])?;
            w.wait(5, &format!("rekey {i} committed on both members"), |w| {
                (1..=2).all(|n| w.epoch(n).ok() == Some(e0 + i))
            })?;
            // Let the grace window (1 s) of the previous epoch run out now
            // and then, so switches happen both inside and after a grace.
            if i % 10 == 0 {
                std::thread::sleep(Duration::from_millis(1100));
            }
        }
        let took = started.elapsed();
        Ok((load.join().expect("iperf3 thread")?, took))
    })?;
    let after = [w.status(1)?.von("grid")?, w.status(2)?.von("grid")?];
    let socket_drops = udp_rcvbuf_errors(w, 2)? - rcvbuf_before;
    let lost = report.lost_packets.unwrap_or(u64::MAX);
    eprintln!(
        "{REKEYS} rekeys in {:.1} s (epoch {e0} -> {}); iperf3 UDP 50 Mbit/s: {} datagrams, {lost} lost, {:.1} Mbit/s received",
        took.as_secs_f64(),
        w.epoch(1)?,
        report.packets.unwrap_or(0),
        report.received_bps() / 1e6
    );
    for (n, (b, a)) in before.iter().zip(&after).enumerate() {
        let names = [
            "tx_packets",
            "delivered",
            "rate_drops",
            "unknown_epoch",
            "unknown_sender",
            "too_old",
            "auth_failures",
            "replays",
            "policy_drops",
            "tun_errors",
        ];
        let deltas: Vec<String> = names
            .iter()
            .map(|k| {
                format!(
                    "{k} {}",
                    b.delta(a, k).map_or("?".into(), |d| d.to_string())
                )
            })
            .collect();
        eprintln!("h{}: {}", n + 1, deltas.join(", "));
    }
    assert!(
        took < Duration::from_secs(23),
        "the rekeys must happen during the load ({took:?})"
    );
    // Every datagram h1's agent sealed, h2's agent delivered to its TUN.
    let sent = before[0].delta(&after[0], "tx_packets")?;
    let delivered = before[1].delta(&after[1], "delivered")?;
    eprintln!(
        "VON: h1 sealed {sent}, h2 delivered {delivered}; h2's UDP receive-buffer drops (kernel, after the VON): {socket_drops}"
    );
    assert_eq!(
        delivered,
        sent,
        "the VON lost datagrams across {REKEYS} rekeys\n{}",
        w.logs()
    );
    // Whatever iperf3 missed, the receiving socket dropped, not the VON.
    assert_eq!(
        lost,
        socket_drops,
        "iperf3 lost {lost} datagrams, the receiving socket dropped {socket_drops}\n{}",
        w.logs()
    );
    for (n, (b, a)) in before.iter().zip(&after).enumerate() {
        assert_eq!(
            b.delta(a, "auth_failures")?,
            0,
            "h{} authentication failures",
            n + 1
        );
        assert_eq!(
            b.delta(a, "unknown_epoch")?,
            0,
            "h{} frames under an unknown epoch",
            n + 1
        );
    }
    Ok(())
}

/// `Udp: RcvbufErrors` of host `hN`'s namespace (`/proc/net/snmp`): datagrams
/// the kernel dropped because a receiving socket's buffer was full.
fn udp_rcvbuf_errors(w: &KmWorld, n: usize) -> Result<u64> {
    let out = w.topo.host(n).ns().exec_ok(["cat", "/proc/net/snmp"])?;
    let udp: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| l.starts_with("Udp:"))
        .collect();
    let (names, values) = (udp[0].split_whitespace(), udp[1].split_whitespace());
    let value = names
        .zip(values)
        .find(|(k, _)| *k == "RcvbufErrors")
        .and_then(|(_, v)| v.parse().ok())
        .expect("/proc/net/snmp has Udp RcvbufErrors");
    Ok(value)
}
