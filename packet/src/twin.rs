//! In-memory twins of the TUN and the underlays, with a fault injector, for
//! tests and benchmarks that need neither root nor sockets.
//!
//! A [`TwinNet`] holds one static VON of `n` members over 1 to 4 underlays
//! (two unless asked), each member a real [`Pipeline`] over one shared key. "Sending" a packet runs the sender's
//! outbound half and queues every resulting frame on its underlay, through
//! that underlay's [`FaultInjector`] (drop / corrupt / duplicate / reorder a
//! share, like smoltcp's `phy/fault_injector.rs`); [`TwinNet::step`] hands
//! the queued frames to the receivers' inbound halves and collects what they
//! deliver as their TUN output. Time is whatever the caller passes.

use std::collections::VecDeque;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use von_crypto::freshness::Challenge;
use von_crypto::{Cipher, Epoch, GroupKey, MemberId, OnId};

use crate::{
    Action, DropReason, Endpoints, Ipv4Prefix, Ipv6Prefix, MAX_UNDERLAYS, Member, OVERHEAD,
    PACKET_OFFSET, PerUnderlay, Pipeline, PipelineConfig, Prefixes, SharedSnapshot, Snapshot,
    Underlay, UnderlayName, VonCounters,
};

/// ON id of the twin VON.
pub const ON_ID: OnId = OnId(7);
/// Epoch of the twin VON's key.
pub const EPOCH: Epoch = Epoch(1);
/// The twin VON's group key.
pub const KEY: [u8; 32] = [0x42; 32];

/// The VON address of member `i` (0-based): 100.64.0.(i+1).
pub fn address(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(100, 64, 0, (i + 1) as u8)
}

/// The IPv6 VON address of member `i` (0-based): fd00:7::(i+1). The twin
/// VON is dual-stack: 100.64.0.0/24 and fd00:7::/64.
pub fn address6(i: usize) -> Ipv6Addr {
    Ipv6Addr::new(0xfd00, 7, 0, 0, 0, 0, 0, (i + 1) as u16)
}

/// The twin VON's prefixes: 100.64.0.0/24 and fd00:7::/64.
pub fn prefixes() -> Prefixes {
    Prefixes {
        v4: Ipv4Prefix::new(Ipv4Addr::new(100, 64, 0, 0), 24),
        v6: Ipv6Prefix::new(Ipv6Addr::new(0xfd00, 7, 0, 0, 0, 0, 0, 0), 64),
    }
}

/// The twin's first underlay, `a`.
pub const A: Underlay = Underlay::FIRST;
/// The twin's second underlay, `b`.
pub const B: Underlay = underlay(1);

/// The twin's underlay at position `i` (`a`, `b`, `c`, `d`).
pub const fn underlay(i: usize) -> Underlay {
    match Underlay::at(i) {
        Some(u) => u,
        None => panic!("at most MAX_UNDERLAYS underlays"),
    }
}

/// The names of the twin's first `k` underlays: `a`, `b`, `c`, `d`.
pub fn underlay_names(k: usize) -> PerUnderlay<UnderlayName> {
    PerUnderlay::from_fn(k, |u| {
        ["a", "b", "c", "d"][u.index()]
            .parse()
            .unwrap_or_else(|_| unreachable!("valid names"))
    })
}

/// Member `i`'s endpoint on underlay `u`: 192.0.2.(i+1), 198.51.100.(i+1),
/// 203.0.113.(i+1) or 100.127.0.(i+1), port 4789.
pub fn endpoint(i: usize, u: Underlay) -> SocketAddr {
    let host = (i + 1) as u8;
    let ip = match u.index() {
        0 => Ipv4Addr::new(192, 0, 2, host),
        1 => Ipv4Addr::new(198, 51, 100, host),
        2 => Ipv4Addr::new(203, 0, 113, host),
        _ => Ipv4Addr::new(100, 127, 0, host),
    };
    SocketAddr::from((ip, 4789))
}

