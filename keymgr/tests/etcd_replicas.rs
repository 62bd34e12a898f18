//! The replicated store and the election against a real 3-member etcd
//! cluster on loopback (Debian's etcd-server; scripts/setup-debian.sh
//! installs it): leadership moves when a leader's lease lapses, a replica
//! that lost it cannot reserve or commit anything (the fence), one etcd
//! member down changes nothing, a lost quorum stops writes and its return
//! resumes them with no epoch reused.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use von_keymgr::replica::{Election, Etcd, ReplicaInfo, Role, Term};
use von_keymgr::store::{EtcdStore, Store, StoreError, StoredMember};
use von_keymgr::{Epoch, MemberId};
use von_lab::EtcdCluster;

const TTL: Duration = Duration::from_secs(2);

fn connect(cluster: &EtcdCluster, prefix: &str) -> Etcd {
    Etcd::connect(
        &cluster.endpoints(),
        prefix,
        Duration::from_millis(500),
        Duration::from_secs(3),
    )
    .expect("etcd clients")
}

fn replica(name: &str, port: u16) -> ReplicaInfo {
    ReplicaInfo {
        name: name.into(),
        listen: (Ipv4Addr::LOCALHOST, port).into(),
    }
}

/// Waits up to `secs` for `role` to satisfy `f`; returns the role seen.
async fn wait_role(role: &mut watch::Receiver<Role>, secs: u64, f: impl Fn(&Role) -> bool) -> Role {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let now = role.borrow_and_update().clone();
        if f(&now) {
            return now;
        }
        match tokio::time::timeout_at(deadline, role.changed()).await {
            Ok(Ok(())) => {}
            _ => panic!("role still {now:?} after {secs} s"),
        }
    }
}

fn term(role: &Role) -> Term {
    match role {
        Role::Leader(t) => *t,
        other => panic!("not leading: {other:?}"),
    }
}

fn member(id: u32) -> StoredMember {
    StoredMember {
        id: MemberId(id),
        name: format!("h{id}"),
        address: Ipv4Addr::new(100, 64, 0, id as u8),
        underlay: von_config::UnderlayEndpoints::from_names([
            ("a", format!("192.0.2.{id}:4789").parse().unwrap()),
            ("b", format!("198.51.100.{id}:4789").parse().unwrap()),
        ])
        .unwrap(),
        noise_public: [id as u8; 32],
    }
}

