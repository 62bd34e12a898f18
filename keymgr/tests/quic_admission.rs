//! Issue 11, item 4, over real QUIC and mutual TLS on loopback: a member whose
//! certificate names an address outside the VON prefix, or another member's
//! address, is refused with the reason and a code it can act on, and the
//! members keep their epoch; a revoked member learns it is revoked — from the
//! key manager's message while connected, from the TLS `certificate_revoked`
//! alert at every later handshake — and backs off.

mod common;

use std::time::{Duration, Instant};

use common::{Pki, last, start_member, wait_for};
use von_crypto::cert::Role;
use von_keymgr::client::Standing;
use von_keymgr::proto::Refusal;
use von_keymgr::server::{ControlRequest, control_socket_path, request};

const VON: &str = "grid";

fn refusal(s: &Standing) -> Option<(Refusal, &str)> {
    match s {
        Standing::Refused { code, reason } => Some((*code, reason.as_str())),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_members_are_refused_with_the_reason_and_a_revoked_one_is_told() {
    let pki = Pki::new("admission", VON);
    pki.issue(Role::Keymgr, "km", 1000, -1, 30); // 100.64.0.1/24: the VON prefix
    pki.issue(Role::Member, "h1", 1, -1, 30); // 100.64.0.2
    pki.issue(Role::Member, "h2", 2, -1, 30); // 100.64.0.3
    pki.issue_at(Role::Member, "far", 7, "100.64.1.7/24", -1, 30);
    pki.issue_at(Role::Member, "twin", 8, "100.64.0.2/24", -1, 30); // h1's address
    let (addr, stop_km, km_task) = pki.start_keymgr(VON).await;
    let ctl = control_socket_path(&pki.path("state"));
    let h1 = start_member(&pki, VON, "h1", 1, addr);
    let h2 = start_member(&pki, VON, "h2", 2, addr);
    wait_for(20, "h1 and h2 on one epoch", || {
        last(&h1.installs).is_some() && last(&h1.installs) == last(&h2.installs)
    })
    .await;
    let epoch = request(&ctl, &ControlRequest::Status).await.unwrap().epoch;

    let far = start_member(&pki, VON, "far", 7, addr);
    let twin = start_member(&pki, VON, "twin", 8, addr);
    for (m, code, says) in [
        (
            &far,
            Refusal::OutsidePrefix,
            "not a host of the VON prefix 100.64.0.0/24",
        ),
        (&twin, Refusal::AddressTaken, "which \"h1\" already holds"),
    ] {
        wait_for(10, "the refusal", || {
            m.standings
                .lock()
                .unwrap()
                .iter()
                .any(|s| refusal(s).is_some())
        })
        .await;
        let got = m.standings.lock().unwrap();
        let (c, reason) = got.iter().find_map(refusal).unwrap();
        assert_eq!(c, code, "{reason}");
        assert!(reason.contains(says), "{reason}");
        assert!(
            m.installs.lock().unwrap().is_empty(),
            "no key for a refused member"
        );
    }
    let status = request(&ctl, &ControlRequest::Status).await.unwrap();
    assert_eq!(status.epoch, epoch, "a refused join commits nothing");
    assert_eq!(status.members, ["h1", "h2"]);
    let names: Vec<&str> = status.refused.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["far", "twin"], "{:?}", status.refused);
    assert_eq!(last(&h1.installs), Some(epoch));

    // Revoke h2 while it is connected: it is told so by message, then every
    // reconnect meets the certificate_revoked alert.
    let t0 = Instant::now();
    request(&ctl, &ControlRequest::Revoke { name: "h2".into() })
        .await
        .unwrap();
    wait_for(10, "h1 rekeyed without h2", || {
        last(&h1.installs) > Some(epoch)
    })
    .await;
    wait_for(10, "h2 told it is revoked by the handshake alert", || {
        h2.standings.lock().unwrap().iter().any(|s| {
            refusal(s)
                .is_some_and(|(c, r)| c == Refusal::Revoked && r.contains("certificate_revoked"))
        })
    })
    .await;
    let first_alert = t0.elapsed();
    let revoked: Vec<_> = h2
        .standings
        .lock()
        .unwrap()
        .iter()
        .filter(|s| s.state() == "revoked")
        .cloned()
        .collect();
    // Backoff: 5 s, then 10 s. In the 6 s after the first alert at most one
    // more handshake.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let later = h2
        .standings
        .lock()
        .unwrap()
        .iter()
        .filter(|s| s.state() == "revoked")
        .count();
    assert!(
        later - revoked.len() <= 1,
        "revoked h2 retried {} times in 6 s",
        later - revoked.len()
    );
    let status = request(&ctl, &ControlRequest::Status).await.unwrap();
    let h2_attempts = status
        .refused
        .iter()
        .find(|r| r.name == "h2")
        .map_or(0, |r| r.count);
    assert!((1..=3).contains(&h2_attempts), "{:?}", status.refused);
    eprintln!(
        "far and twin refused with codes outside_prefix/address_taken; epoch {epoch} kept; h2 revoked: \
         told at once, alert within {:.1} s, {h2_attempts} refused handshakes in the next 6 s",
        first_alert.as_secs_f64()
    );
    for m in [h1, h2, far, twin] {
        let _ = m.stop.send(());
        let _ = m.task.await;
    }
    stop_km.send(()).unwrap();
    km_task.await.unwrap();
}
