//! The rekeying core on a clock that only moves when the test says so.

mod admission;
mod durability;
mod takeover;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use super::*;
use crate::ids::Cipher;
use crate::proto::ServerMsg;
use crate::store::MemStore;
use crate::wrap::WrapFailed;

/// An in-memory twin of the Noise wrapper: the "wrapped" key names its
/// recipient and epoch, so a test can check each member got its own copy of
/// the right key. The real wrapper is exercised in `tests/wrap_noise.rs`.
struct Tagged;

impl KeyWrapper for Tagged {
    fn wrap(&self, to: &[u8; 32], epoch: Epoch, key: &GroupKey) -> Result<Vec<u8>, WrapFailed> {
        if to == &[0xff; 32] {
            return Err(WrapFailed {
                epoch: epoch.0,
                detail: "low-order point".into(),
            });
        }
        let mut v = to.to_vec();
        v.extend_from_slice(&epoch.0.to_be_bytes());
        v.extend_from_slice(key.secret_bytes());
        Ok(v)
    }
}

fn settings() -> Settings {
    Settings {
        on_id: OnId(7),
        // Wide enough for the 1000-member test's 100.64.0.1 .. 100.64.3.232.
        prefix: "100.64.0.0/16".parse().unwrap(),
        cipher: Cipher::Aes256Gcm,
        lease: Duration::from_secs(30),
        renew_every: Duration::from_secs(10),
        ack_timeout: Duration::from_secs(5),
        key_max_age: Duration::from_secs(3600),
        grace: Duration::from_secs(2),
    }
}

fn who(n: u32) -> Identity {
    Identity {
        id: MemberId(n),
        name: format!("h{n}"),
        address: Ipv4Addr::from(0x6440_0000 + n),
        prefix_len: 16,
        noise_public: {
            let mut k = [0u8; 32];
            k[..4].copy_from_slice(&n.to_be_bytes());
            k
        },
    }
}

/// Member `n`'s endpoints: 192.0.2.n on underlay a, 198.51.100.n on b.
fn ep(n: u32) -> von_config::UnderlayEndpoints {
    let on = |base: u32| SocketAddr::from((Ipv4Addr::from(base + n), 4789));
    von_config::UnderlayEndpoints::from_names([("a", on(0xc000_0200)), ("b", on(0xc633_6400))])
        .unwrap()
}

type Km = KeyManager<MemStore, Tagged>;

fn km(now: Instant) -> Km {
    KeyManager::new(settings(), MemStore::new(), Tagged, now).unwrap()
}

fn join(km: &mut Km, now: Instant, n: u32) -> (MemberId, Vec<Output>) {
    let (id, out) = km.member_joined(now, who(n), ep(n), None).unwrap();
    (id, seen(out))
}

thread_local! {
    /// Member ids of every view the helpers below have seen, by (epoch,
    /// committed): what a delta is resolved against, as a member would.
    static SEEN: std::cell::RefCell<BTreeMap<(u32, bool), Vec<u32>>> =
        const { std::cell::RefCell::new(BTreeMap::new()) };
}

/// The member ids of the view `u` describes; `commit` says which message
/// carried it (a prepare's delta is against the committed view of its base
/// epoch, a commit's against the prepared view of its own).
fn resolve(u: &crate::view::ViewUpdate, commit: bool) -> Vec<u32> {
    SEEN.with(|seen| {
        let mut seen = seen.borrow_mut();
        let mut ids: Vec<u32> = match u.base {
            None => u.members.iter().map(|m| m.id).collect(),
            Some(b) => {
                let base_committed = !commit;
                let base = seen.get(&(b, base_committed)).unwrap_or_else(|| {
                    panic!(
                        "delta of epoch {} against {b} not seen by the test",
                        u.epoch
                    )
                });
                base.iter()
                    .copied()
                    .filter(|id| !u.removed.contains(id))
                    .chain(u.members.iter().map(|m| m.id))
                    .collect::<BTreeSet<u32>>()
                    .into_iter()
                    .collect()
            }
        };
        ids.sort_unstable();
        seen.insert((u.epoch, commit), ids.clone());
        ids
    })
}

/// Pass every output through [`prepares`] and [`commits`] so later deltas
/// resolve; returns `out`.
fn seen(out: Vec<Output>) -> Vec<Output> {
    for o in &out {
        if let Output::Send { msg, .. } = o {
            match msg {
                ServerMsg::Prepare { view, .. } => drop(resolve(view, false)),
                ServerMsg::Commit { view, .. } => drop(resolve(view, true)),
                _ => {}
            }
        }
    }
    out
}

