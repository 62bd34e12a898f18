//! The two files an operator writes: `router.toml` for `von router`, and
//! `reserve.toml` for the reservation service (`von reserve serve`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use von_config::{Period, Rate};

use crate::admission::LinkBudget;
use crate::auth::TlsFiles;
use crate::error::{Error, Result};

/// `router.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouterConfig {
    /// This router's name, as reservation paths write it (`r1` in `r1:eth1`).
    pub name: String,
    /// TCP address the reservation service reaches it on (mutual TLS).
    pub listen: SocketAddr,
    /// The CA certificate of router control (`ca.crt` of `von ca init`).
    pub ca: Option<PathBuf>,
    /// This router's certificate (`von cert issue --role router --name NAME`).
    pub cert: Option<PathBuf>,
    /// Its TLS private key (`NAME.key` beside the certificate).
    pub tls_key: Option<PathBuf>,
    /// The CA's revocation list (`revoked.txt` of `von cert revoke`),
    /// re-read at every connection.
    pub revoked: Option<PathBuf>,
    /// The shared HMAC key of older versions: refused with how to move on.
    pub key: Option<toml::Value>,
    /// Optional Prometheus endpoint (per-ON bytes, packets, drops, rates).
    pub metrics: Option<SocketAddr>,
    /// Every egress interface it shapes.
    #[serde(rename = "link")]
    pub links: Vec<LinkConfig>,
}

/// One `[[link]]` of `router.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkConfig {
    /// The egress interface.
    pub dev: String,
    /// The link's rate; the HTB root never sends faster.
    pub capacity: Rate,
    /// How much ONs may book in total; default: all of `capacity`.
    pub on_share: Option<Rate>,
}

/// `reserve.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// Unix socket `von reserve add|list|release` talk to.
    pub socket: PathBuf,
    /// The CA certificate of router control (`ca.crt` of `von ca init`).
    pub ca: Option<PathBuf>,
    /// This replica's certificate (`von cert issue --role reserve`).
    pub cert: Option<PathBuf>,
    /// Its TLS private key.
    pub tls_key: Option<PathBuf>,
    /// The CA's revocation list (`revoked.txt` of `von cert revoke`),
    /// re-read at every connection.
    pub revoked: Option<PathBuf>,
    /// The shared HMAC key of older versions: refused with how to move on.
    pub key: Option<toml::Value>,
    /// Lease granted on every router; renewed every third of it.
    #[serde(default = "default_lease")]
    pub lease: Period,
    /// The registry's redb file: reservations survive a crash or restart.
    /// Not used with `[etcd]`.
    #[serde(default = "default_state")]
    pub state: PathBuf,
    /// The registry in etcd, shared by two or more replicas of the service,
    /// one of which leads (docs/isolation.md, "Service replicas on etcd");
    /// absent: the redb file `state`, one service.
    pub etcd: Option<ServiceEtcd>,
    /// The routers reservations may use.
    #[serde(rename = "router")]
    pub routers: Vec<RouterEntry>,
}

/// `[etcd]` of `reserve.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceEtcd {
    /// The etcd cluster's client endpoints (`IP:PORT`, plain HTTP).
    pub endpoints: Vec<String>,
    /// This replica's name, unique among the service's replicas.
    pub replica: String,
    /// Where the registry lives in etcd.
    #[serde(default = "default_etcd_prefix")]
    pub prefix: String,
    /// The replica's etcd lease: a killed leader's seat is free this long
    /// after its last keep-alive (whole seconds, at least 2).
    #[serde(default = "default_etcd_lease")]
    pub lease: Period,
    /// How long one etcd request may take on one endpoint.
    #[serde(default = "default_etcd_timeout")]
    pub timeout: Period,
}

fn default_etcd_prefix() -> String {
    "/von/reserve".into()
}

fn default_etcd_lease() -> Period {
    Period::from_secs(2)
}

fn default_etcd_timeout() -> Period {
    Period::from_millis(500)
}

/// One `[[router]]` of `reserve.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouterEntry {
    /// Its name; its certificate must carry it.
    pub name: String,
    pub addr: SocketAddr,
    /// The per-router HMAC key of older versions: refused.
    pub key: Option<toml::Value>,
}

