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
