//! Registry and two-phase commit against in-memory routers: one refusing,
//! one unreachable.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::*;
use crate::admission::LinkBudget;
use crate::participant::RouterCore;
use crate::proto::{Request, Response};
use crate::store::RegistryStore;

/// Routers in memory; `down` ones cannot be reached.
struct Fleet {
    routers: BTreeMap<String, RouterCore>,
    down: Vec<String>,
    now: Instant,
}

impl Fleet {
    fn new(share: &[(&str, u64)]) -> Self {
        let routers = share
            .iter()
            .map(|(name, on_share_bps)| {
                let link = LinkBudget {
                    dev: "eth1".into(),
                    capacity_bps: 100_000_000,
                    on_share_bps: *on_share_bps,
                };
                ((*name).to_owned(), RouterCore::new(name, vec![link]))
            })
            .collect();
        Self {
            routers,
            down: Vec::new(),
            now: Instant::now(),
        }
    }

    fn installed(&self) -> Vec<(String, u32)> {
        self.routers
            .iter()
            .flat_map(|(n, r)| {
                r.plans()
                    .into_iter()
                    .flat_map(|p| p.classes)
                    .map(move |c| (n.clone(), c.on_id))
            })
            .collect()
    }

    fn holds(&self) -> usize {
        self.routers
            .values()
            .map(|r| r.status(self.now, &BTreeMap::new()).holds)
            .sum()
    }
}

impl Transport for Fleet {
    fn call(&mut self, router: &str, req: &Request) -> Result<Response> {
        if self.down.iter().any(|d| d == router) {
            return Err(Error::Unreachable {
                router: router.into(),
                addr: "memory".into(),
                reason: "down".into(),
            });
        }
        let r = self.routers.get_mut(router).ok_or_else(|| Error::Refused {
            router: router.into(),
            reason: "unknown".into(),
        })?;
        Ok(r.handle(self.now, req.clone()))
    }
}

fn spec(name: &str, on_id: u32, rate_bps: u64, path: &[&str]) -> ReservationSpec {
    ReservationSpec {
        name: name.into(),
        on_id,
        rate_bps,
        packet: 1432,
        dscp: 46,
        port: 4789,
        path: path.iter().map(|p| p.parse().expect("link")).collect(),
    }
}

#[test]
fn all_routers_or_none() {
    let mut fleet = Fleet::new(&[("r1", 100_000_000), ("r2", 100_000_000), ("r3", 10_000_000)]);
    let mut svc = Service::new(Duration::from_secs(3), 1);
    svc.add(
        &mut fleet,
        spec("grid", 7, 20_000_000, &["r1:eth1", "r2:eth1"]),
    )
    .expect("fits");
    assert_eq!(fleet.installed(), [("r1".into(), 7), ("r2".into(), 7)]);
    // r3 refuses (its ON share is 10 Mbit/s) after r1 and r2 prepared.
    let err = svc
        .add(
            &mut fleet,
            spec("med", 8, 20_000_000, &["r1:eth1", "r2:eth1", "r3:eth1"]),
        )
        .expect_err("r3 refuses");
    assert!(
        err.to_string()
            .contains("router r3 refused: link eth1 would be overbooked"),
        "{err}"
    );
    assert_eq!(fleet.installed().len(), 2, "nothing of ON 8 anywhere");
    assert_eq!(fleet.holds(), 0, "r1 and r2 aborted their holds");
}

#[test]
fn an_unreachable_router_aborts_the_others() {
    let mut fleet = Fleet::new(&[("r1", 100_000_000), ("r2", 100_000_000)]);
    fleet.down.push("r2".into());
    let mut svc = Service::new(Duration::from_secs(3), 1);
    let err = svc
        .add(
            &mut fleet,
            spec("grid", 7, 1_000_000, &["r1:eth1", "r2:eth1"]),
        )
        .expect_err("r2 down");
    assert!(err.to_string().contains("router r2"), "{err}");
    assert!(fleet.installed().is_empty());
    assert_eq!(fleet.holds(), 0);
    // Not registered either: the same ON id can be tried again.
    fleet.down.clear();
    svc.add(
        &mut fleet,
        spec("grid", 7, 1_000_000, &["r1:eth1", "r2:eth1"]),
    )
    .expect("now it fits");
}

