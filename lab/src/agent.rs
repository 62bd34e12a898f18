//! Real `von up` agents in the test's namespaces, configured in static mode
//! (docs/architecture.md, "Agent configuration"): one view file per VON with
//! a fresh random 32-byte key, one `von.toml` per host.

use std::fmt::Write as _;
use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rand::RngCore;

use crate::error::{Error, Result};
use crate::netns::QUICK;
use crate::process;
use crate::status::{Status, VonCounters};
use crate::topology::{Host, Topology};
use crate::vonbin::von_bin;

/// How long an agent may take to bring its interfaces up on a busy machine.
pub const STARTUP: Duration = Duration::from_secs(60);

/// One VON of a test: who is in it and what it is contracted for.
#[derive(Debug, Clone)]
pub struct VonSpec {
    /// VON name; the interface is `von-<name>`.
    pub name: String,
    /// The VON's ON id.
    pub on_id: u32,
    /// Third octet of the VON's 100.64.X.0/24 subnet.
    pub subnet: u8,
    /// Contracted rate as the config writes it ("20mbit").
    pub rate: String,
    /// Explicit burst as the config writes it ("64kb"), or the default.
    pub burst: Option<String>,
    /// Explicit MTU, or the agent's default.
    pub mtu: Option<u16>,
    /// Member hosts by index (1 = h1).
    pub members: Vec<u8>,
    /// Whether the VON carries IPv4 (100.64.X.0/24).
    pub ipv4: bool,
    /// Whether the VON carries IPv6 (fd00:64:X::/64).
    pub ipv6: bool,
}

impl VonSpec {
    /// A VON over `members` with a rate high enough never to shape a test
    /// that is not about shaping.
    pub fn new(name: &str, on_id: u32, subnet: u8, members: &[u8]) -> Self {
        Self {
            name: name.to_owned(),
            on_id,
            subnet,
            rate: "10gbit".to_owned(),
            burst: None,
            mtu: None,
            members: members.to_vec(),
            ipv4: true,
            ipv6: false,
        }
    }

    /// Makes the VON dual-stack: fd00:64:X::/64 beside 100.64.X.0/24.
    pub fn dual_stack(mut self) -> Self {
        self.ipv6 = true;
        self
    }

    /// Makes the VON IPv6-only: fd00:64:X::/64, no IPv4.
    pub fn ipv6_only(mut self) -> Self {
        self.ipv4 = false;
        self.ipv6 = true;
        self
    }

    /// Host `index`'s IPv6 VON address, fd00:64:X::index.
    pub fn address6(&self, index: u8) -> Ipv6Addr {
        Ipv6Addr::new(
            0xfd00,
            0x64,
            u16::from(self.subnet),
            0,
            0,
            0,
            0,
            u16::from(index),
        )
    }

    /// Host `index`'s VON addresses: IPv4 first, then IPv6.
    pub fn addresses(&self, index: u8) -> Vec<IpAddr> {
        let v4 = self.ipv4.then(|| IpAddr::V4(self.address(index)));
        let v6 = self.ipv6.then(|| IpAddr::V6(self.address6(index)));
        v4.into_iter().chain(v6).collect()
    }

    /// The view's `prefix` value: one string, or a list for a dual-stack VON.
    fn prefix_toml(&self) -> String {
        let mut p = Vec::new();
        if self.ipv4 {
            p.push(format!("\"100.64.{}.0/24\"", self.subnet));
        }
        if self.ipv6 {
            p.push(format!("\"fd00:64:{}::/64\"", self.subnet));
        }
        one_or_list(p)
    }

    /// Sets the contracted rate.
    pub fn rate(mut self, rate: &str) -> Self {
        rate.clone_into(&mut self.rate);
        self
    }

    /// The TUN interface name on every member.
    pub fn interface(&self) -> String {
        format!("von-{}", self.name)
    }

    /// Host `index`'s VON address.
    pub fn address(&self, index: u8) -> Ipv4Addr {
        Ipv4Addr::new(100, 64, self.subnet, index)
    }

