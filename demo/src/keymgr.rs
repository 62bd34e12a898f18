//! The demo's control plane: a CA and certificates made by the real
//! `von ca init` / `von cert issue`, agent configs in key manager mode (the
//! key manager embedded in h1's agent), and the removal of a member with
//! `von keymgr revoke`, watched through `von status --json`.

use std::fmt::Write as _;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;
use von_lab::{Ping, PingReport, Topology, Underlay, VonSpec};

use super::report::Rekey;
use super::say;
use super::stop::Stop;

/// The key manager's QUIC port, on h1's underlay A address.
const KEYMGR_PORT: u16 = 4433;
/// Time for the group to settle on one epoch, and for a rekey to commit.
const SETTLE: Duration = Duration::from_secs(30);
/// The ping that runs across the rekey: 300 requests 10 ms apart.
const REKEY_PINGS: u32 = 300;

/// Where the certificates and keys of the demo VON are.
#[derive(Debug)]
pub struct Credentials {
    dir: PathBuf,
}

impl Credentials {
    /// `von ca init` and one `von cert issue` per host and for the key
    /// manager, run as processes of this binary (the operator's commands).
    pub fn issue(
        bin: &Path,
        topo: &Topology,
        grid: &VonSpec,
        on_id: u32,
        out: &mut dyn Write,
    ) -> anyhow::Result<Self> {
        let dir = topo.dir().path().join("pki");
        let ca = dir.join("ca");
        let prefix = format!("{}/24", grid.address(0));
        run(
            bin,
            &[
                "ca",
                "init",
                "--von",
                &grid.name,
                "--on-id",
                &on_id.to_string(),
                "--prefix",
                &prefix,
                "--out",
            ],
            &ca,
        )?;
        say(
            out,
            &format!(
                "von ca init --von {} --on-id {on_id} --prefix {prefix}: CA in {}",
                grid.name,
                ca.display()
            ),
        )?;
        for host in topo.hosts() {
            let addr = format!("{}/24", grid.address(host.index()));
            let name = host.name();
            let args = [
                "cert",
                "issue",
                "--ca",
                &ca.to_string_lossy(),
                "--name",
                &name,
                "--addr",
                &addr,
                "--out",
            ];
            let printed = run(bin, &args, &dir.join(&name))?;
            say(
                out,
                &format!(
                    "von cert issue --name {name} --addr {addr}: {}",
                    printed.trim()
                ),
            )?;
        }
        let km_addr = format!("{}/24", grid.address(254));
        let args = [
            "cert",
            "issue",
            "--ca",
            &ca.to_string_lossy(),
            "--name",
            "km",
            "--addr",
            &km_addr,
            "--role",
            "keymgr",
            "--out",
        ];
        run(bin, &args, &dir.join("km"))?;
        say(
            out,
            "von cert issue --name km --role keymgr: the key manager's certificate",
        )?;
        Ok(Self { dir })
    }

    fn file(&self, holder: &str, suffix: &str) -> PathBuf {
        self.dir.join(holder).join(format!("{holder}.{suffix}"))
    }

    fn ca(&self) -> PathBuf {
        self.dir.join("ca").join("ca.crt")
    }
}

/// The key manager's address: h1 on underlay A.
pub fn keymgr_addr() -> String {
    format!("{}:{KEYMGR_PORT}", Underlay::A.address(1))
}

/// Host `hN`'s `von.toml`: h1 runs the key manager embedded, the others
/// reach it at [`keymgr_addr`].
pub fn agent_config(
    topo: &Topology,
    n: usize,
    grid: &VonSpec,
    on_id: u32,
    creds: &Credentials,
) -> String {
    let host = topo.host(n);
    let name = host.name();
    let mut toml = topo.agent_config_head(host);
    let _ = write!(
        toml,
        "\n[[von]]\nname = \"{}\"\ninterface = \"{}\"\nrate = \"{}\"\n",
        grid.name,
        grid.interface(),
        grid.rate
    );
    let endpoint = if n == 1 {
        "embedded".to_owned()
    } else {
        keymgr_addr()
    };
    let _ = write!(
        toml,
        "keymgr = \"{endpoint}\"\ncert = \"{}\"\nkey = \"{}\"\nca = \"{}\"\nnoise_key = \"{}\"\n",
        creds.file(&name, "crt").display(),
        creds.file(&name, "key").display(),
        creds.ca().display(),
        creds.file(&name, "noise.key").display(),
    );
    if n == 1 {
        let _ = write!(
            toml,
            "\n[von.embedded_keymgr]\non_id = {on_id}\nlisten = \"{}\"\nstate_dir = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\nnoise_key = \"{}\"\n",
            keymgr_addr(),
            keymgr_state(topo).display(),
            creds.file("km", "crt").display(),
            creds.file("km", "key").display(),
            creds.file("km", "noise.key").display(),
        );
    }
    toml
}

/// The embedded key manager's state directory (its control socket is in it).
fn keymgr_state(topo: &Topology) -> PathBuf {
    topo.dir().path().join("h1").join("keymgr-grid")
}