#[test]
fn on_ids_and_names_are_unique_in_the_registry() {
    let mut fleet = Fleet::new(&[("r1", 100_000_000)]);
    let mut svc = Service::new(Duration::from_secs(3), 1);
    svc.add(&mut fleet, spec("grid", 7, 1_000_000, &["r1:eth1"]))
        .expect("fits");
    let err = svc
        .add(&mut fleet, spec("other", 7, 1_000_000, &["r1:eth1"]))
        .expect_err("same id");
    assert!(
        err.to_string()
            .contains("already registered for VON \"grid\""),
        "{err}"
    );
    let err = svc
        .add(&mut fleet, spec("grid", 9, 1_000_000, &["r1:eth1"]))
        .expect_err("same name");
    assert!(err.to_string().contains("already holds ON id 7"), "{err}");
}

#[test]
fn renewal_keeps_a_reservation_and_its_absence_lets_it_lapse() {
    let mut fleet = Fleet::new(&[("r1", 100_000_000)]);
    let mut svc = Service::new(Duration::from_secs(3), 1);
    svc.add(&mut fleet, spec("grid", 7, 1_000_000, &["r1:eth1"]))
        .expect("fits");
    let t0 = fleet.now;
    for step in 1..=5 {
        fleet.now = t0 + Duration::from_secs(step * 2);
        assert!(svc.renew_all(&mut fleet).is_empty());
    }
    assert_eq!(
        fleet.installed().len(),
        1,
        "renewed for 10 s on a 3 s lease"
    );
    // The service dies: nobody renews.
    fleet.now += Duration::from_secs(3);
    let r1 = fleet.routers.get_mut("r1").expect("r1");
    assert_eq!(r1.expire(fleet.now), vec![7]);
    assert!(fleet.installed().is_empty());
}

#[test]
fn release_removes_everywhere() {
    let mut fleet = Fleet::new(&[("r1", 100_000_000), ("r2", 100_000_000)]);
    let mut svc = Service::new(Duration::from_secs(3), 1);
    svc.add(
        &mut fleet,
        spec("grid", 7, 1_000_000, &["r1:eth1", "r2:eth1"]),
    )
    .expect("fits");
    svc.release(&mut fleet, 7).expect("released");
    assert!(fleet.installed().is_empty());
    assert!(svc.release(&mut fleet, 7).is_err(), "not reserved any more");
}

#[test]
fn a_restarted_service_reloads_its_registry_and_renews_it() {
    let dir = std::env::temp_dir().join(format!("von-router-svc-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let path = dir.join("reserve.redb");
    let mut fleet = Fleet::new(&[("r1", 30_000_000)]);
    {
        let store = RegistryStore::open(&path).expect("create");
        let mut svc = Service::with_store(Duration::from_secs(3), 1, store).expect("empty");
        svc.add(&mut fleet, spec("grid", 7, 20_000_000, &["r1:eth1"]))
            .expect("fits");
        svc.add(&mut fleet, spec("med", 8, 1_000_000, &["r1:eth1"]))
            .expect("fits");
        svc.release(&mut fleet, 8).expect("released");
        // A refused one is never stored.
        svc.add(&mut fleet, spec("big", 9, 20_000_000, &["r1:eth1"]))
            .expect_err("overbooks r1");
        // Dropped without release_all: the process was killed.
    }
    let store = RegistryStore::open(&path).expect("reopen");
    let mut svc = Service::with_store(Duration::from_secs(3), 100, store).expect("reload");
    let ids: Vec<u32> = svc.reservations().map(|r| r.on_id).collect();
    assert_eq!(ids, [7], "committed and not released");
    // Uniqueness survives: ON id 7 and name grid are still taken.
    let err = svc
        .add(&mut fleet, spec("other", 7, 1_000_000, &["r1:eth1"]))
        .expect_err("same id");
    assert!(err.to_string().contains("already registered"), "{err}");
    // Renewing resumes the lease past the old one's end.
    let t0 = fleet.now;
    fleet.now = t0 + Duration::from_secs(2);
    assert!(svc.renew_all(&mut fleet).is_empty());
    fleet.now = t0 + Duration::from_secs(4);
    let r1 = fleet.routers.get_mut("r1").expect("r1");
    assert!(r1.expire(fleet.now).is_empty(), "renewed after the reload");
    assert_eq!(fleet.installed(), [("r1".into(), 7)]);
    // Released after the reload: gone from the file too.
    svc.release(&mut fleet, 7).expect("released");
    drop(svc);
    let store = RegistryStore::open(&path).expect("reopen");
    assert!(store.load().expect("load").is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}