/// The prepares in `out`: (recipient, epoch, wrapped key, member ids).
fn prepares(out: &[Output]) -> Vec<(MemberId, u32, Vec<u8>, Vec<u32>)> {
    out.iter()
        .filter_map(|o| match o {
            Output::Send {
                to,
                msg:
                    ServerMsg::Prepare {
                        view, wrapped_key, ..
                    },
            } => Some((
                *to,
                view.epoch,
                hex::decode(wrapped_key).unwrap(),
                resolve(view, false),
            )),
            _ => None,
        })
        .collect()
}

/// The commits in `out`: (recipient, epoch, member ids).
fn commits(out: &[Output]) -> Vec<(MemberId, u32, Vec<u32>)> {
    out.iter()
        .filter_map(|o| match o {
            Output::Send {
                to,
                msg: ServerMsg::Commit { view, .. },
            } => Some((*to, view.epoch, resolve(view, true))),
            _ => None,
        })
        .collect()
}

fn disconnects(out: &[Output]) -> Vec<(MemberId, Departure)> {
    out.iter()
        .filter_map(|o| match o {
            Output::Disconnect { member, reason } => Some((*member, *reason)),
            _ => None,
        })
        .collect()
}

/// Acknowledge the pending epoch from every member it names; return all outputs.
fn ack_all(km: &mut Km, now: Instant) -> Vec<Output> {
    let epoch = km.pending_epoch().expect("a rekey is pending");
    let ids: Vec<MemberId> = km
        .pending
        .as_ref()
        .unwrap()
        .view
        .members
        .iter()
        .map(|m| m.id)
        .collect();
    let mut out = Vec::new();
    for id in ids {
        out.extend(seen(km.ack(now, id, epoch).unwrap()));
    }
    seen(out)
}

/// Three members joined and committed at epoch 3.
fn three(now: Instant) -> Km {
    let mut km = km(now);
    for n in 1..=3 {
        join(&mut km, now, n);
        ack_all(&mut km, now);
    }
    assert_eq!(km.view().epoch, Epoch(3));
    assert_eq!(km.view().members.len(), 3);
    km
}

#[test]
fn join_prepares_then_commits_only_after_every_ack() {
    let t0 = Instant::now();
    let mut km = three(t0);
    let (id4, out) = join(&mut km, t0, 4);
    assert_eq!(id4, MemberId(4));
    assert!(matches!(
        &out[0],
        Output::Send {
            msg: ServerMsg::Joined { member_id: 4, .. },
            ..
        }
    ));
    let p = prepares(&out);
    assert_eq!(p.len(), 4, "one prepare per member of the new view");
    let key = &p[0].2[36..];
    for (to, epoch, wrapped, members) in &p {
        assert_eq!(*epoch, 4);
        assert_eq!(members, &[1, 2, 3, 4]);
        assert_eq!(
            &wrapped[..4],
            &to.0.to_be_bytes(),
            "wrapped for its recipient"
        );
        assert_eq!(&wrapped[36..], key, "one group key for everyone");
    }
    // Three of four acknowledged: nobody switches yet.
    for n in 1..=3 {
        let out = seen(km.ack(t0, MemberId(n), Epoch(4)).unwrap());
        assert!(commits(&out).is_empty());
    }
    assert_eq!(km.view().epoch, Epoch(3));
    // A stale or foreign ack changes nothing.
    assert!(seen(km.ack(t0, MemberId(4), Epoch(3)).unwrap()).is_empty());
    let out = seen(km.ack(t0, MemberId(4), Epoch(4)).unwrap());
    let c = commits(&out);
    assert_eq!(c.len(), 4);
    assert!(c.iter().all(|(_, e, m)| *e == 4 && m == &[1, 2, 3, 4]));
    assert_eq!(km.view().epoch, Epoch(4));
}

