//! The leak guard: a VON address leaves and enters the host only through its
//! VON's TUN, whatever routes the host is given (the TunnelVision, TunnelCrack
//! LocalNet and CVE-2019-14899 classes; docs/leaks.md).
//!
//! [`Guard::install`] puts the agent's own nftables table `inet von` in place
//! before any TUN exists (`ruleset.rs` says what it holds), replacing one a
//! killed agent left behind; dropping the [`Guard`] removes it. Nothing else
//! in the ruleset is read or changed.
//!
//! [`Guard::watch`] is the control-side check, every [`CHECK_EVERY`], never
//! on the packet path: it reads the table's drop counters, puts the table
//! back if someone removed it (`nft flush ruleset`, a firewall reload), and
//! looks for routes that conflict with a VON prefix (`routes.rs`), logging
//! each once when it appears and once when it clears. What it finds is in
//! the [`SharedGuard`] that status and metrics read.

pub mod routes;
pub mod ruleset;

use std::collections::HashSet;
use std::io::Write as _;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tracing::{error, info, warn};

pub use routes::{ConflictKind, RouteConflict};
pub use ruleset::{Drops, GuardedVon, TABLE};

use von_packet::{SharedSnapshot, UnderlayName};

/// How often the watcher reads counters and routes. A conflict shows in
/// status within this time, and so does a drop.
pub const CHECK_EVERY: Duration = Duration::from_secs(2);

/// How long one `nft` or `ip` call may take before the check gives up on it.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the guard could not be put in place (the agent then does not start:
/// it never runs a VON unguarded).
#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    /// `nft` is not installed.
    #[error(
        "the leak guard needs nftables' `nft` command, which is not installed: install it \
         (Debian: `apt-get install nftables`); von keeps VON addresses off the underlays with it"
    )]
    NoNft(#[source] std::io::Error),
    /// `nft` refused the table.
    #[error(
        "installing the leak guard (nftables table {TABLE}) failed: {stderr}; the kernel needs \
         nf_tables (`modprobe nf_tables`) and the agent CAP_NET_ADMIN"
    )]
    Refused { stderr: String },
    /// Running `nft` failed otherwise.
    #[error("running nft for the leak guard")]
    Io(#[source] std::io::Error),
    /// An interface name nft would read as something else.
    #[error(
        "VON {von}: interface {interface:?} cannot be matched exactly in an nftables rule; \
         set `interface` in its [[von]] table to letters, digits, \"-\", \"_\" or \".\""
    )]
    InterfaceName { von: String, interface: String },
}

/// Per VON, what the guard saw (the status document's `guard`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VonGuard {
    /// Packets to or from the VON prefix dropped because they would have
    /// left by another interface than the TUN (since the agent started).
    pub leaks_dropped: u64,
    /// Packets to or from the VON prefix dropped because they arrived by
    /// another interface than the TUN.
    pub injections_dropped: u64,
    /// Routes that conflict with the VON prefix now.
    pub route_conflicts: Vec<RouteConflict>,
}

/// The guard as a whole (the status document's `leak_guard`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuardStatus {
    /// The nftables table (`inet von`).
    pub table: String,
    /// Whether the table was in place at the last check.
    pub installed: bool,
    /// Times the watcher found the table gone and put it back.
    pub reinstalls: u64,
    /// Milliseconds since the last check; `null` before the first.
    pub checked_ms_ago: Option<u64>,
}

/// What the watcher last found, per VON in config order.
#[derive(Debug, Clone, Default)]
pub struct GuardReport {
    /// The table's state.
    pub installed: bool,
    /// Times it was put back.
    pub reinstalls: u64,
    /// When the last check ended.
    pub checked: Option<SystemTime>,
    /// Per guarded VON: its name and findings, in the order it was added.
    pub vons: Vec<(String, VonGuard)>,
}

