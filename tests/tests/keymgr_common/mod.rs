//! Shared by the `keymgr_*` end-to-end tests: a VON in keymgr mode on the
//! harness's topology. The key manager runs as `von keymgr` on its own host
//! (`h4`, on both LANs); members are `von up` with `keymgr = "192.0.2.4:4433"`
//! and certificates from `von ca init` / `von cert issue`, exactly the
//! operator's commands.
//!
//! ```text
//!  ┌─── h1 ───┐ ┌─── h2 ───┐ ┌─── h3 ───┐ ┌──── h4 ────┐
//!  │ von up   │ │ von up   │ │ von up   │ │ von keymgr │
//!  │ ua   ub  │ │ ua   ub  │ │ ua   ub  │ │ ua     ub  │
//!  └─┬────┬───┘ └─┬────┬───┘ └─┬────┬───┘ └─┬──────┬───┘
//!  ┌─┴────┴───────┴────┴───────┴────┴───────┴──────┴───┐
//!  │ sw: lana 192.0.2.0/24        lanb 198.51.100.0/24 │
//!  └───────────────────────────────────────────────────┘
//! ```

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs::File;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use von_tests::process::{self, signal};
use von_tests::vonbin::von_bin;
use von_tests::{Result, Status, Topology, UNDERLAY_PORT, Underlay};

pub const VON: &str = "grid";
/// The VON prefix the CA records; every certificate below is inside it.
pub const PREFIX: &str = "100.64.1.0/24";
pub const KM_HOST: usize = 4;
pub const KM_PORT: u16 = 4433;

/// A VON in keymgr mode: the topology, the key manager and the agents.
pub struct KmWorld {
    pub topo: Topology,
    /// The host whose underlay A address the key manager listens on: the
    /// standalone `von keymgr`'s own host (h4, or the one after the last
    /// member in a larger world), or h1 when its agent embeds it.
    km_host: usize,
    /// Whether `von keymgr` runs on its own host (not embedded in h1).
    standalone: bool,
    bin: PathBuf,
    dir: PathBuf,
    keymgr: Option<Child>,
    agents: BTreeMap<usize, Child>,
}

impl KmWorld {
    /// Four hosts; certificates for members `h1..=members` and the key manager.
    pub fn new(members: usize) -> Result<Self> {
        Self::with_keymgr_on(members, KM_HOST)
    }

    /// `members` member hosts and the standalone key manager on the host
    /// after them (h4 for up to three members, as [`new`](Self::new)): the
    /// scale test's world.
    pub fn sized(members: usize) -> Result<Self> {
        Self::with_keymgr_on(members, KM_HOST.max(members + 1))
    }

    /// Like [`new`](Self::new), but h1's agent embeds the key manager
    /// (`keymgr = "embedded"`, its state in `km-state`, listening on h1's
    /// underlay A address), as a single-site deployment runs it.
    pub fn new_embedded(members: usize) -> Result<Self> {
        Self::with_keymgr_on(members, 1)
    }

    fn with_keymgr_on(members: usize, km_host: usize) -> Result<Self> {
        let topo = Topology::new(KM_HOST.max(km_host))?;
        let bin = von_bin()?;
        let dir = topo.dir().path().to_owned();
        let w = Self {
            topo,
            km_host,
            standalone: km_host != 1,
            bin,
            dir,
            keymgr: None,
            agents: BTreeMap::new(),
        };
        w.von(
            &[
                "ca", "init", "--von", VON, "--on-id", "7", "--prefix", PREFIX, "--out",
            ],
            &["ca"],
        )?;
        for n in 1..=members {
            w.von(
                &[
                    "cert",
                    "issue",
                    "--ca",
                    &w.path("ca"),
                    "--name",
                    &format!("h{n}"),
                    "--addr",
                    &format!("100.64.1.{n}/24"),
                    "--out",
                ],
                &[&format!("h{n}")],
            )?;
        }
        w.von(
            &[
                "cert",
                "issue",
                "--ca",
                &w.path("ca"),
                "--name",
                "km",
                // No --addr: a key manager has no VON address (issue 16).
                "--role",
                "keymgr",
                "--out",
            ],
            &["km"],
        )?;
        let km = format!(
            "von = \"{VON}\"\non_id = 7\nlisten = \"192.0.2.{km_host}:{KM_PORT}\"\nstate_dir = \"{state}\"\n\
             ca = \"{ca}/ca.crt\"\ncert = \"{km}/km.crt\"\nkey = \"{km}/km.key\"\nnoise_key = \"{km}/km.noise.key\"\n\
             [timers]\nlease = \"3s\"\nrenew = \"1s\"\nprepare_timeout = \"2s\"\ngrace = \"1s\"\n",
            state = w.path("km-state"),
            ca = w.path("ca"),
            km = w.path("km"),
        );
        w.topo.dir().write("keymgr.toml", &km)?;
        Ok(w)
    }

