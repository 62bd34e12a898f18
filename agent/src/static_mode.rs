//! Static mode: view and key from a file the config names, fixed for the
//! agent's lifetime.
//!
//! It serves tests and benchmarks, and small deployments without a key
//! manager. It builds the same [`Snapshot`] the key manager's client will
//! build, so the pipeline cannot tell the two apart.

use std::net::{IpAddr, Ipv4Addr};

use von_config::{Cipher as ConfigCipher, LocalView, StaticView};
use von_crypto::{Cipher, Epoch, GroupKey, MemberId, OnId};

use von_packet::{Ipv4Prefix, Member, PerUnderlay, Snapshot, SnapshotError, UnderlayName};

/// Why a static view cannot become a snapshot.
#[derive(Debug, thiserror::Error)]
pub enum StaticModeError {
    /// VON addresses are IPv4 (100.64.0.0/10 in the design).
    #[error(
        "VON {von}: {what} {addr} is IPv6; VON prefixes and addresses must be IPv4 (e.g. 100.64.0.0/24)"
    )]
    NotIpv4 {
        von: String,
        what: &'static str,
        addr: IpAddr,
    },
    /// The view is inconsistent.
    #[error("VON {von}: view {path}")]
    Snapshot {
        von: String,
        path: String,
        source: SnapshotError,
    },
}

/// Builds the snapshot of one static VON.
pub fn snapshot(
    local: &LocalView,
    path: &str,
    underlays: &PerUnderlay<UnderlayName>,
) -> Result<Snapshot, StaticModeError> {
    let von = local.von.as_str();
    let view: &StaticView = &local.view;
    let v4 = |what: &'static str, addr: IpAddr| -> Result<Ipv4Addr, StaticModeError> {
        match addr {
            IpAddr::V4(a) => Ok(a),
            IpAddr::V6(_) => Err(StaticModeError::NotIpv4 {
                von: von.to_owned(),
                what,
                addr,
            }),
        }
    };
    let network = v4("prefix", view.prefix.network())?;
    // `prefix_len` of an IPv4 prefix is at most 32, checked by the config.
    let prefix = Ipv4Prefix::new(network, view.prefix.prefix_len()).ok_or_else(|| {
        StaticModeError::NotIpv4 {
            von: von.to_owned(),
            what: "prefix",
            addr: view.prefix.network(),
        }
    })?;
    let members = view
        .members
        .iter()
        .map(|m| {
            Ok(Member {
                id: MemberId(m.id.value()),
                name: m.name.as_str().to_owned(),
                address: v4("member address", m.address)?,
                endpoints: m.underlay.on(underlays),
            })
        })
        .collect::<Result<Vec<_>, StaticModeError>>()?;
    let cipher = match view.cipher {
        ConfigCipher::Aes256Gcm => Cipher::Aes256Gcm,
        ConfigCipher::ChaCha20Poly1305 => Cipher::ChaCha20Poly1305,
    };
    let epoch = Epoch(view.epoch.value());
    let key = GroupKey::new(cipher, *view.key.expose());
    Snapshot::new(
        OnId(view.on_id.value()),
        MemberId(local.me.id.value()),
        prefix,
        members,
        epoch,
        &[(epoch, key)],
    )
    .map_err(|source| StaticModeError::Snapshot {
        von: von.to_owned(),
        path: path.to_owned(),
        source,
    })
}