    /// The static view file, the same on every member.
    pub fn view_toml(&self, key: &[u8; 32], topo: &Topology) -> String {
        let mut s = format!(
            "on_id = {}\nepoch = 1\ncipher = \"aes-256-gcm\"\nkey = \"{}\"\nprefix = {}\n",
            self.on_id,
            hex::encode(key),
            self.prefix_toml()
        );
        for &m in &self.members {
            // Writing to a String cannot fail.
            let host = topo.host(usize::from(m));
            let endpoints: Vec<String> = host
                .underlays()
                .map(|u| format!("{} = \"{}\"", u.key(), host.underlay_endpoint(u)))
                .collect();
            let _ = write!(
                s,
                "\n[[member]]\nid = {m}\nname = \"h{m}\"\naddress = {}\nunderlay = {{ {} }}\n",
                one_or_list(
                    self.addresses(m)
                        .iter()
                        .map(|a| format!("\"{a}\""))
                        .collect()
                ),
                endpoints.join(", "),
            );
        }
        s
    }
}

/// `"x"` alone, or `["x", "y"]`.
fn one_or_list(items: Vec<String>) -> String {
    match items.as_slice() {
        [one] => one.clone(),
        _ => format!("[{}]", items.join(", ")),
    }
}

/// How [`Topology::restart_agent`] stops an agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// SIGKILL: a crash or a power cut; nothing is cleaned up.
    Kill,
    /// SIGTERM: a clean stop.
    Term,
}

/// A running `von up` in one host's namespace.
#[derive(Debug)]
pub struct Agent {
    host: String,
    ns: String,
    child: Child,
    log: PathBuf,
    socket: PathBuf,
    interfaces: Vec<(String, IpAddr)>,
}

impl Topology {
    /// Writes views and configs for `vons` and starts an agent on every host
    /// that is a member of at least one; returns when every interface is up
    /// and every status socket answers.
    pub fn start(&mut self, vons: &[VonSpec]) -> Result<()> {
        let bin = von_bin()?;
        let mut views = Vec::new();
        for von in vons {
            views.push(self.write_view(von)?);
        }
        let mut started = Vec::new();
        for host in self.hosts() {
            let mine: Vec<usize> = (0..vons.len())
                .filter(|&i| vons[i].members.contains(&host.index()))
                .collect();
            if mine.is_empty() {
                continue;
            }
            started.push(self.spawn_agent(&bin, host, vons, &views, &mine)?);
        }
        self.agents.extend(started);
        for agent in &mut self.agents {
            agent.wait_ready()?;
        }
        Ok(())
    }

    /// Writes `von`'s static view file under a fresh random group key (kept
    /// for [`Topology::group_key`]) and returns its path.
    pub fn write_view(&mut self, von: &VonSpec) -> Result<PathBuf> {
        let mut key = [0u8; 32];
        rand::rng().fill_bytes(&mut key);
        let path = self.dir().write(
            &format!("{}.view.toml", von.name),
            &von.view_toml(&key, self),
        )?;
        self.keys.push((von.name.clone(), key));
        Ok(path)
    }

    /// The `[[von]]` table of static VON `von` in host `host`'s `von.toml`,
    /// its view at `view`.
    pub fn von_table(host: &Host, von: &VonSpec, view: &std::path::Path) -> String {
        let mut toml = format!(
            "\n[[von]]\nname = \"{}\"\ninterface = \"{}\"\nrate = \"{}\"\n",
            von.name,
            von.interface(),
            von.rate
        );
        if let Some(burst) = &von.burst {
            let _ = writeln!(toml, "burst = \"{burst}\"");
        }
        if let Some(mtu) = von.mtu {
            let _ = writeln!(toml, "mtu = {mtu}");
        }
        let _ = writeln!(
            toml,
            "static = {{ view = \"{}\", member = \"{}\" }}",
            view.display(),
            host.name()
        );
        toml
    }

    /// Host `hN`'s `von.toml`, as the agent there was started with it.
    pub fn config_path(&self, n: usize) -> PathBuf {
        self.dir().path().join(format!("h{n}")).join("von.toml")
    }

