//! Issue 11, item 4: one bad member must not freeze a VON. Every refusal
//! reason at the join, the commit rule (an epoch is committed only with the
//! members that acknowledged it), a member refusing views dropped so the
//! others move on, and a revocation that lands while a member misbehaves.

use std::time::{Duration, Instant};

use super::*;

fn reason_of(r: Result<(MemberId, Vec<Output>), JoinError>) -> JoinError {
    r.expect_err("the join must be refused")
}

#[test]
fn a_member_outside_the_prefix_is_refused_with_the_reason() {
    let t0 = Instant::now();
    let mut km = three(t0);
    // Outside 100.64.0.0/16 …
    let mut far = who(4);
    far.address = Ipv4Addr::new(100, 65, 0, 4);
    let err = reason_of(km.member_joined(t0, far, ep(4), None));
    assert!(matches!(err, JoinError::OutsidePrefix { .. }), "{err}");
    assert!(err.to_string().contains("100.64.0.0/16"), "{err}");
    assert_eq!(err.refusal(), crate::proto::Refusal::OutsidePrefix);
    // … or inside it, but the certificate names another prefix length.
    let mut narrow = who(5);
    narrow.prefix_len = 24;
    let err = reason_of(km.member_joined(t0, narrow, ep(5), None));
    assert!(
        matches!(err, JoinError::OutsidePrefix { prefix_len: 24, .. }),
        "{err}"
    );
    // The network and broadcast addresses are not hosts.
    let mut net = who(6);
    net.address = Ipv4Addr::new(100, 64, 0, 0);
    assert!(matches!(
        reason_of(km.member_joined(t0, net, ep(6), None)),
        JoinError::OutsidePrefix { .. }
    ));
    assert!(
        km.pending_epoch().is_none(),
        "a refused join starts no rekey"
    );
    assert_eq!(km.member_count(), 3);
    assert_eq!(km.refusals()["h4"].count, 1);
}

#[test]
fn a_duplicate_address_is_refused_naming_its_holder() {
    let t0 = Instant::now();
    let mut km = three(t0);
    let mut twin = who(4);
    twin.address = who(2).address;
    let err = reason_of(km.member_joined(t0, twin, ep(4), None));
    assert!(
        matches!(err, JoinError::AddressTaken { ref holder, .. } if holder == "h2"),
        "{err}"
    );
    assert_eq!(err.refusal(), crate::proto::Refusal::AddressTaken);
    assert!(km.pending_epoch().is_none());
    // A member still being prepared holds its address too.
    join(&mut km, t0, 4);
    assert_eq!(km.pending_epoch(), Some(Epoch(4)));
    let mut late = who(5);
    late.address = who(4).address;
    assert!(matches!(
        reason_of(km.member_joined(t0, late, ep(5), None)),
        JoinError::AddressTaken { ref holder, .. } if holder == "h4"
    ));
}

