//! Hosts as network namespaces, each with two underlay interfaces `ua` and
//! `ub` on two separate links.
//!
//! Two hosts are joined by one veth pair per underlay. Three or more are
//! joined per underlay on a bridge of its own (`lana`, `lanb`) that lives in
//! the test's switch namespace, so the root namespace is never touched
//! beyond creating namespaces. Host `hN` has 192.0.2.N/24 on A and
//! 198.51.100.N/24 on B.

use std::fmt;
use std::net::Ipv4Addr;

use crate::agent::Agent;
use crate::error::Result;
use crate::netns::{Netns, TestDir, unique_prefix};

/// The UDP port every agent binds on both underlays.
pub const UNDERLAY_PORT: u16 = 4789;

/// One of the two independent underlay networks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Underlay {
    A,
    B,
}

impl Underlay {
    /// Both, in order.
    pub const BOTH: [Underlay; 2] = [Underlay::A, Underlay::B];

    /// The host-side interface name.
    pub fn interface(self) -> &'static str {
        match self {
            Underlay::A => "ua",
            Underlay::B => "ub",
        }
    }

    /// Host `index`'s (1-based) address on this underlay.
    pub fn address(self, index: u8) -> Ipv4Addr {
        match self {
            Underlay::A => Ipv4Addr::new(192, 0, 2, index),
            Underlay::B => Ipv4Addr::new(198, 51, 100, index),
        }
    }

    /// Lower-case name as the config and status use it (`a`, `b`).
    pub fn key(self) -> &'static str {
        match self {
            Underlay::A => "a",
            Underlay::B => "b",
        }
    }
}

impl fmt::Display for Underlay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Underlay::A => "A",
            Underlay::B => "B",
        })
    }
}

/// One host: a namespace with `ua` and `ub`.
#[derive(Debug)]
pub struct Host {
    index: u8,
    ns: Netns,
}

impl Host {
    /// `h1`, `h2`, ...
    pub fn name(&self) -> String {
        format!("h{}", self.index)
    }

    /// 1-based position in the topology; also the last octet of every
    /// address the host has.
    pub fn index(&self) -> u8 {
        self.index
    }

    /// The namespace, to run programs in.
    pub fn ns(&self) -> &Netns {
        &self.ns
    }

    /// This host's address on `underlay`.
    pub fn underlay_addr(&self, underlay: Underlay) -> Ipv4Addr {
        underlay.address(self.index)
    }

    /// Takes the host's interface on `underlay` down: that underlay fails
    /// for this host only.
    pub fn cut(&self, underlay: Underlay) -> Result<()> {
        self.ns
            .ip(&["link", "set", underlay.interface(), "down"])
            .map(drop)
    }

    /// Brings the interface back up.
    pub fn restore(&self, underlay: Underlay) -> Result<()> {
        self.ns
            .ip(&["link", "set", underlay.interface(), "up"])
            .map(drop)
    }

    /// Drops `percent` % of the UDP datagrams arriving on `underlay`, at
    /// random (nftables `numgen random`), until [`Host::clear_loss`].
    ///
    /// Datagrams with 16 payload bytes or fewer pass: iperf3 opens a UDP
    /// test with a 4-byte handshake that it never retries, so dropping it
    /// would fail the measuring tool rather than measure loss. Every von
    /// frame is at least 40 bytes, so all von traffic is subject to the rule.
    pub fn add_loss(&self, underlay: Underlay, percent: u8) -> Result<()> {
        let percent = percent.min(100);
        let rules = format!(
            "table inet vonloss {{\n  chain input {{\n    type filter hook input priority -10; policy accept;\n    \
             iifname \"{}\" udp dport {UNDERLAY_PORT} udp length > 24 numgen random mod 100 < {percent} counter drop\n  }}\n}}\n",
            underlay.interface()
        );
        // nft reads the ruleset from a here-document, so the harness needs
        // no stdin plumbing.
        let script = format!("nft -f - <<'EOF'\n{rules}EOF\n");
        self.ns.exec_ok(["sh", "-c", &script]).map(drop)
    }

    /// Removes every loss rule of this host.
    pub fn clear_loss(&self) -> Result<()> {
        let out = self
            .ns
            .exec(["nft", "list", "tables"], crate::netns::QUICK)?;
        if out.stdout.contains("vonloss") {
            self.ns
                .exec_ok(["nft", "delete", "table", "inet", "vonloss"])?;
        }
        Ok(())
    }
}

