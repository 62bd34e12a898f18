//! The two session outputs the agent relies on, over real QUIC on loopback:
//! the lease expiry it publishes (`Session::on_lease`, shown by `von status`)
//! and the "sequence limit near" report (the agent's `NearLimit` feeds it),
//! which must rekey for the current epoch and do nothing for an old one.

mod common;

use std::time::{Duration, SystemTime};

use common::{Pki, last, start_member, wait_for};
use von_crypto::Epoch;
use von_crypto::cert::Role;

const VON: &str = "grid";
/// `lease` in the test key manager's `[timers]` (common/mod.rs).
const LEASE: Duration = Duration::from_secs(3);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_is_published_and_renewed_and_near_limit_rekeys_once() {
    let pki = Pki::new("lease", VON);
    pki.issue(Role::Keymgr, "km", 1000, -1, 30);
    pki.issue(Role::Member, "h1", 1, -1, 30);
    let (addr, stop_km, km_task) = pki.start_keymgr(VON).await;
    let h1 = start_member(&pki, VON, "h1", 1, addr);
    wait_for(20, "h1's first epoch", || last(&h1.installs).is_some()).await;
    let lease = || *h1.lease.lock().unwrap();

    // Published at the join: about one lease from now.
    wait_for(5, "a lease", || lease().is_some()).await;
    let first = lease().unwrap();
    let left = first.duration_since(SystemTime::now()).unwrap_or_default();
    assert!(
        left > LEASE / 2 && left <= LEASE,
        "lease expires in {left:?}, expected up to {LEASE:?}"
    );
    // Renewals (every 1 s) move it forward.
    wait_for(5, "a renewed lease", || lease() > Some(first)).await;

    // The data plane reports the current epoch: one rekey.
    let epoch = last(&h1.installs).unwrap();
    h1.near.send(Epoch(epoch)).unwrap();
    wait_for(10, "rekey after near limit", || {
        last(&h1.installs) == Some(epoch + 1)
    })
    .await;
    // A report for an epoch no longer current changes nothing.
    h1.near.send(Epoch(epoch)).unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(last(&h1.installs), Some(epoch + 1));

    h1.stop.send(()).unwrap();
    h1.task.await.unwrap();
    stop_km.send(()).unwrap();
    km_task.await.unwrap();
}