#[test]
fn lease_expiry_rekeys_without_the_silent_member() {
    let t0 = Instant::now();
    let mut km = three(t0);
    // h1 and h2 renew every 10 s; h3 never does.
    let mut out = Vec::new();
    for s in [10, 20, 29] {
        let now = t0 + Duration::from_secs(s);
        seen(km.renew(now, MemberId(1)).unwrap());
        seen(km.renew(now, MemberId(2)).unwrap());
        out.extend(seen(km.tick(now).unwrap()));
    }
    assert!(
        disconnects(&out).is_empty(),
        "no lease ends before 30 s: {out:?}"
    );
    assert_eq!(
        km.poll_timeout(),
        Some(t0 + Duration::from_secs(30)),
        "h3's lease is next"
    );
    let out = seen(km.tick(t0 + Duration::from_secs(30)).unwrap());
    assert_eq!(
        disconnects(&out),
        vec![(MemberId(3), Departure::LeaseExpired)]
    );
    let p = prepares(&out);
    assert_eq!(p.iter().map(|p| p.0.0).collect::<Vec<_>>(), vec![1, 2]);
    assert!(p.iter().all(|p| p.1 == 4 && p.3 == [1, 2]));
    let out = ack_all(&mut km, t0 + Duration::from_secs(30));
    assert_eq!(commits(&out).len(), 2);
    assert_eq!(km.view().epoch, Epoch(4));
    assert!(!km.view().contains(MemberId(3)));
    // Its late renewal is answered with a disconnect, not a lease.
    let out = seen(km.renew(t0 + Duration::from_secs(31), MemberId(3)).unwrap());
    assert_eq!(disconnects(&out), vec![(MemberId(3), Departure::NotMember)]);
}

#[test]
fn silent_member_is_dropped_at_the_ack_deadline_and_its_key_replaced() {
    let t0 = Instant::now();
    let mut km = three(t0);
    let out = seen(km.force_rekey(t0).unwrap());
    assert_eq!(prepares(&out).len(), 3);
    seen(km.ack(t0, MemberId(1), Epoch(4)).unwrap());
    seen(km.ack(t0, MemberId(2), Epoch(4)).unwrap());
    assert_eq!(km.poll_timeout(), Some(t0 + Duration::from_secs(5)));
    assert!(commits(&seen(km.tick(t0 + Duration::from_millis(4999)).unwrap())).is_empty());
    let out = seen(km.tick(t0 + Duration::from_secs(5)).unwrap());
    assert_eq!(disconnects(&out), vec![(MemberId(3), Departure::Silent)]);
    let c = commits(&out);
    assert_eq!(c.iter().map(|c| c.0.0).collect::<Vec<_>>(), vec![1, 2]);
    assert!(c.iter().all(|c| c.1 == 4 && c.2 == [1, 2]));
    // h3 may have unwrapped epoch 4's key: epoch 5 follows at once.
    let p = prepares(&out);
    assert_eq!(p.len(), 2);
    assert!(p.iter().all(|p| p.1 == 5 && p.3 == [1, 2]));
}

#[test]
fn ack_deadline_counts_from_when_the_prepare_left() {
    // The store held the step for 7 s (a frozen disk): the prepare reached
    // the connections only then, so the members' 5 s start there.
    let t0 = Instant::now();
    let mut km = three(t0);
    let out = seen(km.force_rekey(t0).unwrap());
    assert_eq!(prepares(&out).len(), 3);
    let sent = t0 + Duration::from_secs(7);
    km.handed_over(sent);
    assert_eq!(km.poll_timeout(), Some(sent + Duration::from_secs(5)));
    assert!(disconnects(&seen(km.tick(sent + Duration::from_millis(10)).unwrap())).is_empty());
    let out = ack_all(&mut km, sent + Duration::from_millis(20));
    assert_eq!(commits(&out).len(), 3);
    // Reported once: a later hand-over moves nothing.
    seen(km.force_rekey(sent).unwrap());
    km.handed_over(sent);
    km.handed_over(sent + Duration::from_secs(60));
    assert_eq!(km.poll_timeout(), Some(sent + Duration::from_secs(5)));
}

#[test]
fn changes_during_a_rekey_fold_into_the_next_one() {
    let t0 = Instant::now();
    let mut km = three(t0);
    let out = join(&mut km, t0, 4).1;
    assert_eq!(prepares(&out)[0].1, 4);
    // h5 joins and h1 leaves while epoch 4 is in flight: no new prepare yet.
    let out5 = join(&mut km, t0, 5).1;
    assert!(prepares(&out5).is_empty());
    let out1 = seen(km.leave(t0, MemberId(1)).unwrap());
    assert_eq!(disconnects(&out1), vec![(MemberId(1), Departure::Left)]);
    // The rest acknowledge epoch 4; h1 is gone and no longer awaited.
    let mut out = Vec::new();
    for n in 2..=4 {
        out.extend(seen(km.ack(t0, MemberId(n), Epoch(4)).unwrap()));
    }
    let c = commits(&out);
    assert!(c.iter().all(|c| c.1 == 4 && c.2 == [2, 3, 4]), "{c:?}");
    let p = prepares(&out);
    assert!(p.iter().all(|p| p.1 == 5 && p.3 == [2, 3, 4, 5]), "{p:?}");
    assert_eq!(p.len(), 4);
}