/// The hosts of one test, their links, and the agents started on them.
/// Everything is torn down on drop, pass or fail: agents are stopped first,
/// then namespaces deleted, then the scratch directory removed.
#[derive(Debug)]
pub struct Topology {
    pub(crate) agents: Vec<Agent>,
    /// Group key of each VON started, by name (tests that forge frames).
    pub(crate) keys: Vec<(String, [u8; 32])>,
    hosts: Vec<Host>,
    switch: Option<Netns>,
    prefix: String,
    dir: TestDir,
}

impl Topology {
    /// Builds `hosts` hosts (at least 2, at most 250).
    pub fn new(hosts: usize) -> Result<Self> {
        assert!(
            (2..=250).contains(&hosts),
            "a topology has 2..=250 hosts, not {hosts}"
        );
        let prefix = unique_prefix();
        let dir = TestDir::create(&prefix)?;
        let mut topo = Self {
            agents: Vec::new(),
            keys: Vec::new(),
            hosts: Vec::new(),
            switch: None,
            prefix,
            dir,
        };
        for i in 1..=hosts {
            // `hosts` <= 250 was checked above.
            let index = u8::try_from(i).expect("at most 250 hosts");
            let ns = Netns::create(&format!("{}-h{index}", topo.prefix))?;
            topo.hosts.push(Host { index, ns });
        }
        if hosts == 2 {
            topo.link_pair()?;
        } else {
            topo.link_bridges()?;
        }
        for host in &topo.hosts {
            for u in Underlay::BOTH {
                let cidr = format!("{}/24", host.underlay_addr(u));
                host.ns.ip(&["addr", "add", &cidr, "dev", u.interface()])?;
                host.ns.ip(&["link", "set", u.interface(), "up"])?;
            }
        }
        Ok(topo)
    }

    /// Host `hN` for N in 1..=len.
    pub fn host(&self, n: usize) -> &Host {
        &self.hosts[n - 1]
    }

    /// All hosts, h1 first.
    pub fn hosts(&self) -> &[Host] {
        &self.hosts
    }

    /// The test's unique name prefix (namespaces are `<prefix>-h1`, ...).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The group key [`Topology::start`] wrote into VON `von`'s view.
    pub fn group_key(&self, von: &str) -> Option<[u8; 32]> {
        self.keys
            .iter()
            .find(|(name, _)| name == von)
            .map(|(_, key)| *key)
    }

    /// The scratch directory of this test.
    pub fn dir(&self) -> &TestDir {
        &self.dir
    }

    /// The switch namespace holding the bridges (three hosts or more).
    pub fn switch(&self) -> Option<&Netns> {
        self.switch.as_ref()
    }

    /// Fails `underlay` for every host at once.
    pub fn cut_all(&self, underlay: Underlay) -> Result<()> {
        self.hosts.iter().try_for_each(|h| h.cut(underlay))
    }

    /// Restores `underlay` for every host.
    pub fn restore_all(&self, underlay: Underlay) -> Result<()> {
        self.hosts.iter().try_for_each(|h| h.restore(underlay))
    }

    fn link_pair(&mut self) -> Result<()> {
        let (h1, h2) = (&self.hosts[0], &self.hosts[1]);
        for u in Underlay::BOTH {
            let name = u.interface();
            h1.ns.ip(&[
                "link",
                "add",
                name,
                "type",
                "veth",
                "peer",
                "name",
                name,
                "netns",
                h2.ns.name(),
            ])?;
        }
        Ok(())
    }

    fn link_bridges(&mut self) -> Result<()> {
        let sw = Netns::create(&format!("{}-sw", self.prefix))?;
        for u in Underlay::BOTH {
            let bridge = format!("lan{}", u.key());
            sw.ip(&["link", "add", &bridge, "type", "bridge"])?;
            sw.ip(&["link", "set", &bridge, "up"])?;
            for host in &self.hosts {
                let port = format!("h{}{}", host.index, u.key());
                host.ns.ip(&[
                    "link",
                    "add",
                    u.interface(),
                    "type",
                    "veth",
                    "peer",
                    "name",
                    &port,
                    "netns",
                    sw.name(),
                ])?;
                sw.ip(&["link", "set", &port, "master", &bridge])?;
                sw.ip(&["link", "set", &port, "up"])?;
            }
        }
        self.switch = Some(sw);
        Ok(())
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for agent in &self.agents {
                eprintln!("{}", agent.log_report());
            }
        }
        // Stop agents before their namespaces go; the fields drop next, in
        // declaration order: hosts (namespaces), switch, then the directory.
        for agent in self.agents.drain(..) {
            agent.stop();
        }
    }
}
