//! The key manager's configuration: `keymgr.toml` for `von keymgr --config`,
//! and the `[von.embedded_keymgr]` table for one embedded in the agent.
//!
//! Both resolve to one [`KeymgrConfig`], so the key manager has a single
//! input whether it runs alone or inside the agent. Revocations are state
//! (kept in the database under `state_dir`), not configuration.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Origin, parse_toml, read};
use crate::{ConfigError, Endpoint, OnId, Period, VonName};

/// The standalone key manager's default state directory.
pub const DEFAULT_KEYMGR_STATE_DIR: &str = "/var/lib/von/keymgr";

/// Everything a key manager for one VON needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeymgrConfig {
    /// The VON it manages.
    pub von: VonName,
    /// The VON's ON id (also in its CA certificate).
    pub on_id: OnId,
    /// QUIC (UDP) address members connect to.
    pub listen: Endpoint,
    /// Directory of the redb database: epoch counter, members, revocations.
    pub state_dir: PathBuf,
    /// The VON's CA certificate; members' certificates must chain to it.
    pub ca: PathBuf,
    /// The key manager's own TLS certificate, issued by the VON's CA.
    pub cert: PathBuf,
    /// The TLS private key of `cert`.
    pub key: PathBuf,
    /// The key manager's static X25519 key for Noise key wrapping.
    pub noise_key: PathBuf,
    /// Leases, renewals and rekeying.
    pub timers: Timers,
    /// Replicated state in etcd (`[etcd]`); `None`: the embedded redb store.
    pub etcd: Option<EtcdSettings>,
    /// Prometheus endpoint of a standalone key manager (`metrics`): its
    /// epoch, replica role and etcd health; `None`: no endpoint.
    pub metrics: Option<Endpoint>,
}

/// `[etcd]`: this key manager is one of the VON's replicas, sharing its
/// state in an etcd cluster (docs/keymgr-replicas.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdSettings {
    /// The etcd cluster's client endpoints (`IP:PORT`, plain HTTP).
    pub endpoints: Vec<Endpoint>,
    /// This replica's name, unique among the VON's replicas (default: its
    /// listen address).
    pub replica: String,
    /// Where the VON's keys live in etcd (default `/von/<von>/keymgr`).
    pub prefix: String,
    /// The leadership lease: a standby takes over this long after the
    /// leader stopped keeping it alive (default 2 s, whole seconds, at least 2).
    pub lease: Period,
    /// How long one etcd request may take on one endpoint (default 500 ms).
    pub timeout: Period,
}

/// The key manager's clocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timers {
    /// How long a member stays in the view without renewing (default 30 s).
    pub lease: Period,
    /// How often members renew; shorter than `lease` (default 10 s).
    pub renew: Period,
    /// Rekey at least this often even if membership is unchanged (default 1 h).
    pub key_max_age: Period,
    /// How long receivers accept both the old and the new epoch (default 2 s).
    pub grace: Period,
    /// How long a prepare waits for members' acks before commit (default 3 s).
    pub prepare_timeout: Period,
}

impl Default for Timers {
    fn default() -> Self {
        Self {
            lease: Period::from_secs(30),
            renew: Period::from_secs(10),
            key_max_age: Period::from_secs(3600),
            grace: Period::from_secs(2),
            prepare_timeout: Period::from_secs(3),
        }
    }
}

impl KeymgrConfig {
    /// Reads and checks a `keymgr.toml`.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let origin = path.display().to_string();
        let cfg = Self::from_toml_str(&read(path)?, &origin)?;
        cfg.check_private_keys(Origin(&origin), "")?;
        Ok(cfg)
    }

    /// Refuse `key` and `noise_key` if group or others may read them;
    /// `prefix` is the field path above them (`von[0].embedded_keymgr.`).
    pub(crate) fn check_private_keys(
        &self,
        origin: Origin<'_>,
        prefix: &str,
    ) -> Result<(), ConfigError> {
        crate::secret::check(origin, &format!("{prefix}key"), &self.key)?;
        crate::secret::check(origin, &format!("{prefix}noise_key"), &self.noise_key)
    }

    /// Parses and checks `text`; errors name `origin` as the file.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let file: KeymgrFile = parse_toml(text, origin)?;
        let timers = file.timers.resolve(Origin(origin), "")?;
        let etcd = file
            .etcd
            .map(|e| e.resolve(Origin(origin), &file.von, file.listen))
            .transpose()?;
        Ok(Self {
            von: file.von,
            on_id: file.on_id,
            listen: file.listen,
            state_dir: file
                .state_dir
                .unwrap_or_else(|| DEFAULT_KEYMGR_STATE_DIR.into()),
            ca: file.ca,
            cert: file.cert,
            key: file.key,
            noise_key: file.noise_key,
            timers,
            etcd,
            metrics: file.metrics,
        })
    }
}