impl GuardReport {
    /// What the guard found for VON `name` (nothing yet if it is new).
    pub fn von(&self, name: &str) -> VonGuard {
        self.vons
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, g)| g.clone())
            .unwrap_or_default()
    }

    /// The document's `leak_guard` as of `now`.
    pub fn status(&self, now: SystemTime) -> GuardStatus {
        GuardStatus {
            table: TABLE.to_owned(),
            installed: self.installed,
            reinstalls: self.reinstalls,
            checked_ms_ago: self.checked.map(|t| {
                now.duration_since(t)
                    .unwrap_or_default()
                    .as_millis()
                    .try_into()
                    .unwrap_or(u64::MAX)
            }),
        }
    }
}

/// The watcher's findings, read by status and metrics.
pub type SharedGuard = Arc<ArcSwap<GuardReport>>;

/// The installed table; removed on drop.
#[derive(Debug)]
pub struct Guard {
    shared: SharedGuard,
    /// Changes of the guarded set, carried out by the watcher, which alone
    /// touches the table once it is installed.
    requests: mpsc::UnboundedSender<Request>,
    /// The watcher's state until [`Guard::watch`] takes it.
    watcher: Option<(Watcher, mpsc::UnboundedReceiver<Request>)>,
}

/// A new set of guarded VONs and where to say how installing it went.
type Request = (
    Vec<(GuardedVon, SharedSnapshot)>,
    oneshot::Sender<Result<(), GuardError>>,
);

impl Guard {
    /// Installs (or replaces) the table for `vons` (each with its view, for
    /// the member endpoints the route check spares), sparing the agent's own
    /// underlay sockets at `underlays`.
    pub fn install(
        vons: Vec<(GuardedVon, SharedSnapshot)>,
        underlays: Vec<(UnderlayName, SocketAddr)>,
    ) -> Result<Self, GuardError> {
        let guarded = checked(&vons)?;
        let stale = nft(&["list", "table", "inet", "von"], None)
            .map_err(nft_error)?
            .status
            .success();
        let out = nft(
            &["-f", "-"],
            Some(&ruleset::install_script(&guarded, &binds(&underlays))),
        )
        .map_err(nft_error)?;
        if !out.status.success() {
            return Err(GuardError::Refused {
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            });
        }
        if stale {
            warn!(
                table = TABLE,
                "replaced a leak guard table left by an agent that did not stop cleanly"
            );
        }
        info!(
            table = TABLE,
            vons = guarded.len(),
            "leak guard installed: VON addresses pass only through their TUN"
        );
        let shared = Arc::new(ArcSwap::from_pointee(GuardReport {
            installed: true,
            vons: guarded
                .iter()
                .map(|v| (v.name.clone(), VonGuard::default()))
                .collect(),
            ..GuardReport::default()
        }));
        let n = vons.len();
        let (snapshots, vons) = (vons.iter().map(|(_, s)| s.clone()).collect(), guarded);
        let watcher = Watcher {
            vons,
            underlays,
            snapshots,
            shared: shared.clone(),
            base: vec![Drops::default(); n],
            last: vec![Drops::default(); n],
            conflicts: vec![HashSet::new(); n],
            failing: None,
        };
        let (requests, received) = mpsc::unbounded_channel();
        Ok(Self {
            shared,
            requests,
            watcher: Some((watcher, received)),
        })
    }

    /// What status and metrics read.
    pub fn shared(&self) -> SharedGuard {
        self.shared.clone()
    }

    /// The periodic check, and every later change of the guarded set, for a
    /// task of its own. Runs until dropped; call once.
    pub fn watch(&mut self) -> impl std::future::Future<Output = &'static str> + Send + 'static {
        let (mut watcher, mut requests) = self
            .watcher
            .take()
            .unwrap_or_else(|| unreachable!("Guard::watch is called once"));
        async move {
            loop {
                watcher.check().await;
                let sleep = tokio::time::sleep(CHECK_EVERY);
                tokio::pin!(sleep);
                loop {
                    tokio::select! {
                        () = &mut sleep => break,
                        request = requests.recv() => match request {
                            Some((vons, done)) => {
                                let _ = done.send(watcher.reconfigure(vons).await);
                            }
                            None => return "leak guard",
                        },
                    }
                }
            }
        }
    }

