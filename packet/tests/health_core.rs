//! Underlay health in the sans-IO core, on a simulated clock: keepalive
//! rounds, links going down after `DOWN_AFTER` of silence and up again at
//! the next authenticated frame, and keepalives kept out of the data
//! counters. No sockets, no sleeps: time is an `Instant` we move by hand.

use std::time::{Duration, Instant};

use von_crypto::MemberId;
use von_crypto::freshness::MAX_KEEPALIVE_LEN;
use von_packet::twin::{self, TwinNet};
use von_packet::{
    Action, DOWN_AFTER, DropReason, HealthEvent, KEEPALIVE_INTERVAL, KeepaliveRounds, OVERHEAD,
    PeerHealth, Underlay,
};

const FAST: u64 = 10_000_000_000;
const STEP: Duration = Duration::from_millis(100);

/// Drives host `from`'s keepalive timer at `now` and puts every keepalive
/// on the wire unless its underlay is in `cut`. Returns how many were sealed.
fn pump(net: &mut TwinNet, from: usize, now: Instant, cut: &[Underlay]) -> usize {
    let mut buf = vec![0u8; MAX_KEEPALIVE_LEN];
    let mut sealed = Vec::new();
    let hosts = net.hosts.len();
    if net.hosts[from]
        .pipeline
        .outbound
        .poll_timeout()
        .is_none_or(|t| t <= now)
    {
        while let Some(k) = net.hosts[from]
            .pipeline
            .outbound
            .handle_timeout(now, &mut buf)
        {
            let to = (0..hosts)
                .find(|&i| twin::endpoint(i, k.underlay) == k.to)
                .expect("keepalive goes to a member's endpoint");
            sealed.push((k.underlay, to, k.frame.to_vec()));
        }
    }
    let n = sealed.len();
    for (u, to, bytes) in sealed {
        if !cut.contains(&u) {
            net.inject_raw(u, to, bytes);
        }
    }
    n
}

/// Runs the two-host twin from `start` for `span` in `STEP`s, both hosts
/// sending keepalives, `cut` underlays losing everything.
fn run(net: &mut TwinNet, start: Instant, span: Duration, cut: &[Underlay]) -> Instant {
    let mut now = start;
    while now < start + span {
        for h in 0..net.hosts.len() {
            pump(net, h, now, cut);
        }
        net.step(now);
        for h in &mut net.hosts {
            h.pipeline.inbound.handle_timeout(now);
        }
        now += STEP;
    }
    now
}

fn links(net: &TwinNet, host: usize, now: Instant) -> Vec<PeerHealth> {
    net.hosts[host].pipeline.inbound.health().peers(now)
}

fn events(net: &mut TwinNet, host: usize) -> Vec<HealthEvent> {
    std::iter::from_fn(|| net.hosts[host].pipeline.inbound.poll_event()).collect()
}

#[test]
fn rounds_go_to_every_peer_on_each_underlay_then_wait_an_interval() {
    let t0 = Instant::now();
    let mut r = KeepaliveRounds::default();
    assert_eq!(r.poll_timeout(), None, "the first round is due at once");
    let round: Vec<_> = std::iter::from_fn(|| r.next(t0, 3, 2)).collect();
    assert_eq!(
        round,
        vec![
            (0, twin::A),
            (0, twin::B),
            (1, twin::A),
            (1, twin::B),
            (2, twin::A),
            (2, twin::B)
        ]
    );
    assert_eq!(r.poll_timeout(), Some(t0 + KEEPALIVE_INTERVAL));
    assert_eq!(
        r.next(t0 + KEEPALIVE_INTERVAL / 2, 3, 2),
        None,
        "not yet due"
    );
    assert_eq!(r.next(t0 + KEEPALIVE_INTERVAL, 3, 2), Some((0, twin::A)));
}

