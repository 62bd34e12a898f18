//! The key manager at 10, 100 and 1000 members over real QUIC and mutual
//! TLS: a join storm, then forced rekeys, each timed until every member
//! sends under the new epoch (prepare, wrapped key, ack, commit applied).
//!
//! ```text
//!   this test process                       `von keymgr` (own process)
//!   n member sessions (client::Session,  ── QUIC + mTLS ──>  127.0.0.1:PORT
//!   one UDP socket each, certificates                         redb state_dir
//!   from von's CA code)                  ── control.sock ──>  rekey, status
//! ```
//!
//! The key manager runs as the real `von` binary (`VON_BIN`, else a cargo
//! build), so its RSS and CPU time are its own. The members are the real
//! member code path (`Session` with `MemberKeys`), light enough to run
//! 1000 in one process.
//!
//! `join_storm_and_rekeys_at_200_members` runs in the normal suite (the
//! 1000-member bound at a fifth of the members). The full run (figures are
//! printed; the < 1 s rekey is asserted at 1000 members in release builds
//! only):
//! `VON_BIN=target/release/von cargo test -p von-keymgr --release --test quic_scale -- --ignored --nocapture`
//! `VON_SCALE_SIZES=10,100` picks other sizes.

// The shared PKI helpers; this test starts its members its own way.
#[allow(dead_code)]
mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{ON_ID, Pki};
use tokio::sync::{Notify, mpsc};
use von_crypto::OnId;
use von_crypto::cert::Role;
use von_keymgr::client::{Params as ClientParams, Session, Standing};
use von_keymgr::files;
use von_keymgr::member::MemberKeys;
use von_keymgr::server::{ControlReply, ControlRequest, control_socket_path, request};

const VON: &str = "grid";
/// Forced rekeys timed per size.
const REKEYS: usize = 5;
/// The issue's bound for one rekey at 1000 members.
const REKEY_BOUND: Duration = Duration::from_secs(1);

/// Per member: the epoch it sends under and when it switched to it.
#[derive(Default)]
struct Progress {
    sends: Mutex<Vec<(u32, Instant)>>,
    refused: Mutex<Vec<String>>,
    changed: Notify,
}

impl Progress {
    fn new(n: usize) -> Arc<Self> {
        let p = Self::default();
        *p.sends.lock().unwrap() = vec![(0, Instant::now()); n];
        Arc::new(p)
    }

    /// When every member sends under `epoch` or later: the latest switch.
    fn all_at(&self, epoch: u32) -> Option<Instant> {
        let sends = self.sends.lock().unwrap();
        sends
            .iter()
            .all(|(e, _)| *e >= epoch)
            .then(|| sends.iter().map(|(_, t)| *t).max())
            .flatten()
    }

    fn lowest(&self) -> u32 {
        let sends = self.sends.lock().unwrap();
        sends.iter().map(|(e, _)| *e).min().unwrap_or(0)
    }

    async fn wait_all_at(&self, epoch: u32, within: Duration, what: &str) -> Instant {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let changed = self.changed.notified();
            if let Some(r) = self.refused.lock().unwrap().first() {
                panic!("{what}: a member was refused: {r}");
            }
            if let Some(t) = self.all_at(epoch) {
                return t;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                panic!(
                    "{what}: not every member at epoch {epoch} within {within:?} (lowest {})",
                    self.lowest()
                );
            }
        }
    }
}

/// The key manager process; killed and reaped on drop, pass or fail.
struct Keymgr {
    child: Child,
}

impl Drop for Keymgr {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Keymgr {
    fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// `VmRSS` and `VmHWM` of `pid`, in KiB.
fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// User + system CPU time of `pid`.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the parenthesised command name; utime and stime are 14, 15.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    let ticks = f[11] + f[12];
    // USER_HZ is 100 on Linux.
    Duration::from_millis(ticks * 10)
}

fn free_udp_port() -> u16 {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    s.local_addr().unwrap().port()
}

/// Member `i`'s endpoints, per underlay name.
fn endpoints(i: u32) -> von_config::UnderlayEndpoints {
    von_config::UnderlayEndpoints::from_names([("a", endpoint_a(i)), ("b", endpoint_b(i))]).unwrap()
}

/// The member's VON address in 100.64.0.0/16 (never .0 or .255).
fn member_addr(i: u32) -> String {
    format!("100.64.{}.{}/16", i / 250, i % 250 + 1)
}

/// The JSON size of the view the key manager sends at `n` members: the same
/// members, names, addresses and endpoints as [`start_member`] gives it.
fn view_bytes(n: u32) -> usize {
    let view = von_keymgr::view::WireView {
        on_id: ON_ID,
        epoch: n,
        members: (1..=n)
            .map(|i| von_keymgr::view::WireMember {
                id: i,
                name: format!("m{i}"),
                address: member_addr(i).split('/').next().unwrap().parse().unwrap(),
                underlay: endpoints(i),
            })
            .collect(),
    };
    serde_json::to_vec(&view).unwrap().len()
}

fn endpoint_a(i: u32) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::from(0xc000_0000 + i), 4789))
}