/// Runs a blocking store call off the async workers, as the key manager may.
async fn off<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("store call")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leadership_moves_and_the_old_term_is_fenced() {
    let cluster = EtcdCluster::loopback(3).expect("etcd cluster");
    let etcd_a = connect(&cluster, "/von/t1/keymgr");
    let etcd_b = connect(&cluster, "/von/t1/keymgr");

    let a = Election::start(etcd_a.clone(), replica("km-a", 4001), TTL);
    let mut role_a = a.role();
    let term_a = term(&wait_role(&mut role_a, 10, |r| matches!(r, Role::Leader(_))).await);
    let b = Election::start(etcd_b.clone(), replica("km-b", 4002), TTL);
    let mut role_b = b.role();
    let seen = wait_role(&mut role_b, 10, |r| matches!(r, Role::Standby { .. })).await;
    assert_eq!(
        seen,
        Role::Standby {
            leader: Some("km-a".into())
        }
    );

    // A leads: it reserves and commits.
    let mut store_a = EtcdStore::new(etcd_a.clone(), term_a);
    let (store_a, first) = off(move || {
        let e = store_a.advance_epoch(Epoch(0)).unwrap();
        store_a.save_members(&[member(1), member(2)]).unwrap();
        (store_a, e)
    })
    .await;
    assert_eq!(first, Epoch(1));

    // B writing under a term it never held is refused.
    let mut forged = EtcdStore::new(
        etcd_b.clone(),
        Term {
            revision: term_a.revision + 1,
            ..term_a
        },
    );
    let err = off(move || forged.advance_epoch(Epoch(0)).unwrap_err()).await;
    assert!(matches!(err, StoreError::Fenced { .. }), "{err}");

    // A "crashes" (its campaign stops without revoking): B leads within
    // the ttl plus etcd's expiry sweep and one poll.
    let crashed = Instant::now();
    drop(a);
    let term_b = term(&wait_role(&mut role_b, 10, |r| matches!(r, Role::Leader(_))).await);
    let took = crashed.elapsed();
    eprintln!("standby leading {took:?} after the leader stopped");
    assert!(took < Duration::from_secs(5), "failover took {took:?}");
    assert_ne!(term_a.revision, term_b.revision);

    // The old leader still believes it leads; etcd refuses both its
    // reservation and its commit.
    let mut stale = store_a;
    let (stale, err) = off(move || {
        let e = stale.advance_epoch(Epoch(1)).unwrap_err();
        (stale, e)
    })
    .await;
    assert!(matches!(err, StoreError::Fenced { .. }), "{err}");
    assert!(err.is_leadership());
    let mut stale = stale;
    let err = off(move || stale.save_members(&[member(9)]).unwrap_err()).await;
    assert!(matches!(err, StoreError::Fenced { .. }), "{err}");

    // B continues above every epoch A reserved, with A's committed members.
    let mut store_b = EtcdStore::new(etcd_b.clone(), term_b);
    let (p, next) = off(move || {
        let p = store_b.load().unwrap();
        let e = store_b.advance_epoch(p.epoch).unwrap();
        (p, e)
    })
    .await;
    assert_eq!(p.epoch, Epoch(1));
    assert_eq!(p.members, vec![member(1), member(2)]);
    assert_eq!(next, Epoch(2));
    b.resign().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_reservations_never_share_an_epoch() {
    let cluster = EtcdCluster::loopback(3).expect("etcd cluster");
    let etcd = connect(&cluster, "/von/t2/keymgr");
    let e = Election::start(etcd.clone(), replica("km-a", 4001), TTL);
    let t = term(&wait_role(&mut e.role(), 10, |r| matches!(r, Role::Leader(_))).await);
    // Four writers under the same (valid) term race on the counter: the
    // revision compare makes every reservation distinct.
    let mut handles = Vec::new();
    for _ in 0..4 {
        let mut s = EtcdStore::new(etcd.clone(), t);
        handles.push(tokio::task::spawn_blocking(move || {
            (0..10)
                .map(|_| s.advance_epoch(Epoch(0)).unwrap().0)
                .collect::<Vec<_>>()
        }));
    }
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await.unwrap());
    }
    all.sort_unstable();
    assert_eq!(all, (1..=40).collect::<Vec<u32>>());
    e.resign().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_etcd_member_down_changes_nothing_and_quorum_loss_stops_writes() {
    let mut cluster = EtcdCluster::loopback(3).expect("etcd cluster");
    let etcd = connect(&cluster, "/von/t3/keymgr");
    let e = Election::start(etcd.clone(), replica("km-a", 4001), TTL);
    let mut role = e.role();
    let t = term(&wait_role(&mut role, 10, |r| matches!(r, Role::Leader(_))).await);
    let mut s = EtcdStore::new(etcd.clone(), t);
    let s0 = s.clone();
    assert_eq!(
        off(move || s.advance_epoch(Epoch(0)).unwrap()).await,
        Epoch(1)
    );

    // Each member in turn down (the first is the client's preferred one):
    // the same term keeps writing.
    for i in 0..3 {
        cluster.kill(i);
        let mut s = s0.clone();
        let got = off(move || s.advance_epoch(Epoch(0))).await;
        assert!(got.is_ok(), "with e{} down: {got:?}", i + 1);
        tokio::time::sleep(TTL).await;
        assert_eq!(*role.borrow(), Role::Leader(t), "with e{} down", i + 1);
        cluster.start(i).unwrap();
        cluster.wait_healthy(&[0, 1, 2]).unwrap();
    }
    let s = s0.clone();
    let before = off(move || s.load().unwrap().epoch).await;
    assert_eq!(before, Epoch(4));

    // Two of three down: no quorum. Writes fail with a clear error and the
    // replica stops leading within the lease.
    cluster.kill(1);
    cluster.kill(2);
    let mut s = s0.clone();
    let err = off(move || s.advance_epoch(Epoch(0)).unwrap_err()).await;
    assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
    assert!(err.to_string().contains("etcd unavailable"), "{err}");
    let r = wait_role(&mut role, 10, |r| matches!(r, Role::Unavailable { .. })).await;
    eprintln!("without quorum: {r:?}");

    // Quorum back: a new term, epochs above everything reserved before
    // (the failed write above may or may not have reserved one: skipped, never reused).
    cluster.start(1).unwrap();
    cluster.start(2).unwrap();
    cluster.wait_healthy(&[0, 1, 2]).unwrap();
    let t2 = term(&wait_role(&mut role, 15, |r| matches!(r, Role::Leader(_))).await);
    assert_ne!(t2.revision, t.revision);
    let mut s = EtcdStore::new(etcd.clone(), t2);
    let next = off(move || s.advance_epoch(Epoch(0)).unwrap()).await;
    assert!(next > before, "{next:?} after {before:?}");
    // The old term stays fenced.
    let mut old = s0;
    let err = off(move || old.advance_epoch(Epoch(0)).unwrap_err()).await;
    assert!(matches!(err, StoreError::Fenced { .. }), "{err}");
    e.resign().await;
}