/// The error for an old `key` field: router control moved to mutual TLS.
fn old_key(field: &str, role: &str) -> String {
    format!(
        "{field}: the shared HMAC key is no longer used; router control is mutual TLS now. \
         Remove `{field}`, issue a certificate with `von cert issue --ca DIR --role {role} --name NAME --out DIR` \
         and set ca = \"DIR/ca.crt\", cert = \"NAME.crt\", tls_key = \"NAME.key\" (docs/isolation.md, \"Router control\")"
    )
}

/// The three TLS files, each required; `role` says which certificate.
fn tls_files(
    ca: &Option<PathBuf>,
    cert: &Option<PathBuf>,
    key: &Option<PathBuf>,
    revoked: &Option<PathBuf>,
    role: &str,
) -> std::result::Result<TlsFiles, String> {
    let need = |v: &Option<PathBuf>, field: &str, what: &str| {
        v.clone().ok_or_else(|| {
            format!(
                "{field} is missing: set {field} = \"FILE\", {what} \
                 (`von cert issue --role {role}`, docs/isolation.md)"
            )
        })
    };
    Ok(TlsFiles {
        ca: need(ca, "ca", "the CA certificate of router control (ca.crt)")?,
        cert: need(cert, "cert", &format!("this {role}'s certificate"))?,
        key: need(key, "tls_key", "the TLS private key issued with it")?,
        revoked: revoked.clone(),
    })
}

fn default_state() -> PathBuf {
    PathBuf::from("/var/lib/von/reserve.redb")
}

fn default_lease() -> Period {
    Period::from_secs(30)
}

impl RouterConfig {
    /// Reads and checks `router.toml`.
    pub fn load(path: &Path) -> Result<Self> {
        let cfg: Self = load_toml(path)?;
        let fail = |reason: String| Error::Config {
            path: path.to_owned(),
            reason,
        };
        if cfg.key.is_some() {
            return Err(fail(old_key("key", "router")));
        }
        cfg.tls_check().map_err(fail)?;
        if cfg.links.is_empty() {
            return Err(fail(
                "no [[link]]: name at least one egress interface to shape".into(),
            ));
        }
        for (i, l) in cfg.links.iter().enumerate() {
            if l.dev.is_empty() || l.dev.len() > 15 {
                return Err(fail(format!(
                    "link[{i}].dev {:?}: an interface name of 1..=15 bytes",
                    l.dev
                )));
            }
            if cfg.links[..i].iter().any(|o| o.dev == l.dev) {
                return Err(fail(format!("link[{i}].dev {:?} is listed twice", l.dev)));
            }
            if l.on_share.is_some_and(|s| s > l.capacity) {
                return Err(fail(format!(
                    "link[{i}].on_share {} exceeds its capacity {}; ONs cannot book more than the link",
                    l.on_share.map(|s| s.to_string()).unwrap_or_default(),
                    l.capacity
                )));
            }
        }
        Ok(cfg)
    }

    fn tls_check(&self) -> std::result::Result<TlsFiles, String> {
        tls_files(&self.ca, &self.cert, &self.tls_key, &self.revoked, "router")
    }

    /// Its TLS files (checked present by [`load`](Self::load)).
    pub fn tls(&self) -> Result<TlsFiles> {
        self.tls_check()
            .map_err(|reason| Error::invalid("router.toml", reason))
    }

    /// The admission budgets of its links.
    pub fn budgets(&self) -> Vec<LinkBudget> {
        self.links
            .iter()
            .map(|l| LinkBudget {
                dev: l.dev.clone(),
                capacity_bps: l.capacity.bits_per_second(),
                on_share_bps: l.on_share.unwrap_or(l.capacity).bits_per_second(),
            })
            .collect()
    }
}

impl ServiceConfig {
    /// Reads and checks `reserve.toml`.
    pub fn load(path: &Path) -> Result<Self> {
        let cfg: Self = load_toml(path)?;
        let fail = |reason: String| Error::Config {
            path: path.to_owned(),
            reason,
        };
        if cfg.key.is_some() {
            return Err(fail(old_key("key", "reserve")));
        }
        cfg.tls_check().map_err(fail)?;
        if let Some(e) = &cfg.etcd {
            check_etcd(e, cfg.lease).map_err(fail)?;
        }
        for (i, r) in cfg.routers.iter().enumerate() {
            if r.key.is_some() {
                return Err(fail(old_key(&format!("router[{i}].key"), "reserve")));
            }
            if cfg.routers[..i].iter().any(|o| o.name == r.name) {
                return Err(fail(format!(
                    "router[{i}].name {:?} is listed twice",
                    r.name
                )));
            }
        }
        Ok(cfg)
    }

