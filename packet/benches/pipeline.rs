//! The pipeline core alone, one core, no sockets: packets per second out
//! (policy, shaping, sequence, seal) and in (look-up, window, open, inner
//! check), for 64-, 512- and 1400-byte inner packets, plus the second copy
//! of a doubled frame (dropped before any decryption), and the ordering
//! stage's cost (off, on with frames in order, on with every pair swapped).
//! `cargo bench -p von-packet`; figures go in `docs/dataplane.md` and
//! `docs/performance.md`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use von_packet::twin::{self, TwinNet, address, ipv4_packet};
use von_packet::{Action, OVERHEAD, OrderingConfig, PACKET_OFFSET};

const SIZES: [usize; 3] = [64, 512, 1400];
/// Frames prepared (untimed) per timed chunk of the inbound benches.
const CHUNK: u64 = 4096;
/// A rate no bench reaches: shaping is measured, never binding.
const UNLIMITED: u64 = u64::MAX / 16;

fn outbound(c: &mut Criterion) {
    let mut group = c.benchmark_group("outbound");
    group.throughput(Throughput::Elements(1));
    for size in SIZES {
        let mut net = TwinNet::new(2, UNLIMITED, 1);
        let packet = ipv4_packet(address(0), address(1), size - 20, 0xab);
        let mut buf = vec![0u8; PACKET_OFFSET + size + OVERHEAD];
        let now = Instant::now();
        group.bench_function(format!("{size}B"), |b| {
            b.iter(|| {
                buf[PACKET_OFFSET..PACKET_OFFSET + size].copy_from_slice(&packet);
                let action = net.hosts[0].pipeline.handle_outbound(now, &mut buf, size);
                assert!(matches!(action, Action::Send { .. }));
                black_box(action);
            })
        });
    }
    group.finish();
}

/// Seals `n` consecutive frames from host 0 to host 1.
fn frames(net: &mut TwinNet, packet: &[u8], n: u64) -> Vec<Vec<u8>> {
    let mut buf = vec![0u8; PACKET_OFFSET + packet.len() + OVERHEAD];
    let now = Instant::now();
    (0..n)
        .map(|_| {
            buf[PACKET_OFFSET..PACKET_OFFSET + packet.len()].copy_from_slice(packet);
            match net.hosts[0]
                .pipeline
                .handle_outbound(now, &mut buf, packet.len())
            {
                Action::Send { frame, .. } => frame.to_vec(),
                other => panic!("bench sender refused: {other:?}"),
            }
        })
        .collect()
}

fn inbound(c: &mut Criterion) {
    let mut group = c.benchmark_group("inbound");
    group.throughput(Throughput::Elements(1));
    for size in SIZES {
        let packet = ipv4_packet(address(0), address(1), size - 20, 0xab);
        for (name, copies) in [("first", 1), ("second-copy", 2)] {
            let mut net = TwinNet::new(2, UNLIMITED, 1);
            group.bench_function(format!("{size}B/{name}"), |b| {
                b.iter_custom(|iters| {
                    let mut spent = Duration::ZERO;
                    let mut left = iters;
                    while left > 0 {
                        let n = left.min(CHUNK);
                        let mut batch = frames(&mut net, &packet, n);
                        if copies == 2 {
                            // Accept the A copies untimed; time the B copies.
                            let now = Instant::now();
                            for f in &batch {
                                let mut f = f.clone();
                                net.hosts[1].pipeline.handle_inbound(now, twin::A, &mut f);
                            }
                        }
                        let start = Instant::now();
                        for f in &mut batch {
                            let a = net.hosts[1].pipeline.handle_inbound(start, twin::B, f);
                            black_box(a);
                        }
                        spent += start.elapsed();
                        left -= n;
                    }
                    spent
                })
            });
            let c = net.hosts[1].counters.snapshot();
            assert_eq!(c.auth_failures + c.replays + c.too_old, 0, "{c:?}");
        }
    }
    group.finish();
}

/// The inbound half with the ordering stage off, on with every frame in
/// order, and on with every pair swapped (one held, then released by the
/// next): ns per packet, delivery from the ring included.
fn ordering(c: &mut Criterion) {
    let mut group = c.benchmark_group("ordering");
    group.throughput(Throughput::Elements(1));
    let size = 512;
    let packet = ipv4_packet(address(0), address(1), size - 20, 0xab);
    for (name, on, swap) in [
        ("off", false, false),
        ("in-order", true, false),
        ("swapped", true, true),
    ] {
        let mut net = TwinNet::new(2, UNLIMITED, 1);
        if on {
            net.hosts[1]
                .pipeline
                .inbound
                .set_ordering(Some(OrderingConfig {
                    bound: Duration::from_millis(20),
                    slot_len: 1_500,
                }));
        }
        let mut delivered = 0u64;
        group.bench_function(format!("{size}B/{name}"), |b| {
            b.iter_custom(|iters| {
                let mut spent = Duration::ZERO;
                let mut left = iters;
                while left > 0 {
                    let n = left.min(CHUNK) & !1;
                    let n = n.max(2);
                    let mut batch = frames(&mut net, &packet, n);
                    if swap {
                        for pair in batch.chunks_mut(2) {
                            pair.swap(0, 1);
                        }
                    }
                    let start = Instant::now();
                    let inbound = &mut net.hosts[1].pipeline.inbound;
                    for f in &mut batch {
                        if let Action::Deliver { packet } = inbound.handle(start, twin::A, f) {
                            black_box(&f[packet]);
                            delivered += 1;
                        }
                        while let Some(p) = inbound.poll_deliver(start) {
                            black_box(p);
                            delivered += 1;
                        }
                    }
                    spent += start.elapsed();
                    left = left.saturating_sub(n);
                }
                spent
            })
        });
        let c = net.hosts[1].counters.snapshot();
        // The ring starts at the first frame it sees: with pairs swapped,
        // the very first pair's lower frame comes after it, late.
        assert!(
            c.ordering_late <= 1 && c.auth_failures == 0,
            "{name}: {c:?}"
        );
        assert!(delivered > 0);
    }
    group.finish();
}

criterion_group!(benches, outbound, inbound, ordering);
criterion_main!(benches);
