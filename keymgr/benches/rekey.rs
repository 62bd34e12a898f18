//! The key manager's sans-IO core against n = 10, 100, 1000 members: one
//! rekey (reserve the epoch, draw the key, wrap it n times with Noise K,
//! collect n acks, commit) and a join storm (n joins, acked until the view
//! holds them all).
//!
//! `cargo bench -p von-keymgr --bench rekey`. Two stores for the rekey: in
//! memory (the protocol and the wrapping alone) and redb (adds the durable
//! epoch and member writes, two fsyncs per rekey). Over real QUIC and mutual
//! TLS, with member sessions, see `keymgr/tests/quic_scale.rs`.

use std::hint::black_box;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use von_crypto::cert::VonName;
use von_crypto::wrap::{NoiseSecret, Wrapper};
use von_crypto::{Cipher, MemberId, OnId};
use von_keymgr::{Identity, KeyManager, MemStore, RedbStore, Settings, Store};

const SIZES: [u32; 3] = [10, 100, 1000];

fn empty<S: Store>(store: S) -> KeyManager<S, Wrapper> {
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
    KeyManager::new(
        settings,
        store,
        Wrapper::new(NoiseSecret::generate(), von, OnId(7)),
        Instant::now(),
    )
    .expect("store loads")
}

/// Members 1..=n as their certificates would name them.
fn identities(members: u32) -> Vec<Identity> {
    (1..=members)
        .map(|n| Identity {
            id: MemberId(n),
            name: format!("h{n}"),
            address: Ipv4Addr::from(0x6440_0000 + n),
            prefix_len: 16,
            noise_public: *NoiseSecret::generate().public().as_bytes(),
        })
        .collect()
}

/// Every member joins, one after another, then acks until no rekey is in
/// flight: returns the rekeys it took.
fn storm<S: Store>(km: &mut KeyManager<S, Wrapper>, who: Vec<Identity>) -> u32 {
    let now = Instant::now();
    let members = who.len() as u32;
    for who in who {
        let n = who.id.0;
        let a = SocketAddr::from((Ipv4Addr::from(0xc000_0200 + n), 4789));
        let b = SocketAddr::from((Ipv4Addr::from(0xc633_6400 + n), 4789));
        let underlay = von_config::UnderlayEndpoints::from_names([("a", a), ("b", b)]).unwrap();
        km.member_joined(now, who, underlay, None).expect("join");
    }
    let mut rekeys = 0;
    while ack_all(km, members) > 0 {
        rekeys += 1;
    }
    assert_eq!(km.view().members.len(), members as usize);
    rekeys
}

fn manager<S: Store>(store: S, members: u32) -> KeyManager<S, Wrapper> {
    let mut km = empty(store);
    storm(&mut km, identities(members));
    km
}

fn ack_all<S: Store>(km: &mut KeyManager<S, Wrapper>, members: u32) -> usize {
    let Some(epoch) = km.pending_epoch() else {
        return 0;
    };
    let now = Instant::now();
    let mut sent = 0;
    for n in 1..=members {
        sent += km.ack(now, MemberId(n), epoch).expect("ack").len();
    }
    sent.max(1)
}

fn rekey<S: Store>(km: &mut KeyManager<S, Wrapper>, members: u32) {
    let prepares = km.force_rekey(Instant::now()).expect("prepare").len();
    let commits = ack_all(km, members);
    assert_eq!((prepares, commits), (members as usize, members as usize));
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("rekey");
    group.sample_size(10);
    for n in SIZES {
        let mut km = manager(MemStore::new(), n);
        group.bench_function(format!("{n}_members_mem_store"), |b| {
            b.iter(|| rekey(black_box(&mut km), n))
        });
        let dir = std::env::temp_dir().join(format!("von-keymgr-bench-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let mut km = manager(RedbStore::open(&dir.join("state.redb")).expect("redb"), n);
        group.bench_function(format!("{n}_members_redb_store"), |b| {
            b.iter(|| rekey(black_box(&mut km), n))
        });
        drop(km);
        let _ = std::fs::remove_dir_all(dir);
    }
    group.finish();
    let mut group = c.benchmark_group("join_storm");
    group.sample_size(10);
    for n in SIZES {
        group.bench_function(format!("{n}_members_mem_store"), |b| {
            b.iter_with_setup(
                || (empty(MemStore::new()), identities(n)),
                |(mut km, who)| storm(&mut km, who),
            )
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
