//! Who may talk to whom on router control: mutual TLS 1.3 with certificates
//! from von's own CA (`von ca init`, `von cert issue --role router|reserve`).
//!
//! - A router serves only clients with a `reserve` certificate of its CA,
//!   not revoked.
//! - A reservation service dials a router and accepts only the `router`
//!   certificate of its CA whose name is the `[[router]]` name it dials,
//!   not revoked: a stolen `r2` certificate cannot answer for `r1`.
//!
//! The verifiers are von-keymgr's ([`von_keymgr::tls::PeerPolicy`]), the
//! same code that checks members and key managers; this module only picks
//! the policy and reads the revocation list.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use von_crypto::cert::{CertInfo, Role};
use von_keymgr::tls::{self, PeerPolicy, RevocationCheck};

use crate::error::{Error, Result};

/// The ALPN of router control; a key manager's client cannot talk to it.
pub const ALPN: &[u8] = b"von-router/1";

/// The TLS files of one end (a router's or a service's).
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The CA certificate both ends trust (`ca.crt`).
    pub ca: PathBuf,
    /// Own certificate.
    pub cert: PathBuf,
    /// Own TLS private key.
    pub key: PathBuf,
    /// The CA's revocation list (`revoked.txt` of `von cert revoke`), if any.
    pub revoked: Option<PathBuf>,
}

/// The revocation list, `SERIAL NAME ROLE` per line (`#` starts a comment),
/// re-read at every handshake, so copying a new list revokes at the next
/// connection without a restart. A list that cannot be read refuses
/// everyone (fails closed) and says why in the log.
#[derive(Debug, Clone)]
pub struct RevocationList {
    path: PathBuf,
}

impl RevocationList {
    /// Reads `path` once to check it, then keeps re-reading it.
    pub fn open(path: &Path) -> Result<Self> {
        read_serials(path)?;
        Ok(Self {
            path: path.to_owned(),
        })
    }
}

/// The serials listed in a revocation list.
pub fn read_serials(path: &Path) -> Result<BTreeSet<String>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::io("read the revocation list", path.display().to_string(), e))?;
    let mut serials = BTreeSet::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or_default().trim();
        let Some(serial) = line.split_whitespace().next() else {
            continue;
        };
        if serial.is_empty() || !serial.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::Config {
                path: path.to_owned(),
                reason: format!(
                    "line {}: {serial:?} is not a certificate serial (hex); \
                     the file is written by `von cert revoke`",
                    n + 1
                ),
            });
        }
        serials.insert(serial.to_ascii_lowercase());
    }
    Ok(serials)
}

impl RevocationCheck for RevocationList {
    fn is_revoked(&self, info: &CertInfo) -> bool {
        match read_serials(&self.path) {
            Ok(serials) => serials.contains(&info.serial.to_ascii_lowercase()),
            Err(e) => {
                tracing::warn!(error = %e, "revocation list unreadable: refusing every peer until it is fixed");
                true
            }
        }
    }
}

fn load(files: &TlsFiles, own: Role) -> Result<(tls::TlsMaterial, PeerPolicy)> {
    let (material, info) = von_keymgr::files::load_tls(own, &files.ca, &files.cert, &files.key)
        .map_err(|e| Error::invalid(e.what, format!("{}: {}", e.path, e.detail)))?;
    let revoked: Arc<dyn RevocationCheck> = match &files.revoked {
        Some(p) => {
            let list = RevocationList::open(p)?;
            if list.is_revoked(&info) {
                return Err(Error::invalid(
                    format!("certificate {}", files.cert.display()),
                    format!(
                        "its serial {} is on the revocation list {}; issue a new one with `von cert issue --force`",
                        info.serial,
                        p.display()
                    ),
                ));
            }
            Arc::new(list)
        }
        None => Arc::new(tls::NoRevocations),
    };
    let peer = match own {
        Role::Router => Role::Reserve,
        _ => Role::Router,
    };
    Ok((
        material,
        PeerPolicy {
            role: peer,
            name: None,
            revoked,
        },
    ))
}

/// A router's server config: its `router` certificate; clients must show a
/// `reserve` certificate of the same CA, not revoked.
pub fn router_server(files: &TlsFiles) -> Result<Arc<rustls::ServerConfig>> {
    let (material, policy) = load(files, Role::Router)?;
    let cfg = tls::server_config_for(material, policy, ALPN)
        .map_err(|e| Error::invalid("router TLS", e.to_string()))?;
    Ok(Arc::new(cfg))
}

/// A service's client config for dialing the router `router`: its
/// `reserve` certificate; the router must show the `router` certificate
/// named `router` (any router with `None`, for `von router status`).
pub fn service_client(files: &TlsFiles, router: Option<&str>) -> Result<Arc<rustls::ClientConfig>> {
    let (material, mut policy) = load(files, Role::Reserve)?;
    policy.name = router.map(str::to_owned);
    let cfg = tls::client_config_for(material, policy, ALPN)
        .map_err(|e| Error::invalid("service TLS", e.to_string()))?;
    Ok(Arc::new(cfg))
}