    fn tls_check(&self) -> std::result::Result<TlsFiles, String> {
        tls_files(
            &self.ca,
            &self.cert,
            &self.tls_key,
            &self.revoked,
            "reserve",
        )
    }

    /// Its TLS files (checked present by [`load`](Self::load)).
    pub fn tls(&self) -> Result<TlsFiles> {
        self.tls_check()
            .map_err(|reason| Error::invalid("reserve.toml", reason))
    }
}

fn check_etcd(e: &ServiceEtcd, lease: Period) -> std::result::Result<(), String> {
    if e.endpoints.is_empty() {
        return Err(
            "etcd.endpoints is empty: list the etcd cluster's client addresses, \
             e.g. [\"192.0.2.11:2379\", \"192.0.2.12:2379\", \"192.0.2.13:2379\"]"
                .into(),
        );
    }
    for (i, ep) in e.endpoints.iter().enumerate() {
        if ep.parse::<SocketAddr>().is_err() {
            return Err(format!(
                "etcd.endpoints[{i}] {ep:?} is not IP:PORT (e.g. \"192.0.2.11:2379\")"
            ));
        }
    }
    if e.replica.is_empty() || e.replica.contains('/') {
        return Err(format!(
            "etcd.replica {:?}: name this replica (no '/'), unique among the service's replicas",
            e.replica
        ));
    }
    if !e.prefix.starts_with('/') {
        return Err(format!(
            "etcd.prefix {:?} must start with '/' (default \"/von/reserve\")",
            e.prefix
        ));
    }
    let ttl = e.lease.duration();
    if ttl < Duration::from_secs(2) || ttl.subsec_nanos() != 0 {
        return Err(format!(
            "etcd.lease \"{}\" is not a whole number of seconds of at least 2 \
             (etcd's leases count whole seconds and its minimum is 2 s; default \"2s\")",
            e.lease
        ));
    }
    if e.timeout.duration().is_zero() {
        return Err("etcd.timeout is zero; give each etcd request time (default \"500ms\")".into());
    }
    // A failover takes up to the etcd lease plus a poll and the reload; the
    // routers' classes must outlive it after the last renewal (a third of
    // the lease before the kill, at worst).
    if lease.duration() < ttl * 3 + Duration::from_secs(3) {
        return Err(format!(
            "lease \"{lease}\" is too short for etcd.lease \"{}\": a failover takes up to \
             etcd.lease + 1 s and the routers must not let a class lapse meanwhile; \
             set lease to at least 3 × etcd.lease + 3 s (\"{}s\")",
            e.lease,
            ttl.as_secs() * 3 + 3
        ));
    }
    Ok(())
}

