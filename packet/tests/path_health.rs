//! Path health (RTT, jitter, loss per peer and underlay) measured from the
//! keepalive echoes, in the sans-IO core on a simulated clock: two twin
//! hosts, underlay A with a fixed 10 ms one-way delay, underlay B with
//! 50–70 ms and (for a while) every fourth keepalive from host 1 lost. No
//! sockets, no sleeps.

use std::time::{Duration, Instant};

use von_crypto::freshness::MAX_KEEPALIVE_LEN;
use von_packet::twin::{self, TwinNet};
use von_packet::{LinkHealth, Underlay};

const FAST: u64 = 10_000_000_000;
const STEP: Duration = Duration::from_millis(5);

struct Delayed {
    at: Instant,
    underlay: Underlay,
    to: usize,
    bytes: Vec<u8>,
}

/// The one-way delay on `u` for the `n`th keepalive sent on it.
fn delay(u: Underlay, n: u64) -> Duration {
    if u == twin::A {
        Duration::from_millis(10)
    } else {
        Duration::from_millis([50, 60, 70][(n % 3) as usize])
    }
}

/// Runs both hosts for `span` from `start`; keepalives from host 1 on B are
/// lost one in four while `lossy`.
fn run(
    net: &mut TwinNet,
    line: &mut Vec<Delayed>,
    sent: &mut u64,
    start: Instant,
    span: Duration,
    lossy: bool,
) -> Instant {
    let mut buf = vec![0u8; MAX_KEEPALIVE_LEN];
    let mut now = start;
    let mut b_from_1 = 0u64;
    while now < start + span {
        for from in 0..2 {
            while let Some(k) = net.hosts[from]
                .pipeline
                .outbound
                .handle_timeout(now, &mut buf)
            {
                let to = 1 - from;
                assert_eq!(twin::endpoint(to, k.underlay), k.to);
                *sent += 1;
                if from == 1 && k.underlay == twin::B {
                    b_from_1 += 1;
                    if lossy && b_from_1 % 4 == 0 {
                        continue;
                    }
                }
                line.push(Delayed {
                    at: now + delay(k.underlay, *sent),
                    underlay: k.underlay,
                    to,
                    bytes: k.frame.to_vec(),
                });
            }
        }
        let (due, later): (Vec<_>, Vec<_>) = line.drain(..).partition(|d| d.at <= now);
        *line = later;
        for d in due {
            net.inject_raw(d.underlay, d.to, d.bytes);
        }
        net.step(now);
        for h in &mut net.hosts {
            h.pipeline.inbound.handle_timeout(now);
        }
        now += STEP;
    }
    now
}

fn link(net: &TwinNet, now: Instant, u: Underlay) -> LinkHealth {
    let peers = net.hosts[0].pipeline.inbound.health().peers(now);
    *peers[0].links.get(u).expect("the link exists")
}

#[test]
fn rtt_jitter_and_loss_per_underlay_follow_the_injected_faults() {
    let mut net = TwinNet::unproven(2, FAST, 1);
    let (mut line, mut sent) = (Vec::new(), 0);
    let t0 = Instant::now();
    let now = run(
        &mut net,
        &mut line,
        &mut sent,
        t0,
        Duration::from_secs(20),
        true,
    );

    let a = link(&net, now, twin::A);
    let b = link(&net, now, twin::B);
    println!("A: {a:?}\nB: {b:?}");
    assert!(a.up && b.up);
    assert_eq!(
        a.rtt,
        Some(Duration::from_millis(20)),
        "A: 10 ms each way, the hold subtracted"
    );
    assert!(
        a.jitter < Duration::from_micros(100),
        "A's delay is fixed: {a:?}"
    );
    assert_eq!((a.loss_ppm, a.probes_lost), (0, 0), "A loses nothing");
    let rtt_b = b.rtt.expect("B measured");
    assert!(
        (Duration::from_millis(100)..=Duration::from_millis(140)).contains(&rtt_b),
        "B: 50–70 ms each way: {rtt_b:?}"
    );
    assert!(
        b.jitter >= Duration::from_millis(5),
        "B's delay varies by 20 ms: {b:?}"
    );
    // 20 s at 2 a second: about 40 keepalives, one in four lost.
    let total = b.probes_received + b.probes_lost;
    assert!((36..=42).contains(&total), "{b:?}");
    assert_eq!(b.probes_lost, total / 4, "every fourth lost: {b:?}");
    assert!(
        (150_000..=350_000).contains(&b.loss_ppm),
        "recent loss about 25%: {b:?}"
    );

    // The loss ends: the average decays by 15/16 per keepalive, to about
    // (15/16)^30 = 14% of its level after 15 s.
    let before = b.loss_ppm;
    let now = run(
        &mut net,
        &mut line,
        &mut sent,
        now,
        Duration::from_secs(15),
        false,
    );
    let b = link(&net, now, twin::B);
    println!("B after the loss ended: {b:?}");
    assert!(b.loss_ppm * 5 < before, "{b:?}");
    assert_eq!(b.probes_lost, total / 4, "no new loss: {b:?}");
    assert_eq!(
        link(&net, now, twin::A).rtt,
        Some(Duration::from_millis(20))
    );
}

#[test]
fn data_copies_are_counted_per_underlay_so_a_path_losing_only_data_shows() {
    // B drops half the data frames (as an MTU black hole drops the large
    // ones); keepalives are not sent here, so only data moves the counts.
    let mut net = TwinNet::new(2, FAST, 7);
    net.faults[twin::B].drop_pct = 50;
    let now = Instant::now();
    let packet = twin::ipv4_packet(twin::address(0), twin::address(1), 1000, 0xab);
    for _ in 0..400 {
        net.send(now, 0, &packet).expect("sent");
        net.step(now);
    }
    let host1 = &net.hosts[1].pipeline.inbound.health().peers(now)[0];
    let (a, b) = (
        *host1.links.get(twin::A).expect("A"),
        *host1.links.get(twin::B).expect("B"),
    );
    println!("host 1 hears host 0 on A: {a:?}\non B: {b:?}");
    assert_eq!(host1.frames.passed, 400, "A delivered every frame");
    assert_eq!(a.data_first + a.data_discarded, 400, "every copy on A");
    let on_b = b.data_first + b.data_discarded;
    assert!(
        (150..=250).contains(&on_b),
        "about half the copies on B: {b:?}"
    );
    assert_eq!(
        on_b,
        400 - net.faults[twin::B].done.dropped,
        "B's copies are what B's fault left"
    );
}
