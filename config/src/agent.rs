//! The agent's configuration, `von.toml`: underlays, control socket, metrics
//! and one `[[von]]` table per VON the host joins.
//!
//! The file is read into private `*File` structs that mirror the TOML, then
//! resolved into the public types: defaults filled, "exactly one of" turned
//! into an enum, and every cross-field rule checked with the field's path.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;

use crate::error::{Origin, parse_toml, read};
use crate::keymgr::EmbeddedFile;
use crate::{
    ByteSize, ConfigError, Dscp, Endpoint, InterfaceName, KeymgrConfig, MAX_UNDERLAYS, MemberName,
    Mtu, PerUnderlay, Period, Rate, UnderlayName, ValueError, VonName,
};

/// Default `state_dir`: sequence incarnations, last view and key.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/von";
/// Default `control_socket`, read by `von status`.
pub const DEFAULT_CONTROL_SOCKET: &str = "/run/von/control.sock";
/// Default `log` filter (tracing's `EnvFilter` syntax).
pub const DEFAULT_LOG: &str = "info";
/// The default burst holds this much traffic at the contracted rate...
pub const DEFAULT_BURST_TIME: Duration = Duration::from_millis(10);
/// The largest `ordering` bound: it is the latency ordering may add, and
/// past a second holding traffic back harms more than reordering does.
pub const MAX_ORDERING: Duration = Duration::from_secs(1);
/// ...and at least this many full-size packets.
pub const DEFAULT_BURST_PACKETS: u64 = 2;

/// The agent's whole configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentConfig {
    /// Where the agent keeps sequence incarnations and its last view and key.
    pub state_dir: PathBuf,
    /// The Unix socket `von status` talks to.
    pub control_socket: PathBuf,
    /// The Prometheus endpoint (TCP), if any.
    pub metrics: Option<Endpoint>,
    /// Log filter, tracing `EnvFilter` syntax (e.g. `info,von_agent=debug`).
    pub log: String,
    /// The underlay sockets shared by every VON, one per `[underlay.NAME]`
    /// table, in name order (the order copies are sent in).
    pub underlays: PerUnderlay<UnderlayConfig>,
    /// One entry per `[[von]]` table, in file order.
    pub vons: Vec<VonConfig>,
    /// A program run with each alarm's JSON on stdin when it is raised or
    /// cleared (`docs/alarms.md`); an absolute path.
    pub alarm_hook: Option<PathBuf>,
}

/// One underlay, `[underlay.NAME]`: an independent network every frame is
/// copied onto, reached through one UDP socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnderlayConfig {
    /// The table's name; peers' endpoints are matched to it by name.
    pub name: UnderlayName,
    /// Local `IP:PORT` the underlay's UDP socket binds.
    pub bind: Endpoint,
}

/// `[underlay.NAME]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UnderlayFile {
    bind: Endpoint,
}

/// One VON the host belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VonConfig {
    /// The VON's name.
    pub name: VonName,
    /// Its TUN interface (default `von-<name>`).
    pub interface: InterfaceName,
    /// The contracted rate; traffic above it is dropped at the edge.
    pub rate: Rate,
    /// Token bucket depth (default 10 ms at `rate`, at least 2 MTUs).
    pub burst: ByteSize,
    /// DSCP on outer packets (default 46, EF).
    pub dscp: Dscp,
    /// Inner MTU of the interface (default 1432).
    pub mtu: Mtu,
    /// In-order delivery per sender: hold a frame that overtook a missing
    /// one at most this long (`ordering = "20ms"`); `None` (the default):
    /// every first copy at once. At most [`MAX_ORDERING`].
    pub ordering: Option<Duration>,
    /// Where view and key come from.
    pub mode: VonMode,
}

/// Where a VON's view and key come from: exactly one of `static` or `keymgr`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VonMode {
    /// `static = { view = "...", member = "..." }`: a fixed view file.
    Static(StaticMode),
    /// `keymgr = "embedded" | "IP:PORT"`: views and keys from a key manager
    /// (boxed: it is five times the size of the static variant).
    Keymgr(Box<KeymgrMode>),
}