fn endpoint_b(i: u32) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::from(0xc633_0000 + i), 4789))
}

fn start_keymgr(pki: &Pki, port: u16) -> Keymgr {
    use std::os::unix::fs::PermissionsExt;
    // `von keymgr` refuses private keys others can read.
    for key in ["km.key", "km.noise.key"] {
        std::fs::set_permissions(pki.path(key), std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let config = pki.path("keymgr.toml");
    // Long leases: renewals of 1000 members must not dominate the run.
    let text = format!(
        r#"
von = "{VON}"
on_id = {ON_ID}
listen = "127.0.0.1:{port}"
state_dir = "{state}"
ca = "{dir}/ca.crt"
cert = "{dir}/km.crt"
key = "{dir}/km.key"
noise_key = "{dir}/km.noise.key"
[timers]
lease = "60s"
renew = "20s"
prepare_timeout = "20s"
grace = "1s"
"#,
        state = pki.path("state").display(),
        dir = pki.dir.display(),
    );
    std::fs::write(&config, text).unwrap();
    let log = std::fs::File::create(pki.path("keymgr.log")).unwrap();
    let child = Command::new(von_lab::vonbin::von_bin().unwrap())
        .arg("keymgr")
        .arg("--config")
        .arg(&config)
        .env(
            "RUST_LOG",
            std::env::var("VON_SCALE_LOG").unwrap_or("warn".into()),
        )
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    Keymgr { child }
}

async fn status(pki: &Pki) -> Result<ControlReply, String> {
    request(
        &control_socket_path(&pki.path("state")),
        &ControlRequest::Status,
    )
    .await
    .map_err(|e| e.to_string())
}

fn start_member(
    pki: &Pki,
    i: u32,
    keymgr: SocketAddr,
    progress: &Arc<Progress>,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<MemberKeys>,
) {
    let name = format!("m{i}");
    let loaded = files::load(
        &VON.parse().unwrap(),
        Role::Member,
        &pki.path("ca.crt"),
        &pki.path(&format!("{name}.crt")),
        &pki.path(&format!("{name}.key")),
        &pki.path(&format!("{name}.noise.key")),
    )
    .unwrap();
    let params = ClientParams {
        keymgr: vec![keymgr],
        tls: loaded.tls,
        noise: loaded.noise,
        on_id: OnId(ON_ID),
        underlay: endpoints(i),
        backoff_max: Duration::from_secs(1),
    };
    let slot = i as usize - 1;
    let p = progress.clone();
    let install = Box::new(move |keys: &MemberKeys| {
        if let Some((epoch, _)) = keys.keys().send {
            let mut sends = p.sends.lock().unwrap();
            if sends[slot].0 != epoch.0 {
                sends[slot] = (epoch.0, Instant::now());
                drop(sends);
                p.changed.notify_waiters();
            }
        }
    });
    let p = progress.clone();
    let (_near, near_rx) = mpsc::unbounded_channel();
    let session = Session::new(params, MemberKeys::new(), install, near_rx)
        .unwrap()
        .on_standing(Box::new(move |s| {
            if let Standing::Refused { reason, .. } | Standing::ViewRefused { reason, .. } = s {
                p.refused.lock().unwrap().push(format!("m{i}: {reason}"));
                p.changed.notify_waiters();
            }
        }));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(session.run(async move {
        let _ = stopped.await;
        std::mem::drop(_near);
    }));
    (stop, task)
}

struct Figures {
    n: u32,
    issue: Duration,
    storm: Duration,
    storm_epochs: u32,
    rekeys: Vec<Duration>,
    km_cpu_storm: Duration,
    km_cpu_rekeys: Duration,
    km_rss_kib: u64,
    km_hwm_kib: u64,
}

async fn run(n: u32) -> Figures {
    let pki = Pki::new(&format!("scale{n}"), VON);
    let started = Instant::now();
    pki.issue_at(Role::Keymgr, "km", 4_000_000, "100.64.255.1/16", -1, 30);
    for i in 1..=n {
        pki.issue_at(Role::Member, &format!("m{i}"), i, &member_addr(i), -1, 30);
    }
    let issue = started.elapsed();
    let port = free_udp_port();
    let km = start_keymgr(&pki, port);
    let mut up = false;
    for _ in 0..200 {
        if status(&pki).await.is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = || std::fs::read_to_string(pki.path("keymgr.log")).unwrap_or_default();
    assert!(
        up,
        "key manager did not answer on its control socket:\n{}",
        log()
    );
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let cpu0 = cpu_time(km.pid());

    // The storm: every member connects at once.
    let progress = Progress::new(n as usize);
    let t0 = Instant::now();
    let members: Vec<_> = (1..=n)
        .map(|i| start_member(&pki, i, addr, &progress))
        .collect();
    let epoch = loop {
        let lowest = progress.lowest();
        if lowest > 0 {
            let s = status(&pki).await.unwrap();
            if s.members.len() == n as usize && s.pending.is_none() && lowest == s.epoch {
                break s.epoch;
            }
        }
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "join storm of {n} not done in 120 s: lowest epoch {lowest}\n{}",
            log()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let storm = progress.all_at(epoch).unwrap() - t0;
    let cpu1 = cpu_time(km.pid());

    let ctl = control_socket_path(&pki.path("state"));
    let mut rekeys = Vec::new();
    for k in 1..=REKEYS as u32 {
        let t = Instant::now();
        request(&ctl, &ControlRequest::Rekey).await.unwrap();
        let done = progress
            .wait_all_at(epoch + k, Duration::from_secs(60), "rekey")
            .await;
        rekeys.push(done - t);
    }
    let cpu2 = cpu_time(km.pid());
    let (km_rss_kib, km_hwm_kib) = rss_kib(km.pid());
    let s = status(&pki).await.unwrap();
    assert_eq!(s.members.len(), n as usize);
    assert_eq!(s.epoch, epoch + REKEYS as u32);
    assert!(s.refused.is_empty(), "refused: {:?}", s.refused);

    drop(km);
    for (stop, task) in members {
        let _ = stop.send(());
        task.abort();
    }
    Figures {
        n,
        issue,
        storm,
        storm_epochs: epoch,
        rekeys,
        km_cpu_storm: cpu1 - cpu0,
        km_cpu_rekeys: cpu2 - cpu1,
        km_rss_kib,
        km_hwm_kib,
    }
}

fn report(f: &Figures) -> Duration {
    let mut sorted = f.rekeys.clone();
    sorted.sort();
    println!(
        "n={:5}  view {:7} B  certs {:7.1} ms  join storm {:8.1} ms ({} epochs)  rekey min {:6.1} median {:6.1} max {:6.1} ms  keymgr cpu storm {:6.0} ms rekeys {:6.0} ms ({REKEYS})  keymgr rss {} KiB (peak {} KiB)",
        f.n,
        view_bytes(f.n),
        ms(f.issue),
        ms(f.storm),
        f.storm_epochs,
        ms(sorted[0]),
        ms(sorted[sorted.len() / 2]),
        ms(sorted[sorted.len() - 1]),
        ms(f.km_cpu_storm),
        ms(f.km_cpu_rekeys),
        f.km_rss_kib,
        f.km_hwm_kib,
    );
    sorted[sorted.len() / 2]
}

/// The normal suite's form: 200 members, whose rekey must meet the bound
/// the issue sets for 1000 (five times the members), so a loaded 2-core
/// machine has a margin of ~5 while a return to whole views in every
/// message (O(n²) bytes: ~1.3 s at 200 under protocol 3, docs/scale.md)
/// still fails it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_storm_and_rekeys_at_200_members() {
    let f = run(200).await;
    let median = report(&f);
    if cfg!(not(debug_assertions)) {
        assert!(
            median < REKEY_BOUND,
            "median rekey at 200 members took {median:?}, over {REKEY_BOUND:?} (the bound at 1000)"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "scale run, minutes: cargo test -p von-keymgr --release --test quic_scale -- --ignored --nocapture"]
async fn join_storm_and_rekeys_at_10_100_1000_members() {
    let sizes: Vec<u32> = std::env::var("VON_SCALE_SIZES")
        .unwrap_or("10,100,1000".into())
        .split(',')
        .map(|s| {
            s.trim()
                .parse()
                .expect("VON_SCALE_SIZES: comma-separated numbers")
        })
        .collect();
    let mut all = Vec::new();
    for n in sizes {
        let f = run(n).await;
        all.push((n, report(&f)));
    }
    if cfg!(not(debug_assertions)) {
        for (n, median) in all {
            if n >= 1000 {
                assert!(
                    median < REKEY_BOUND,
                    "median rekey at {n} members took {median:?}, over {REKEY_BOUND:?}"
                );
            }
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
