//! How long one rekey of a 1000-member view takes: reserve the epoch, draw
//! the key, wrap it 1000 times with Noise K, collect 1000 acks, commit.
//!
//! `cargo bench -p von-keymgr --bench rekey`. Two stores: in memory (the
//! protocol and the wrapping alone) and redb (adds the durable epoch and
//! member writes, two fsyncs per rekey).

use std::hint::black_box;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use von_crypto::cert::VonName;
use von_crypto::wrap::{NoiseSecret, Wrapper};
use von_crypto::{Cipher, MemberId, OnId};
use von_keymgr::{Identity, KeyManager, MemStore, RedbStore, Settings, Store};

const MEMBERS: u32 = 1000;

fn manager<S: Store>(store: S) -> KeyManager<S, Wrapper> {
    let von: VonName = "grid".parse().expect("valid VON name");
    let settings = Settings {
        on_id: OnId(7),
        prefix: "100.64.0.0/16".parse().expect("prefix"),
        cipher: Cipher::Aes256Gcm,
        lease: Duration::from_secs(3600),
        renew_every: Duration::from_secs(600),
        ack_timeout: Duration::from_secs(60),
        key_max_age: Duration::from_secs(86_400),
        grace: Duration::from_secs(2),
    };
    let now = Instant::now();
    let mut km = KeyManager::new(
        settings,
        store,
        Wrapper::new(NoiseSecret::generate(), von, OnId(7)),
        now,
    )
    .expect("store loads");
    for n in 1..=MEMBERS {
        let who = Identity {
            id: MemberId(n),
            name: format!("h{n}"),
            address: Ipv4Addr::from(0x6440_0000 + n),
            prefix_len: 16,
            noise_public: *NoiseSecret::generate().public().as_bytes(),
        };
        let a = SocketAddr::from((Ipv4Addr::from(0xc000_0200 + n), 4789));
        let b = SocketAddr::from((Ipv4Addr::from(0xc633_6400 + n), 4789));
        let underlay = von_config::UnderlayEndpoints::from_names([("a", a), ("b", b)]).unwrap();
        km.member_joined(now, who, underlay, None).expect("join");
    }
    // Two rekeys bring all members into the committed view.
    for _ in 0..2 {
        ack_all(&mut km);
    }
    assert_eq!(km.view().members.len(), MEMBERS as usize);
    km
}

fn ack_all<S: Store>(km: &mut KeyManager<S, Wrapper>) -> usize {
    let Some(epoch) = km.pending_epoch() else {
        return 0;
    };
    let now = Instant::now();
    let mut sent = 0;
    for n in 1..=MEMBERS {
        sent += km.ack(now, MemberId(n), epoch).expect("ack").len();
    }
    sent
}

fn rekey<S: Store>(km: &mut KeyManager<S, Wrapper>) {
    let prepares = km.force_rekey(Instant::now()).expect("prepare").len();
    let commits = ack_all(km);
    assert_eq!((prepares, commits), (MEMBERS as usize, MEMBERS as usize));
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("rekey_1000_members");
    group.sample_size(10);
    let mut km = manager(MemStore::new());
    group.bench_function("prepare_wrap_commit_mem_store", |b| {
        b.iter(|| rekey(black_box(&mut km)))
    });
    let dir = std::env::temp_dir().join(format!("von-keymgr-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let mut km = manager(RedbStore::open(&dir.join("state.redb")).expect("redb"));
    group.bench_function("prepare_wrap_commit_redb_store", |b| {
        b.iter(|| rekey(black_box(&mut km)))
    });
    group.finish();
    drop(km);
    let _ = std::fs::remove_dir_all(dir);
}

criterion_group!(benches, bench);
criterion_main!(benches);
