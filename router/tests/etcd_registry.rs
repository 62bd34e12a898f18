//! The reservation service's registry in a real etcd (von-lab's loopback
//! cluster, Debian's etcd-server): rows written under one term load in the
//! next, and a replica whose term ended writes nothing (the fence), however
//! sure it is that it leads.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use von_lab::EtcdCluster;
use von_router::model::ReservationSpec;
use von_router::replica::{Election, Etcd, EtcdRegistry, ReplicaInfo, Role, Term};
use von_router::store::Registry;

const TTL: Duration = Duration::from_secs(2);
const PREFIX: &str = "/von/test/reserve";

fn connect(cluster: &EtcdCluster) -> Etcd {
    Etcd::connect(
        &cluster.endpoints(),
        PREFIX,
        Duration::from_millis(500),
        Duration::from_secs(3),
    )
    .expect("etcd clients")
}

fn lead(etcd: &Etcd, name: &str) -> (Election, Term) {
    let me = ReplicaInfo {
        name: name.into(),
        listen: (Ipv4Addr::UNSPECIFIED, 0).into(),
    };
    let e = Election::start(etcd.clone(), me, TTL);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Role::Leader(t) = *e.role().borrow() {
            return (e, t);
        }
        assert!(Instant::now() < deadline, "{name} never led");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn spec(on_id: u32) -> ReservationSpec {
    ReservationSpec {
        name: format!("von{on_id}"),
        on_id,
        rate_bps: 20_000_000,
        packet: 1432,
        dscp: 46,
        port: 4789,
        path: vec!["r1:sha".parse().expect("link")],
    }
}

#[test]
fn a_new_term_loads_the_rows_and_the_old_term_is_fenced() {
    let cluster = EtcdCluster::loopback(3).expect("etcd cluster");
    let (etcd_a, etcd_b) = (connect(&cluster), connect(&cluster));
    let (a, term_a) = lead(&etcd_a, "rs-a");
    let old = EtcdRegistry::new(etcd_a.clone(), term_a);
    old.put(&spec(7)).expect("the leader writes");
    old.put(&spec(9)).expect("the leader writes");
    old.remove(9).expect("the leader forgets");

    // rs-a's term ends (as at a clean stop; a kill ends it after the ttl).
    etcd_a
        .block(async move {
            a.resign().await;
            Ok(())
        })
        .expect("resigned");
    let (_b, term_b) = lead(&etcd_b, "rs-b");
    assert!(
        term_b.revision > term_a.revision,
        "{term_b:?} after {term_a:?}"
    );
    let new = EtcdRegistry::new(etcd_b, term_b);
    let rows: Vec<u32> = new.load().expect("load").into_keys().collect();
    assert_eq!(
        rows,
        vec![7],
        "the new leader loads what the old one stored"
    );

    for (what, err) in [
        ("put", old.put(&spec(8)).expect_err("fenced put")),
        ("remove", old.remove(7).expect_err("fenced remove")),
    ] {
        let err = err.to_string();
        assert!(
            err.contains("fenced") && err.contains("rs-b"),
            "the old term's {what} must be fenced, naming the leader: {err}"
        );
    }
    new.put(&spec(8)).expect("the new leader writes");
    let rows: Vec<u32> = new.load().expect("load").into_keys().collect();
    assert_eq!(rows, vec![7, 8], "nothing of the old term's writes landed");
}