fn load_toml<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::io("read", path.display().to_string(), e))?;
    toml::from_str(&text).map_err(|e| Error::Config {
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> (PathBuf, impl Drop) {
        struct Rm(PathBuf);
        impl Drop for Rm {
            fn drop(&mut self) {
                let _ = std::fs::remove_file(&self.0);
            }
        }
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p =
            std::env::temp_dir().join(format!("von-router-cfg-{}-{n}.toml", std::process::id()));
        std::fs::write(&p, text).expect("temp file");
        (p.clone(), Rm(p))
    }

    #[test]
    fn router_config_with_defaults() {
        let (p, _rm) = write(
            "name = \"r1\"\nlisten = \"10.0.0.1:7300\"\nca = \"/ca\"\ncert = \"/c\"\ntls_key = \"/k\"\n[[link]]\ndev = \"sha\"\ncapacity = \"100mbit\"\n",
        );
        let cfg = RouterConfig::load(&p).expect("valid");
        assert_eq!(cfg.budgets()[0].on_share_bps, 100_000_000);
    }

    #[test]
    fn share_above_capacity_and_unknown_keys_are_refused() {
        let (p, _rm) = write(
            "name = \"r1\"\nlisten = \"10.0.0.1:7300\"\nca = \"/ca\"\ncert = \"/c\"\ntls_key = \"/k\"\n[[link]]\ndev = \"sha\"\ncapacity = \"100mbit\"\non_share = \"200mbit\"\n",
        );
        let err = RouterConfig::load(&p)
            .expect_err("share > capacity")
            .to_string();
        assert!(
            err.contains("on_share 200mbit exceeds its capacity 100mbit"),
            "{err}"
        );
        let (p, _rm) = write(
            "name = \"r1\"\nlisten = \"10.0.0.1:7300\"\nca = \"/ca\"\ncert = \"/c\"\ntls_key = \"/k\"\nlinks = []\n",
        );
        assert!(RouterConfig::load(&p).is_err());
    }

    #[test]
    fn service_etcd_section_is_checked_field_by_field() {
        let head =
            "socket = \"/s\"\nca = \"/ca\"\ncert = \"/c\"\ntls_key = \"/k\"\nlease = \"9s\"\n";
        let router = "[[router]]\nname = \"r1\"\naddr = \"10.0.0.1:7300\"\n";
        let text =
            format!("{head}[etcd]\nendpoints = [\"192.0.2.1:2379\"]\nreplica = \"rs1\"\n{router}");
        let (p, _rm) = write(&text);
        let cfg = ServiceConfig::load(&p).expect("valid");
        let e = cfg.etcd.expect("[etcd]");
        assert_eq!(
            (e.prefix.as_str(), e.lease.duration()),
            ("/von/reserve", Duration::from_secs(2))
        );
        for (etcd, want) in [
            (
                "endpoints = []\nreplica = \"a\"\n",
                "etcd.endpoints is empty",
            ),
            (
                "endpoints = [\"etcd1\"]\nreplica = \"a\"\n",
                "etcd.endpoints[0]",
            ),
            (
                "endpoints = [\"192.0.2.1:2379\"]\nreplica = \"\"\n",
                "etcd.replica",
            ),
            (
                "endpoints = [\"192.0.2.1:2379\"]\nreplica = \"a\"\nprefix = \"x\"\n",
                "etcd.prefix",
            ),
            (
                "endpoints = [\"192.0.2.1:2379\"]\nreplica = \"a\"\nlease = \"1500ms\"\n",
                "etcd.lease",
            ),
            (
                "endpoints = [\"192.0.2.1:2379\"]\nreplica = \"a\"\nlease = \"3s\"\n",
                "set lease to at least 3 × etcd.lease + 3 s (\"12s\")",
            ),
        ] {
            let text = format!("{head}[etcd]\n{etcd}{router}");
            let (p, _rm) = write(&text);
            let err = ServiceConfig::load(&p).expect_err(etcd).to_string();
            assert!(err.contains(want), "{etcd}: {err}");
        }
    }

    #[test]
    fn an_old_hmac_key_or_missing_tls_files_are_refused_with_the_fix() {
        let router = "[[link]]\ndev = \"sha\"\ncapacity = \"100mbit\"\n";
        let text = format!(
            "name = \"r1\"\nlisten = \"10.0.0.1:7300\"\nkey = \"/etc/von/router.key\"\n{router}"
        );
        let (p, _rm) = write(&text);
        let err = RouterConfig::load(&p).expect_err("old key").to_string();
        assert!(err.starts_with(&p.display().to_string()), "{err}");
        assert!(
            err.contains("key: the shared HMAC key is no longer used")
                && err.contains("von cert issue --ca DIR --role router"),
            "{err}"
        );
        let text = format!(
            "name = \"r1\"\nlisten = \"10.0.0.1:7300\"\nca = \"/ca\"\ncert = \"/c\"\n{router}"
        );
        let (p, _rm) = write(&text);
        let err = RouterConfig::load(&p).expect_err("no tls_key").to_string();
        assert!(err.contains("tls_key is missing"), "{err}");

        let tls = "ca = \"/ca\"\ncert = \"/c\"\ntls_key = \"/k\"\n";
        for (text, want) in [
            (
                "socket = \"/s\"\nkey = \"/k\"\n[[router]]\nname = \"r1\"\naddr = \"10.0.0.1:7300\"\n"
                    .to_owned(),
                "key: the shared HMAC key",
            ),
            (
                format!(
                    "socket = \"/s\"\n{tls}[[router]]\nname = \"r1\"\naddr = \"10.0.0.1:7300\"\nkey = \"/k1\"\n"
                ),
                "router[0].key: the shared HMAC key",
            ),
            (
                "socket = \"/s\"\n[[router]]\nname = \"r1\"\naddr = \"10.0.0.1:7300\"\n".to_owned(),
                "ca is missing",
            ),
        ] {
            let (p, _rm) = write(&text);
            let err = ServiceConfig::load(&p).expect_err(want).to_string();
            assert!(err.contains(want), "{want}: {err}");
            assert!(err.contains("--role reserve"), "{err}");
        }
    }
}