/// The endpoints of member `i` on the first two underlays.
pub fn endpoints(i: usize) -> Endpoints {
    endpoints_on(i, 2)
}

/// The endpoints of member `i` on the first `k` underlays.
pub fn endpoints_on(i: usize, k: usize) -> Endpoints {
    PerUnderlay::from_fn(k, |u| Some(endpoint(i, u)))
}

/// The view of an `n`-member twin VON, as member `me` sees it, under `keys`.
pub fn snapshot(n: usize, me: usize, send: Epoch, keys: &[(Epoch, GroupKey)]) -> Snapshot {
    snapshot_on(n, 2, me, send, keys)
}

/// [`snapshot`] over `k` underlays.
pub fn snapshot_on(
    n: usize,
    k: usize,
    me: usize,
    send: Epoch,
    keys: &[(Epoch, GroupKey)],
) -> Snapshot {
    snapshot_with(n, k, me, prefixes(), send, keys)
}

/// [`snapshot_on`] for a VON of only the families `prefixes` holds (an
/// IPv4-only or IPv6-only twin); members get an address in each.
pub fn snapshot_with(
    n: usize,
    k: usize,
    me: usize,
    prefixes: Prefixes,
    send: Epoch,
    keys: &[(Epoch, GroupKey)],
) -> Snapshot {
    let members = (0..n)
        .map(|i| Member {
            id: MemberId(i as u32 + 1),
            name: format!("h{}", i + 1),
            address: prefixes.v4.map(|_| address(i)),
            address6: prefixes.v6.map(|_| address6(i)),
            endpoints: endpoints_on(i, k),
        })
        .collect();
    Snapshot::new(
        ON_ID,
        MemberId(me as u32 + 1),
        prefixes,
        members,
        send,
        keys,
    )
    .unwrap_or_else(|e| unreachable!("the twin view is consistent: {e}"))
}

/// The twin VON's key.
pub fn group_key() -> GroupKey {
    GroupKey::new(Cipher::Aes256Gcm, KEY)
}

/// A minimal IPv4 packet from `src` to `dst` with `payload` bytes (UDP
/// protocol number; checksums are not the pipeline's business).
pub fn ipv4_packet(src: Ipv4Addr, dst: Ipv4Addr, payload: usize, fill: u8) -> Vec<u8> {
    let total = 20 + payload;
    let mut p = vec![fill; total];
    p[..20].copy_from_slice(&[
        0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ]);
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p[12..16].copy_from_slice(&src.octets());
    p[16..20].copy_from_slice(&dst.octets());
    p
}

/// A minimal IPv6 packet from `src` to `dst` with `payload` bytes (UDP as
/// next header; checksums are not the pipeline's business).
pub fn ipv6_packet(src: Ipv6Addr, dst: Ipv6Addr, payload: usize, fill: u8) -> Vec<u8> {
    let mut p = vec![fill; 40 + payload];
    p[..8].copy_from_slice(&[0x60, 0, 0, 0, 0, 0, 17, 64]);
    p[4..6].copy_from_slice(&(payload as u16).to_be_bytes());
    p[8..24].copy_from_slice(&src.octets());
    p[24..40].copy_from_slice(&dst.octets());
    p
}

/// A small deterministic PRNG (xorshift64*): reproducible faults from a seed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (0 is replaced by a fixed odd constant).
    pub fn new(seed: u64) -> Self {
        Rng(if seed == 0 {
            0x9e37_79b9_7f4a_7c15
        } else {
            seed
        })
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: u32) -> bool {
        percent > 0 && (self.next_u64() % 100) < u64::from(percent)
    }
}