/// Static mode: the view file and which of its members this host is.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticMode {
    /// The static view file (same on every member).
    pub view: PathBuf,
    /// This host's member name in that view.
    pub member: MemberName,
}

/// Key manager mode: where it is, and this member's credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeymgrMode {
    /// The key manager's address, or `Embedded`.
    pub endpoint: KeymgrEndpoint,
    /// This member's certificate, issued by the VON's CA.
    pub cert: PathBuf,
    /// The TLS private key of `cert`.
    pub key: PathBuf,
    /// The VON's CA certificate.
    pub ca: PathBuf,
    /// This member's static X25519 key (its public half is in `cert`).
    pub noise_key: PathBuf,
    /// The embedded key manager's settings; `Some` exactly when `endpoint`
    /// is `Embedded`.
    pub embedded: Option<KeymgrConfig>,
}

/// `keymgr = "embedded"`, `keymgr = "IP:PORT"`, or a list of the VON's
/// key manager replicas, `keymgr = ["IP:PORT", "IP:PORT"]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum KeymgrEndpoint {
    /// The agent runs the VON's key manager itself.
    Embedded,
    /// Standalone key managers at these QUIC addresses: one, or the
    /// replicas of one VON (the member holds a connection to each and
    /// follows whichever leads).
    Remote(Vec<SocketAddr>),
}

impl FromStr for KeymgrEndpoint {
    type Err = ValueError;
    fn from_str(text: &str) -> Result<Self, ValueError> {
        if text == "embedded" {
            return Ok(Self::Embedded);
        }
        remote(text).map(|a| Self::Remote(vec![a]))
    }
}

fn remote(text: &str) -> Result<SocketAddr, ValueError> {
    text.parse::<Endpoint>().map(|e| e.addr()).map_err(|_| {
        ValueError::new(format_args!(
            "{text:?} is neither \"embedded\" nor IP:PORT (example: \"192.0.2.10:4433\", or a list of replicas [\"192.0.2.10:4433\", \"192.0.2.11:4433\"])"
        ))
    })
}

impl fmt::Display for KeymgrEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Embedded => f.write_str("embedded"),
            Self::Remote(addrs) => {
                let shown: Vec<String> = addrs.iter().map(ToString::to_string).collect();
                f.write_str(&shown.join(", "))
            }
        }
    }
}

impl<'de> serde::Deserialize<'de> for KeymgrEndpoint {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = KeymgrEndpoint;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("\"embedded\", \"IP:PORT\" or a list of \"IP:PORT\"")
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Self::Value, E> {
                text.parse().map_err(E::custom)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Self::Value, A::Error> {
                use serde::de::Error;
                let mut addrs: Vec<SocketAddr> = Vec::new();
                while let Some(text) = seq.next_element::<String>()? {
                    let addr = remote(&text).map_err(A::Error::custom)?;
                    if addrs.contains(&addr) {
                        return Err(A::Error::custom(format_args!(
                            "{text:?} is listed twice (name each key manager replica once)"
                        )));
                    }
                    addrs.push(addr);
                }
                if addrs.is_empty() {
                    return Err(A::Error::custom(
                        "is an empty list (name the key manager, e.g. \"192.0.2.10:4433\", or its replicas)",
                    ));
                }
                Ok(KeymgrEndpoint::Remote(addrs))
            }
        }
        d.deserialize_any(Visit)
    }
}

impl AgentConfig {
    /// Whether TOML `text` is an agent's `von.toml` (it has `[[von]]`
    /// tables) rather than a `keymgr.toml` (whose `von` is a name): how
    /// `von keymgr --config` tells the two apart before giving the file its
    /// own schema's errors.
    pub fn is_agent_file(text: &str) -> bool {
        toml::from_str::<toml::Table>(text)
            .ok()
            .is_some_and(|t| t.get("von").is_some_and(toml::Value::is_array))
    }

    /// Reads and checks a `von.toml`. Static view files are read separately,
    /// by [`StaticMode::load_view`].
    pub fn load(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let origin = path.display().to_string();
        let cfg = Self::from_toml_str(&read(path)?, &origin)?;
        cfg.check_private_keys(Origin(&origin))?;
        Ok(cfg)
    }