#[test]
fn a_duplicate_name_under_another_id_is_refused() {
    let t0 = Instant::now();
    let mut km = three(t0);
    let mut clone = who(9);
    clone.name = "h2".into();
    let err = reason_of(km.member_joined(t0, clone, ep(9), None));
    assert!(
        matches!(
            err,
            JoinError::NameTaken {
                id: 9,
                holder: 2,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(err.refusal(), crate::proto::Refusal::NameTaken);
    // The holder itself reconnecting is no conflict.
    assert!(km.member_joined(t0, who(2), ep(2), Some(Epoch(3))).is_ok());
}

#[test]
fn an_epoch_commits_only_with_the_members_that_acknowledged_it() {
    let t0 = Instant::now();
    let mut km = three(t0);
    seen(km.force_rekey(t0).unwrap());
    seen(km.ack(t0, MemberId(1), Epoch(4)).unwrap());
    // Two of three: epoch 4 is not committed, whatever time passes short of
    // the deadline.
    seen(km.tick(t0 + Duration::from_millis(4999)).unwrap());
    assert_eq!(km.view().epoch, Epoch(3));
    seen(km.ack(t0, MemberId(2), Epoch(4)).unwrap());
    let out = seen(km.tick(t0 + Duration::from_secs(5)).unwrap());
    // Committed without h3, which never acknowledged; and h3 is told.
    assert_eq!(km.view().epoch, Epoch(4));
    assert_eq!(
        km.view().members.iter().map(|m| m.id.0).collect::<Vec<_>>(),
        [1, 2]
    );
    assert!(
        commits(&out)
            .iter()
            .all(|c| c.2 == [1, 2] && c.0 != MemberId(3))
    );
    assert_eq!(disconnects(&out), vec![(MemberId(3), Departure::Silent)]);
}

#[test]
fn a_member_refusing_the_view_is_dropped_and_the_rest_commit_at_once() {
    let t0 = Instant::now();
    let mut km = three(t0);
    seen(km.force_rekey(t0).unwrap());
    seen(km.ack(t0, MemberId(1), Epoch(4)).unwrap());
    seen(km.ack(t0, MemberId(2), Epoch(4)).unwrap());
    // A refusal of an epoch not in flight changes nothing.
    assert!(
        km.refuse(t0, MemberId(3), Epoch(9), "x")
            .unwrap()
            .is_empty()
    );
    let out = km
        .refuse(
            t0,
            MemberId(3),
            Epoch(4),
            "VON address 100.64.0.2 is given to both h2 and h9",
        )
        .unwrap();
    // No waiting for the deadline: committed now without the refuser.
    assert_eq!(
        disconnects(&out),
        vec![(MemberId(3), Departure::RefusedView)]
    );
    let c = commits(&out);
    assert_eq!(c.iter().map(|c| c.0.0).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(km.view().epoch, Epoch(4));
    // It saw epoch 4's key: epoch 5 follows without it.
    assert!(prepares(&out).iter().all(|p| p.1 == 5 && p.3 == [1, 2]));
    assert_eq!(km.refusals()["h3"].count, 1);
    assert!(km.refusals()["h3"].reason.contains("given to both"));
    // Held out for a lease, so refusing every view cannot force a rekey per rejoin.
    let err = reason_of(km.member_joined(t0 + Duration::from_secs(1), who(3), ep(3), None));
    assert!(
        matches!(
            err,
            JoinError::HeldOut {
                epoch: 4,
                secs: 29,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(err.refusal(), crate::proto::Refusal::HeldOut);
    let later = t0 + Duration::from_secs(30);
    ack_all(&mut km, later);
    assert!(km.member_joined(later, who(3), ep(3), None).is_ok());
}

#[test]
fn a_revocation_cuts_the_member_off_while_another_refuses_every_view() {
    let t0 = Instant::now();
    let mut km = three(t0);
    join(&mut km, t0, 4);
    ack_all(&mut km, t0);
    assert_eq!(km.view().members.len(), 4);
    // h4 turns hostile: it refuses every view. h2 is revoked meanwhile.
    let mut now = t0;
    let mut out = seen(km.revoke(now, "h2").unwrap());
    assert_eq!(disconnects(&out), vec![(MemberId(2), Departure::Revoked)]);
    for _ in 0..4 {
        let Some(epoch) = km.pending_epoch() else {
            break;
        };
        for (to, e, _, _) in prepares(&out) {
            assert_eq!(e, epoch.0);
            assert_ne!(to, MemberId(2), "no key is sent to the revoked member");
        }
        let awaiting: Vec<MemberId> = km
            .pending
            .as_ref()
            .unwrap()
            .awaiting
            .iter()
            .copied()
            .collect();
        out = Vec::new();
        for id in awaiting {
            if id == MemberId(4) {
                out.extend(seen(km.refuse(now, id, epoch, "hostile").unwrap()));
            } else {
                out.extend(seen(km.ack(now, id, epoch).unwrap()));
            }
        }
        now += Duration::from_millis(10);
    }
    // The group moved on without both: the committed view has h1 and h3
    // only, under a key neither h2 nor h4 was sent.
    assert_eq!(
        km.view().members.iter().map(|m| m.id.0).collect::<Vec<_>>(),
        [1, 3]
    );
    assert!(km.view().epoch.0 >= 6, "epoch {}", km.view().epoch.0);
    assert!(km.pending_epoch().is_none());
    assert!(matches!(
        reason_of(km.member_joined(now, who(2), ep(2), None)),
        JoinError::Revoked { .. }
    ));
}

#[test]
fn a_reloaded_state_with_conflicting_members_keeps_only_a_valid_view() {
    let t0 = Instant::now();
    let mut store = MemStore::new();
    let stored = |n: u32, address: Ipv4Addr| StoredMember {
        id: MemberId(n),
        name: format!("h{n}"),
        address,
        underlay: ep(n),
        noise_public: [n as u8; 32],
    };
    store
        .save_members(&[
            stored(1, who(1).address),
            stored(2, who(1).address),             // shares h1's address
            stored(3, Ipv4Addr::new(10, 0, 0, 3)), // outside the prefix
            stored(4, who(4).address),
        ])
        .unwrap();
    let km = KeyManager::new(settings(), store, Tagged, t0).unwrap();
    assert_eq!(
        km.view().members.iter().map(|m| m.id.0).collect::<Vec<_>>(),
        [1, 4]
    );
}