/// Faults applied to the frames of one underlay, each a percentage.
#[derive(Debug, Clone)]
pub struct FaultInjector {
    /// Drop the frame.
    pub drop_pct: u32,
    /// Flip one random byte.
    pub corrupt_pct: u32,
    /// Deliver the frame twice on this underlay.
    pub duplicate_pct: u32,
    /// Hold the frame back behind the next one.
    pub reorder_pct: u32,
    /// The whole underlay is down: every frame is lost.
    pub down: bool,
    /// What was done so far.
    pub done: FaultCounts,
    rng: Rng,
}

/// How many frames each fault hit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultCounts {
    /// Frames lost (dropped or underlay down).
    pub dropped: u64,
    /// Frames with a flipped bit.
    pub corrupted: u64,
    /// Frames delivered twice.
    pub duplicated: u64,
    /// Frames moved ahead of an earlier one.
    pub reordered: u64,
}

impl FaultInjector {
    /// No faults; `seed` drives any set later.
    pub fn new(seed: u64) -> Self {
        FaultInjector {
            drop_pct: 0,
            corrupt_pct: 0,
            duplicate_pct: 0,
            reorder_pct: 0,
            down: false,
            done: FaultCounts::default(),
            rng: Rng::new(seed),
        }
    }
}

/// One frame on the wire of the twin network.
#[derive(Debug, Clone)]
struct InFlight {
    underlay: Underlay,
    to: SocketAddr,
    bytes: Vec<u8>,
}

/// One twin host: its pipeline, counters and what it delivered to its TUN.
#[derive(Debug)]
pub struct TwinHost {
    /// The host's pipeline.
    pub pipeline: Pipeline,
    /// Its counters.
    pub counters: Arc<VonCounters>,
    /// Its snapshot, to swap in a new view or keys.
    pub snapshot: SharedSnapshot,
    /// Inner packets written to its TUN, in order.
    pub delivered: Vec<Vec<u8>>,
    /// What its pipeline was started with.
    pub config: PipelineConfig,
}

/// An `n`-member VON over in-memory underlays.
#[derive(Debug)]
pub struct TwinNet {
    /// The hosts; member `i` is `hosts[i]`.
    pub hosts: Vec<TwinHost>,
    /// Faults per underlay.
    pub faults: PerUnderlay<FaultInjector>,
    wire: VecDeque<InFlight>,
    /// Every frame that left a host, before faults: for replay tests.
    pub captured: Vec<(Underlay, SocketAddr, Vec<u8>)>,
    /// Keep a copy of every frame in [`TwinNet::captured`].
    pub capture: bool,
    buf: Vec<u8>,
}

impl TwinNet {
    /// `n` members with `rate_bps` contracted each and a generous burst,
    /// which have proven their positions to each other (as agents do within
    /// a round trip of starting, see [`TwinNet::prove`]).
    pub fn new(n: usize, rate_bps: u64, seed: u64) -> Self {
        let mut net = Self::unproven(n, rate_bps, seed);
        net.prove(Instant::now());
        net
    }

    /// Like [`TwinNet::new`], but every host has just started: nobody has
    /// proven anything, so data frames are refused until keepalives have
    /// gone both ways.
    pub fn unproven(n: usize, rate_bps: u64, seed: u64) -> Self {
        Self::unproven_on(n, 2, rate_bps, seed)
    }

    /// Like [`TwinNet::new`], over `k` underlays (1 to [`MAX_UNDERLAYS`]).
    pub fn with_underlays(n: usize, k: usize, rate_bps: u64, seed: u64) -> Self {
        let mut net = Self::unproven_on(n, k, rate_bps, seed);
        net.prove(Instant::now());
        net
    }