/// `keymgr.toml` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeymgrFile {
    von: VonName,
    on_id: OnId,
    listen: Endpoint,
    state_dir: Option<PathBuf>,
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    noise_key: PathBuf,
    #[serde(default)]
    timers: TimerFields,
    etcd: Option<EtcdFields>,
    metrics: Option<Endpoint>,
}

/// `[etcd]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EtcdFields {
    endpoints: Vec<Endpoint>,
    replica: Option<String>,
    prefix: Option<String>,
    lease: Option<Period>,
    timeout: Option<Period>,
}

impl EtcdFields {
    fn resolve(
        self,
        origin: Origin<'_>,
        von: &VonName,
        listen: Endpoint,
    ) -> Result<EtcdSettings, ConfigError> {
        if self.endpoints.is_empty() {
            return Err(origin.field(
                "etcd.endpoints",
                "is empty (list the etcd cluster's client addresses, e.g. [\"192.0.2.11:2379\", \"192.0.2.12:2379\", \"192.0.2.13:2379\"])",
            ));
        }
        let replica = self.replica.unwrap_or_else(|| listen.addr().to_string());
        if replica.is_empty()
            || replica.len() > 64
            || !replica
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
        {
            return Err(origin.field(
                "etcd.replica",
                format_args!(
                    "{replica:?} is not a replica name (1-64 of a-z, 0-9, '-', '_', '.', ':'; e.g. \"km1\")"
                ),
            ));
        }
        let prefix = self
            .prefix
            .unwrap_or_else(|| format!("/von/{}/keymgr", von.as_str()));
        if !prefix.starts_with('/') {
            return Err(origin.field(
                "etcd.prefix",
                format_args!(
                    "{prefix:?} must start with '/' (e.g. \"/von/{}/keymgr\")",
                    von.as_str()
                ),
            ));
        }
        let lease = self.lease.unwrap_or(Period::from_secs(2));
        let d = lease.duration();
        if d.subsec_millis() != 0 || d.as_secs() < 2 {
            return Err(origin.field(
                "etcd.lease",
                format_args!(
                    "\"{lease}\" is not a whole number of seconds of at least 2 (etcd's leases count whole seconds and its minimum is 2 s; default \"2s\")"
                ),
            ));
        }
        let timeout = self.timeout.unwrap_or(Period::from_millis(500));
        if timeout >= lease {
            return Err(origin.field(
                "etcd.timeout",
                format_args!(
                    "\"{timeout}\" is not shorter than the lease \"{lease}\" (default \"500ms\")"
                ),
            ));
        }
        Ok(EtcdSettings {
            endpoints: self.endpoints,
            replica,
            prefix,
            lease,
            timeout,
        })
    }
}

/// `[von.embedded_keymgr]` in `von.toml` as written: `keymgr.toml` less the
/// VON's name and CA, which come from the `[[von]]` table around it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EmbeddedFile {
    on_id: OnId,
    listen: Endpoint,
    state_dir: Option<PathBuf>,
    cert: PathBuf,
    key: PathBuf,
    noise_key: PathBuf,
    #[serde(default)]
    timers: TimerFields,
}

impl EmbeddedFile {
    /// Completes the table with the surrounding VON's name and CA; the state
    /// directory defaults to `<agent state_dir>/keymgr/<von>`.
    pub(crate) fn resolve(
        self,
        origin: Origin<'_>,
        path: &str,
        von: &VonName,
        ca: &Path,
        agent_state_dir: &Path,
    ) -> Result<KeymgrConfig, ConfigError> {
        Ok(KeymgrConfig {
            von: von.clone(),
            on_id: self.on_id,
            listen: self.listen,
            state_dir: self
                .state_dir
                .unwrap_or_else(|| agent_state_dir.join("keymgr").join(von.as_str())),
            ca: ca.to_owned(),
            cert: self.cert,
            key: self.key,
            noise_key: self.noise_key,
            timers: self.timers.resolve(origin, path)?,
            // An embedded key manager serves its own agent's VON on one
            // machine; replicas run as `von keymgr`.
            etcd: None,
            // The agent's own `metrics` endpoint serves its process.
            metrics: None,
        })
    }
}

