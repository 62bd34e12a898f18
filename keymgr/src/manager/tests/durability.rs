//! What must survive: no key without a durable epoch, a restart that
//! continues above every epoch, and a 1000-member rekey done right.

use std::time::{Duration, Instant};

use super::*;

/// A store whose epoch counter fails: no key may leave without a durable epoch.
struct FailingEpoch(MemStore);

impl Store for FailingEpoch {
    fn load(&self) -> Result<crate::store::Persisted, StoreError> {
        self.0.load()
    }
    fn advance_epoch(&mut self, _: Epoch) -> Result<Epoch, StoreError> {
        Err(StoreError::Io {
            path: "test".into(),
            detail: "disk full".into(),
        })
    }
    fn save_members(&mut self, m: &[StoredMember]) -> Result<(), StoreError> {
        self.0.save_members(m)
    }
    fn revoke(&mut self, name: &str) -> Result<bool, StoreError> {
        self.0.revoke(name)
    }
    fn revoked(&self) -> Result<std::collections::BTreeSet<String>, StoreError> {
        self.0.revoked()
    }
}

#[test]
fn no_key_leaves_when_the_epoch_cannot_be_stored() {
    let t0 = Instant::now();
    let mut km = KeyManager::new(settings(), FailingEpoch(MemStore::new()), Tagged, t0).unwrap();
    let err = km.member_joined(t0, who(1), ep(1), None).unwrap_err();
    assert!(
        matches!(err, JoinError::Store(StoreError::Io { .. })),
        "{err}"
    );
    assert!(km.pending_epoch().is_none());
}

#[test]
fn restart_continues_epochs_and_keeps_members() {
    let dir = std::env::temp_dir().join(format!("von-km-restart-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("state.redb");
    let t0 = Instant::now();
    {
        let store = crate::store::RedbStore::open(&path).unwrap();
        let mut km = KeyManager::new(settings(), store, Tagged, t0).unwrap();
        for n in 1..=3 {
            join_any(&mut km, t0, n);
            ack_all_any(&mut km, t0);
        }
        // Killed mid-rekey: epoch 4 was reserved and prepared, never committed.
        seen(km.force_rekey(t0).unwrap());
        assert_eq!(km.pending_epoch(), Some(Epoch(4)));
    }
    let store = crate::store::RedbStore::open(&path).unwrap();
    let t1 = t0 + Duration::from_secs(100);
    let mut km = KeyManager::new(settings(), store, Tagged, t1).unwrap();
    assert_eq!(km.view().members.len(), 3);
    // Nobody reconnected yet: the restart grace, not the 30 s lease, applies.
    assert_eq!(
        km.poll_timeout(),
        Some(t1 + RESTART_GRACE.max(Duration::from_secs(30)))
    );
    // Members reconnect holding epoch 3: no rekey, no key (none is known).
    for n in 1..=3 {
        let out = join_any(&mut km, t1, n);
        assert_eq!(out.len(), 1, "{out:?}");
    }
    // The next change rekeys everyone, above every epoch handed out.
    let out = join_any(&mut km, t1, 4);
    let p = prepares(&out);
    assert_eq!(p.len(), 4);
    assert!(p.iter().all(|p| p.1 == 5 && p.3 == [1, 2, 3, 4]));
    std::fs::remove_dir_all(dir).unwrap();
}

fn join_any<S: Store>(km: &mut KeyManager<S, Tagged>, now: Instant, n: u32) -> Vec<Output> {
    seen(
        km.member_joined(now, who(n), ep(n), Some(Epoch(3)))
            .unwrap()
            .1,
    )
}

fn ack_all_any<S: Store>(km: &mut KeyManager<S, Tagged>, now: Instant) {
    let p = km.pending.as_ref().unwrap();
    let (epoch, ids): (Epoch, Vec<MemberId>) =
        (p.view.epoch, p.view.members.iter().map(|m| m.id).collect());
    for id in ids {
        seen(km.ack(now, id, epoch).unwrap());
    }
}

#[test]
fn thousand_members_rekeyed() {
    let t0 = Instant::now();
    let mut km = km(t0);
    // The first join starts epoch 1; the other 999 fold into epoch 2.
    for n in 1..=1000 {
        join(&mut km, t0, n);
    }
    ack_all(&mut km, t0);
    let out = ack_all(&mut km, t0);
    assert_eq!(km.view().epoch, Epoch(2));
    assert_eq!(commits(&out).len(), 1000);
    // One forced rekey of all 1000: a prepare each, each wrapped for its own
    // recipient, one key, and the commit only after the last ack.
    let out = seen(km.force_rekey(t0).unwrap());
    let p = prepares(&out);
    assert_eq!(p.len(), 1000);
    let key = p[0].2[36..].to_vec();
    let mut recipients = std::collections::BTreeSet::new();
    for (to, epoch, wrapped, members) in &p {
        assert_eq!(*epoch, 3);
        assert_eq!(members.len(), 1000);
        assert_eq!(&wrapped[..4], &to.0.to_be_bytes());
        assert_eq!(wrapped[36..], key[..]);
        recipients.insert(to.0);
    }
    assert_eq!(recipients.len(), 1000);
    for n in 1..1000 {
        assert!(seen(km.ack(t0, MemberId(n), Epoch(3)).unwrap()).is_empty());
    }
    let out = seen(km.ack(t0, MemberId(1000), Epoch(3)).unwrap());
    assert_eq!(commits(&out).len(), 1000);
    assert_eq!(km.view().epoch, Epoch(3));
}

#[test]
fn reloaded_members_get_the_restart_grace_not_a_short_lease() {
    let dir = std::env::temp_dir().join(format!("von-km-grace-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("state.redb");
    let short = Settings {
        lease: Duration::from_secs(3),
        ..settings()
    };
    let t0 = Instant::now();
    {
        let store = crate::store::RedbStore::open(&path).unwrap();
        let mut km = KeyManager::new(short.clone(), store, Tagged, t0).unwrap();
        join_any(&mut km, t0, 1);
        ack_all_any(&mut km, t0);
    }
    let t1 = t0 + Duration::from_secs(100);
    let store = crate::store::RedbStore::open(&path).unwrap();
    let mut km = KeyManager::new(short, store, Tagged, t1).unwrap();
    assert_eq!(km.poll_timeout(), Some(t1 + RESTART_GRACE));
    // Past the 3 s lease, inside the grace: still a member.
    assert!(seen(km.tick(t1 + Duration::from_secs(4)).unwrap()).is_empty());
    assert_eq!(km.view().members.len(), 1);
    std::fs::remove_dir_all(dir).unwrap();
}