    /// Guards exactly `vons` from now on: a VON is added before its TUN
    /// exists and removed after its TUN is gone. The table is replaced in
    /// one transaction, so the VONs it keeps are never unguarded; their
    /// counts carry over. On an error the previous set stays guarded.
    pub async fn set(&self, vons: Vec<(GuardedVon, SharedSnapshot)>) -> Result<(), GuardError> {
        let (done, result) = oneshot::channel();
        self.requests
            .send((vons, done))
            .map_err(|_| GuardError::Io(std::io::Error::other("the leak guard watcher stopped")))?;
        result.await.unwrap_or_else(|_| {
            Err(GuardError::Io(std::io::Error::other(
                "the leak guard watcher stopped",
            )))
        })
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        match nft(&["-f", "-"], Some(&ruleset::remove_script())) {
            Ok(out) if out.status.success() => info!(table = TABLE, "leak guard removed"),
            Ok(out) => warn!(
                table = TABLE,
                "removing the leak guard: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            Err(e) => warn!(table = TABLE, "removing the leak guard: {e}"),
        }
    }
}

/// What `von up --check` can tell without touching the ruleset: every
/// `(VON, interface)` can be matched in a rule, and `nft` runs.
pub fn preflight<'a>(
    interfaces: impl Iterator<Item = (&'a str, &'a str)>,
) -> Result<(), GuardError> {
    check_interfaces(interfaces)?;
    nft(&["--version"], None).map_err(nft_error).map(drop)
}

/// The VONs of `vons`, once every interface can be matched in a rule.
fn checked(vons: &[(GuardedVon, SharedSnapshot)]) -> Result<Vec<GuardedVon>, GuardError> {
    check_interfaces(
        vons.iter()
            .map(|(v, _)| (v.name.as_str(), v.interface.as_str())),
    )?;
    Ok(vons.iter().map(|(v, _)| v.clone()).collect())
}

fn check_interfaces<'a>(
    mut interfaces: impl Iterator<Item = (&'a str, &'a str)>,
) -> Result<(), GuardError> {
    match interfaces.find(|(_, i)| !ruleset::plain_interface_name(i)) {
        Some((von, interface)) => Err(GuardError::InterfaceName {
            von: von.to_owned(),
            interface: interface.to_owned(),
        }),
        None => Ok(()),
    }
}

fn nft_error(e: std::io::Error) -> GuardError {
    if e.kind() == std::io::ErrorKind::NotFound {
        GuardError::NoNft(e)
    } else {
        GuardError::Io(e)
    }
}

/// Runs `nft args`, feeding `stdin` if given (start and stop only: blocking).
fn nft(args: &[&str], stdin: Option<&str>) -> std::io::Result<std::process::Output> {
    let mut child = Command::new("nft")
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes())?;
    }
    child.wait_with_output()
}

/// The watcher's state between checks.
#[derive(Debug)]
struct Watcher {
    vons: Vec<GuardedVon>,
    underlays: Vec<(UnderlayName, SocketAddr)>,
    snapshots: Vec<SharedSnapshot>,
    shared: SharedGuard,
    /// Counts of tables removed under the agent, so totals never go back.
    base: Vec<Drops>,
    /// The present table's last counts.
    last: Vec<Drops>,
    /// Conflicts seen at the last check, per VON (to log changes once).
    conflicts: Vec<HashSet<RouteConflict>>,
    /// The step that failed at the last check, so a failure logs once.
    failing: Option<&'static str>,
}