#[test]
fn keepalives_are_sealed_per_underlay_with_distinct_sequences() {
    let mut net = TwinNet::unproven(3, FAST, 1);
    let t0 = Instant::now();
    let mut buf = vec![0u8; MAX_KEEPALIVE_LEN];
    let mut seen = Vec::new();
    while let Some(k) = net.hosts[0].pipeline.outbound.handle_timeout(t0, &mut buf) {
        // Header, tag, and the body: challenge, echo, one send position.
        assert_eq!(
            k.frame.len(),
            OVERHEAD + 36 + 12 + von_crypto::freshness::TIMING_LEN,
            "a keepalive's length"
        );
        assert_ne!(k.peer, MemberId(1), "never to ourselves");
        let header = von_crypto::Header::parse_bytes(k.frame).expect("a valid header");
        assert_eq!(header.frame_type, von_crypto::FrameType::Keepalive);
        seen.push((k.peer, k.underlay, header.seq));
    }
    assert_eq!(seen.len(), 4, "two peers, two underlays: {seen:?}");
    let mut seqs: Vec<u64> = seen.iter().map(|s| s.2).collect();
    seqs.dedup();
    assert_eq!(
        seqs.len(),
        4,
        "each keepalive has its own sequence: {seen:?}"
    );
    // A data packet sent next continues the same sequence space.
    let p = twin::ipv4_packet(twin::address(0), twin::address(1), 10, 0);
    let mut data = vec![0u8; von_packet::PACKET_OFFSET + p.len() + 16];
    data[von_packet::PACKET_OFFSET..][..p.len()].copy_from_slice(&p);
    let Action::Send { frame, .. } = net.hosts[0]
        .pipeline
        .outbound
        .handle(t0, &mut data, p.len())
    else {
        panic!("data is sent");
    };
    let seq = von_crypto::Header::parse_bytes(frame).expect("header").seq;
    assert!(seqs.iter().all(|&s| s < seq), "{seqs:?} then {seq}");
}

#[test]
fn a_cut_underlay_goes_down_after_the_silence_and_comes_back() {
    let mut net = TwinNet::new(2, FAST, 1);
    let t0 = Instant::now();
    let now = run(&mut net, t0, Duration::from_secs(2), &[]);
    let h = links(&net, 1, now);
    assert_eq!(h.len(), 1, "one peer: {h:?}");
    assert!(h[0].links.values().all(|l| l.up), "both up: {h:?}");
    let up = events(&mut net, 1);
    assert_eq!(up.len(), 2, "A and B came up once each: {up:?}");

    // Cut A: down no sooner than DOWN_AFTER - interval, no later than DOWN_AFTER.
    let cut_at = now;
    let mut now = now;
    let mut down_at = None;
    while now < cut_at + Duration::from_secs(5) {
        now = run(&mut net, now, STEP, &[twin::A]);
        let h = links(&net, 1, now);
        assert!(h[0].links[twin::B].up, "B stays up at {now:?}");
        if down_at.is_none() && !h[0].links[twin::A].up {
            down_at = Some(now - cut_at);
        }
    }
    let down_after = down_at.expect("A went down");
    assert!(
        down_after >= DOWN_AFTER - KEEPALIVE_INTERVAL && down_after <= DOWN_AFTER + 2 * STEP,
        "A noticed down {down_after:?} after the cut"
    );
    let ev = events(&mut net, 1);
    assert_eq!(
        ev,
        vec![HealthEvent {
            peer: MemberId(1),
            name: "h1".into(),
            underlay: twin::A,
            up: false
        }]
    );
    let a = links(&net, 1, now)[0].links[twin::A];
    assert_eq!(a.downs, 1);
    assert!(a.last_heard.expect("heard before") >= DOWN_AFTER);

    // Restore: up again within one keepalive interval.
    let restored = now;
    let mut up_at = None;
    while now < restored + Duration::from_secs(2) {
        now = run(&mut net, now, STEP, &[]);
        if up_at.is_none() && links(&net, 1, now)[0].links[twin::A].up {
            up_at = Some(now - restored);
        }
    }
    let up_after = up_at.expect("A came back");
    assert!(up_after <= KEEPALIVE_INTERVAL + STEP, "{up_after:?}");
    assert!(
        events(&mut net, 1)
            .iter()
            .any(|e| e.up && e.underlay == twin::A)
    );
}

