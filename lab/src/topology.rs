//! Hosts as network namespaces, each with one interface per underlay (`ua`,
//! `ub`, `uc`, `ud`; two unless a test asks for 1 to 4), each underlay on a
//! separate link, over IPv4 or IPv6.
//!
//! Two hosts are joined by one veth pair per underlay. Three or more are
//! joined per underlay on a bridge of its own (`lana`, `lanb`, ...) that lives
//! in the test's switch namespace, so the root namespace is never touched
//! beyond creating namespaces. Host `hN` has 192.0.2.N/24 on A,
//! 198.51.100.N/24 on B, 203.0.113.N/24 on C and 10.99.4.N/24 on D; over
//! IPv6, 2001:db8:a::N/64, 2001:db8:b::N/64 and so on.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::agent::Agent;
use crate::error::Result;
use crate::netns::{Netns, TestDir, unique_prefix};

/// The UDP port every agent binds on both underlays.
pub const UNDERLAY_PORT: u16 = 4789;

/// One of a topology's independent underlay networks: `a` to `d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Underlay(u8);

/// The address family of an underlay's links.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// 192.0.2.N and friends, /24.
    V4,
    /// 2001:db8:X::N, /64.
    V6,
}

impl Underlay {
    /// Underlay `a`.
    pub const A: Underlay = Underlay(0);
    /// Underlay `b`.
    pub const B: Underlay = Underlay(1);
    /// Underlay `c`.
    pub const C: Underlay = Underlay(2);
    /// Underlay `d`.
    pub const D: Underlay = Underlay(3);
    /// The first two, in order: what [`Topology::new`] builds.
    pub const BOTH: [Underlay; 2] = [Underlay::A, Underlay::B];
    /// All four a topology can have.
    pub const ALL: [Underlay; 4] = [Underlay::A, Underlay::B, Underlay::C, Underlay::D];

    /// The host-side interface name.
    pub fn interface(self) -> &'static str {
        ["ua", "ub", "uc", "ud"][usize::from(self.0)]
    }

    /// Host `index`'s (1-based) IPv4 address on this underlay.
    pub fn address(self, index: u8) -> Ipv4Addr {
        match self.0 {
            0 => Ipv4Addr::new(192, 0, 2, index),
            1 => Ipv4Addr::new(198, 51, 100, index),
            2 => Ipv4Addr::new(203, 0, 113, index),
            _ => Ipv4Addr::new(10, 99, 4, index),
        }
    }

    /// Host `index`'s (1-based) IPv6 address on this underlay.
    pub fn address_v6(self, index: u8) -> Ipv6Addr {
        Ipv6Addr::new(
            0x2001,
            0xdb8,
            0xa + u16::from(self.0),
            0,
            0,
            0,
            0,
            u16::from(index),
        )
    }

    /// Lower-case name as the config and status use it (`a`, `b`, ...).
    pub fn key(self) -> &'static str {
        ["a", "b", "c", "d"][usize::from(self.0)]
    }
}

impl fmt::Display for Underlay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(["A", "B", "C", "D"][usize::from(self.0)])
    }
}

/// One host: a namespace with one interface per underlay.
#[derive(Debug)]
pub struct Host {
    index: u8,
    ns: Netns,
    families: Vec<Family>,
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

    /// This host's IPv4 address on `underlay` (the IPv4 plan, whatever
    /// the underlay's family: see [`Host::underlay_ip`]).
    pub fn underlay_addr(&self, underlay: Underlay) -> Ipv4Addr {
        underlay.address(self.index)
    }

    /// This host's address on `underlay`, in the underlay's family.
    pub fn underlay_ip(&self, underlay: Underlay) -> IpAddr {
        match self.families.get(usize::from(underlay.0)) {
            Some(Family::V6) => underlay.address_v6(self.index).into(),
            _ => underlay.address(self.index).into(),
        }
    }

    /// Where this host's agent binds on `underlay`.
    pub fn underlay_endpoint(&self, underlay: Underlay) -> SocketAddr {
        SocketAddr::new(self.underlay_ip(underlay), UNDERLAY_PORT)
    }

