//! SIGHUP (`systemctl reload von`): read von.toml again, apply what can
//! change live, name what cannot.
//!
//! Flow:
//! 1. load and validate the file exactly as `von up` does (the config and
//!    every static view it names); a file that fails is refused with the
//!    error — file, field, fix — and the running config is kept;
//! 2. compare it with the config the agent runs, setting by setting, VON by
//!    VON (by name, as `wg syncconf` compares peers by key): a VON whose
//!    settings are equal is not touched at all;
//! 3. a running VON's `rate`, `burst`, `dscp`, `mtu` and `ordering` are
//!    applied live: stored in its [`SharedLive`], which its outbound loop
//!    (and, for `ordering`, the inbound loop) reads once per wake-up
//!    ([`Applied::changed`]) — no rekey, no re-join, the sequence counter
//!    and the shaping queue kept (packets the ordering stage holds at that
//!    instant are dropped, counted `flushed`). Logged as "applied";
//! 4. a VON added to the file is started, one removed is stopped (a
//!    keymgr-mode VON leaves its group first), and a VON whose interface,
//!    mode, view, key manager or key files changed is stopped and started
//!    again: the driver does it ([`VonChange`]), the other VONs are not
//!    touched. Only that VON's group rekeys, as it would on a restart;
//! 5. every agent-wide difference (state_dir, control_socket, metrics, log,
//!    underlays) gets its own log line ending "restart to apply", so nothing
//!    is silently ignored; an unchanged file logs "unchanged". Those
//!    settings stay as they run, so a second SIGHUP names the same pending
//!    changes.
//!
//! What cannot change without a restart, and why, is in docs/operations.md.

use std::path::Path;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use tokio::sync::mpsc::UnboundedSender;
use tracing::{error, info, warn};
use von_config::{AgentConfig, VonConfig, VonMode};

/// The settings of one VON that a reload changes without a restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiveSettings {
    /// Contracted rate, bits per second.
    pub rate_bps: u64,
    /// Token bucket depth, bytes.
    pub burst_bytes: u64,
    /// DSCP of outer packets.
    pub dscp: u8,
    /// The TUN's MTU, bytes.
    pub mtu: u16,
    /// In-order delivery bound (`ordering.rs` of von-packet); `None`: off.
    pub ordering: Option<std::time::Duration>,
}

impl LiveSettings {
    /// The live settings `von` asks for.
    pub fn of(von: &VonConfig) -> Self {
        LiveSettings {
            rate_bps: von.rate.bits_per_second(),
            burst_bytes: von.burst.bytes(),
            dscp: von.dscp.value(),
            mtu: von.mtu.bytes(),
            ordering: von.ordering,
        }
    }
}

/// One VON's live settings, shared by the reload, its outbound loop and
/// its status.
pub type SharedLive = Arc<ArcSwap<LiveSettings>>;

/// A VON the driver is asked to start or stop.
#[derive(Debug, Clone)]
pub enum VonChange {
    /// Start this VON (it is in the file, not running).
    Start(Box<VonConfig>),
    /// Stop the VON of this name (a keymgr-mode one leaves its group).
    Stop(String),
}

/// The running VONs' live settings by name; the driver registers each VON
/// as it comes up, a reload finds them here and hands whole-VON changes to
/// the driver through it.
#[derive(Debug, Default)]
pub struct Registry {
    vons: Mutex<Vec<(String, SharedLive)>>,
    /// The driver's end for [`VonChange`]s, once it runs.
    changes: Mutex<Option<UnboundedSender<VonChange>>>,
    /// VONs a reload asked for that could not start: the next reload sees
    /// them as absent and tries again.
    failed: Mutex<Vec<String>>,
}

impl Registry {
    /// Connects the driver: whole-VON changes go to `changes` from now on.
    pub fn connect(&self, changes: UnboundedSender<VonChange>) {
        *self.changes.lock().unwrap_or_else(|p| p.into_inner()) = Some(changes);
    }

    /// Forgets VON `name`: it stopped (or never started).
    pub fn deregister(&self, name: &str) {
        let mut vons = self.vons.lock().unwrap_or_else(|p| p.into_inner());
        vons.retain(|(n, _)| n != name);
    }