    /// The head of `von.toml` every agent here gets: state directory,
    /// control socket (where [`Agent::status`] asks) and every underlay.
    /// Append `[[von]]` tables and pass it to [`Topology::start_agent`].
    pub fn agent_config_head(&self, host: &Host) -> String {
        let base = self.dir().path().join(host.name());
        let mut head = format!(
            "state_dir = \"{}\"\ncontrol_socket = \"{}\"\nlog = \"info\"\n\n",
            base.join("state").display(),
            base.join("control.sock").display(),
        );
        for u in host.underlays() {
            let _ = writeln!(
                head,
                "[underlay.{}]\nbind = \"{}\"",
                u.key(),
                host.underlay_endpoint(u)
            );
        }
        head
    }

    /// Starts `von up` on host `hN` with `toml`, a config the caller wrote
    /// from [`Topology::agent_config_head`], and waits until every
    /// `(interface, VON address)` in `interfaces` is up and the status
    /// socket answers.
    pub fn start_agent<A: Into<IpAddr>>(
        &mut self,
        n: usize,
        toml: &str,
        interfaces: Vec<(String, A)>,
    ) -> Result<()> {
        let interfaces = interfaces.into_iter().map(|(i, a)| (i, a.into())).collect();
        let bin = von_bin()?;
        let agent = launch(self, &bin, self.host(n), toml, interfaces)?;
        self.agents.push(agent);
        let last = self.agents.len() - 1;
        self.agents[last].wait_ready()
    }

    /// Host `hN`'s `state_dir`, as [`Topology::agent_config_head`] sets it.
    pub fn state_dir(&self, n: usize) -> PathBuf {
        self.dir().path().join(format!("h{n}")).join("state")
    }

    /// Restarts host `hN`'s agent: stops it as `how` says and waits for it
    /// to exit, runs `between` with its state directory (to delete or
    /// restore it), then runs `von up` again with the same config and waits
    /// until it is ready. Returns the instant `von up` was started.
    pub fn restart_agent(
        &mut self,
        n: usize,
        how: Stop,
        between: impl FnOnce(&std::path::Path) -> Result<()>,
    ) -> Result<Instant> {
        let name = format!("h{n}");
        let i = self
            .agents
            .iter()
            .position(|a| a.host == name)
            .unwrap_or_else(|| panic!("no agent was started on {name}"));
        let mut old = self.agents.remove(i);
        match how {
            Stop::Kill => {
                let _ = old.child.kill();
            }
            Stop::Term => {
                let _ = process::signal(old.pid(), "TERM");
            }
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while old.running() {
            if Instant::now() >= deadline {
                return Err(old.error("did not exit within 10 s of SIGTERM".into()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let interfaces = std::mem::take(&mut old.interfaces);
        drop(old);
        between(&self.state_dir(n))?;
        let config = self.config_path(n);
        let toml = std::fs::read_to_string(&config).map_err(|source| Error::Io {
            what: "read",
            path: config.clone(),
            source,
        })?;
        let started = Instant::now();
        self.start_agent(n, &toml, interfaces)?;
        Ok(started)
    }

    /// The agent running on host `hN`.
    pub fn agent(&self, n: usize) -> &Agent {
        let name = format!("h{n}");
        self.agents
            .iter()
            .find(|a| a.host == name)
            .unwrap_or_else(|| panic!("no agent was started on {name}"))
    }

    /// The agent on host `hN`, mutably (to check it still runs).
    pub fn agent_mut(&mut self, n: usize) -> &mut Agent {
        let name = format!("h{n}");
        self.agents
            .iter_mut()
            .find(|a| a.host == name)
            .unwrap_or_else(|| panic!("no agent was started on {name}"))
    }

    fn spawn_agent(
        &self,
        bin: &std::path::Path,
        host: &Host,
        vons: &[VonSpec],
        views: &[PathBuf],
        mine: &[usize],
    ) -> Result<Agent> {
        let mut toml = self.agent_config_head(host);
        let mut interfaces = Vec::new();
        for &i in mine {
            let von = &vons[i];
            toml.push_str(&Topology::von_table(host, von, &views[i]));
            for a in von.addresses(host.index()) {
                interfaces.push((von.interface(), a));
            }
        }
        launch(self, bin, host, &toml, interfaces)
    }
}

/// Writes `toml` as host `hN`'s `von.toml` and starts `von up` on it, its
/// output going to `hN/agent.log`.
fn launch(
    topo: &Topology,
    bin: &std::path::Path,
    host: &Host,
    toml: &str,
    interfaces: Vec<(String, IpAddr)>,
) -> Result<Agent> {
    let h = host.name();
    let base = topo.dir().path().join(&h);
    let socket = base.join("control.sock");
    let config = topo.dir().write(&format!("{h}/von.toml"), toml)?;
    let log = base.join("agent.log");
    let out = File::create(&log).map_err(|source| Error::Io {
        what: "create",
        path: log.clone(),
        source,
    })?;
    let err = out.try_clone().map_err(|source| Error::Io {
        what: "duplicate handle of",
        path: log.clone(),
        source,
    })?;
    let mut cmd = host.ns().command(bin);
    cmd.arg("up")
        .arg("--config")
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err);
    let child = cmd.spawn().map_err(|source| Error::Spawn {
        cmd: process::show(&cmd),
        source,
    })?;
    Ok(Agent {
        host: h,
        ns: host.ns().name().to_owned(),
        child,
        log,
        socket,
        interfaces,
    })
}

impl Agent {
    /// The host it runs on (`h1`).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Its process id (`ip netns exec` execs the agent in place).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still running (it has not crashed or exited).
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Runs `von status` (the tables for a person) against its socket.
    pub fn status_text(&self) -> Result<String> {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns])
            .arg(von_bin()?)
            .args(["status", "--socket"])
            .arg(&self.socket);
        Ok(process::run_ok(&mut cmd, QUICK)?.stdout)
    }

    /// Reads `von status --json --socket <its socket>`.
    pub fn status(&self) -> Result<Status> {
        let bin = von_bin()?;
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns])
            .arg(bin)
            .args(["status", "--json", "--socket"])
            .arg(&self.socket);
        let out = process::run_ok(&mut cmd, QUICK)?;
        Status::parse(&out.stdout)
    }

