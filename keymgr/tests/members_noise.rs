//! The key manager and real members (Noise-wrapped keys) stepped in memory
//! on a clock that moves only when the test says: the whole rekey protocol
//! without sockets, like quinn-proto's `Pair::step`.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use von_crypto::cert::VonName;
use von_crypto::wrap::{NoiseSecret, Recipient, Wrapper};
use von_crypto::{Cipher, Epoch, MemberId, OnId};
use von_keymgr::proto::{ClientMsg, ServerMsg, decode, encode};
use von_keymgr::{Identity, KeyManager, MemStore, MemberKeys, Output, Settings};

const GRACE: Duration = Duration::from_secs(2);

struct World {
    km: KeyManager<MemStore, Wrapper>,
    keymgr_public: von_crypto::wrap::NoisePublic,
    members: BTreeMap<u32, (MemberKeys, [u8; 32])>,
    disconnected: Vec<u32>,
    now: Instant,
    /// `NeedView`s the members sent.
    need_views: u32,
    /// Members whose messages are lost (not delivered) for now.
    deaf: Vec<u32>,
    /// Applied to every message before delivery (an on-path change).
    tamper: Option<fn(u32, ServerMsg) -> ServerMsg>,
    /// Every prepare delivered: (to, base epoch, member entries).
    prepared: Vec<(u32, Option<u32>, usize)>,
}

fn von() -> VonName {
    "grid".parse().unwrap()
}

impl World {
    fn new() -> Self {
        let secret = NoiseSecret::generate();
        let keymgr_public = secret.public();
        let settings = Settings {
            on_id: OnId(7),
            prefix: "100.64.0.0/24".parse().unwrap(),
            cipher: Cipher::ChaCha20Poly1305,
            lease: Duration::from_secs(30),
            renew_every: Duration::from_secs(10),
            ack_timeout: Duration::from_secs(5),
            key_max_age: Duration::from_secs(3600),
            grace: GRACE,
        };
        let now = Instant::now();
        let km = KeyManager::new(
            settings,
            MemStore::new(),
            Wrapper::new(secret, von(), OnId(7)),
            now,
        )
        .unwrap();
        Self {
            km,
            keymgr_public,
            members: BTreeMap::new(),
            disconnected: Vec::new(),
            now,
            need_views: 0,
            deaf: Vec::new(),
            tamper: None,
            prepared: Vec::new(),
        }
    }

    fn join(&mut self, n: u32) {
        let secret = NoiseSecret::generate();
        let public = *secret.public().as_bytes();
        let mut keys = MemberKeys::new();
        keys.set_recipient(Recipient::new(secret, self.keymgr_public, von(), OnId(7)));
        self.members.insert(n, (keys, public));
        let who = Identity {
            id: MemberId(n),
            name: format!("h{n}"),
            address: Ipv4Addr::new(100, 64, 0, n as u8),
            prefix_len: 24,
            noise_public: public,
        };
        let a = SocketAddr::from(([192, 0, 2, n as u8], 4789));
        let b = SocketAddr::from(([198, 51, 100, n as u8], 4789));
        let (_, out) = self
            .km
            .member_joined(
                self.now,
                who,
                von_config::UnderlayEndpoints::from_names([("a", a), ("b", b)]).unwrap(),
                None,
            )
            .unwrap();
        self.deliver(out);
    }

    /// Deliver outputs to members (through the wire encoding) and their
    /// replies back, until nothing moves.
    fn deliver(&mut self, mut out: Vec<Output>) {
        while !out.is_empty() {
            let mut next = Vec::new();
            for o in out {
                match o {
                    Output::Send { to, msg } => {
                        if self.deaf.contains(&to.0) {
                            continue;
                        }
                        let msg = match self.tamper {
                            Some(f) => f(to.0, msg),
                            None => msg,
                        };
                        if let ServerMsg::Prepare { view, .. } = &msg {
                            self.prepared.push((to.0, view.base, view.members.len()));
                        }
                        let bytes = encode(&msg);
                        let msg: ServerMsg = decode(&bytes[4..]).unwrap();
                        let Some((keys, _)) = self.members.get_mut(&to.0) else {
                            continue;
                        };
                        let reaction = keys.handle(self.now, msg).unwrap();
                        match reaction.reply {
                            Some(ClientMsg::Ack { epoch }) => {
                                next.extend(self.km.ack(self.now, to, Epoch(epoch)).unwrap());
                            }
                            Some(ClientMsg::NeedView { epoch }) => {
                                self.need_views += 1;
                                next.extend(self.km.need_view(self.now, to, Epoch(epoch)).unwrap());
                            }
                            Some(other) => panic!("unexpected reply {other:?}"),
                            None => {}
                        }
                    }
                    Output::Disconnect { member, .. } => {
                        self.members.remove(&member.0);
                        self.disconnected.push(member.0);
                    }
                }
            }
            out = next;
        }
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
        for (keys, _) in self.members.values_mut() {
            keys.tick(self.now);
        }
        let out = self.km.tick(self.now).unwrap();
        self.deliver(out);
    }