    /// Records that VON `name`, which a reload asked for, did not start.
    pub fn start_failed(&self, name: &str) {
        self.deregister(name);
        self.failed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(name.to_owned());
    }

    /// Hands `change` to the driver; false if no driver runs (yet).
    fn send(&self, change: VonChange) -> bool {
        let changes = self.changes.lock().unwrap_or_else(|p| p.into_inner());
        changes.as_ref().is_some_and(|c| c.send(change).is_ok())
    }

    fn take_failed(&self) -> Vec<String> {
        std::mem::take(&mut *self.failed.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Registers VON `von` as running with its configured settings.
    pub fn register(&self, von: &VonConfig) -> SharedLive {
        let live = Arc::new(ArcSwap::from_pointee(LiveSettings::of(von)));
        let mut vons = self.vons.lock().unwrap_or_else(|p| p.into_inner());
        vons.retain(|(name, _)| name != von.name.as_str());
        vons.push((von.name.to_string(), live.clone()));
        live
    }

    fn get(&self, name: &str) -> Option<SharedLive> {
        let vons = self.vons.lock().unwrap_or_else(|p| p.into_inner());
        vons.iter().find(|(n, _)| n == name).map(|(_, l)| l.clone())
    }
}

/// The outbound loop's view of its [`SharedLive`]: what it applied last.
#[derive(Debug)]
pub struct Applied {
    shared: SharedLive,
    current: Arc<LiveSettings>,
}

impl Applied {
    /// Starts from the settings in `shared`, as the loop was built with them.
    pub fn new(shared: SharedLive) -> Self {
        let current = shared.load_full();
        Applied { shared, current }
    }

    /// The settings applied last.
    pub fn current(&self) -> LiveSettings {
        *self.current
    }

    /// The new settings, if a reload stored some since the last call: one
    /// atomic load and a pointer compare, cheap enough per wake-up.
    pub fn changed(&mut self) -> Option<LiveSettings> {
        let latest = self.shared.load();
        if Arc::ptr_eq(&latest, &self.current) {
            return None;
        }
        self.current = latest.clone();
        Some(*self.current)
    }
}

/// What a reload found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The new file failed validation: the running config stays.
    Refused(String),
    /// The file is valid; these settings differ from the running ones and
    /// wait for a restart.
    Changes(Vec<String>),
}

/// Reads `path` again, applies the live settings of running VONs, hands
/// added, removed and otherwise changed VONs to the driver, records all of
/// it in `running`, and logs every agent-wide difference.
pub fn reload(path: &Path, running: &mut AgentConfig, registry: &Registry) -> Outcome {
    let new = match validate(path) {
        Ok(new) => new,
        Err(e) => {
            error!(
                config = %path.display(),
                "reload refused, the running config is kept: {e}"
            );
            return Outcome::Refused(e);
        }
    };
    // A VON an earlier reload asked for that did not start is not running.
    let failed = registry.take_failed();
    running
        .vons
        .retain(|v| !failed.iter().any(|f| f == v.name.as_str()));
    let mut applied = 0;
    let file = path.display();
    let mut kept = Vec::with_capacity(new.vons.len());
    for von in std::mem::take(&mut running.vons) {
        let Some(want) = new.vons.iter().find(|v| v.name == von.name) else {
            if registry.send(VonChange::Stop(von.name.to_string())) {
                info!(config = %file, von = %von.name, "reload: VON {} removed: stopping it", von.name);
                applied += 1;
            } else {
                kept.push(von);
            }
            continue;
        };
        let whole: Vec<String> = von_diff(&von, want)
            .into_iter()
            .filter_map(|(applies, c)| (applies == Applies::Restart).then_some(c))
            .collect();
        if !whole.is_empty() {
            let name = von.name.to_string();
            if registry.send(VonChange::Stop(name.clone()))
                && registry.send(VonChange::Start(Box::new(want.clone())))
            {
                info!(
                    config = %file, von = %name,
                    "reload: {}: restarting this VON (the others are not touched)",
                    whole.join(", ")
                );
                kept.push(want.clone());
                applied += 1;
            } else {
                kept.push(von);
            }
            continue;
        }
        let mut von = von;
        let (old, new_live) = (LiveSettings::of(&von), LiveSettings::of(want));
        if old != new_live {
            if let Some(live) = registry.get(von.name.as_str()) {
                live.store(Arc::new(new_live));
                info!(
                    config = %file, von = %von.name,
                    rate = %want.rate, burst = %want.burst, dscp = want.dscp.value(),
                    mtu = want.mtu.bytes(),
                    "reload: VON {}: rate {} -> {}, burst {} -> {}, dscp {} -> {}, mtu {} -> {}: applied",
                    von.name, von.rate, want.rate, von.burst, want.burst, von.dscp.value(),
                    want.dscp.value(), von.mtu.bytes(), want.mtu.bytes()
                );
                if von.ordering != want.ordering {
                    info!(
                        config = %file, von = %von.name,
                        "reload: VON {}: ordering {} -> {}: applied",
                        von.name, show_ordering(von.ordering), show_ordering(want.ordering)
                    );
                }
                (von.rate, von.burst, von.dscp, von.mtu, von.ordering) =
                    (want.rate, want.burst, want.dscp, want.mtu, want.ordering);
                applied += 1;
            }
        }
        kept.push(von);
    }
    for want in &new.vons {
        if kept.iter().any(|v| v.name == want.name) {
            continue;
        }
        if registry.send(VonChange::Start(Box::new(want.clone()))) {
            info!(config = %file, von = %want.name, "reload: VON {} added: starting it", want.name);
            kept.push(want.clone());
            applied += 1;
        }
    }
    running.vons = kept;
    let changes = diff(running, &new);
    for change in &changes {
        warn!(config = %file, "reload: {change}: restart to apply");
    }
    if changes.is_empty() && applied == 0 {
        info!(config = %file, "reload: config unchanged");
    }
    Outcome::Changes(changes)
}

/// Reads and validates `path` as `von up` does.
fn validate(path: &Path) -> Result<AgentConfig, String> {
    let new = AgentConfig::load(path).map_err(|e| e.to_string())?;
    new.load_views().map_err(|e| e.to_string())?;
    Ok(new)
}

/// Validates `path` and lists its differences from `running`.
pub fn check(path: &Path, running: &AgentConfig) -> Outcome {
    match validate(path) {
        Ok(new) => Outcome::Changes(diff(running, &new)),
        Err(e) => Outcome::Refused(e),
    }
}

/// Every setting of `new` that differs from `old`, one phrase each.
pub fn diff(old: &AgentConfig, new: &AgentConfig) -> Vec<String> {
    let mut out = Vec::new();
    let mut field = |name: &str, changed: bool| {
        if changed {
            out.push(format!("{name} changed"));
        }
    };
    field("state_dir", old.state_dir != new.state_dir);
    field("control_socket", old.control_socket != new.control_socket);
    field("metrics", old.metrics != new.metrics);
    field("log", old.log != new.log);
    field("underlays", old.underlays != new.underlays);
    for von in &old.vons {
        match new.vons.iter().find(|v| v.name == von.name) {
            None => out.push(format!("VON {} removed", von.name)),
            Some(v) => out.extend(von_diff(von, v).into_iter().map(|(_, c)| c)),
        }
    }
    for von in &new.vons {
        if !old.vons.iter().any(|v| v.name == von.name) {
            out.push(format!("VON {} added", von.name));
        }
    }
    out
}

/// How a changed setting of one VON takes effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Applies {
    /// In its running loops ([`LiveSettings`]).
    Live,
    /// By stopping and starting that VON.
    Restart,
}

