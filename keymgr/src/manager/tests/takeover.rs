//! A replica taking over: it rekeys once the members it reloaded are back
//! (their joins were held while it stood by), or at the wait's end without
//! the absent ones.

use super::*;

const WAIT: Duration = Duration::from_secs(5);

/// The state three committed members left in the store, reloaded by a
/// successor at `t1` that then takes over.
fn successor(t0: Instant, t1: Instant) -> Km {
    let old = three(t0);
    let mut km = KeyManager::new(settings(), old.store, Tagged, t1).unwrap();
    km.take_over(t1, WAIT);
    km
}

#[test]
fn takeover_rekeys_once_every_member_has_rejoined() {
    let t0 = Instant::now();
    let t1 = t0 + Duration::from_secs(60);
    let mut km = successor(t0, t1);
    assert_eq!(km.poll_timeout(), Some(t1 + WAIT));
    for n in 1..=2 {
        let (_, out) = join(&mut km, t1, n);
        assert!(prepares(&out).is_empty(), "h{n} back, h3 not yet: no rekey");
    }
    let (_, out) = join(&mut km, t1, 3);
    let p = prepares(&out);
    assert_eq!(p.len(), 3, "all back: the takeover rekey");
    assert!(p.iter().all(|p| p.1 == 4 && p.3 == [1, 2, 3]));
    let out = ack_all(&mut km, t1);
    assert_eq!(commits(&out).len(), 3);
    assert_eq!(km.view().epoch, Epoch(4));
}

#[test]
fn takeover_gives_up_waiting_and_the_absent_member_drops_out() {
    let t0 = Instant::now();
    let t1 = t0 + Duration::from_secs(60);
    let mut km = successor(t0, t1);
    join(&mut km, t1, 1);
    join(&mut km, t1, 2);
    assert!(
        km.tick(t1 + WAIT - Duration::from_millis(1))
            .unwrap()
            .is_empty()
    );
    let out = seen(km.tick(t1 + WAIT).unwrap());
    let p = prepares(&out);
    // h3 is still leased (restart grace) so it is in the prepared view, but
    // it has no connection: it never acknowledges.
    assert_eq!(p.iter().map(|p| p.1).collect::<Vec<_>>(), [4, 4, 4]);
    let mut out = Vec::new();
    for n in 1..=2 {
        out.extend(seen(km.ack(t1 + WAIT, MemberId(n), Epoch(4)).unwrap()));
    }
    assert!(
        commits(&out).is_empty(),
        "h3 awaited until the ack deadline"
    );
    let out = seen(km.tick(t1 + WAIT + settings().ack_timeout).unwrap());
    assert_eq!(disconnects(&out), [(MemberId(3), Departure::Silent)]);
    assert_eq!(
        commits(&out).iter().map(|c| c.2.clone()).next(),
        Some(vec![1, 2])
    );
    // h3 could have unwrapped epoch 4's key: it is replaced at once.
    assert_eq!(
        prepares(&out).iter().map(|p| p.1).collect::<Vec<_>>(),
        [5, 5]
    );
}