    /// The underlays this host has, in order.
    pub fn underlays(&self) -> impl Iterator<Item = Underlay> + '_ {
        (0..self.families.len()).map(|i| Underlay(i as u8))
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
    /// Builds `hosts` hosts (at least 2, at most 250) on underlays A and B,
    /// both IPv4.
    pub fn new(hosts: usize) -> Result<Self> {
        Self::with_underlays(hosts, &[Family::V4, Family::V4])
    }

    /// Builds `hosts` hosts on one underlay per entry of `families` (1 to
    /// 4: A, B, C, D), each over its family.
    pub fn with_underlays(hosts: usize, families: &[Family]) -> Result<Self> {
        assert!(
            (2..=250).contains(&hosts),
            "a topology has 2..=250 hosts, not {hosts}"
        );
        assert!(
            (1..=4).contains(&families.len()),
            "a topology has 1 to 4 underlays"
        );
        ensure_neighbour_room(hosts, families.len())?;
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
            let families = families.to_vec();
            topo.hosts.push(Host {
                index,
                ns,
                families,
            });
        }
        if hosts == 2 {
            topo.link_pair()?;
        } else {
            topo.link_bridges()?;
        }
        for host in &topo.hosts {
            for u in host.underlays() {
                match host.underlay_ip(u) {
                    IpAddr::V4(ip) => {
                        let cidr = format!("{ip}/24");
                        host.ns.ip(&["addr", "add", &cidr, "dev", u.interface()])?;
                    }
                    IpAddr::V6(ip) => {
                        // The host may start namespaces with IPv6 off.
                        let sysctl = format!("net.ipv6.conf.{}.disable_ipv6=0", u.interface());
                        host.ns.exec_ok(["sysctl", "-qw", &sysctl])?;
                        // No duplicate address detection: the address is
                        // usable at once, as on a configured server.
                        let cidr = format!("{ip}/64");
                        host.ns
                            .ip(&["addr", "add", &cidr, "dev", u.interface(), "nodad"])?;
                    }
                }
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

    /// The underlays of this topology, in order.
    pub fn underlays(&self) -> Vec<Underlay> {
        self.hosts[0].underlays().collect()
    }

    fn link_pair(&mut self) -> Result<()> {
        let (h1, h2) = (&self.hosts[0], &self.hosts[1]);
        for u in h1.underlays() {
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
        for u in self.underlays() {
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

/// The kernel's neighbour (ARP and NDP) tables are one per machine, shared
/// by every namespace, and refuse new entries past `gc_thresh3` (1024 by
/// default) with "neighbor table overflow": a send to a peer without an
/// entry is then dropped, which UDP hides from the sender (ENOBUFS counted
/// only in `UdpSndbufErrors`). Every host of a bridged topology resolves
/// every other host on every underlay, so `hosts` hosts need about
/// hosts² · underlays entries; past ~20 hosts the default is too small.
/// Raises (never lowers) the root namespace's thresholds to fit them twice
/// over, room for tests running beside this one. A real deployment has one
/// host per kernel and needs n − 1 entries per underlay (docs/scale.md).
fn ensure_neighbour_room(hosts: usize, underlays: usize) -> Result<()> {
    let needed = 2 * hosts * hosts * underlays;
    if needed <= 1024 {
        return Ok(());
    }
    for family in ["ipv4", "ipv6"] {
        for knob in ["gc_thresh2", "gc_thresh3"] {
            let path = format!("/proc/sys/net/{family}/neigh/default/{knob}");
            // A kernel without IPv6 has no such knob, and no table to fill.
            let Ok(now) = std::fs::read_to_string(&path) else {
                continue;
            };
            let now: usize = now.trim().parse().unwrap_or(0);
            if now < needed {
                std::fs::write(&path, needed.to_string()).map_err(|source| crate::Error::Io {
                    what: "raising the machine-wide neighbour table limit (shared by all \
                           namespaces; a large topology needs more entries)",
                    path: path.clone().into(),
                    source,
                })?;
            }
        }
    }
    Ok(())
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