/// `ordering` as written, "off" when absent.
fn show_ordering(o: Option<std::time::Duration>) -> String {
    o.map_or_else(|| "off".to_owned(), |d| format!("{}ms", d.as_millis()))
}

/// The differences of one VON, named like the fields of its `[[von]]` table.
fn von_diff(old: &VonConfig, new: &VonConfig) -> Vec<(Applies, String)> {
    let name = &old.name;
    let mut out = Vec::new();
    let mut field = |applies: Applies, what: String, changed: bool| {
        if changed {
            out.push((applies, what));
        }
    };
    field(
        Applies::Live,
        format!("VON {name}: rate changed ({} -> {})", old.rate, new.rate),
        old.rate != new.rate,
    );
    field(
        Applies::Live,
        format!("VON {name}: burst changed ({} -> {})", old.burst, new.burst),
        old.burst != new.burst,
    );
    field(
        Applies::Live,
        format!(
            "VON {name}: dscp changed ({} -> {})",
            old.dscp.value(),
            new.dscp.value()
        ),
        old.dscp != new.dscp,
    );
    field(
        Applies::Live,
        format!(
            "VON {name}: mtu changed ({} -> {})",
            old.mtu.bytes(),
            new.mtu.bytes()
        ),
        old.mtu != new.mtu,
    );
    field(
        Applies::Live,
        format!(
            "VON {name}: ordering changed ({} -> {})",
            show_ordering(old.ordering),
            show_ordering(new.ordering)
        ),
        old.ordering != new.ordering,
    );
    field(
        Applies::Restart,
        format!("VON {name}: interface changed"),
        old.interface != new.interface,
    );
    let mode = |m: &VonMode| match m {
        VonMode::Static(_) => "static",
        VonMode::Keymgr(_) => "keymgr",
    };
    if mode(&old.mode) != mode(&new.mode) {
        field(
            Applies::Restart,
            format!(
                "VON {name}: mode changed ({} -> {})",
                mode(&old.mode),
                mode(&new.mode)
            ),
            true,
        );
    } else {
        field(
            Applies::Restart,
            format!("VON {name}: view, key manager or key files changed"),
            old.mode != new.mode,
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str, vons: &str) -> AgentConfig {
        let text = format!(
            "{extra}\n[underlay.a]\nbind = \"192.0.2.1:4789\"\n[underlay.b]\nbind = \"198.51.100.1:4789\"\n{vons}"
        );
        AgentConfig::from_toml_str(&text, "von.toml").expect("valid config")
    }

    const GRID: &str = "[[von]]\nname = \"grid\"\nrate = \"100mbit\"\nstatic = { view = \"/v/grid.toml\", member = \"h1\" }\n";
    const LAB: &str = "[[von]]\nname = \"lab\"\nrate = \"10mbit\"\nstatic = { view = \"/v/lab.toml\", member = \"h1\" }\n";

    #[test]
    fn an_identical_file_differs_in_nothing() {
        let a = config("", &format!("{GRID}{LAB}"));
        assert_eq!(diff(&a, &a.clone()), Vec::<String>::new());
    }

    #[test]
    fn each_difference_is_named_once_and_unchanged_vons_not_at_all() {
        let old = config("", &format!("{GRID}{LAB}"));
        let grid = GRID.replace("100mbit", "50mbit") + "mtu = 1400\nordering = \"20ms\"\n";
        let new = config("log = \"debug\"", &grid);
        assert_eq!(
            diff(&old, &new),
            [
                "log changed",
                "VON grid: rate changed (100mbit -> 50mbit)",
                "VON grid: burst changed (125000b -> 62500b)",
                "VON grid: mtu changed (1432 -> 1400)",
                "VON grid: ordering changed (off -> 20ms)",
                "VON lab removed",
            ]
        );
        assert_eq!(
            diff(&new, &old).last().map(String::as_str),
            Some("VON lab added")
        );
    }

    #[test]
    fn applied_sees_each_store_once() {
        let von = &config("", GRID).vons[0];
        let registry = Registry::default();
        let shared = registry.register(von);
        let mut applied = Applied::new(shared.clone());
        assert_eq!(applied.changed(), None);
        let next = LiveSettings {
            rate_bps: 1,
            burst_bytes: 3000,
            dscp: 10,
            mtu: 1400,
            ordering: Some(std::time::Duration::from_millis(20)),
        };
        registry
            .get("grid")
            .expect("registered")
            .store(Arc::new(next));
        assert_eq!(applied.changed(), Some(next));
        assert_eq!(applied.changed(), None);
        assert_eq!(applied.current(), next);
    }
}