    /// A key manager and agents `h1..=members` started, every member on one
    /// epoch with the whole view: the starting point of every keymgr test.
    pub fn joined(members: usize) -> Result<Self> {
        let mut w = Self::new(members)?;
        w.start(members)?;
        Ok(w)
    }

    /// Starts the key manager (unless an agent embeds it) and agents
    /// `h1..=members`, and waits until every member is on one epoch with the
    /// whole view.
    pub fn start(&mut self, members: usize) -> Result<()> {
        if self.standalone {
            self.start_keymgr()?;
        }
        for n in 1..=members {
            self.start_agent(n)?;
        }
        let all = members as u64;
        self.wait(15, "every member on one epoch", |w| {
            let e: Vec<_> = (1..=members).map(|n| w.epoch(n).ok()).collect();
            e.iter().all(|x| x.is_some() && *x == e[0])
                && (1..=members).all(|n| w.members(n).ok() == Some(all))
        })
    }

    pub fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    /// Runs `von ARGS PATHS...` (paths relative to the test directory).
    fn von(&self, args: &[&str], paths: &[&str]) -> Result<String> {
        let mut cmd = Command::new(&self.bin);
        cmd.args(args);
        for p in paths {
            cmd.arg(self.path(p));
        }
        Ok(process::run_ok(&mut cmd, Duration::from_secs(30))?.stdout)
    }

    /// Runs `von keymgr OP --config keymgr.toml` in the key manager's host.
    pub fn keymgr_ctl(&self, op: &[&str]) -> Result<String> {
        let mut cmd = self.topo.host(self.km_host).ns().command(&self.bin);
        cmd.arg("keymgr")
            .args(op)
            .arg("--config")
            .arg(self.keymgr_config());
        Ok(process::run_ok(&mut cmd, Duration::from_secs(10))?.stdout)
    }

    /// The file `von keymgr` is given: the standalone key manager's
    /// keymgr.toml, or the von.toml of the agent that embeds it (issue 16:
    /// one way to administer both, with no second file for the embedded).
    pub fn keymgr_config(&self) -> String {
        if self.standalone {
            self.path("keymgr.toml")
        } else {
            self.path(&format!("h{}.toml", self.km_host))
        }
    }

    /// The key manager's status as JSON.
    pub fn keymgr_status(&self) -> Result<Value> {
        let out = self.keymgr_ctl(&["status", "--json"])?;
        Ok(serde_json::from_str(&out).expect("von keymgr status --json is JSON"))
    }

