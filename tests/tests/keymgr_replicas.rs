//! Issue 13: no single point of failure. Three key manager replicas
//! (`von keymgr` with `[etcd]`) on h4–h6, each beside one member of a real
//! 3-member etcd cluster; members h1–h3 list all three replicas.
//!
//! ```text
//!  h1 h2 h3: von up, keymgr = ["192.0.2.4:4433", "192.0.2.5:4433", "192.0.2.6:4433"]
//!  h4 h5 h6: von keymgr (replica km4/km5/km6) + etcd member e1/e2/e3 on 192.0.2.N
//! ```
//!
//! - 20 failovers: the leader is SIGKILLed (every other time a moment after
//!   a `von keymgr rekey`, so the kill lands before, during or after a
//!   prepare/commit); a standby commits the next epoch within 5 s; ping
//!   h1 -> h2 loses nothing throughout; every epoch any member prepared had
//!   one key fingerprint across all members.
//! - A revocation made on a standby during a failover is out of the first
//!   view the new leader commits.
//! - The leader cut off by nft from etcd and from the members: a standby
//!   takes over, the old one stops leading and never hands out an epoch.
//! - etcd quorum lost: no replica leads (status says so), no commit, ping
//!   goes on; quorum back: commits resume above every earlier epoch.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use von_lab::EtcdCluster;
use von_tests::process::{self, signal};
use von_tests::vonbin::von_bin;
use von_tests::{Ping, PingReport, Result, Status, Topology, UNDERLAY_PORT, Underlay};

const VON: &str = "grid";
/// The VON prefix the CA records; every member and replica address is in it.
const PREFIX: &str = "100.64.1.0/24";
const MEMBERS: [usize; 3] = [1, 2, 3];
const REPLICAS: [usize; 3] = [4, 5, 6];
/// The issue's bound on a failover: kill to the next committed epoch.
const FAILOVER_BOUND: Duration = Duration::from_secs(5);
/// Each replica's Prometheus endpoint (on its namespace's loopback).
const METRICS: u16 = 9470;

struct World {
    topo: Topology,
    bin: PathBuf,
    dir: PathBuf,
    etcd: Option<EtcdCluster>,
    replicas: BTreeMap<usize, Child>,
    agents: BTreeMap<usize, Child>,
}

impl World {
    fn new() -> Result<Self> {
        let topo = Topology::new(6)?;
        let bin = von_bin()?;
        let dir = topo.dir().path().to_owned();
        let mut w = Self {
            topo,
            bin,
            dir,
            etcd: None,
            replicas: BTreeMap::new(),
            agents: BTreeMap::new(),
        };
        w.von(
            &[
                "ca", "init", "--von", VON, "--on-id", "7", "--prefix", PREFIX, "--out",
            ],
            &["ca"],
        )?;
        for n in MEMBERS {
            let (name, addr) = (format!("h{n}"), format!("100.64.1.{n}/24"));
            w.von(
                &[
                    "cert",
                    "issue",
                    "--ca",
                    &w.path("ca"),
                    "--name",
                    &name,
                    "--addr",
                    &addr,
                    "--out",
                ],
                &[&name],
            )?;
        }
        for n in REPLICAS {
            let (name, addr) = (format!("km{n}"), format!("100.64.1.{}/24", 240 + n));
            w.von(
                &[
                    "cert",
                    "issue",
                    "--ca",
                    &w.path("ca"),
                    "--name",
                    &name,
                    "--addr",
                    &addr,
                    "--role",
                    "keymgr",
                    "--out",
                ],
                &[&name],
            )?;
            let toml = format!(
                "von = \"{VON}\"\non_id = 7\nlisten = \"192.0.2.{n}:4433\"\nstate_dir = \"{state}\"\nmetrics = \"127.0.0.1:{METRICS}\"\n\
                 ca = \"{ca}/ca.crt\"\ncert = \"{d}/{name}.crt\"\nkey = \"{d}/{name}.key\"\nnoise_key = \"{d}/{name}.noise.key\"\n\
                 [timers]\nlease = \"3s\"\nrenew = \"1s\"\nprepare_timeout = \"2s\"\ngrace = \"1s\"\n\
                 [etcd]\nendpoints = [\"192.0.2.4:2379\", \"192.0.2.5:2379\", \"192.0.2.6:2379\"]\nreplica = \"{name}\"\n",
                state = w.path(&format!("{name}-state")),
                ca = w.path("ca"),
                d = w.path(&name),
            );
            w.topo.dir().write(&format!("{name}.toml"), &toml)?;
        }
        let at: Vec<_> = REPLICAS
            .iter()
            .map(|&n| {
                (
                    w.topo.host(n).ns(),
                    w.topo.host(n).underlay_addr(Underlay::A),
                )
            })
            .collect();
        w.etcd = Some(EtcdCluster::in_namespaces(&w.dir, &at)?);
        Ok(w)
    }

