//! Issue 13, the reservation service on etcd: two `von reserve serve`
//! replicas share the registry in a real 3-member etcd cluster; one leads,
//! the other stands by. `kill -9` of the leader, again and again: the
//! router's class stays (sampled every 100 ms, never missing), the standby
//! takes over within the etcd lease and a poll, and a new reservation
//! succeeds afterwards.
//!
//! ```text
//!  h1: etcd e1 + von reserve serve (rs1) ─┐
//!  h2: etcd e2 + von reserve serve (rs2) ─┼─ 192.0.2.0/24 (underlay A)
//!  h3: etcd e3 + von router r1 ───────────┘   link `sha`: a veth end, HTB    
//! ```
//!
//! The router's lease is 9 s and the replicas' etcd lease 2 s; the run
//! lasts several router leases, so the class could only stay if each new
//! leader renewed it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use von_lab::EtcdCluster;
use von_tests::router::{self, VonProcess, von};
use von_tests::{Netns, Result, Topology, Underlay, wait_for};

/// Replicas run on h1 and h2; the router on h3.
const SERVICES: [usize; 2] = [1, 2];
const ROUTER: usize = 3;
const FAILOVERS: usize = 6;
/// The router lease the service grants (reserve.toml `lease`).
const LEASE: Duration = Duration::from_secs(9);
/// The bound the issue sets: a failover ends within the lease.
const FAILOVER_BOUND: Duration = LEASE;
/// The class the first reservation gets on `sha`.
const CLASS: &str = "class htb 1:10 ";

struct World {
    topo: Topology,
    _etcd: EtcdCluster,
    sockets: Vec<String>,
    configs: Vec<String>,
    services: Vec<Option<VonProcess>>,
}

impl World {
    fn ns(&self, n: usize) -> &Netns {
        self.topo.host(n).ns()
    }

    fn start_service(&mut self, i: usize) -> Result<()> {
        let ns = self.topo.host(SERVICES[i]).ns();
        let p = VonProcess::spawn(ns, &["reserve", "serve", "--config", &self.configs[i]])?;
        self.services[i] = Some(p);
        Ok(())
    }

    /// `von reserve ARGS --socket S...` on h1.
    fn reserve(&self, args: &[&str], sockets: &[&String]) -> Result<von_tests::process::Output> {
        let mut all: Vec<&str> = args.to_vec();
        for s in sockets {
            all.extend(["--socket", s.as_str()]);
        }
        von(self.ns(SERVICES[0]), &all)
    }

    /// The index of the replica that serves, if exactly one does.
    fn leader(&self) -> Result<Option<usize>> {
        let mut serving = Vec::new();
        for (i, s) in self.sockets.iter().enumerate() {
            if self
                .reserve(&["reserve", "list", "--json"], &[s])?
                .status
                .success()
            {
                serving.push(i);
            }
        }
        Ok(match serving.as_slice() {
            [one] => Some(*one),
            _ => None,
        })
    }
}

/// The two tests here are timing-bound on a shared machine: one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Three hosts with etcd, the router on h3 (TLS certificates from `von
/// cert issue`), both replicas started and the HTB root installed.
fn world() -> Result<(World, VonProcess)> {
    let topo = Topology::new(3)?;
    let at: Vec<_> = (1..=3)
        .map(|n| (topo.host(n).ns(), topo.host(n).underlay_addr(Underlay::A)))
        .collect();
    let etcd = EtcdCluster::in_namespaces(topo.dir().path(), &at)?;
    let endpoints: Vec<String> = etcd
        .endpoints()
        .iter()
        .map(|e| format!("\"{e}\""))
        .collect();
    let rns = topo.host(ROUTER).ns();
    // The shaped link: one end of a veth pair (the kernel may lack dummy).
    rns.ip(&["link", "add", "sha", "type", "veth", "peer", "name", "shz"])?;
    rns.ip(&["link", "set", "sha", "up"])?;
    rns.ip(&["link", "set", "shz", "up"])?;
    let control = format!("{}:7300", topo.host(ROUTER).underlay_addr(Underlay::A));
    // Router control on mutual TLS: one `reserve` certificate per replica.
    let pki = router::ControlPki::new(&topo)?;
    pki.issue("router", "r1")?;
    let router_toml = topo.dir().write(
        "router.toml",
        &format!(
            "name = \"r1\"\nlisten = \"{control}\"\n{}\n[[link]]\ndev = \"sha\"\ncapacity = \"100mbit\"\n",
            pki.toml("r1")
        ),
    )?;
    let mut sockets = Vec::new();
    let mut configs = Vec::new();
    for (i, _) in SERVICES.iter().enumerate() {
        let name = format!("rs{}", i + 1);
        let socket = topo.dir().path().join(format!("{name}.sock"));
        pki.issue("reserve", &name)?;
        let toml = topo.dir().write(
            &format!("{name}.toml"),
            &format!(
                "socket = \"{}\"\n{}lease = \"{}s\"\n\n[etcd]\nendpoints = [{}]\nreplica = \"{name}\"\nlease = \"2s\"\n\n[[router]]\nname = \"r1\"\naddr = \"{control}\"\n",
                socket.display(),
                pki.toml(&name),
                LEASE.as_secs(),
                endpoints.join(", "),
            ),
        )?;
        sockets.push(socket.to_string_lossy().into_owned());
        configs.push(toml.to_string_lossy().into_owned());
    }
    let router_proc =
        VonProcess::spawn(rns, &["router", "--config", &router_toml.to_string_lossy()])?;
    let mut w = World {
        topo,
        _etcd: etcd,
        sockets,
        configs,
        services: vec![None, None],
    };
    for i in 0..SERVICES.len() {
        w.start_service(i)?;
    }
    wait_for("the HTB root on sha", Duration::from_secs(20), || {
        let c = router::classes(w.ns(ROUTER), "sha")?;
        Ok(if c.contains("1:2") { Ok(()) } else { Err(c) })
    })?;
    Ok((w, router_proc))
}