/// Removes h3 while h1 pings h2 every 10 ms: `von keymgr revoke --name h3`,
/// then waits for h1 and h2 to send under a new epoch, and checks that h3
/// can no longer reach h1.
pub fn remove_member(
    bin: &Path,
    topo: &Topology,
    grid: &VonSpec,
    stop: &Stop,
    out: &mut dyn Write,
) -> anyhow::Result<Rekey> {
    let before = settled_epoch(topo, &grid.name, &[1, 2, 3], stop)?;
    say(
        out,
        &format!(
            "rekey: all three members send under epoch {before}; removing h3 while h1 pings h2 every 10 ms"
        ),
    )?;
    let ping = Ping::new(grid.address(2), REKEY_PINGS).interval(Duration::from_millis(10));
    let running = ping
        .spawn(topo.host(1).ns())
        .context("starting ping -i 0.01")?;
    stop.sleep(Duration::from_millis(500))?;
    // h1's own von.toml: `von keymgr` finds the key manager h1 embeds in
    // its `[[von]]` table, so no second file repeats its settings.
    let config = topo.dir().path().join("h1").join("von.toml");
    let printed = run_in(
        topo,
        1,
        bin,
        &[
            "keymgr",
            "revoke",
            "--config",
            &config.to_string_lossy(),
            "--name",
            "h3",
        ],
    )?;
    say(
        out,
        &format!("  von keymgr revoke --name h3: {}", printed.trim()),
    )?;
    let deadline = Instant::now() + SETTLE;
    let after = loop {
        stop.check()?;
        let e1 = epoch(topo, 1, &grid.name)?;
        let e2 = epoch(topo, 2, &grid.name)?;
        if e1 > before && e1 == e2 {
            break e1;
        }
        if Instant::now() >= deadline {
            bail!(
                "after revoking h3, h1 sends under epoch {e1} and h2 under {e2} (was {before}) after {SETTLE:?}"
            );
        }
        stop.sleep(Duration::from_millis(50))?;
    };
    let members = members(topo, 1, &grid.name)?;
    say(
        out,
        &format!("  h1 and h2 now send under epoch {after}; h1's view has {members} members"),
    )?;
    let mut running = running;
    while running.running() {
        stop.sleep(Duration::from_millis(50))?;
    }
    let r = PingReport::parse(&running.wait(Duration::from_secs(5))?)?;
    stop.check()?;
    let lost = r.transmitted.saturating_sub(r.received);
    say(
        out,
        &format!(
            "  across the rekey: {} sent, {} received, {lost} lost",
            r.transmitted, r.received
        ),
    )?;
    let outcast = Ping::new(grid.address(1), 5)
        .interval(Duration::from_millis(100))
        .wait(1)
        .run(topo.host(3).ns())?;
    stop.check()?;
    say(
        out,
        &format!(
            "  h3 -> h1 after removal: {}/{} received",
            outcast.received, outcast.transmitted
        ),
    )?;
    Ok(Rekey {
        removed: "h3".into(),
        before,
        after,
        sent: r.transmitted,
        lost,
        members,
        outcast_sent: outcast.transmitted,
        outcast_received: outcast.received,
    })
}

/// Waits until every host in `hosts` sends under one epoch; returns it.
fn settled_epoch(topo: &Topology, von: &str, hosts: &[usize], stop: &Stop) -> anyhow::Result<u64> {
    let deadline = Instant::now() + SETTLE;
    loop {
        stop.check()?;
        let epochs = hosts
            .iter()
            .map(|&n| epoch(topo, n, von))
            .collect::<anyhow::Result<Vec<_>>>()?;
        if epochs.windows(2).all(|w| w[0] == w[1]) {
            return Ok(epochs[0]);
        }
        if Instant::now() >= deadline {
            bail!("the members never agreed on an epoch: {epochs:?} after {SETTLE:?}");
        }
        stop.sleep(Duration::from_millis(100))?;
    }
}

/// A field of VON `von` in host `hN`'s `von status --json`.
fn field(topo: &Topology, n: usize, von: &str, name: &str) -> anyhow::Result<u64> {
    let status = topo.agent(n).status()?;
    status.json()["vons"]
        .as_array()
        .and_then(|vons| vons.iter().find(|v| v["name"] == von))
        .and_then(|v| v.get(name))
        .and_then(Value::as_u64)
        .with_context(|| {
            format!(
                "h{n}'s status has no {name} for VON {von}: {}",
                status.json()
            )
        })
}

fn epoch(topo: &Topology, n: usize, von: &str) -> anyhow::Result<u64> {
    field(topo, n, von, "epoch")
}

fn members(topo: &Topology, n: usize, von: &str) -> anyhow::Result<u64> {
    field(topo, n, von, "members")
}

/// Runs `von ARGS DIR` (the output directory last); returns its stdout.
fn run(bin: &Path, args: &[&str], dir: &Path) -> anyhow::Result<String> {
    let mut cmd = Command::new(bin);
    cmd.args(args).arg(dir);
    output(&mut cmd)
}

/// Runs `von ARGS` in host `hN`'s namespace; returns its stdout.
fn run_in(topo: &Topology, n: usize, bin: &Path, args: &[&str]) -> anyhow::Result<String> {
    let mut cmd = topo.host(n).ns().command(bin);
    cmd.args(args);
    output(&mut cmd)
}

fn output(cmd: &mut Command) -> anyhow::Result<String> {
    let shown = format!("{cmd:?}");
    let out = cmd.output().with_context(|| format!("running {shown}"))?;
    if !out.status.success() {
        bail!(
            "{shown} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