    /// Replicas and members up, every member on one epoch with all three.
    fn started() -> Result<Self> {
        let mut w = Self::new()?;
        for n in REPLICAS {
            w.start_replica(n)?;
        }
        w.wait(20, "a leader", |w| w.leader().is_some())?;
        for n in MEMBERS {
            w.start_agent(n)?;
        }
        w.wait(30, "every member on one epoch with the whole view", |w| {
            let e: Vec<_> = MEMBERS.iter().map(|&n| w.epoch(n).ok()).collect();
            e.iter().all(|x| x.is_some() && *x == e[0])
                && MEMBERS.iter().all(|&n| w.members(n).ok() == Some(3))
        })?;
        Ok(w)
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    fn von(&self, args: &[&str], paths: &[&str]) -> Result<String> {
        let mut cmd = Command::new(&self.bin);
        cmd.args(args);
        for p in paths {
            cmd.arg(self.path(p));
        }
        Ok(process::run_ok(&mut cmd, Duration::from_secs(30))?.stdout)
    }

    fn start_replica(&mut self, n: usize) -> Result<()> {
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("km{n}.log")))
            .expect("log file");
        let mut cmd = self.topo.host(n).ns().command(&self.bin);
        cmd.args(["keymgr", "--config"])
            .arg(self.path(&format!("km{n}.toml")))
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log);
        self.replicas
            .insert(n, cmd.spawn().expect("spawn von keymgr"));
        self.wait(15, &format!("km{n}'s control socket"), |w| {
            w.replica_status(n).is_ok()
        })
    }

    fn kill_replica(&mut self, n: usize) {
        if let Some(mut c) = self.replicas.remove(&n) {
            let _ = signal(c.id(), "KILL");
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// `von keymgr OP --config kmN.toml` in hN.
    fn keymgr_ctl(&self, n: usize, op: &[&str]) -> Result<String> {
        let mut cmd = self.topo.host(n).ns().command(&self.bin);
        cmd.arg("keymgr")
            .args(op)
            .arg("--config")
            .arg(self.path(&format!("km{n}.toml")));
        Ok(process::run_ok(&mut cmd, Duration::from_secs(15))?.stdout)
    }

    fn replica_status(&self, n: usize) -> Result<Value> {
        let out = self.keymgr_ctl(n, &["status", "--json"])?;
        Ok(serde_json::from_str(&out).expect("status --json is JSON"))
    }

    /// One gauge of replica `n`'s metrics endpoint, e.g.
    /// `replica_leader` (`von_keymgr_` prefix and labels added here).
    fn gauge(&self, n: usize, name: &str, extra: &str) -> Result<i64> {
        let body = von_tests::router::scrape(self.topo.host(n).ns(), METRICS)?;
        let want = format!("von_keymgr_{name}{{von=\"{VON}\",replica=\"km{n}\"{extra}}} ");
        let value = body
            .lines()
            .find_map(|l| l.strip_prefix(want.as_str()))
            .unwrap_or_else(|| panic!("{want} not scraped from km{n}:\n{body}"));
        Ok(value.trim().parse().expect("a gauge value"))
    }

    fn role(&self, n: usize) -> Option<String> {
        let s = self.replica_status(n).ok()?;
        s["replica"]["role"].as_str().map(str::to_owned)
    }

    /// The running replica that says it leads.
    fn leader(&self) -> Option<usize> {
        self.replicas
            .keys()
            .copied()
            .find(|&n| self.role(n).as_deref() == Some("leader"))
    }

    fn start_agent(&mut self, n: usize) -> Result<()> {
        let h = format!("h{n}");
        let host = self.topo.host(n);
        let toml = format!(
            "state_dir = \"{state}\"\ncontrol_socket = \"{sock}\"\nlog = \"info\"\n\n\
             [underlay.a]\nbind = \"{a}:{UNDERLAY_PORT}\"\n[underlay.b]\nbind = \"{b}:{UNDERLAY_PORT}\"\n\n\
             [[von]]\nname = \"{VON}\"\nrate = \"200mbit\"\n\
             keymgr = [\"192.0.2.4:4433\", \"192.0.2.5:4433\", \"192.0.2.6:4433\"]\n\
             cert = \"{d}/{h}.crt\"\nkey = \"{d}/{h}.key\"\nca = \"{ca}/ca.crt\"\nnoise_key = \"{d}/{h}.noise.key\"\n",
            state = self.path(&format!("{h}-state")),
            sock = self.path(&format!("{h}.sock")),
            a = host.underlay_addr(Underlay::A),
            b = host.underlay_addr(Underlay::B),
            d = self.path(&h),
            ca = self.path("ca"),
        );
        let config = self.topo.dir().write(&format!("{h}.toml"), &toml)?;
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("{h}.log")))
            .expect("log file");
        let mut cmd = host.ns().command(&self.bin);
        cmd.arg("up")
            .arg("--config")
            .arg(config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log);
        self.agents.insert(n, cmd.spawn().expect("spawn von up"));
        self.wait(30, &format!("{h} to report a view"), |w| w.epoch(n).is_ok())
    }

    fn status(&self, n: usize) -> Result<Status> {
        let mut cmd = self.topo.host(n).ns().command(&self.bin);
        cmd.args(["status", "--json", "--socket"])
            .arg(self.path(&format!("h{n}.sock")));
        Status::parse(&process::run_ok(&mut cmd, Duration::from_secs(5))?.stdout)
    }

    fn epoch(&self, n: usize) -> Result<u64> {
        Ok(self.status(n)?.json()["vons"][0]["epoch"]
            .as_u64()
            .expect("epoch"))
    }

    fn members(&self, n: usize) -> Result<u64> {
        Ok(self.status(n)?.json()["vons"][0]["members"]
            .as_u64()
            .expect("members"))
    }

    /// The highest epoch any member sends under now.
    fn max_epoch(&self) -> u64 {
        MEMBERS
            .iter()
            .filter_map(|&n| self.epoch(n).ok())
            .max()
            .unwrap_or(0)
    }

    fn wait(&self, secs: u64, what: &str, mut f: impl FnMut(&Self) -> bool) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while !f(self) {
            assert!(
                Instant::now() < deadline,
                "timed out after {secs} s waiting for {what}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    fn logs(&self) -> String {
        let mut out = String::new();
        for name in ["km4", "km5", "km6", "h1", "h2", "h3"] {
            let text =
                std::fs::read_to_string(self.dir.join(format!("{name}.log"))).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            out.push_str(&format!("--- {name}.log ---\n"));
            for l in &lines[lines.len().saturating_sub(15)..] {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }

    /// Every (epoch, key fingerprint) the members' logs show prepared.
    fn fingerprints(&self) -> BTreeMap<u64, BTreeSet<String>> {
        let mut out: BTreeMap<u64, BTreeSet<String>> = BTreeMap::new();
        for n in MEMBERS {
            let text =
                std::fs::read_to_string(self.dir.join(format!("h{n}.log"))).unwrap_or_default();
            for line in text.lines().filter(|l| l.contains("fingerprint=")) {
                let field = |k: &str| {
                    line.split_whitespace()
                        .find_map(|w| w.strip_prefix(k))
                        .map(str::to_owned)
                };
                if let (Some(e), Some(f)) = (field("epoch="), field("fingerprint=")) {
                    out.entry(e.parse().expect("epoch number"))
                        .or_default()
                        .insert(f);
                }
            }
        }
        out
    }

    /// Asserts each epoch any member prepared had exactly one key.
    fn check_one_key_per_epoch(&self) -> usize {
        let fp = self.fingerprints();
        let doubled: Vec<_> = fp.iter().filter(|(_, f)| f.len() > 1).collect();
        assert!(doubled.is_empty(), "epochs with two keys: {doubled:?}");
        fp.len()
    }

    /// Waits until a standby of `n` has every member's join held.
    fn wait_held(&self, n: usize) -> Result<()> {
        self.wait(30, &format!("km{n} holding all three joins"), |w| {
            w.replica_status(n)
                .is_ok_and(|s| s["replica"]["held"].as_u64() == Some(3))
        })
    }
}

impl Drop for World {
    fn drop(&mut self) {
        for (_, mut c) in std::mem::take(&mut self.agents)
            .into_iter()
            .chain(std::mem::take(&mut self.replicas))
        {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Seqs missing below the last reply: ping's one echo in flight at the
/// SIGINT that ends it is not a loss.
fn lost_before_end(r: &PingReport) -> Vec<u32> {
    let seen: BTreeSet<u32> = r.replies.iter().map(|x| x.seq).collect();
    let last = seen.iter().max().copied().unwrap_or(0);
    (1..last).filter(|s| !seen.contains(s)).collect()
}

#[test]
fn twenty_failovers_lose_nothing_and_never_reuse_an_epoch() -> Result<()> {
    if !von_tests::e2e_enabled("e2e keymgr replicas")? {
        return Ok(());
    }
    let mut w = World::started()?;
    let ping = Ping::new(w_addr(2), 100_000)
        .interval(Duration::from_millis(20))
        .spawn(w.topo.host(1).ns())?;
    let mut times = Vec::new();
    for i in 0..20u64 {
        let leader = w.leader().expect("a leader");
        let standbys: Vec<usize> = REPLICAS.iter().copied().filter(|&n| n != leader).collect();
        for &s in &standbys {
            w.wait_held(s)?;
        }
        if i % 2 == 1 {
            // Land the kill somewhere in a rekey: before, during or after
            // its reservation, prepare or commit.
            let _ = w.keymgr_ctl(leader, &["rekey"]);
            std::thread::sleep(Duration::from_millis((i * 7) % 40));
        }
        let killed = Instant::now();
        w.kill_replica(leader);
        let before = w.max_epoch();
        w.wait(15, "the next epoch on every member", |w| {
            MEMBERS
                .iter()
                .all(|&n| w.epoch(n).is_ok_and(|e| e > before) && w.members(n).ok() == Some(3))
        })?;
        let took = killed.elapsed();
        let now_leader = w.leader();
        eprintln!(
            "failover {:2}: km{leader} killed{}, km{} committed epoch {} in {:.2} s",
            i + 1,
            if i % 2 == 1 { " during a rekey" } else { "" },
            now_leader.map_or("?".into(), |n| n.to_string()),
            w.max_epoch(),
            took.as_secs_f64()
        );
        assert!(
            took <= FAILOVER_BOUND,
            "failover {} took {took:?}\n{}",
            i + 1,
            w.logs()
        );
        times.push(took);
        w.start_replica(leader)?;
    }
    let out = ping.interrupt(Duration::from_secs(30))?;
    let r = PingReport::parse(&out)?;
    let lost = lost_before_end(&r);
    let epochs = w.check_one_key_per_epoch();
    let (min, max) = (*times.iter().min().unwrap(), *times.iter().max().unwrap());
    eprintln!(
        "20 failovers: min {:.2} s, median {:.2} s, max {:.2} s; ping h1 -> h2: {} sent, {} received, lost before the end: {}; {} epochs prepared, each with one key fingerprint",
        min.as_secs_f64(),
        median(&mut times).as_secs_f64(),
        max.as_secs_f64(),
        r.transmitted,
        r.received,
        lost.len(),
        epochs
    );
    assert!(
        lost.is_empty(),
        "lost during failovers: {lost:?}\n{}",
        w.logs()
    );
    assert!(epochs >= 21, "only {epochs} epochs seen");

    // A revocation asked of a standby while the leader is down is out of
    // the first view the new leader commits.
    let leader = w.leader().expect("a leader");
    let standby = REPLICAS.iter().copied().find(|&n| n != leader).unwrap();
    for n in REPLICAS.iter().filter(|&&n| n != leader) {
        w.wait_held(*n)?;
    }
    w.kill_replica(leader);
    let before = w.max_epoch();
    let said = w.keymgr_ctl(standby, &["revoke", "--name", "h3"])?;
    w.wait(15, "a view without h3", |w| {
        [1, 2]
            .iter()
            .all(|&n| w.epoch(n).is_ok_and(|e| e > before) && w.members(n).ok() == Some(2))
    })?;
    let first = [1, 2].iter().map(|&n| w.epoch(n).unwrap()).min().unwrap();
    eprintln!(
        "revoked h3 on km{standby} during a failover ({}); first epoch after: {first}, 2 members",
        said.trim()
    );
    assert_eq!(first, before + 1, "the takeover commit itself left h3 out");
    w.check_one_key_per_epoch();
    Ok(())
}

fn w_addr(n: u8) -> std::net::Ipv4Addr {
    std::net::Ipv4Addr::new(100, 64, 1, n)
}

/// nft in hN: drop everything but loopback, both ways.
fn isolate(w: &World, n: usize) -> Result<()> {
    let rules = "table inet vonpart {\n\
                 chain in { type filter hook input priority -300; policy drop; iif lo accept; }\n\
                 chain out { type filter hook output priority -300; policy drop; oif lo accept; }\n}\n";
    let file = w.topo.dir().write(&format!("part-h{n}.nft"), rules)?;
    w.topo
        .host(n)
        .ns()
        .exec_ok(["nft".as_ref(), "-f".as_ref(), file.as_os_str()])?;
    Ok(())
}

fn heal(w: &World, n: usize) -> Result<()> {
    w.topo
        .host(n)
        .ns()
        .exec_ok(["nft", "delete table inet vonpart"])?;
    Ok(())
}

#[test]
fn partitioned_leader_and_lost_quorum_never_hand_out_an_epoch() -> Result<()> {
    if !von_tests::e2e_enabled("e2e keymgr replicas partition")? {
        return Ok(());
    }
    let w = World::started()?;
    let ping = Ping::new(w_addr(2), 100_000)
        .interval(Duration::from_millis(20))
        .spawn(w.topo.host(1).ns())?;

    // The leader cut off from etcd and from the members, a rekey asked of
    // it right after: it cannot reserve, a standby takes over.
    let old = w.leader().expect("a leader");
    for n in REPLICAS.iter().filter(|&&n| n != old) {
        w.wait_held(*n)?;
    }
    // Role and etcd health in the metrics, scraped.
    for n in REPLICAS {
        let (lead, standby) = (
            w.gauge(n, "replica_leader", "")?,
            w.gauge(n, "replica_role", ",role=\"standby\"")?,
        );
        assert_eq!(
            (lead, standby),
            if n == old { (1, 0) } else { (0, 1) },
            "km{n}'s leader and standby gauges (km{old} leads)"
        );
        assert_eq!(w.gauge(n, "etcd_reachable", "")?, 1, "km{n} reaches etcd");
    }
    let before = w.max_epoch();
    let cut = Instant::now();
    isolate(&w, old)?;
    let asked = w.keymgr_ctl(old, &["rekey"]);
    w.wait(15, "the next epoch from a standby", |w| {
        MEMBERS
            .iter()
            .all(|&n| w.epoch(n).is_ok_and(|e| e > before))
    })?;
    let took = cut.elapsed();
    let new = w.leader().filter(|&n| n != old);
    w.wait(10, "the partitioned replica to stop leading", |w| {
        w.role(old).is_some_and(|r| r != "leader")
    })?;
    let old_status = w.replica_status(old)?;
    eprintln!(
        "partitioned km{old} (rekey asked: {:?}); km{} committed epoch {} in {:.2} s; km{old} says: {}",
        asked.as_ref().map(|s| s.trim().to_owned()),
        new.map_or("?".into(), |n| n.to_string()),
        w.max_epoch(),
        took.as_secs_f64(),
        old_status["replica"]
    );
    assert!(
        took <= FAILOVER_BOUND,
        "takeover took {took:?}\n{}",
        w.logs()
    );
    heal(&w, old)?;
    w.check_one_key_per_epoch();

    // Quorum lost: the two etcd members away from the leader go down.
    // Keep the leader the wait saw: asking again can race a status reply
    // (each is an etcd round trip per endpoint) and see none.
    let mut leader = None;
    w.wait(15, "a leader after the heal", |w| {
        leader = w.leader();
        leader.is_some()
    })?;
    let leader = leader.expect("the wait saw a leader");
    w.wait(30, "the healed replica to rejoin", |w| {
        w.role(old).as_deref() == Some("standby")
    })?;
    let idx = |n: usize| n - REPLICAS[0];
    let others: Vec<usize> = REPLICAS.iter().copied().filter(|&n| n != leader).collect();
    let mut w = w;
    let frozen = w.max_epoch();
    for &n in &others {
        w.etcd.as_mut().unwrap().kill(idx(n));
    }
    w.wait(10, "no replica leading without quorum", |w| {
        w.role(leader).is_some_and(|r| r == "unavailable")
    })?;
    let status = w.keymgr_ctl(leader, &["status"])?;
    eprintln!("without etcd quorum, km{leader}: {status}");
    assert!(status.contains("unavailable"), "{status}");
    let scraped = (
        w.gauge(leader, "replica_leader", "")?,
        w.gauge(leader, "replica_role", ",role=\"unavailable\"")?,
        w.gauge(leader, "etcd_reachable", "")?,
    );
    eprintln!(
        "without etcd quorum, km{leader}'s metrics: replica_leader, role unavailable, etcd_reachable = {scraped:?}"
    );
    assert_eq!(scraped, (0, 1, 0), "km{leader}'s gauges without quorum");
    let refused = w.keymgr_ctl(leader, &["rekey"]);
    assert!(refused.is_err(), "a rekey without quorum: {refused:?}");
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(w.max_epoch(), frozen, "no commit without quorum");
    // Forwarding went on: the ping so far has no gap.

    for &n in &others {
        w.etcd.as_mut().unwrap().start(idx(n))?;
    }
    let back = Instant::now();
    w.wait(30, "commits again after quorum returns", |w| {
        MEMBERS
            .iter()
            .all(|&n| w.epoch(n).is_ok_and(|e| e > frozen))
    })?;
    eprintln!(
        "quorum back: epoch {} committed {:.2} s later (was {frozen})",
        w.max_epoch(),
        back.elapsed().as_secs_f64()
    );
    let out = ping.interrupt(Duration::from_secs(30))?;
    let r = PingReport::parse(&out)?;
    let lost = lost_before_end(&r);
    eprintln!(
        "ping h1 -> h2 across partition and quorum loss: {} sent, {} received, lost before the end: {}",
        r.transmitted,
        r.received,
        lost.len()
    );
    assert!(lost.is_empty(), "lost: {lost:?}\n{}", w.logs());
    w.check_one_key_per_epoch();
    Ok(())
}
