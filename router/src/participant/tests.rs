//! The router side of 2PC and leases, with a stepped clock.

use std::time::{Duration, Instant};

use super::*;

fn core() -> RouterCore {
    RouterCore::new(
        "r1",
        vec![LinkBudget {
            dev: "sha".into(),
            capacity_bps: 100_000_000,
            on_share_bps: 50_000_000,
        }],
    )
}

fn prepare(tx: u64, on_id: u32, rate_bps: u64) -> Request {
    Request::Prepare {
        tx,
        name: format!("von{on_id}"),
        on_id,
        classes: vec![OnClassSpec {
            dev: "sha".into(),
            on_id,
            dscp: 46,
            port: 4789,
            rate_bps,
        }],
        lease_ms: 2_000,
    }
}

fn refused(r: Response) -> String {
    match r {
        Response::Refused { reason } => reason,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn prepare_holds_and_only_commit_installs() {
    let (mut c, t0) = (core(), Instant::now());
    assert_eq!(c.handle(t0, prepare(1, 7, 30_000_000)), Response::Ok);
    assert!(c.plans()[0].classes.is_empty(), "a hold installs nothing");
    // The hold counts against admission.
    let reason = refused(c.handle(t0, prepare(2, 8, 30_000_000)));
    assert!(reason.contains("overbooked by 10000000"), "{reason}");
    assert_eq!(c.handle(t0, Request::Commit { tx: 1 }), Response::Ok);
    let plan = &c.plans()[0];
    assert_eq!(
        (plan.classes[0].on_id, plan.classes[0].minor),
        (7, tc::FIRST_ON_MINOR)
    );
    assert_eq!(
        c.handle(t0, Request::Commit { tx: 1 }),
        Response::Ok,
        "a repeated commit"
    );
}

#[test]
fn abort_and_stale_holds_free_the_share() {
    let (mut c, t0) = (core(), Instant::now());
    assert_eq!(c.handle(t0, prepare(1, 7, 50_000_000)), Response::Ok);
    assert_eq!(c.handle(t0, Request::Abort { tx: 1 }), Response::Ok);
    assert_eq!(c.handle(t0, prepare(2, 8, 50_000_000)), Response::Ok);
    let later = t0 + HOLD + Duration::from_millis(1);
    assert!(refused(c.handle(later, Request::Commit { tx: 2 })).contains("hold lapsed"));
    assert_eq!(c.handle(later, prepare(3, 9, 50_000_000)), Response::Ok);
}

#[test]
fn on_ids_are_unique_per_router() {
    let (mut c, t0) = (core(), Instant::now());
    c.handle(t0, prepare(1, 7, 1_000_000));
    c.handle(t0, Request::Commit { tx: 1 });
    assert!(refused(c.handle(t0, prepare(2, 7, 1_000_000))).contains("already reserved"));
}

#[test]
fn a_lease_lapses_unless_renewed() {
    let (mut c, t0) = (core(), Instant::now());
    c.handle(t0, prepare(1, 7, 1_000_000));
    c.handle(t0, Request::Commit { tx: 1 });
    let t1 = t0 + Duration::from_millis(1_500);
    assert_eq!(
        c.handle(
            t1,
            Request::Renew {
                on_id: 7,
                lease_ms: 2_000
            }
        ),
        Response::Ok
    );
    assert!(
        c.expire(t0 + Duration::from_millis(3_000)).is_empty(),
        "renewed until 3.5 s"
    );
    assert_eq!(c.expire(t0 + Duration::from_millis(3_500)), vec![7]);
    assert!(c.plans()[0].classes.is_empty());
    assert!(
        refused(c.handle(
            t1 + Duration::from_secs(3),
            Request::Renew {
                on_id: 7,
                lease_ms: 2_000
            }
        ))
        .contains("not reserved")
    );
}

#[test]
fn minors_are_reused_after_release() {
    let (mut c, t0) = (core(), Instant::now());
    for (tx, on) in [(1, 7), (2, 8)] {
        c.handle(t0, prepare(tx, on, 1_000_000));
        c.handle(t0, Request::Commit { tx });
    }
    c.handle(t0, Request::Release { on_id: 7 });
    c.handle(t0, prepare(3, 9, 1_000_000));
    c.handle(t0, Request::Commit { tx: 3 });
    let mut minors: Vec<(u32, u16)> = c.plans()[0]
        .classes
        .iter()
        .map(|p| (p.on_id, p.minor))
        .collect();
    minors.sort_unstable();
    assert_eq!(minors, vec![(8, 0x11), (9, 0x10)]);
}

#[test]
fn bad_leases_and_mismatched_classes_are_refused() {
    let (mut c, t0) = (core(), Instant::now());
    let mut req = prepare(1, 7, 1_000_000);
    if let Request::Prepare { lease_ms, .. } = &mut req {
        *lease_ms = 10;
    }
    assert!(refused(c.handle(t0, req)).contains("lease"));
    let mut req = prepare(2, 7, 1_000_000);
    if let Request::Prepare { on_id, .. } = &mut req {
        *on_id = 8;
    }
    assert!(refused(c.handle(t0, req)).contains("does not match"));
}