#[test]
fn nothing_heard_means_no_timer_and_links_down() {
    let mut net = TwinNet::unproven(2, FAST, 1);
    let t0 = Instant::now();
    net.hosts[1].pipeline.inbound.handle_timeout(t0);
    assert_eq!(net.hosts[1].pipeline.inbound.poll_timeout(), None);
    let h = links(&net, 1, t0);
    assert_eq!(h.len(), 1);
    assert!(h[0].links.values().all(|l| !l.up && l.last_heard.is_none()));
}

#[test]
fn keepalives_stay_out_of_the_data_counters() {
    let mut net = TwinNet::new(2, FAST, 1);
    let t0 = Instant::now();
    let now = run(&mut net, t0, Duration::from_secs(3), &[]);
    let c = net.hosts[1].counters.snapshot();
    assert!(
        c.on("a").rx_keepalives >= 6 && c.on("a").rx_keepalives == c.on("b").rx_keepalives,
        "{c:?}"
    );
    // The twin's start: one keepalive each way before the challenge was
    // answered (`unproven`); every later one is a control frame.
    assert_eq!(
        c.control_frames + c.unproven,
        c.on("a").rx_keepalives + c.on("b").rx_keepalives
    );
    assert_eq!(c.keepalive_opens, c.control_frames + c.unproven);
    assert_eq!(
        (c.on("a").rx_frames, c.on("b").rx_frames, c.aead_opens),
        (0, 0, 0)
    );
    assert_eq!((c.duplicates, c.delivered, c.replays), (0, 0, 0));
    assert!(
        net.hosts[1].delivered.is_empty(),
        "keepalives never reach the TUN"
    );

    // Data as before: N packets, N on each underlay, N duplicates.
    for i in 0..10 {
        let p = twin::ipv4_packet(twin::address(0), twin::address(1), 50, i);
        net.send(now, 0, &p).expect("sent");
    }
    net.step(now);
    let d = net.hosts[1].counters.snapshot();
    assert_eq!((d.on("a").rx_frames, d.on("b").rx_frames), (10, 10));
    assert_eq!((d.delivered, d.duplicates, d.aead_opens), (10, 10, 10));
}

#[test]
fn a_replayed_keepalive_is_refused_and_proves_nothing() {
    let mut net = TwinNet::new(2, FAST, 1);
    // The twin proved itself at its start; the next round is one interval on.
    let t0 = Instant::now() + KEEPALIVE_INTERVAL;
    let mut buf = vec![0u8; MAX_KEEPALIVE_LEN];
    let k = net.hosts[0]
        .pipeline
        .outbound
        .handle_timeout(t0, &mut buf)
        .expect("a keepalive");
    assert_eq!(k.underlay, twin::A);
    let frame = k.frame.to_vec();
    let mut first = frame.clone();
    let inbound = &mut net.hosts[1].pipeline.inbound;
    assert_eq!(
        inbound.handle(t0, twin::A, &mut first),
        Action::Drop(DropReason::NotData)
    );
    // Captured on A and resent later on B: refused by the window, so B is
    // not made to look alive by someone replaying A's traffic. (B was last
    // heard at the twin's start, an interval before t0: down by then.)
    let later = t0 + DOWN_AFTER - STEP;
    let mut again = frame;
    let verdict = inbound.handle(later, twin::B, &mut again);
    assert!(
        matches!(
            verdict,
            Action::Drop(DropReason::Duplicate | DropReason::Replay)
        ),
        "{verdict:?}"
    );
    inbound.handle_timeout(later);
    let h = inbound.health().peers(later);
    assert!(h[0].links[twin::A].up);
    assert!(!h[0].links[twin::B].up, "{h:?}");
}