#[test]
fn the_router_keeps_its_class_through_service_failovers() -> Result<()> {
    if !von_tests::e2e_enabled("reservation service replicas on etcd")? {
        return Ok(());
    }
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let (mut w, router_proc) = world()?;
    let mut leader = wait_for("one replica leading", Duration::from_secs(20), || {
        Ok(w.leader()?.ok_or_else(|| "none or both".to_owned()))
    })?;
    eprintln!("rs{} leads", leader + 1);
    let standby = 1 - leader;
    let out = w.reserve(&["reserve", "list"], &[&w.sockets[standby]])?;
    assert!(
        !out.status.success() && out.stderr.contains("stands by"),
        "the standby must refuse and say so: {out:?}"
    );

    let sockets = w.sockets.clone();
    let all: Vec<&String> = sockets.iter().collect();
    let out = w.reserve(
        &[
            "reserve", "add", "--name", "grid", "--on-id", "7", "--rate", "20mbit", "--path",
            "r1:sha",
        ],
        &all,
    )?;
    assert!(out.status.success(), "reserve add: {out:?}");
    wait_for("the ON's class on sha", Duration::from_secs(5), || {
        let c = router::classes(w.ns(ROUTER), "sha")?;
        Ok(if c.contains(CLASS) { Ok(()) } else { Err(c) })
    })?;

    // The class, sampled every 100 ms from here to the end.
    let stop = Arc::new(AtomicBool::new(false));
    let (samples, misses) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let sampler = {
        let (stop, samples, misses) = (stop.clone(), samples.clone(), misses.clone());
        let ns = w.ns(ROUTER).name().to_owned();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let out = std::process::Command::new("ip")
                    .args(["netns", "exec", &ns, "tc", "class", "show", "dev", "sha"])
                    .output();
                samples.fetch_add(1, Ordering::Relaxed);
                match out {
                    Ok(o) if String::from_utf8_lossy(&o.stdout).contains(CLASS) => {}
                    _ => {
                        misses.fetch_add(1, Ordering::Relaxed);
                    }
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let started = Instant::now();

    let mut times = Vec::new();
    for round in 1..=FAILOVERS {
        let standby = 1 - leader;
        let killed = w.services[leader].take().expect("the leader runs");
        let t0 = Instant::now();
        let _ = killed.stop("KILL")?;
        let standby_socket = w.sockets[standby].clone();
        wait_for("the standby to take over", FAILOVER_BOUND, || {
            let out = w.reserve(&["reserve", "list", "--json"], &[&standby_socket])?;
            Ok(if out.status.success() && out.stdout.contains("\"grid\"") {
                Ok(())
            } else {
                Err(format!("{}{}", out.stdout, out.stderr))
            })
        })?;
        let took = t0.elapsed();
        eprintln!(
            "failover {round}: kill -9 rs{} -> rs{} serves the reservation in {took:?}",
            leader + 1,
            standby + 1
        );
        times.push(took);
        // The killed replica comes back as the standby.
        w.start_service(leader)?;
        let back = w.sockets[leader].clone();
        wait_for(
            "the restarted replica to stand by",
            Duration::from_secs(10),
            || {
                let out = w.reserve(&["reserve", "list"], &[&back])?;
                Ok(if out.stderr.contains("stands by") {
                    Ok(())
                } else {
                    Err(format!("{}{}", out.stdout, out.stderr))
                })
            },
        )?;
        leader = standby;
    }

    // A new reservation through the last leader, given both sockets.
    let out = w.reserve(
        &[
            "reserve", "add", "--name", "grid2", "--on-id", "8", "--rate", "10mbit", "--path",
            "r1:sha",
        ],
        &all,
    )?;
    assert!(
        out.status.success(),
        "reserve add after the failovers: {out:?}"
    );
    wait_for(
        "the second ON's class on sha",
        Duration::from_secs(5),
        || {
            let c = router::classes(w.ns(ROUTER), "sha")?;
            Ok(if c.contains("class htb 1:11 ") {
                Ok(())
            } else {
                Err(c)
            })
        },
    )?;
    // And one ON id stays unique across the terms.
    let out = w.reserve(
        &[
            "reserve", "add", "--name", "other", "--on-id", "7", "--rate", "1mbit", "--path",
            "r1:sha",
        ],
        &all,
    )?;
    assert!(
        !out.status.success() && out.stderr.contains("already registered"),
        "ON id 7 must stay taken after the failovers: {out:?}"
    );

    // Past one more router lease, so the class lived on the successors'
    // renewals alone.
    let ran = started.elapsed();
    if ran < LEASE + Duration::from_secs(2) {
        std::thread::sleep(LEASE + Duration::from_secs(2) - ran);
    }
    stop.store(true, Ordering::Relaxed);
    let _ = sampler.join();
    let (n, missed) = (
        samples.load(Ordering::Relaxed),
        misses.load(Ordering::Relaxed),
    );
    times.sort();
    eprintln!(
        "failover over {FAILOVERS} kills: min {:?}, median {:?}, max {:?}; the class sampled {n} times over {:?}, missing {missed} times",
        times[0],
        times[times.len() / 2],
        times[times.len() - 1],
        started.elapsed()
    );
    assert_eq!(
        missed, 0,
        "the ON's class vanished from the router during a failover"
    );
    assert!(n > 50, "too few samples ({n}) to say the class stayed");
    let out = router_proc.stop("TERM")?;
    assert!(out.status.success(), "router: {}", out.stderr);
    Ok(())
}

/// `tc class show dev sha` on the router every 100 ms: how often the ON's
/// class was missing.
struct Sampler {
    stop: Arc<AtomicBool>,
    samples: Arc<AtomicU64>,
    misses: Arc<AtomicU64>,
    thread: std::thread::JoinHandle<()>,
}

impl Sampler {
    fn start(ns: &Netns) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (samples, misses) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let (st, sa, mi) = (stop.clone(), samples.clone(), misses.clone());
        let ns = ns.name().to_owned();
        let thread = std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                let out = std::process::Command::new("ip")
                    .args(["netns", "exec", &ns, "tc", "class", "show", "dev", "sha"])
                    .output();
                sa.fetch_add(1, Ordering::Relaxed);
                if !matches!(out, Ok(o) if String::from_utf8_lossy(&o.stdout).contains(CLASS)) {
                    mi.fetch_add(1, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        Self {
            stop,
            samples,
            misses,
            thread,
        }
    }

    /// (samples, misses).
    fn finish(self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
        (
            self.samples.load(Ordering::Relaxed),
            self.misses.load(Ordering::Relaxed),
        )
    }
}

/// nft in `ns`: drop everything but loopback, both ways (the replica there
/// and its etcd member lose the other etcd members and the router).
fn isolate(w: &World, ns: &Netns) -> Result<()> {
    let rules = "table inet vonpart {\n\
                 chain in { type filter hook input priority -300; policy drop; iif lo accept; }\n\
                 chain out { type filter hook output priority -300; policy drop; oif lo accept; }\n}\n";
    let file = w
        .topo
        .dir()
        .write(&format!("part-{}.nft", ns.name()), rules)?;
    ns.exec_ok(["nft".as_ref(), "-f".as_ref(), file.as_os_str()])?;
    Ok(())
}

fn heal(ns: &Netns) -> Result<()> {
    ns.exec_ok(["nft", "delete table inet vonpart"])?;
    Ok(())
}

/// Issue 13: the leading replica cut off by nft from etcd and the router.
/// The standby takes over within the router lease, the class never
/// disappears, the cut-off leader's reservation is refused and leaves no
/// trace (registry or router), and once healed it stands by.
#[test]
fn a_partitioned_leader_is_fenced_and_the_standby_keeps_the_class() -> Result<()> {
    if !von_tests::e2e_enabled("reservation service replica partition")? {
        return Ok(());
    }
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let (w, router_proc) = world()?;
    let leader = wait_for("one replica leading", Duration::from_secs(20), || {
        Ok(w.leader()?.ok_or_else(|| "none or both".to_owned()))
    })?;
    let standby = 1 - leader;
    let (old, new) = (w.sockets[leader].clone(), w.sockets[standby].clone());
    let out = w.reserve(
        &[
            "reserve", "add", "--name", "grid", "--on-id", "7", "--rate", "20mbit", "--path",
            "r1:sha",
        ],
        &[&old, &new],
    )?;
    assert!(out.status.success(), "reserve add: {out:?}");
    wait_for("the ON's class on sha", Duration::from_secs(5), || {
        let c = router::classes(w.ns(ROUTER), "sha")?;
        Ok(if c.contains(CLASS) { Ok(()) } else { Err(c) })
    })?;
    let sampler = Sampler::start(w.ns(ROUTER));

    let cut = w.ns(SERVICES[leader]);
    isolate(&w, cut)?;
    let t0 = Instant::now();
    eprintln!("rs{} (leader) cut off from etcd and the router", leader + 1);
    let split = [
        "reserve", "add", "--name", "split", "--on-id", "9", "--rate", "1mbit", "--path", "r1:sha",
    ];
    // Its write right away, while it may still believe it leads, beside
    // the wait for the standby (the write takes a router call timeout).
    let (out, took) = std::thread::scope(|s| {
        let write = s.spawn(|| w.reserve(&split, &[&old]));
        let took = wait_for("the standby to take over", FAILOVER_BOUND, || {
            let out = w.reserve(&["reserve", "list", "--json"], &[&new])?;
            Ok(if out.status.success() && out.stdout.contains("\"grid\"") {
                Ok(())
            } else {
                Err(format!("{}{}", out.stdout, out.stderr))
            })
        })
        .map(|()| t0.elapsed());
        (write.join().expect("the write thread"), took)
    });
    let (out, took) = (out?, took?);
    eprintln!(
        "the cut-off leader's reservation: {}",
        out.stderr.lines().next().unwrap_or_default()
    );
    assert!(
        !out.status.success(),
        "the partitioned leader reserved ON 9: {out:?}"
    );
    eprintln!(
        "partition takeover: rs{} serves the reservation {took:?} after rs{} was cut off (bound {FAILOVER_BOUND:?})",
        standby + 1,
        leader + 1
    );
    // The cut-off one stops serving, and a write through it is still refused.
    wait_for(
        "the cut-off replica to stop serving",
        FAILOVER_BOUND,
        || {
            let out = w.reserve(&["reserve", "list"], &[&old])?;
            Ok(if out.status.success() {
                Err(out.stdout)
            } else {
                Ok(())
            })
        },
    )?;
    let out = w.reserve(&split, &[&old])?;
    assert!(
        !out.status.success(),
        "the partitioned replica reserved ON 9 later: {out:?}"
    );
    eprintln!(
        "the cut-off replica, later: {}",
        out.stderr.lines().next().unwrap_or_default()
    );

    // A whole router lease under the partition: the class lives on the new
    // leader's renewals alone.
    let held = t0.elapsed();
    if held < LEASE + Duration::from_secs(2) {
        std::thread::sleep(LEASE + Duration::from_secs(2) - held);
    }
    heal(cut)?;
    let t1 = Instant::now();
    wait_for(
        "the healed replica to stand by",
        Duration::from_secs(20),
        || {
            let out = w.reserve(&["reserve", "list"], &[&old])?;
            Ok(if out.stderr.contains("stands by") {
                Ok(())
            } else {
                Err(format!("{}{}", out.stdout, out.stderr))
            })
        },
    )?;
    eprintln!(
        "healed: rs{} stands by {:?} after the partition ended",
        leader + 1,
        t1.elapsed()
    );
    // The new leader still leads; the registry and the router hold grid
    // only: the refused reservation left nothing.
    let out = w.reserve(&["reserve", "list", "--json"], &[&new])?;
    assert!(
        out.status.success() && out.stdout.contains("\"grid\"") && !out.stdout.contains("split"),
        "after healing: {out:?}"
    );
    let classes = router::classes(w.ns(ROUTER), "sha")?;
    assert!(
        classes.contains(CLASS) && !classes.contains("class htb 1:11 "),
        "the router's classes after healing: {classes}"
    );
    let (n, missed) = sampler.finish();
    eprintln!(
        "the class sampled {n} times over {:?}, missing {missed} times",
        t0.elapsed()
    );
    assert_eq!(missed, 0, "the ON's class vanished during the partition");
    assert!(n > 50, "too few samples ({n}) to say the class stayed");
    assert!(took <= FAILOVER_BOUND, "takeover took {took:?}");
    let out = router_proc.stop("TERM")?;
    assert!(out.status.success(), "router: {}", out.stderr);
    Ok(())
}