#[test]
fn revoked_member_is_removed_and_refused_on_rejoin() {
    let t0 = Instant::now();
    let mut km = three(t0);
    let out = seen(km.revoke(t0, "h2").unwrap());
    assert_eq!(disconnects(&out), vec![(MemberId(2), Departure::Revoked)]);
    assert!(
        prepares(&out)
            .iter()
            .all(|p| p.3 == [1, 3] && p.0 != MemberId(2))
    );
    ack_all(&mut km, t0);
    assert!(!km.view().contains(MemberId(2)));
    let err = km
        .member_joined(t0, who(2), ep(2), Some(Epoch(3)))
        .unwrap_err();
    assert!(
        matches!(err, JoinError::Revoked { ref name } if name == "h2"),
        "{err}"
    );
    assert!(
        km.pending_epoch().is_none(),
        "a refused join starts no rekey"
    );
}

#[test]
fn key_age_and_sequence_limit_rekey() {
    let t0 = Instant::now();
    let mut km = three(t0);
    let hour = t0 + Duration::from_secs(3600);
    // Keep leases alive so only the key's age matters.
    for n in 1..=3 {
        km.renew(hour - Duration::from_secs(1), MemberId(n))
            .unwrap();
    }
    assert!(prepares(&seen(km.tick(hour - Duration::from_secs(1)).unwrap())).is_empty());
    let out = seen(km.tick(hour).unwrap());
    assert!(prepares(&out).iter().all(|p| p.1 == 4));
    ack_all(&mut km, hour);
    // A report about an old epoch is ignored; about the current one rekeys.
    assert!(
        km.sequence_near_limit(hour, MemberId(1), Epoch(3))
            .unwrap()
            .is_empty()
    );
    let out = seen(km.sequence_near_limit(hour, MemberId(1), Epoch(4)).unwrap());
    assert_eq!(prepares(&out).len(), 3);
    assert!(prepares(&out).iter().all(|p| p.1 == 5));
}

#[test]
fn reconnect_with_same_endpoints_is_not_a_change_but_catches_up() {
    let t0 = Instant::now();
    let mut km = three(t0);
    // h2 reconnects holding epoch 3: only its Joined.
    let out = km
        .member_joined(t0, who(2), ep(2), Some(Epoch(3)))
        .unwrap()
        .1;
    assert_eq!(out.len(), 1);
    // h2 reconnects with nothing on disk: it gets epoch 3 again, no rekey.
    let out = km.member_joined(t0, who(2), ep(2), None).unwrap().1;
    assert_eq!(prepares(&out).len(), 1);
    assert_eq!(commits(&out).len(), 1);
    assert!(km.pending_epoch().is_none());
    // h2 moved to new endpoints: a change, everyone rekeys.
    let out = km
        .member_joined(t0, who(2), ep(9), Some(Epoch(3)))
        .unwrap()
        .1;
    assert_eq!(prepares(&out).len(), 3);
}

#[test]
fn a_second_name_with_a_taken_id_is_refused() {
    let t0 = Instant::now();
    let mut km = three(t0);
    let mut other = who(9);
    other.id = MemberId(2);
    let err = km.member_joined(t0, other, ep(9), None).unwrap_err();
    assert!(
        matches!(err, JoinError::IdTaken { id: 2, ref holder, .. } if holder == "h2"),
        "{err}"
    );
    assert!(km.pending_epoch().is_none());
}

#[test]
fn unwrappable_member_is_left_out_of_the_view() {
    let t0 = Instant::now();
    let mut km = three(t0);
    let mut bad = who(4);
    bad.noise_public = [0xff; 32];
    let out = km.member_joined(t0, bad, ep(4), None).unwrap().1;
    assert_eq!(
        disconnects(&out),
        vec![(MemberId(4), Departure::WrapFailed)]
    );
    assert!(prepares(&out).iter().all(|p| p.3 == [1, 2, 3]));
}
