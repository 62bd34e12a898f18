//! What a key manager needs to start, resolved from `keymgr.toml` (or the
//! agent's `[von.embedded_keymgr]` table) and the files it names.

use std::net::SocketAddr;
use std::path::PathBuf;

use von_config::{EtcdSettings, KeymgrConfig};
use von_crypto::cert::{Role, VonName, VonPrefix};
use von_crypto::wrap::NoiseSecret;

use super::ServerError;
use crate::files;
use crate::ids::{Cipher, OnId};
use crate::manager::Settings;
use crate::tls::TlsMaterial;

/// The redb file inside the state directory.
pub const STORE_FILE: &str = "keymgr.redb";

/// A key manager's resolved inputs.
#[derive(Debug)]
pub struct Params {
    /// Protocol policy (timers, ON id, cipher).
    pub settings: Settings,
    /// QUIC address.
    pub listen: SocketAddr,
    /// Store and control socket live here.
    pub state_dir: PathBuf,
    /// CA, own certificate and key.
    pub tls: TlsMaterial,
    /// The key manager's X25519 secret.
    pub noise: NoiseSecret,
    /// `Some`: one of the VON's replicas, state in etcd (else redb).
    pub etcd: Option<EtcdSettings>,
}

impl Params {
    /// Read the files `cfg` names and check they fit together.
    pub fn from_config(cfg: &KeymgrConfig) -> Result<Self, ServerError> {
        let von = von_name(cfg)?;
        let loaded = files::load(
            &von,
            Role::Keymgr,
            &cfg.ca,
            &cfg.cert,
            &cfg.key,
            &cfg.noise_key,
        )
        .map_err(|e| ServerError::File {
            what: e.what,
            path: e.path,
            detail: e.detail,
        })?;
        let on_id = OnId(cfg.on_id.value());
        if loaded.info.extension.on_id != on_id {
            return Err(ServerError::File {
                what: "certificate",
                path: cfg.cert.display().to_string(),
                detail: format!(
                    "is for ON id {}, the configuration says on_id = {}",
                    loaded.info.extension.on_id.0, on_id.0
                ),
            });
        }
        // The VON's prefix is the one the key manager's own certificate
        // names: the CA issued it, so it is the prefix every member's
        // certificate must name too.
        let prefix = loaded
            .info
            .extension
            .holder
            .identity()
            .map(|id| VonPrefix::of(&id.addr))
            .ok_or_else(|| ServerError::File {
                what: "certificate",
                path: cfg.cert.display().to_string(),
                detail: "names no VON address; issue it with `von cert issue --role keymgr`".into(),
            })?;
        let t = &cfg.timers;
        Ok(Self {
            settings: Settings {
                on_id,
                prefix,
                cipher: Cipher::DEFAULT,
                lease: t.lease.duration(),
                renew_every: t.renew.duration(),
                ack_timeout: t.prepare_timeout.duration(),
                key_max_age: t.key_max_age.duration(),
                grace: t.grace.duration(),
            },
            listen: cfg.listen.addr(),
            state_dir: cfg.state_dir.clone(),
            tls: loaded.tls,
            noise: loaded.noise,
            etcd: cfg.etcd.clone(),
        })
    }
}

/// The configuration's VON name as the certificate code spells it.
pub(crate) fn von_name(cfg: &KeymgrConfig) -> Result<VonName, ServerError> {
    cfg.von
        .as_str()
        .parse()
        .map_err(|e: von_crypto::cert::CertError| ServerError::File {
            what: "configuration",
            path: "von".into(),
            detail: e.to_string(),
        })
}