impl Watcher {
    /// Replaces the table with one for `vons`; what each kept VON counted
    /// so far carries over (a new table's counters start at zero).
    async fn reconfigure(
        &mut self,
        vons: Vec<(GuardedVon, SharedSnapshot)>,
    ) -> Result<(), GuardError> {
        let guarded = checked(&vons)?;
        // The counts up to now, read before the table goes; if the read fails
        // the last check's counts stand.
        if let Ok(text) = run("nft", &["-j", "list", "counters", "table", "inet", "von"]).await
            && let Ok(Some(counts)) = ruleset::parse_counters(&text, &self.vons)
        {
            self.last = counts;
        }
        let script = ruleset::install_script(&guarded, &binds(&self.underlays));
        run_with_stdin("nft", &["-f", "-"], script)
            .await
            .map_err(|stderr| GuardError::Refused { stderr })?;
        let mut report = GuardReport::clone(&self.shared.load());
        let old = std::mem::take(&mut self.vons);
        let mut carried = Vec::with_capacity(guarded.len());
        for v in &guarded {
            carried.push(match old.iter().position(|o| o.name == v.name) {
                Some(i) => (
                    self.base[i].plus(self.last[i]),
                    std::mem::take(&mut self.conflicts[i]),
                    report.von(&v.name),
                ),
                None => (Drops::default(), HashSet::new(), VonGuard::default()),
            });
        }
        self.base = carried.iter().map(|(b, ..)| *b).collect();
        self.last = vec![Drops::default(); guarded.len()];
        report.vons = guarded
            .iter()
            .zip(&carried)
            .map(|(v, (_, _, g))| (v.name.clone(), g.clone()))
            .collect();
        self.conflicts = carried.into_iter().map(|(_, c, _)| c).collect();
        self.snapshots = vons.into_iter().map(|(_, s)| s).collect();
        info!(
            table = TABLE,
            vons = guarded.len(),
            "leak guard now covers: {}",
            guarded
                .iter()
                .map(|v| v.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
        self.vons = guarded;
        report.installed = true;
        self.shared.store(Arc::new(report));
        Ok(())
    }

    async fn check(&mut self) {
        let mut report = GuardReport::clone(&self.shared.load());
        let result = self.check_table(&mut report).await;
        let result = match result {
            Ok(()) => self.check_routes(&mut report).await,
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => {
                if let Some(step) = self.failing.take() {
                    info!(step, "leak guard check works again");
                }
            }
            Err((step, e)) => {
                if self.failing != Some(step) {
                    error!(step, "leak guard check: {e}");
                }
                self.failing = Some(step);
            }
        }
        for ((_, v), (base, last)) in report.vons.iter_mut().zip(self.base.iter().zip(&self.last)) {
            v.leaks_dropped = base.leaks + last.leaks;
            v.injections_dropped = base.injections + last.injections;
        }
        report.checked = Some(SystemTime::now());
        self.shared.store(Arc::new(report));
    }

    /// Reads the counters; puts the table back if it is gone or changed.
    async fn check_table(
        &mut self,
        report: &mut GuardReport,
    ) -> Result<(), (&'static str, String)> {
        let listed = run("nft", &["-j", "list", "counters", "table", "inet", "von"]).await;
        let counts = match &listed {
            Ok(text) => ruleset::parse_counters(text, &self.vons).map_err(|e| ("nft", e))?,
            Err(_) => None,
        };
        if let Some(counts) = counts {
            report.installed = true;
            self.last = counts;
            return Ok(());
        }
        // Gone (or a counter is): whatever the old table counted is kept.
        // Said once; while putting it back fails, the error is said once.
        if report.installed {
            warn!(
                table = TABLE,
                "the leak guard table was removed or changed by someone else (`nft flush \
                 ruleset`, a firewall reload?); putting it back"
            );
        }
        for (base, last) in self.base.iter_mut().zip(&mut self.last) {
            *base = base.plus(std::mem::take(last));
        }
        let script = ruleset::install_script(&self.vons, &binds(&self.underlays));
        match run_with_stdin("nft", &["-f", "-"], script).await {
            Ok(()) => {
                report.installed = true;
                report.reinstalls += 1;
                info!(table = TABLE, "leak guard table put back");
                Ok(())
            }
            Err(e) => {
                report.installed = false;
                Err(("nft", format!("putting the table back: {e}")))
            }
        }
    }

    /// Finds each VON's route conflicts; logs the ones that appeared or
    /// cleared since the last check.
    async fn check_routes(
        &mut self,
        report: &mut GuardReport,
    ) -> Result<(), (&'static str, String)> {
        let routes = run("ip", &["-j", "-4", "route", "show", "table", "all"])
            .await
            .and_then(|t| routes::parse_routes(&t))
            .map_err(|e| ("ip route", e))?;
        let addresses = run("ip", &["-j", "-4", "addr", "show"])
            .await
            .and_then(|t| routes::parse_addresses(&t))
            .map_err(|e| ("ip addr", e))?;
        for (i, von) in self.vons.iter().enumerate() {
            let snapshot = self.snapshots[i].load();
            let mut endpoints: Vec<(String, SocketAddr)> = self
                .underlays
                .iter()
                .map(|(u, addr)| (format!("this host's underlay {u} bind"), *addr))
                .collect();
            for m in snapshot.members() {
                for (u, addr) in m.endpoints.iter() {
                    let (Some(addr), Some((name, _))) = (addr, self.underlays.get(u.index()))
                    else {
                        continue;
                    };
                    let label = format!("member {}'s underlay {name} endpoint", m.name);
                    endpoints.push((label, *addr));
                }
            }
            // The route check reads IPv4 routes; an IPv6 prefix is kept
            // in its TUN by the filter alone (docs/leaks.md).
            let found = match von.prefixes.v4 {
                Some(prefix) => routes::conflicts(
                    &routes::VonRoutes {
                        interface: &von.interface,
                        prefix,
                        endpoints,
                    },
                    &routes,
                    &addresses,
                    &binds(&self.underlays),
                ),
                None => Vec::new(),
            };
            let now: HashSet<RouteConflict> = found.iter().cloned().collect();
            for c in found.iter().filter(|c| !self.conflicts[i].contains(*c)) {
                warn!(
                    von = %von.name, kind = c.kind.name(), dst = %c.dst, dev = c.dev.as_deref(),
                    table = c.table.as_deref(), "route conflict: {}", c.reason
                );
            }
            for c in self.conflicts[i].iter().filter(|c| !now.contains(*c)) {
                info!(
                    von = %von.name, kind = c.kind.name(), dst = %c.dst, dev = c.dev.as_deref(),
                    table = c.table.as_deref(), "route conflict cleared"
                );
            }
            self.conflicts[i] = now;
            if let Some((_, v)) = report.vons.get_mut(i) {
                v.route_conflicts = found;
            }
        }
        Ok(())
    }
}

/// Runs a read-only command and returns its standard output.
async fn run(program: &str, args: &[&str]) -> Result<String, String> {
    let call = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(CALL_TIMEOUT, call)
        .await
        .map_err(|_| format!("{program} did not answer within {CALL_TIMEOUT:?}"))?
        .map_err(|e| format!("running {program}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    String::from_utf8(out.stdout).map_err(|e| format!("{program}: {e}"))
}

/// Runs a command with `stdin` as its input; `Ok` if it succeeded.
async fn run_with_stdin(program: &str, args: &[&str], stdin: String) -> Result<(), String> {
    use tokio::io::AsyncWriteExt as _;
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("running {program}: {e}"))?;
    if let Some(mut pipe) = child.stdin.take() {
        pipe.write_all(stdin.as_bytes())
            .await
            .map_err(|e| format!("writing to {program}: {e}"))?;
    }
    let out = tokio::time::timeout(CALL_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| format!("{program} did not finish within {CALL_TIMEOUT:?}"))?
        .map_err(|e| format!("running {program}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

/// The bind addresses alone.
fn binds(underlays: &[(UnderlayName, SocketAddr)]) -> Vec<SocketAddr> {
    underlays.iter().map(|(_, a)| *a).collect()
}