    fn send_epochs(&self) -> Vec<u32> {
        self.members
            .values()
            .map(|(k, _)| k.keys().send.unwrap().0.0)
            .collect()
    }

    fn receive_epochs(&self, n: u32) -> Vec<u32> {
        self.members[&n]
            .0
            .keys()
            .receive
            .iter()
            .map(|(e, _)| e.0)
            .collect()
    }
}

#[test]
fn three_members_share_one_key_per_epoch() {
    let mut w = World::new();
    for n in 1..=3 {
        w.join(n);
    }
    assert_eq!(w.send_epochs(), vec![3, 3, 3]);
    let secrets: Vec<[u8; 32]> = w
        .members
        .values()
        .map(|(k, _)| *k.keys().send.unwrap().1.secret_bytes())
        .collect();
    assert!(secrets.windows(2).all(|p| p[0] == p[1]), "one group key");
    let view = w.members[&1].0.keys().view.unwrap().clone();
    assert_eq!(
        view.members.iter().map(|m| m.id.0).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert_eq!(
        w.members[&1].0.keys().send.unwrap().1.cipher(),
        Cipher::ChaCha20Poly1305
    );
}

#[test]
fn grace_window_keeps_the_previous_epoch_then_erases_it() {
    let mut w = World::new();
    for n in 1..=3 {
        w.join(n);
    }
    let out = w.km.force_rekey(w.now).unwrap();
    w.deliver(out);
    assert_eq!(w.send_epochs(), vec![4, 4, 4]);
    assert_eq!(
        w.receive_epochs(1),
        vec![4, 3],
        "old epoch accepted during the grace"
    );
    w.advance(GRACE - Duration::from_millis(1));
    assert_eq!(w.receive_epochs(1), vec![4, 3]);
    w.advance(Duration::from_millis(1));
    assert_eq!(
        w.receive_epochs(1),
        vec![4],
        "old key erased when the grace ends"
    );
}

#[test]
fn prepared_epoch_is_accepted_before_the_commit() {
    let mut w = World::new();
    for n in 1..=2 {
        w.join(n);
    }
    w.advance(GRACE);
    let out = w.km.force_rekey(w.now).unwrap();
    // Hand member 1 only its prepare: it receives under 3 already, sends under 2.
    let prepare = out
        .into_iter()
        .find_map(|o| match o {
            Output::Send {
                to: MemberId(1),
                msg,
            } => Some(msg),
            _ => None,
        })
        .unwrap();
    let r = w
        .members
        .get_mut(&1)
        .unwrap()
        .0
        .handle(w.now, prepare.clone())
        .unwrap();
    assert_eq!(r.reply, Some(ClientMsg::Ack { epoch: 3 }));
    assert_eq!(w.receive_epochs(1), vec![3, 2]);
    assert_eq!(w.members[&1].0.keys().send.unwrap().0, Epoch(2));
    // The same prepare again (a resend after reconnect) is acknowledged again.
    let r = w
        .members
        .get_mut(&1)
        .unwrap()
        .0
        .handle(w.now, prepare)
        .unwrap();
    assert_eq!(r.reply, Some(ClientMsg::Ack { epoch: 3 }));
}

#[test]
fn a_member_refuses_a_key_wrapped_for_another() {
    let mut w = World::new();
    for n in 1..=2 {
        w.join(n);
    }
    w.advance(GRACE);
    let out = w.km.force_rekey(w.now).unwrap();
    let for_two = out
        .into_iter()
        .find_map(|o| match o {
            Output::Send {
                to: MemberId(2),
                msg,
            } => Some(msg),
            _ => None,
        })
        .unwrap();
    let err = w
        .members
        .get_mut(&1)
        .unwrap()
        .0
        .handle(w.now, for_two)
        .unwrap_err();
    assert!(err.to_string().contains("epoch 3"), "{err}");
    assert_eq!(w.receive_epochs(1), vec![2], "nothing installed");
}

#[test]
fn leaver_is_out_of_the_view_and_everyone_moves_on() {
    let mut w = World::new();
    for n in 1..=3 {
        w.join(n);
    }
    let out = w.km.leave(w.now, MemberId(2)).unwrap();
    w.deliver(out);
    assert_eq!(w.disconnected, vec![2]);
    assert_eq!(w.send_epochs(), vec![4, 4]);
    let view = w.members[&1].0.keys().view.unwrap();
    assert!(!view.contains(MemberId(2)));
    assert!(view.contains(MemberId(3)));
}

/// What a prepare or commit in `out` to `to` carries: (base epoch, member
/// entries, removed ids, bytes on the wire).
fn update_to(out: &[Output], to: u32, commit: bool) -> (Option<u32>, usize, usize, usize) {
    out.iter()
        .find_map(|o| match o {
            Output::Send { to: t, msg } if t.0 == to => {
                let view = match msg {
                    ServerMsg::Prepare { view, .. } if !commit => view,
                    ServerMsg::Commit { view, .. } if commit => view,
                    _ => return None,
                };
                Some((
                    view.base,
                    view.members.len(),
                    view.removed.len(),
                    encode(msg).len(),
                ))
            }
            _ => None,
        })
        .unwrap_or_else(|| panic!("no message to {to}"))
}

/// Every member's committed view is the key manager's, digest for digest.
fn assert_one_view(w: &World) {
    let want = w.km.view().digest();
    for (n, (k, _)) in &w.members {
        let v = k.keys().view.unwrap();
        assert_eq!(v.digest(), want, "member {n} holds another view");
        assert_eq!(v, w.km.view(), "member {n}");
    }
}

#[test]
fn a_rekey_sends_a_delta_and_an_epoch_only_commit_whatever_the_size() {
    let mut w = World::new();
    for n in 1..=20 {
        w.join(n);
    }
    assert_one_view(&w);
    w.advance(GRACE);
    let out = w.km.force_rekey(w.now).unwrap();
    let (base, members, removed, prepare_bytes) = update_to(&out, 1, false);
    assert_eq!(
        (base, members, removed),
        (Some(20), 0, 0),
        "an unchanged membership is an empty delta"
    );
    // The wrapped key dominates; no member entries at all.
    assert!(prepare_bytes < 512, "prepare of {prepare_bytes} bytes");
    // Deliver by hand to see the commits.
    let mut commits = Vec::new();
    for o in out {
        let Output::Send { to, msg } = o else {
            continue;
        };
        let r = w
            .members
            .get_mut(&to.0)
            .unwrap()
            .0
            .handle(w.now, msg)
            .unwrap();
        let Some(ClientMsg::Ack { epoch }) = r.reply else {
            panic!("member {} answered {:?}", to.0, r.reply);
        };
        commits.extend(w.km.ack(w.now, to, Epoch(epoch)).unwrap());
    }
    let (base, members, removed, commit_bytes) = update_to(&commits, 7, true);
    assert_eq!((base, members, removed), (Some(21), 0, 0));
    assert!(commit_bytes < 200, "commit of {commit_bytes} bytes");
    w.deliver(commits);
    assert_eq!(w.send_epochs(), vec![21; 20]);
    assert_eq!(w.need_views, 0);
    assert_one_view(&w);
}

#[test]
fn a_joiner_gets_the_whole_view_and_the_others_only_the_joiner() {
    let mut w = World::new();
    for n in 1..=5 {
        w.join(n);
    }
    w.prepared.clear();
    w.join(6);
    let mut p = w.prepared.clone();
    p.sort();
    assert_eq!(
        p,
        vec![
            (1, Some(5), 1),
            (2, Some(5), 1),
            (3, Some(5), 1),
            (4, Some(5), 1),
            (5, Some(5), 1),
            (6, None, 6)
        ],
        "the joiner's whole view, the others' one new entry"
    );
    assert_eq!(w.send_epochs(), vec![6; 6]);
    assert_eq!(w.need_views, 0);
    assert_one_view(&w);
    let out = w.km.leave(w.now, MemberId(3)).unwrap();
    let (base, members, removed, _) = update_to(&out, 1, false);
    assert_eq!(
        (base, members, removed),
        (Some(6), 0, 1),
        "a leave is one removal"
    );
    w.deliver(out);
    assert_one_view(&w);
    assert_eq!(w.km.view().members.len(), 5);
}

#[test]
fn a_member_that_missed_a_commit_asks_for_the_whole_view_and_catches_up() {
    let mut w = World::new();
    for n in 1..=3 {
        w.join(n);
    }
    w.advance(GRACE);
    // Member 2 gets the prepare of epoch 4 and acks, but its commit is lost.
    let out = w.km.force_rekey(w.now).unwrap();
    let mut commits = Vec::new();
    for o in out {
        let Output::Send { to, msg } = o else {
            continue;
        };
        w.members
            .get_mut(&to.0)
            .unwrap()
            .0
            .handle(w.now, msg)
            .unwrap();
        commits.extend(w.km.ack(w.now, to, Epoch(4)).unwrap());
    }
    w.deaf = vec![2];
    w.deliver(commits);
    w.deaf.clear();
    assert_eq!(w.send_epochs(), vec![4, 3, 4]);
    // Epoch 5's prepare is a change of view 4, which member 2 lacks.
    let out = w.km.force_rekey(w.now).unwrap();
    assert_eq!(update_to(&out, 2, false).0, Some(4));
    w.deliver(out);
    assert_eq!(w.need_views, 1, "member 2 asked once");
    assert_eq!(w.send_epochs(), vec![5, 5, 5]);
    assert_one_view(&w);
}

#[test]
fn a_changed_delta_is_never_installed_the_member_asks_for_the_whole_view() {
    let mut w = World::new();
    for n in 1..=3 {
        w.join(n);
    }
    w.advance(GRACE);
    // Whoever changes the delta (a faulty replica; an on-path attacker
    // cannot, under TLS) without the matching digest: here member 3's
    // prepare loses its removal of member 2 ...
    w.tamper = Some(|to, msg| match msg {
        ServerMsg::Prepare {
            view,
            cipher,
            wrapped_key,
        } if to == 3 && view.base.is_some() => {
            let mut v = (*view).clone();
            v.removed.clear();
            ServerMsg::Prepare {
                view: std::sync::Arc::new(v),
                cipher,
                wrapped_key,
            }
        }
        other => other,
    });
    let out = w.km.leave(w.now, MemberId(2)).unwrap();
    w.deliver(out);
    w.tamper = None;
    // ... so it rebuilt a view the digest refutes, asked, and got the whole
    // one: it holds what member 1 holds, never the view with member 2.
    assert_eq!(w.need_views, 1);
    assert_eq!(w.send_epochs(), vec![4, 4]);
    assert_one_view(&w);
}

#[test]
fn a_whole_view_that_fails_its_own_digest_is_refused_not_asked_for_again() {
    let mut w = World::new();
    for n in 1..=2 {
        w.join(n);
    }
    w.advance(GRACE);
    w.tamper = Some(|_, msg| match msg {
        ServerMsg::Prepare {
            view,
            cipher,
            wrapped_key,
        } => {
            let mut v = (*view).clone();
            v.digest = "00".repeat(32);
            ServerMsg::Prepare {
                view: std::sync::Arc::new(v),
                cipher,
                wrapped_key,
            }
        }
        other => other,
    });
    let out = w.km.force_rekey(w.now).unwrap();
    // Member 1 asks once for the whole view (its delta failed) ...
    let mut next = Vec::new();
    for o in out {
        let Output::Send { to, msg } = o else {
            continue;
        };
        let msg = (w.tamper.unwrap())(to.0, msg);
        let r = w
            .members
            .get_mut(&to.0)
            .unwrap()
            .0
            .handle(w.now, msg)
            .unwrap();
        assert_eq!(r.reply, Some(ClientMsg::NeedView { epoch: 3 }));
        next.extend(w.km.need_view(w.now, to, Epoch(3)).unwrap());
    }
    // ... gets it, fails it too, and errs instead of looping.
    for o in next {
        let Output::Send { to, msg } = o else {
            continue;
        };
        assert_eq!(
            update_to(
                &[Output::Send {
                    to,
                    msg: msg.clone()
                }],
                to.0,
                false
            )
            .0,
            None
        );
        let msg = (w.tamper.unwrap())(to.0, msg);
        let err = w
            .members
            .get_mut(&to.0)
            .unwrap()
            .0
            .handle(w.now, msg)
            .unwrap_err();
        assert!(err.to_string().contains("digest"), "{err}");
    }
    // A second request for the same epoch gets nothing.
    assert!(
        w.km.need_view(w.now, MemberId(1), Epoch(3))
            .unwrap()
            .is_empty()
    );
    assert_eq!(w.send_epochs(), vec![2, 2], "nothing installed");
}

#[test]
fn a_silent_member_is_named_in_the_commit_not_resent_as_a_view() {
    let mut w = World::new();
    for n in 1..=4 {
        w.join(n);
    }
    w.advance(GRACE);
    w.deaf = vec![4];
    let out = w.km.force_rekey(w.now).unwrap();
    w.deliver(out);
    // Member 4 never acks: at the deadline the others commit without it.
    let t = w.now + Duration::from_secs(5);
    w.now = t;
    let out = w.km.tick(w.now).unwrap();
    let (base, members, removed, _) = update_to(&out, 1, true);
    assert_eq!((base, members, removed), (Some(5), 0, 1));
    w.members.remove(&4);
    w.deaf.clear();
    w.deliver(out);
    assert_eq!(w.need_views, 0);
    assert_eq!(w.km.view().members.len(), 3);
    assert_one_view(&w);
}