    /// Refuse private key files (TLS and Noise keys of members and embedded
    /// key managers) that group or others may read, as ssh does.
    fn check_private_keys(&self, origin: Origin<'_>) -> Result<(), ConfigError> {
        for (i, von) in self.vons.iter().enumerate() {
            let VonMode::Keymgr(mode) = &von.mode else {
                continue;
            };
            crate::secret::check(origin, &format!("von[{i}].key"), &mode.key)?;
            crate::secret::check(origin, &format!("von[{i}].noise_key"), &mode.noise_key)?;
            if let Some(km) = &mode.embedded {
                km.check_private_keys(origin, &format!("von[{i}].embedded_keymgr."))?;
            }
        }
        Ok(())
    }

    /// Every file `[[von]]` tables name (view, certificates, keys), checked
    /// to exist and be readable: a missing one is refused at its field,
    /// e.g. `von.toml: von[0].key: "/x" (VON "grid"): No such file or
    /// directory`, before the agent contacts anything. `origin` names
    /// von.toml as the operator should read it.
    pub fn check_files(&self, origin: &str) -> Result<(), ConfigError> {
        let origin = Origin(origin);
        if let Some(hook) = &self.alarm_hook {
            use std::os::unix::fs::PermissionsExt;
            let problem = match std::fs::metadata(hook) {
                Err(e) => Some(e.to_string()),
                Ok(m) if !m.is_file() => Some("not a regular file".to_owned()),
                Ok(m) if m.permissions().mode() & 0o111 == 0 => {
                    Some("not executable (chmod +x it)".to_owned())
                }
                // The agent runs it as itself (root): whoever may write
                // the file may run code as root.
                Ok(m) if m.permissions().mode() & 0o022 != 0 => Some(
                    "writable by group or others, who could then run code as the agent \
                     (chmod go-w it)"
                        .to_owned(),
                ),
                Ok(_) => None,
            };
            if let Some(problem) = problem {
                return Err(origin.field(
                    "alarm_hook",
                    format_args!(
                        "\"{}\": {problem} (fix the path, or remove alarm_hook to run no program on alarms)",
                        hook.display()
                    ),
                ));
            }
        }
        for (i, von) in self.vons.iter().enumerate() {
            let mut files: Vec<(String, &Path, &str)> = Vec::new();
            match &von.mode {
                VonMode::Static(s) => files.push((
                    "static.view".into(),
                    &s.view,
                    "the static view file every member shares",
                )),
                VonMode::Keymgr(k) => {
                    let issue =
                        "`von cert issue --out DIR` writes NAME.crt, NAME.key and NAME.noise.key";
                    files.push((
                        "ca".into(),
                        &k.ca,
                        "`von ca init --out DIR` writes DIR/ca.crt",
                    ));
                    files.push(("cert".into(), &k.cert, issue));
                    files.push(("key".into(), &k.key, issue));
                    files.push(("noise_key".into(), &k.noise_key, issue));
                    if let Some(km) = &k.embedded {
                        let issue = "`von cert issue --role keymgr --out DIR` writes them";
                        files.push(("embedded_keymgr.cert".into(), &km.cert, issue));
                        files.push(("embedded_keymgr.key".into(), &km.key, issue));
                        files.push(("embedded_keymgr.noise_key".into(), &km.noise_key, issue));
                    }
                }
            }
            for (field, path, hint) in files {
                if let Err(e) = std::fs::File::open(path) {
                    return Err(origin.field(
                        format_args!("von[{i}].{field}"),
                        format_args!(
                            "\"{}\" (VON \"{}\"): {e} (fix the path, or create the file: {hint})",
                            path.display(),
                            von.name
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Parses and checks `text`; errors name `origin` as the file.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let file: AgentFile = parse_toml(text, origin)?;
        file.resolve(Origin(origin))
    }

    /// Only `control_socket` of the von.toml at `path` (the default when it
    /// is not set), for tools such as `von status` that must find the agent
    /// even when the rest of the file would not validate.
    pub fn read_control_socket(path: impl AsRef<Path>) -> Result<PathBuf, ConfigError> {
        #[derive(Deserialize)]
        struct ControlOnly {
            control_socket: Option<PathBuf>,
        }
        let path = path.as_ref();
        let origin = path.display().to_string();
        let file: ControlOnly = parse_toml(&read(path)?, &origin)?;
        Ok(file
            .control_socket
            .unwrap_or_else(|| DEFAULT_CONTROL_SOCKET.into()))
    }

    /// The VON called `name`.
    pub fn von(&self, name: &VonName) -> Option<&VonConfig> {
        self.vons.iter().find(|v| &v.name == name)
    }
}

impl VonConfig {
    /// The default burst for `rate` and `mtu`: 10 ms at the rate, at least
    /// two full-size packets.
    pub fn default_burst(rate: Rate, mtu: Mtu) -> ByteSize {
        let floor = DEFAULT_BURST_PACKETS * u64::from(mtu.bytes());
        let bytes = rate.bytes_in(DEFAULT_BURST_TIME).max(floor);
        // Cannot fail: bytes >= floor >= 2 * Mtu::MIN > 0.
        ByteSize::from_bytes(bytes).expect("burst floor is above zero")
    }
}

/// `von.toml` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AgentFile {
    state_dir: Option<PathBuf>,
    control_socket: Option<PathBuf>,
    metrics: Option<Endpoint>,
    log: Option<String>,
    underlay: BTreeMap<UnderlayName, UnderlayFile>,
    #[serde(default, rename = "von")]
    vons: Vec<VonFile>,
    alarm_hook: Option<PathBuf>,
}

/// One `[[von]]` table as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct VonFile {
    name: VonName,
    interface: Option<InterfaceName>,
    rate: Rate,
    burst: Option<ByteSize>,
    dscp: Option<Dscp>,
    mtu: Option<Mtu>,
    ordering: Option<Period>,
    #[serde(rename = "static")]
    static_mode: Option<StaticMode>,
    keymgr: Option<KeymgrEndpoint>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    ca: Option<PathBuf>,
    noise_key: Option<PathBuf>,
    embedded_keymgr: Option<EmbeddedFile>,
}

impl AgentFile {
    fn resolve(self, origin: Origin<'_>) -> Result<AgentConfig, ConfigError> {
        let state_dir = self.state_dir.unwrap_or_else(|| DEFAULT_STATE_DIR.into());
        let log = self.log.unwrap_or_else(|| DEFAULT_LOG.to_owned());
        if log.trim().is_empty() {
            return Err(origin.field("log", "\"\" is empty (write a level such as \"info\")"));
        }
        if let Some(hook) = &self.alarm_hook {
            if !hook.is_absolute() {
                return Err(origin.field(
                    "alarm_hook",
                    format_args!(
                        "\"{}\" is not an absolute path (write the program's full path, e.g. \"/usr/local/bin/von-alarm\")",
                        hook.display()
                    ),
                ));
            }
        }
        let underlays = resolve_underlays(origin, self.underlay)?;
        if self.vons.is_empty() {
            return Err(origin.field(
                "von",
                "no [[von]] table (add one per VON this host joins; see packaging/examples/von-static.toml)",
            ));
        }
        let mut vons = Vec::with_capacity(self.vons.len());
        for (i, von) in self.vons.into_iter().enumerate() {
            vons.push(von.resolve(origin, &format!("von[{i}]"), &state_dir, &underlays)?);
        }
        check_unique(origin, &vons, "name", |v| Some(v.name.to_string()))?;
        check_unique(origin, &vons, "interface", |v| {
            Some(v.interface.to_string())
        })?;
        check_unique(origin, &vons, "embedded_keymgr.on_id", |v| {
            embedded(v).map(|k| k.on_id.to_string())
        })?;
        check_unique(origin, &vons, "embedded_keymgr.listen", |v| {
            embedded(v).map(|k| k.listen.to_string())
        })?;
        for (i, v) in vons.iter().enumerate() {
            if let Some(k) = embedded(v) {
                if underlays.values().any(|u| u.bind == k.listen) {
                    return Err(origin.field(
                        format_args!("von[{i}].embedded_keymgr.listen"),
                        format_args!(
                            "\"{}\" is an underlay's UDP address too (give the key manager its own port, e.g. 4433)",
                            k.listen
                        ),
                    ));
                }
            }
        }
        Ok(AgentConfig {
            state_dir,
            control_socket: self
                .control_socket
                .unwrap_or_else(|| DEFAULT_CONTROL_SOCKET.into()),
            metrics: self.metrics,
            log,
            underlays,
            vons,
            alarm_hook: self.alarm_hook,
        })
    }
}

/// Checks the `[underlay.NAME]` tables: 1 to 4, each on an address of its
/// own. Two underlays on one IP address are one network path: a fault on it
/// takes both, so the extra copy of every packet buys no redundancy.
fn resolve_underlays(
    origin: Origin<'_>,
    tables: BTreeMap<UnderlayName, UnderlayFile>,
) -> Result<PerUnderlay<UnderlayConfig>, ConfigError> {
    if tables.is_empty() || tables.len() > MAX_UNDERLAYS {
        return Err(origin.field(
            "underlay",
            format_args!(
                "{} [underlay.NAME] tables: give 1 to {MAX_UNDERLAYS}, one per independent network (example: [underlay.a] bind = \"192.0.2.1:4789\" and [underlay.b] bind = \"198.51.100.1:4789\")",
                tables.len()
            ),
        ));
    }
    let list: Vec<UnderlayConfig> = tables
        .into_iter()
        .map(|(name, t)| UnderlayConfig { name, bind: t.bind })
        .collect();
    for (i, u) in list.iter().enumerate() {
        let bind = u.bind;
        let Some(first) = list[..i]
            .iter()
            .find(|f| f.bind.addr().ip() == bind.addr().ip())
        else {
            continue;
        };
        let why = if first.bind == bind {
            format!("\"{bind}\" is also underlay {}'s address", first.name)
        } else {
            format!(
                "\"{bind}\" has the IP address of underlay {} (\"{}\"): a second port on one address is the same network path, so it gives no redundancy",
                first.name, first.bind
            )
        };
        return Err(origin.field(
            format_args!("underlay.{}.bind", u.name),
            format_args!(
                "{why} (underlays must be independent networks: bind each to an address on its own network)"
            ),
        ));
    }
    Ok(PerUnderlay::from_fn(list.len(), |u| list[u.index()]))
}

fn embedded(v: &VonConfig) -> Option<&KeymgrConfig> {
    match &v.mode {
        VonMode::Keymgr(k) => k.embedded.as_ref(),
        VonMode::Static(_) => None,
    }
}

/// Fails at the second VON whose `key` repeats an earlier one's.
fn check_unique(
    origin: Origin<'_>,
    vons: &[VonConfig],
    field: &str,
    key: impl Fn(&VonConfig) -> Option<String>,
) -> Result<(), ConfigError> {
    let mut seen = HashMap::new();
    for (i, v) in vons.iter().enumerate() {
        let Some(k) = key(v) else { continue };
        if let Some(first) = seen.insert(k.clone(), i) {
            return Err(origin.field(
                format_args!("von[{i}].{field}"),
                format_args!("\"{k}\" is also von[{first}]'s {field} (each VON needs its own)"),
            ));
        }
    }
    Ok(())
}

impl VonFile {
    fn resolve(
        self,
        origin: Origin<'_>,
        at: &str,
        state_dir: &Path,
        underlays: &PerUnderlay<UnderlayConfig>,
    ) -> Result<VonConfig, ConfigError> {
        let mtu = self
            .mtu
            .unwrap_or_else(|| Mtu::default_over(underlays.values().map(|u| u.bind.addr().ip())));
        let burst = match self.burst {
            Some(b) if b.bytes() < u64::from(mtu.bytes()) => {
                return Err(origin.field(
                    format_args!("{at}.burst"),
                    format_args!(
                        "\"{b}\" is smaller than one {}-byte packet, which could never pass (raise it to at least \"{}b\", or omit it for the default)",
                        mtu.bytes(),
                        DEFAULT_BURST_PACKETS * u64::from(mtu.bytes())
                    ),
                ));
            }
            Some(b) => b,
            None => VonConfig::default_burst(self.rate, mtu),
        };
        let ordering = match self.ordering {
            Some(p) if p.duration() > MAX_ORDERING => {
                return Err(origin.field(
                    format_args!("{at}.ordering"),
                    format_args!(
                        "\"{p}\" is longer than the largest ordering bound \"1s\" (it is the delay a held packet may get; use e.g. \"20ms\", a little above the underlays' delay difference, or omit it to deliver every packet at once)"
                    ),
                ));
            }
            p => p.map(Period::duration),
        };
        let mode = match (self.static_mode, self.keymgr) {
            (Some(_), Some(_)) => {
                return Err(origin.field(
                    at,
                    "has both static and keymgr (keep exactly one: static = { view = \"...\", member = \"...\" }, or keymgr = \"embedded\" or \"IP:PORT\")",
                ));
            }
            (None, None) => {
                return Err(origin.field(
                    at,
                    "has neither static nor keymgr (add one: static = { view = \"/etc/von/grid.view.toml\", member = \"h1\" }, or keymgr = \"192.0.2.10:4433\")",
                ));
            }
            (Some(s), None) => {
                let keymgr_only = [
                    ("cert", self.cert.is_some()),
                    ("key", self.key.is_some()),
                    ("ca", self.ca.is_some()),
                    ("noise_key", self.noise_key.is_some()),
                    ("embedded_keymgr", self.embedded_keymgr.is_some()),
                ];
                if let Some((field, _)) = keymgr_only.iter().find(|(_, set)| *set) {
                    return Err(origin.field(
                        format_args!("{at}.{field}"),
                        "is only used with keymgr (remove it: static mode takes its key from the view file)",
                    ));
                }
                VonMode::Static(s)
            }
            (None, Some(endpoint)) => {
                let need = |field: &str, value: Option<PathBuf>| {
                    value.ok_or_else(|| {
                        origin.field(
                            format_args!("{at}.{field}"),
                            format_args!(
                                "missing key \"{field}\" (keymgr mode needs this member's cert, key, ca and noise_key; `von cert issue` writes them)"
                            ),
                        )
                    })
                };
                let cert = need("cert", self.cert)?;
                let key = need("key", self.key)?;
                let ca = need("ca", self.ca)?;
                let noise_key = need("noise_key", self.noise_key)?;
                let embedded = match (&endpoint, self.embedded_keymgr) {
                    (KeymgrEndpoint::Embedded, Some(e)) => Some(e.resolve(
                        origin,
                        &format!("{at}.embedded_keymgr"),
                        &self.name,
                        &ca,
                        state_dir,
                    )?),
                    (KeymgrEndpoint::Embedded, None) => {
                        return Err(origin.field(
                            format_args!("{at}.embedded_keymgr"),
                            "missing table (keymgr = \"embedded\" runs a key manager in the agent: give it on_id, listen, cert, key and noise_key; see packaging/examples/von-keymgr.toml)",
                        ));
                    }
                    (KeymgrEndpoint::Remote(_), Some(_)) => {
                        return Err(origin.field(
                            format_args!("{at}.embedded_keymgr"),
                            "is only used with keymgr = \"embedded\" (remove it, or set keymgr = \"embedded\")",
                        ));
                    }
                    (KeymgrEndpoint::Remote(_), None) => None,
                };
                VonMode::Keymgr(Box::new(KeymgrMode {
                    endpoint,
                    cert,
                    key,
                    ca,
                    noise_key,
                    embedded,
                }))
            }
        };
        Ok(VonConfig {
            interface: self
                .interface
                .unwrap_or_else(|| self.name.default_interface()),
            name: self.name,
            rate: self.rate,
            burst,
            dscp: self.dscp.unwrap_or(Dscp::EF),
            mtu,
            ordering,
            mode,
        })
    }
}