    fn unproven_on(n: usize, k: usize, rate_bps: u64, seed: u64) -> Self {
        assert!((1..=MAX_UNDERLAYS).contains(&k), "1 to 4 underlays");
        let names = underlay_names(k);
        let hosts = (0..n)
            .map(|i| {
                let snap: SharedSnapshot = Arc::new(ArcSwap::from_pointee(snapshot_on(
                    n,
                    k,
                    i,
                    EPOCH,
                    &[(EPOCH, group_key())],
                )));
                let counters = Arc::new(VonCounters::new(&names));
                let config = PipelineConfig {
                    rate_bps,
                    burst_bytes: (rate_bps / 8).max(3_000),
                    incarnation: 1,
                    challenge: Challenge([i as u8 + 1; 16]),
                };
                TwinHost {
                    pipeline: Pipeline::new(config, snap.clone(), counters.clone()),
                    counters,
                    snapshot: snap,
                    delivered: Vec::new(),
                    config,
                }
            })
            .collect();
        TwinNet {
            hosts,
            faults: PerUnderlay::from_fn(k, |u| match u.index() {
                0 => FaultInjector::new(seed),
                i => FaultInjector::new(seed.rotate_left(17 * i as u32) ^ i as u64),
            }),
            wire: VecDeque::new(),
            captured: Vec::new(),
            capture: false,
            buf: vec![0; PACKET_OFFSET + 65_535 + OVERHEAD],
        }
    }

    /// Host `i` restarts under `incarnation`: a new pipeline (empty windows,
    /// a new challenge, fresh counters) over the same view and key, as after
    /// `kill -9` and `von up`. What it delivered so far is kept.
    pub fn restart(&mut self, i: usize, incarnation: u32) {
        let host = &mut self.hosts[i];
        let counters = Arc::new(VonCounters::new(host.counters.names()));
        let mut challenge = [i as u8 + 1; 16];
        challenge[..4].copy_from_slice(&incarnation.to_be_bytes());
        let config = PipelineConfig {
            incarnation,
            challenge: Challenge(challenge),
            ..host.config
        };
        host.pipeline = Pipeline::new(config, host.snapshot.clone(), counters.clone());
        host.counters = counters;
        host.config = config;
    }

    /// Every host sends what its keepalive timer has due at `now` (a round,
    /// answers to new challenges) straight onto the wire, without faults;
    /// returns how many keepalives left.
    pub fn keepalives(&mut self, now: Instant) -> usize {
        let mut sent = 0;
        let mut buf = [0u8; von_crypto::freshness::MAX_KEEPALIVE_LEN];
        for host in &mut self.hosts {
            while let Some(k) = host.pipeline.outbound.handle_timeout(now, &mut buf) {
                self.wire.push_back(InFlight {
                    underlay: k.underlay,
                    to: k.to,
                    bytes: k.frame.to_vec(),
                });
                sent += 1;
            }
        }
        sent
    }

    /// Every host challenges every other and answers their challenges at
    /// `now`: afterwards each has proven its position to all the others.
    pub fn prove(&mut self, now: Instant) {
        for _ in 0..2 {
            self.keepalives(now);
            self.step(now);
        }
    }

    /// Host `from` sends `packet` through its TUN at `now`; frames go on the
    /// wire (after faults). Returns how many frames left (0: the packet waits
    /// in the shaping queue, see [`TwinNet::release`]), or why the pipeline
    /// refused it.
    pub fn send(&mut self, now: Instant, from: usize, packet: &[u8]) -> Result<usize, DropReason> {
        self.buf[PACKET_OFFSET..PACKET_OFFSET + packet.len()].copy_from_slice(packet);
        let action = self.hosts[from]
            .pipeline
            .handle_outbound(now, &mut self.buf, packet.len());
        put_on_wire(
            action,
            &mut self.faults,
            &mut self.wire,
            &mut self.captured,
            self.capture,
        )
    }

    /// Lets every host's shaping queue send what the bucket allows at `now`;
    /// returns how many frames left.
    pub fn release(&mut self, now: Instant) -> usize {
        let mut frames = 0;
        for host in &mut self.hosts {
            while let Some(action) = host.pipeline.outbound.handle_queue(now, &mut self.buf) {
                let sent = put_on_wire(
                    action,
                    &mut self.faults,
                    &mut self.wire,
                    &mut self.captured,
                    self.capture,
                );
                frames += sent.unwrap_or(0);
            }
        }
        frames
    }