    /// Starts `von keymgr` on its host and waits until its control socket
    /// answers.
    pub fn start_keymgr(&mut self) -> Result<()> {
        let log = File::create(self.dir.join("keymgr.log")).expect("log file");
        let mut cmd = self.topo.host(self.km_host).ns().command(&self.bin);
        cmd.args(["keymgr", "--config"])
            .arg(self.path("keymgr.toml"))
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log);
        self.keymgr = Some(cmd.spawn().expect("spawn von keymgr"));
        self.wait(10, "the key manager's control socket", |w| {
            w.keymgr_status().is_ok()
        })
    }

    /// Kills the key manager with SIGKILL.
    pub fn kill_keymgr(&mut self) -> Result<()> {
        let mut child = self.keymgr.take().expect("key manager running");
        let sent = signal(child.id(), "KILL");
        let _ = child.kill();
        let _ = child.wait();
        sent
    }

    /// Starts member `hN` (`von up`) and waits until it reports a view.
    pub fn start_agent(&mut self, n: usize) -> Result<()> {
        self.spawn_agent(n)?;
        let h = format!("h{n}");
        self.wait(20, &format!("{h} to report a view"), |w| w.epoch(n).is_ok())
    }

    /// Starts member `hN` (`von up`) without waiting for a view (one the key
    /// manager refuses never gets one).
    pub fn spawn_agent(&mut self, n: usize) -> Result<()> {
        self.spawn_agent_env(n, &[])
    }

    /// Like [`spawn_agent`](Self::spawn_agent), with `env` added to the
    /// agent's environment (`JOURNAL_STREAM`, `RUST_BACKTRACE`).
    pub fn spawn_agent_env(&mut self, n: usize, env: &[(&str, &str)]) -> Result<()> {
        let h = format!("h{n}");
        let host = self.topo.host(n);
        let toml = self.agent_toml(n);
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
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log);
        self.agents.insert(n, cmd.spawn().expect("spawn von up"));
        Ok(())
    }

    /// Runs `wrap... von up ARGS --config FILE` in `hN`'s namespace, FILE
    /// holding `toml`, and returns what it printed once it exits (within
    /// 10 s): for starts that must fail, and for `von up --check`.
    pub fn run_up(
        &self,
        n: usize,
        toml: &str,
        wrap: &[&str],
        args: &[&str],
    ) -> Result<von_tests::process::Output> {
        let file = format!("h{n}-once.toml");
        let config = self.topo.dir().write(&file, toml)?;
        let mut cmd = match wrap.split_first() {
            Some((first, rest)) => {
                let mut cmd = self.topo.host(n).ns().command(first);
                cmd.args(rest).arg(&self.bin);
                cmd
            }
            None => self.topo.host(n).ns().command(&self.bin),
        };
        cmd.arg("up").args(args).arg("--config").arg(config);
        process::run(&mut cmd, Duration::from_secs(10))
    }

    /// Member `hN`'s von.toml, as [`spawn_agent`](Self::spawn_agent) writes it.
    pub fn agent_toml(&self, n: usize) -> String {
        let h = format!("h{n}");
        let host = self.topo.host(n);
        let embeds = n == self.km_host;
        let endpoint = if embeds {
            "embedded".to_owned()
        } else {
            format!("192.0.2.{}:{KM_PORT}", self.km_host)
        };
        let mut toml = format!(
            "state_dir = \"{state}\"\ncontrol_socket = \"{sock}\"\nlog = \"info\"\n\n\
             [underlay.a]\nbind = \"{a}:{UNDERLAY_PORT}\"\n[underlay.b]\nbind = \"{b}:{UNDERLAY_PORT}\"\n\n\
             [[von]]\nname = \"{VON}\"\nrate = \"200mbit\"\nkeymgr = \"{endpoint}\"\n\
             cert = \"{d}/{h}.crt\"\nkey = \"{d}/{h}.key\"\nca = \"{ca}/ca.crt\"\nnoise_key = \"{d}/{h}.noise.key\"\n",
            state = self.path(&format!("{h}-state")),
            sock = self.path(&format!("{h}.sock")),
            a = host.underlay_addr(Underlay::A),
            b = host.underlay_addr(Underlay::B),
            d = self.path(&h),
            ca = self.path("ca"),
        );
        if embeds {
            toml.push_str(&format!(
                "\n[von.embedded_keymgr]\non_id = 7\nlisten = \"{a}:{KM_PORT}\"\nstate_dir = \"{state}\"\n\
                 cert = \"{km}/km.crt\"\nkey = \"{km}/km.key\"\nnoise_key = \"{km}/km.noise.key\"\n\
                 [von.embedded_keymgr.timers]\nlease = \"3s\"\nrenew = \"1s\"\nprepare_timeout = \"2s\"\ngrace = \"1s\"\n",
                a = host.underlay_addr(Underlay::A),
                state = self.path("km-state"),
                km = self.path("km"),
            ));
        }
        toml
    }

    /// Issues `name`'s certificate for `addr` straight from the CA's key,
    /// bypassing `von cert issue`'s ledger checks: what an older von, a
    /// careless script or a second CA copy could have issued.
    pub fn issue_unchecked(&self, name: &str, member_id: u32, addr: &str) {
        use std::os::unix::fs::OpenOptionsExt;
        let read = |f: &str| std::fs::read_to_string(self.dir.join(f)).expect("CA file");
        let ca = von_crypto::cert::Ca::from_pem(&read("ca/ca.crt"), &read("ca/ca.key"))
            .expect("the CA loads");
        let from = ca.info().not_before;
        let issued = ca
            .issue(&von_crypto::cert::IssueRequest {
                role: von_crypto::cert::Role::Member,
                name: name.parse().expect("member name"),
                member_id: von_crypto::MemberId(member_id),
                addr: addr.parse().expect("VON address"),
                not_before: from,
                not_after: from + Duration::from_secs(30 * 86_400),
            })
            .expect("the CA signs");
        let out = self.dir.join(name);
        std::fs::create_dir_all(&out).expect("out dir");
        let write = |file: String, bytes: &[u8], mode: u32| {
            let path = out.join(file);
            let _ = std::fs::remove_file(&path);
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(mode)
                .open(&path)
                .expect("create");
            std::io::Write::write_all(&mut f, bytes).expect("write");
        };
        write(format!("{name}.crt"), issued.cert_pem.as_bytes(), 0o644);
        write(format!("{name}.key"), issued.tls_key_pem.as_bytes(), 0o600);
        write(
            format!("{name}.noise.key"),
            issued.noise_secret.to_file_text().as_bytes(),
            0o600,
        );
    }

    /// Stops member `hN` with `sig` (TERM: it leaves cleanly; KILL: it just dies).
    pub fn stop_agent(&mut self, n: usize, sig: &str) -> Result<()> {
        let mut child = self.agents.remove(&n).expect("agent running");
        if let Err(e) = signal(child.id(), sig) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(e);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        Ok(())
    }

    /// Sends `sig` to member `hN`'s agent and leaves it running (or not).
    pub fn signal_agent(&self, n: usize, sig: &str) -> Result<()> {
        signal(self.agents[&n].id(), sig)
    }

    /// The process id of member `hN`'s agent (`ip netns exec` execs into
    /// `von up`, so it is the agent's own).
    pub fn agent_pid(&self, n: usize) -> u32 {
        self.agents[&n].id()
    }

    /// Whether member `hN`'s agent is still running.
    pub fn agent_running(&mut self, n: usize) -> bool {
        let child = self.agents.get_mut(&n).expect("agent started");
        matches!(child.try_wait(), Ok(None))
    }

    /// Sends `sig` to member `hN`'s agent and measures how long it takes to
    /// exit: `None` if it still runs after `limit` (it is then killed).
    pub fn stop_agent_within(
        &mut self,
        n: usize,
        sig: &str,
        limit: Duration,
    ) -> Result<Option<(Duration, std::process::ExitStatus)>> {
        let mut child = self.agents.remove(&n).expect("agent running");
        let sent = Instant::now();
        if let Err(e) = signal(child.id(), sig) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(e);
        }
        while sent.elapsed() < limit {
            if let Ok(Some(status)) = child.try_wait() {
                return Ok(Some((sent.elapsed(), status)));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
        Ok(None)
    }

    /// The whole log of `name` (`h1`, `keymgr`).
    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(format!("{name}.log"))).unwrap_or_default()
    }

    /// The test directory (configs, logs, state).
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// Runs `von ARGS` in host `hN`'s namespace; any exit status is returned.
    pub fn von_in(&self, n: usize, args: &[&str]) -> Result<von_tests::process::Output> {
        let mut cmd = self.topo.host(n).ns().command(&self.bin);
        cmd.args(args);
        process::run(&mut cmd, Duration::from_secs(10))
    }

    /// `von status --json` of member `hN`.
    pub fn status(&self, n: usize) -> Result<Status> {
        let mut cmd = self.topo.host(n).ns().command(&self.bin);
        cmd.args(["status", "--json", "--socket"])
            .arg(self.path(&format!("h{n}.sock")));
        Status::parse(&process::run_ok(&mut cmd, Duration::from_secs(5))?.stdout)
    }

    /// `von status` (the table for a person) of member `hN`.
    pub fn status_text(&self, n: usize) -> Result<String> {
        let mut cmd = self.topo.host(n).ns().command(&self.bin);
        cmd.arg("status")
            .arg("--socket")
            .arg(self.path(&format!("h{n}.sock")));
        Ok(process::run_ok(&mut cmd, Duration::from_secs(5))?.stdout)
    }

    /// The epoch member `hN` sends under.
    pub fn epoch(&self, n: usize) -> Result<u64> {
        let s = self.status(n)?;
        Ok(von_field(&s, "epoch").as_u64().expect("epoch is a number"))
    }

    /// How many members `hN`'s view has.
    pub fn members(&self, n: usize) -> Result<u64> {
        let s = self.status(n)?;
        Ok(von_field(&s, "members")
            .as_u64()
            .expect("members is a number"))
    }

    /// Polls `f` every 50 ms for up to `secs`.
    pub fn wait(&self, secs: u64, what: &str, mut f: impl FnMut(&Self) -> bool) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if f(self) {
                return Ok(());
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {secs} s waiting for {what}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Every log's last lines, for failure messages.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for name in ["keymgr", "h1", "h2", "h3"] {
            let text =
                std::fs::read_to_string(self.dir.join(format!("{name}.log"))).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            out.push_str(&format!("--- {name}.log ---\n"));
            for l in &lines[lines.len().saturating_sub(25)..] {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }

    /// `Udp: RcvbufErrors` of host `hN`'s namespace (`/proc/net/snmp`): datagrams
    /// the kernel dropped because a receiving socket's buffer was full.
    pub fn udp_rcvbuf_errors(&self, n: usize) -> Result<u64> {
        let out = self.topo.host(n).ns().exec_ok(["cat", "/proc/net/snmp"])?;
        let udp: Vec<&str> = out
            .stdout
            .lines()
            .filter(|l| l.starts_with("Udp:"))
            .collect();
        let (names, values) = (udp[0].split_whitespace(), udp[1].split_whitespace());
        let value = names
            .zip(values)
            .find(|(k, _)| *k == "RcvbufErrors")
            .and_then(|(_, v)| v.parse().ok())
            .expect("/proc/net/snmp has Udp RcvbufErrors");
        Ok(value)
    }

    /// `tx_dropped` of host `hN`'s VON interface: packets the kernel dropped
    /// because the TUN queue towards the agent was full.
    pub fn tun_tx_dropped(&self, n: usize) -> Result<u64> {
        let out = self
            .topo
            .host(n)
            .ns()
            .exec_ok(["cat", "/sys/class/net/von-grid/statistics/tx_dropped"])?;
        Ok(out.stdout.trim().parse().expect("tx_dropped is a number"))
    }

    /// Member `hN`'s VON address.
    pub fn address(n: usize) -> Ipv4Addr {
        Ipv4Addr::new(100, 64, 1, n as u8)
    }
}

impl Drop for KmWorld {
    fn drop(&mut self) {
        for (_, mut c) in std::mem::take(&mut self.agents) {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some(mut c) = self.keymgr.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `vons[0].<field>` of a status document.
pub fn von_field(s: &Status, field: &str) -> Value {
    s.json()["vons"][0][field].clone()
}
