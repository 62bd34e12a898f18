//! Micro-benchmarks of the per-packet crypto: seal and open of 1400-byte
//! packets for both ciphers, and the replay window. One core, in the caller's
//! buffer, as the pipeline runs them. Figures go in `docs/performance.md`.

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use von_crypto::aead::{Cipher, FrameKey, GroupKey};
use von_crypto::frame::{Epoch, Flags, FrameType, Header, MemberId, OVERHEAD, OnId};
use von_crypto::window::ReplayWindow;

/// The inner packet size the benches use: a full-MTU inner packet of a VON.
const PACKET: usize = 1400;

fn header(cipher: Cipher, seq: u64) -> Header {
    Header {
        on_id: OnId(7),
        frame_type: FrameType::Data,
        flags: Flags::new(cipher),
        sender: MemberId(1),
        epoch: Epoch(1),
        seq,
    }
}

fn seal_open(c: &mut Criterion) {
    for cipher in Cipher::ALL {
        let key = FrameKey::new(&GroupKey::new(cipher, [0x5a; 32]));
        let mut group = c.benchmark_group(format!("{cipher}/{PACKET}B"));
        group.throughput(Throughput::Bytes(PACKET as u64));

        let mut buf = vec![0x45u8; PACKET + OVERHEAD];
        let mut seq = 0u64;
        group.bench_function("seal", |b| {
            b.iter(|| {
                seq += 1;
                key.seal_in_place(&header(cipher, seq), black_box(&mut buf), PACKET)
                    .unwrap()
            })
        });

        let mut sealed = vec![0x45u8; PACKET + OVERHEAD];
        key.seal_in_place(&header(cipher, 1), &mut sealed, PACKET)
            .unwrap();
        group.bench_function("open", |b| {
            b.iter_batched_ref(
                || sealed.clone(),
                |frame| key.open_in_place(black_box(frame)).unwrap(),
                BatchSize::SmallInput,
            )
        });
        group.finish();
    }
}

fn window(c: &mut Criterion) {
    let mut group = c.benchmark_group("window");
    let mut w = ReplayWindow::new();
    let mut seq = 0u64;
    group.bench_function("check+mark in order", |b| {
        b.iter(|| {
            seq += 1;
            w.check(black_box(seq)).unwrap();
            w.mark(seq).unwrap()
        })
    });
    let mut w = ReplayWindow::new();
    for s in 0..1000 {
        w.mark(s).unwrap();
    }
    group.bench_function("check of a duplicate copy", |b| {
        b.iter(|| w.check(black_box(500)).unwrap_err())
    });
    let mut w = ReplayWindow::new();
    let mut seq = 0u64;
    group.bench_function("check+mark jumping a full ring", |b| {
        b.iter(|| {
            seq += 20_000;
            w.check(black_box(seq)).unwrap();
            w.mark(seq).unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, seal_open, window);
criterion_main!(benches);