    /// Lets every host's inbound half handle its timers at `now` (links
    /// going down, the ordering stage's bound) and collects what the
    /// ordering stage releases.
    pub fn timeouts(&mut self, now: Instant) {
        for host in &mut self.hosts {
            host.pipeline.inbound.handle_timeout(now);
            while let Some(p) = host.pipeline.inbound.poll_deliver(now) {
                host.delivered.push(p.to_vec());
            }
        }
    }

    /// Puts a raw datagram on `underlay` addressed to host `to` (no faults):
    /// forged, replayed or foreign frames.
    pub fn inject_raw(&mut self, underlay: Underlay, to: usize, bytes: Vec<u8>) {
        let to = endpoint(to, underlay);
        self.wire.push_back(InFlight {
            underlay,
            to,
            bytes,
        });
    }

    /// Delivers every frame on the wire at `now`; returns how many arrived.
    pub fn step(&mut self, now: Instant) -> usize {
        let mut arrived = 0;
        while let Some(mut f) = self.wire.pop_front() {
            let Some(i) = (0..self.hosts.len()).find(|&i| endpoint(i, f.underlay) == f.to) else {
                continue;
            };
            arrived += 1;
            let host = &mut self.hosts[i];
            if let Action::Deliver { packet } =
                host.pipeline.handle_inbound(now, f.underlay, &mut f.bytes)
            {
                host.delivered.push(f.bytes[packet].to_vec());
            }
            // What the ordering stage releases follows, as the driver does.
            while let Some(p) = host.pipeline.inbound.poll_deliver(now) {
                host.delivered.push(p.to_vec());
            }
        }
        arrived
    }
}

/// Puts the frames of an outbound action on the wire.
fn put_on_wire(
    action: Action<'_>,
    faults: &mut PerUnderlay<FaultInjector>,
    wire: &mut VecDeque<InFlight>,
    captured: &mut Vec<(Underlay, SocketAddr, Vec<u8>)>,
    capture: bool,
) -> Result<usize, DropReason> {
    match action {
        Action::Send { frame, to } => {
            let mut frames = 0;
            for target in to {
                for (u, to) in target.iter() {
                    let Some(to) = *to else { continue };
                    frames += 1;
                    let f = InFlight {
                        underlay: u,
                        to,
                        bytes: frame.to_vec(),
                    };
                    if capture {
                        captured.push((u, f.to, f.bytes.clone()));
                    }
                    inject(&mut faults[u], wire, f);
                }
            }
            Ok(frames)
        }
        Action::Drop(reason) => Err(reason),
        Action::Queued => Ok(0),
        Action::Held => unreachable!("outbound never holds"),
        Action::Deliver { .. } => unreachable!("outbound never delivers"),
    }
}

fn inject(faults: &mut FaultInjector, wire: &mut VecDeque<InFlight>, mut f: InFlight) {
    if faults.down || faults.rng.chance(faults.drop_pct) {
        faults.done.dropped += 1;
        return;
    }
    if faults.rng.chance(faults.corrupt_pct) && !f.bytes.is_empty() {
        let at = (faults.rng.next_u64() % f.bytes.len() as u64) as usize;
        f.bytes[at] ^= 1 << (faults.rng.next_u64() % 8);
        faults.done.corrupted += 1;
    }
    let twice = faults.rng.chance(faults.duplicate_pct);
    if faults.rng.chance(faults.reorder_pct) && !wire.is_empty() {
        // Slip in ahead of the last queued frame: that one now arrives later.
        let at = wire.len() - 1;
        wire.insert(at, f.clone());
        faults.done.reordered += 1;
    } else {
        wire.push_back(f.clone());
    }
    if twice {
        wire.push_back(f);
        faults.done.duplicated += 1;
    }
}
