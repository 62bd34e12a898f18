//! The two files an operator writes: `router.toml` for `von router`, and
//! `reserve.toml` for the reservation service (`von reserve serve`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use von_config::{Period, Rate};

use crate::admission::LinkBudget;
use crate::error::{Error, Result};

/// `router.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouterConfig {
    /// This router's name, as reservation paths write it (`r1` in `r1:eth1`).
    pub name: String,
    /// TCP address the reservation service reaches it on.
    pub listen: SocketAddr,
    /// File with the pre-shared key (hex, 32 bytes or more).
    pub key: PathBuf,
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
    /// Default key file for routers that name none.
    pub key: Option<PathBuf>,
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
    pub name: String,
    pub addr: SocketAddr,
    /// Its key file, if not the top-level `key`.
    pub key: Option<PathBuf>,
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
        if let Some(e) = &cfg.etcd {
            check_etcd(e, cfg.lease).map_err(fail)?;
        }
        for (i, r) in cfg.routers.iter().enumerate() {
            if r.key.is_none() && cfg.key.is_none() {
                return Err(fail(format!(
                    "router[{i}] ({}) has no key and there is no top-level key; add key = \"FILE\"",
                    r.name
                )));
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
            "name = \"r1\"\nlisten = \"10.0.0.1:7300\"\nkey = \"/k\"\n[[link]]\ndev = \"sha\"\ncapacity = \"100mbit\"\n",
        );
        let cfg = RouterConfig::load(&p).expect("valid");
        assert_eq!(cfg.budgets()[0].on_share_bps, 100_000_000);
    }

    #[test]
    fn share_above_capacity_and_unknown_keys_are_refused() {
        let (p, _rm) = write(
            "name = \"r1\"\nlisten = \"10.0.0.1:7300\"\nkey = \"/k\"\n[[link]]\ndev = \"sha\"\ncapacity = \"100mbit\"\non_share = \"200mbit\"\n",
        );
        let err = RouterConfig::load(&p)
            .expect_err("share > capacity")
            .to_string();
        assert!(
            err.contains("on_share 200mbit exceeds its capacity 100mbit"),
            "{err}"
        );
        let (p, _rm) =
            write("name = \"r1\"\nlisten = \"10.0.0.1:7300\"\nkey = \"/k\"\nlinks = []\n");
        assert!(RouterConfig::load(&p).is_err());
    }

    #[test]
    fn service_etcd_section_is_checked_field_by_field() {
        let head = "socket = \"/s\"\nkey = \"/k\"\nlease = \"9s\"\n";
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
    fn service_router_without_any_key_is_refused() {
        let (p, _rm) =
            write("socket = \"/s\"\n[[router]]\nname = \"r1\"\naddr = \"10.0.0.1:7300\"\n");
        let err = ServiceConfig::load(&p).expect_err("no key").to_string();
        assert!(err.contains("has no key"), "{err}");
    }
}