/// `[timers]`, every field optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TimerFields {
    lease: Option<Period>,
    renew: Option<Period>,
    key_max_age: Option<Period>,
    grace: Option<Period>,
    prepare_timeout: Option<Period>,
}

impl TimerFields {
    /// Fills defaults and checks the clocks against each other; `path` is the
    /// table holding `timers` ("" at the top level).
    fn resolve(self, origin: Origin<'_>, path: &str) -> Result<Timers, ConfigError> {
        let d = Timers::default();
        let t = Timers {
            lease: self.lease.unwrap_or(d.lease),
            renew: self.renew.unwrap_or(d.renew),
            key_max_age: self.key_max_age.unwrap_or(d.key_max_age),
            grace: self.grace.unwrap_or(d.grace),
            prepare_timeout: self.prepare_timeout.unwrap_or(d.prepare_timeout),
        };
        let at = |field: &str| {
            if path.is_empty() {
                format!("timers.{field}")
            } else {
                format!("{path}.timers.{field}")
            }
        };
        if t.renew >= t.lease {
            return Err(origin.field(
                at("renew"),
                format_args!(
                    "\"{}\" is not shorter than the lease \"{}\" (renew at most a third of the lease so one lost renewal is survived; default renew \"10s\", lease \"30s\")",
                    t.renew, t.lease
                ),
            ));
        }
        for (name, value) in [("grace", t.grace), ("prepare_timeout", t.prepare_timeout)] {
            if value >= t.key_max_age {
                return Err(origin.field(
                    at(name),
                    format_args!(
                        "\"{value}\" is not shorter than key_max_age \"{}\" (a rekey must finish well before the next one; shorten it or raise key_max_age)",
                        t.key_max_age
                    ),
                ));
            }
        }
        Ok(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
von = "grid"
on_id = 7
listen = "192.0.2.10:4433"
ca = "/etc/von/grid/ca.crt"
cert = "/etc/von/grid/keymgr.crt"
key = "/etc/von/grid/keymgr.key"
noise_key = "/etc/von/grid/keymgr.noise"
"#;

    #[test]
    fn defaults() {
        let c = KeymgrConfig::from_toml_str(MINIMAL, "keymgr.toml").unwrap();
        assert_eq!(c.von.as_str(), "grid");
        assert_eq!(c.on_id.value(), 7);
        assert_eq!(c.state_dir, Path::new(DEFAULT_KEYMGR_STATE_DIR));
        assert_eq!(c.timers, Timers::default());
        assert_eq!(c.timers.lease.duration().as_secs(), 30);
        assert_eq!(c.timers.renew.duration().as_secs(), 10);
        assert_eq!(c.timers.key_max_age.duration().as_secs(), 3600);
        assert_eq!(c.timers.grace.duration().as_secs(), 2);
        assert_eq!(c.timers.prepare_timeout.duration().as_secs(), 3);
        assert_eq!(c.metrics, None);
        let c = KeymgrConfig::from_toml_str(
            &format!("{MINIMAL}metrics = \"127.0.0.1:9470\"\n"),
            "keymgr.toml",
        )
        .unwrap();
        assert_eq!(
            c.metrics.map(|m| m.addr().to_string()).as_deref(),
            Some("127.0.0.1:9470")
        );
    }

    #[test]
    fn timers_parse_and_check() {
        let text = format!("{MINIMAL}[timers]\nlease = \"1m\"\nrenew = \"20s\"\n");
        let c = KeymgrConfig::from_toml_str(&text, "keymgr.toml").unwrap();
        assert_eq!(c.timers.lease.duration().as_secs(), 60);
        assert_eq!(c.timers.renew.duration().as_secs(), 20);

        let text = format!("{MINIMAL}[timers]\nrenew = \"30s\"\n");
        let err = KeymgrConfig::from_toml_str(&text, "keymgr.toml").unwrap_err();
        assert_eq!(err.path(), Some("timers.renew"));
        assert!(err.to_string().starts_with(
            "keymgr.toml: timers.renew: \"30s\" is not shorter than the lease \"30s\""
        ));

        let text = format!("{MINIMAL}[timers]\nkey_max_age = \"2s\"\n");
        let err = KeymgrConfig::from_toml_str(&text, "keymgr.toml").unwrap_err();
        assert_eq!(err.path(), Some("timers.grace"));

        let text = format!("{MINIMAL}[timers]\nlease = \"30\"\n");
        let err = KeymgrConfig::from_toml_str(&text, "keymgr.toml").unwrap_err();
        assert_eq!(
            err.to_string(),
            "keymgr.toml: timers.lease: \"30\" is not a duration: it has no unit (units: ms, s, m, h; example: \"30s\")"
        );
    }

    #[test]
    fn etcd_section() {
        let c = KeymgrConfig::from_toml_str(MINIMAL, "keymgr.toml").unwrap();
        assert_eq!(c.etcd, None, "no [etcd]: the redb store");

        let text =
            format!("{MINIMAL}[etcd]\nendpoints = [\"192.0.2.11:2379\", \"192.0.2.12:2379\"]\n");
        let e = KeymgrConfig::from_toml_str(&text, "keymgr.toml")
            .unwrap()
            .etcd
            .unwrap();
        assert_eq!(e.endpoints.len(), 2);
        assert_eq!(e.replica, "192.0.2.10:4433");
        assert_eq!(e.prefix, "/von/grid/keymgr");
        assert_eq!(e.lease.duration().as_secs(), 2);
        assert_eq!(e.timeout.duration().as_millis(), 500);

        let text = format!(
            "{MINIMAL}[etcd]\nendpoints = [\"192.0.2.11:2379\"]\nreplica = \"km1\"\nprefix = \"/x\"\nlease = \"5s\"\ntimeout = \"1s\"\n"
        );
        let e = KeymgrConfig::from_toml_str(&text, "keymgr.toml")
            .unwrap()
            .etcd
            .unwrap();
        assert_eq!((e.replica.as_str(), e.prefix.as_str()), ("km1", "/x"));

        for (extra, path, says) in [
            ("endpoints = []\n", "etcd.endpoints", "is empty"),
            ("endpoints = [\"etcd1\"]\n", "etcd.endpoints[0]", "IP:PORT"),
            (
                "endpoints = [\"192.0.2.11:2379\"]\nlease = \"1500ms\"\n",
                "etcd.lease",
                "whole number of seconds",
            ),
            (
                "endpoints = [\"192.0.2.11:2379\"]\nlease = \"1s\"\n",
                "etcd.lease",
                "at least 2",
            ),
            (
                "endpoints = [\"192.0.2.11:2379\"]\ntimeout = \"2s\"\n",
                "etcd.timeout",
                "not shorter than the lease",
            ),
            (
                "endpoints = [\"192.0.2.11:2379\"]\nreplica = \"a b\"\n",
                "etcd.replica",
                "not a replica name",
            ),
            (
                "endpoints = [\"192.0.2.11:2379\"]\nprefix = \"von\"\n",
                "etcd.prefix",
                "must start with '/'",
            ),
        ] {
            let text = format!("{MINIMAL}[etcd]\n{extra}");
            let err = KeymgrConfig::from_toml_str(&text, "keymgr.toml").unwrap_err();
            assert_eq!(err.path(), Some(path), "{err}");
            assert!(err.to_string().contains(says), "{err}");
            assert!(err.to_string().starts_with("keymgr.toml: "), "{err}");
        }
    }

    #[test]
    fn refuses_unknown_and_missing_keys() {
        let text = format!("{MINIMAL}revoked = [\"h2\"]\n");
        let err = KeymgrConfig::from_toml_str(&text, "keymgr.toml").unwrap_err();
        assert_eq!(err.path(), Some("revoked"));
        assert!(err.to_string().contains("unknown key \"revoked\""), "{err}");

        let text = MINIMAL.replace("on_id = 7\n", "");
        let err = KeymgrConfig::from_toml_str(&text, "keymgr.toml").unwrap_err();
        assert_eq!(
            err.to_string(),
            "keymgr.toml: on_id: missing key \"on_id\" (add it; see packaging/examples/ for every file)"
        );
    }
}