    /// The counters of VON `von` now.
    pub fn counters(&self, von: &str) -> Result<VonCounters> {
        self.status()?.von(von)
    }

    /// The agent's whole log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last lines of the agent's log, headed by where it is.
    pub fn log_report(&self) -> String {
        format!(
            "--- von agent on {} ({}) ---\n{}",
            self.host,
            self.log.display(),
            self.log_tail()
        )
    }

    /// Stops the agent: SIGTERM, then SIGKILL if it has not exited in 5 s.
    pub fn stop(mut self) {
        if self.running() {
            let _ = process::signal(self.pid(), "TERM");
            let deadline = Instant::now() + Duration::from_secs(5);
            while self.running() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        // `Drop` kills what is still running.
    }

    fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + STARTUP;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(self.error(format!("exited ({status}) before it was ready")));
            }
            let last = match self.check_ready() {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            if Instant::now() >= deadline {
                return Err(self.error(format!("not ready after {STARTUP:?}: {last}")));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Every interface up with its address, and the status socket answering.
    fn check_ready(&self) -> Result<(), String> {
        for (ifname, addr) in &self.interfaces {
            let mut cmd = Command::new("ip");
            cmd.args(["-n", &self.ns, "-j", "addr", "show", "dev", ifname]);
            let out = process::run(&mut cmd, QUICK).map_err(|e| e.to_string())?;
            if !out.status.success() {
                return Err(format!("{ifname} does not exist yet"));
            }
            let link = crate::link::parse_link(&out.stdout).map_err(|e| e.to_string())?;
            if !link.up {
                return Err(format!("{ifname} is not up"));
            }
            let has = match addr {
                IpAddr::V4(a) => link.addresses.contains(a),
                IpAddr::V6(a) => link.addresses6.contains(a),
            };
            if !has {
                return Err(format!(
                    "{ifname} lacks {addr} (has {:?} {:?})",
                    link.addresses, link.addresses6
                ));
            }
        }
        self.status().map(drop).map_err(|e| e.to_string())
    }

    fn error(&self, reason: String) -> Error {
        Error::Agent {
            host: self.host.clone(),
            reason,
            log: self.log.clone(),
            tail: self.log_tail(),
        }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
