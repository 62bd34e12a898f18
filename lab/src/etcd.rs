//! A real etcd cluster for tests: `etcd` processes (Debian's etcd-server,
//! installed by scripts/setup-debian.sh) on loopback or inside the hosts'
//! namespaces, each with its own data directory, all killed and removed on
//! drop whether the test passed or not.
//!
//! Loopback clusters take a fresh 127.x.y.0/24 triple per cluster, so the
//! standard ports (2379 clients, 2380 peers) never collide between tests
//! running at once; in namespaces each member listens on its host's own
//! address.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::netns::{Netns, TestDir, unique_prefix};
use crate::process;

/// etcd's client port.
pub const CLIENT_PORT: u16 = 2379;
/// etcd's peer (raft) port.
pub const PEER_PORT: u16 = 2380;

static NEXT_LOOPBACK: AtomicU32 = AtomicU32::new(0);

/// One etcd member.
#[derive(Debug)]
struct Member {
    name: String,
    ip: Ipv4Addr,
    /// The namespace it runs in (`None`: the test's own, on loopback).
    netns: Option<String>,
    data: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

/// A running etcd cluster; every member is killed and its data removed on drop.
#[derive(Debug)]
pub struct EtcdCluster {
    members: Vec<Member>,
    token: String,
    /// Owned when the cluster made its own directory (loopback clusters).
    _dir: Option<TestDir>,
}

impl EtcdCluster {
    /// `size` members on a fresh loopback triple, in a directory of its own.
    pub fn loopback(size: usize) -> Result<Self> {
        let prefix = unique_prefix();
        let dir = TestDir::create(&format!("{prefix}-etcd"))?;
        // 127.<pid-derived>.<counter>.<member>: unique per process and cluster.
        let n = NEXT_LOOPBACK.fetch_add(1, Ordering::Relaxed);
        let b = 100 + (std::process::id() % 150) as u8;
        let c = (n % 250) as u8 + 1;
        let ips: Vec<(Option<&Netns>, Ipv4Addr)> = (1..=size)
            .map(|i| (None, Ipv4Addr::new(127, b, c, i as u8)))
            .collect();
        let mut cluster = Self::build(dir.path(), &prefix, &ips)?;
        cluster._dir = Some(dir);
        Ok(cluster)
    }

    /// One member per `(namespace, address)`, data and logs under `dir`.
    pub fn in_namespaces(dir: &Path, members: &[(&Netns, Ipv4Addr)]) -> Result<Self> {
        let members: Vec<(Option<&Netns>, Ipv4Addr)> =
            members.iter().map(|(ns, ip)| (Some(*ns), *ip)).collect();
        Self::build(dir, &unique_prefix(), &members)
    }

    fn build(dir: &Path, prefix: &str, at: &[(Option<&Netns>, Ipv4Addr)]) -> Result<Self> {
        let members = at
            .iter()
            .enumerate()
            .map(|(i, (ns, ip))| Member {
                name: format!("e{}", i + 1),
                ip: *ip,
                netns: ns.map(|n| n.name().to_owned()),
                data: dir.join(format!("etcd-e{}.data", i + 1)),
                log: dir.join(format!("etcd-e{}.log", i + 1)),
                child: None,
            })
            .collect();
        let mut cluster = Self {
            members,
            token: format!("{prefix}-etcd"),
            _dir: None,
        };
        for i in 0..cluster.members.len() {
            cluster.start(i)?;
        }
        cluster.wait_healthy(&(0..cluster.members.len()).collect::<Vec<_>>())?;
        Ok(cluster)
    }

    /// Client endpoints as `IP:PORT`, member order.
    pub fn endpoints(&self) -> Vec<String> {
        self.members
            .iter()
            .map(|m| format!("{}:{CLIENT_PORT}", m.ip))
            .collect()
    }

    /// `--initial-cluster`: every member's peer URL.
    fn initial_cluster(&self) -> String {
        self.members
            .iter()
            .map(|m| format!("{}=http://{}:{PEER_PORT}", m.name, m.ip))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Starts member `i` (again: it rejoins with its data directory).
    pub fn start(&mut self, i: usize) -> Result<()> {
        let initial = self.initial_cluster();
        let token = self.token.clone();
        let m = &mut self.members[i];
        if m.child.is_some() {
            return Ok(());
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&m.log)
            .map_err(|source| Error::Io {
                what: "open etcd log",
                path: m.log.clone(),
                source,
            })?;
        let err = log.try_clone().map_err(|source| Error::Io {
            what: "open etcd log",
            path: m.log.clone(),
            source,
        })?;
        let mut cmd = match &m.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "etcd"]);
                c
            }
            None => Command::new("etcd"),
        };
        let client = format!("http://{}:{CLIENT_PORT}", m.ip);
        let peer = format!("http://{}:{PEER_PORT}", m.ip);
        cmd.args(["--name", &m.name])
            .arg("--data-dir")
            .arg(&m.data)
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &initial])
            .args(["--initial-cluster-token", &token])
            .args(["--initial-cluster-state", "new"])
            .args(["--heartbeat-interval", "100", "--election-timeout", "1000"])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err);
        let child = cmd.spawn().map_err(|source| Error::Spawn {
            cmd: process::show(&cmd),
            source,
        })?;
        m.child = Some(child);
        Ok(())
    }

    /// SIGKILLs member `i` (its data directory stays, for [`start`](Self::start)).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Whether member `i` answers a linearizable read (so it is in a quorum).
    pub fn healthy(&self, i: usize) -> bool {
        let m = &self.members[i];
        let mut cmd = match &m.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "etcdctl"]);
                c
            }
            None => Command::new("etcdctl"),
        };
        cmd.env("ETCDCTL_API", "3")
            .arg(format!("--endpoints=http://{}:{CLIENT_PORT}", m.ip))
            .args(["--command-timeout=2s", "endpoint", "health"]);
        process::run(&mut cmd, Duration::from_secs(10)).is_ok_and(|o| o.status.success())
    }

    /// Waits up to 30 s for members `which` to be healthy.
    pub fn wait_healthy(&self, which: &[usize]) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let sick: Vec<&str> = which
                .iter()
                .filter(|&&i| !self.healthy(i))
                .map(|&i| self.members[i].name.as_str())
                .collect();
            if sick.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Error::WaitTimedOut {
                    what: "etcd members to be healthy".into(),
                    after: Duration::from_secs(30),
                    last: format!("not healthy: {sick:?}; logs in {}", self.log_dir()),
                });
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn log_dir(&self) -> String {
        self.members
            .first()
            .and_then(|m| m.log.parent())
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
            let _ = std::fs::remove_dir_all(&self.members[i].data);
        }
    }
}
