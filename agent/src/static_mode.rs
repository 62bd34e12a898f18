//! Static mode: view and key from a file the config names, fixed for the
//! agent's lifetime.
//!
//! It serves tests and benchmarks, and small deployments without a key
//! manager. It builds the same [`Snapshot`] the key manager's client will
//! build, so the pipeline cannot tell the two apart.

use std::net::IpAddr;

use von_config::{Cipher as ConfigCipher, LocalView, Prefix, StaticView};
use von_crypto::{Cipher, Epoch, GroupKey, MemberId, OnId};

use von_packet::{
    Ipv4Prefix, Ipv6Prefix, Member, PerUnderlay, Prefixes, Snapshot, SnapshotError, UnderlayName,
};

/// Why a static view cannot become a snapshot.
#[derive(Debug, thiserror::Error)]
pub enum StaticModeError {
    /// The view is inconsistent.
    #[error("VON {von}: view {path}")]
    Snapshot {
        von: String,
        path: String,
        source: SnapshotError,
    },
}

/// The packet core's prefixes for the view's (the config checked each is
/// of its family and at most 32 or 128 bits long).
fn prefixes(v4: Option<Prefix>, v6: Option<Prefix>) -> Prefixes {
    Prefixes {
        v4: v4.and_then(|p| match p.network() {
            IpAddr::V4(n) => Ipv4Prefix::new(n, p.prefix_len()),
            IpAddr::V6(_) => None,
        }),
        v6: v6.and_then(|p| match p.network() {
            IpAddr::V6(n) => Ipv6Prefix::new(n, p.prefix_len()),
            IpAddr::V4(_) => None,
        }),
    }
}

/// Builds the snapshot of one static VON.
pub fn snapshot(
    local: &LocalView,
    path: &str,
    underlays: &PerUnderlay<UnderlayName>,
) -> Result<Snapshot, StaticModeError> {
    let von = local.von.as_str();
    let view: &StaticView = &local.view;
    let members = view
        .members
        .iter()
        .map(|m| Member {
            id: MemberId(m.id.value()),
            name: m.name.as_str().to_owned(),
            address: m.address.v4(),
            address6: m.address.v6(),
            endpoints: m.underlay.on(underlays),
        })
        .collect::<Vec<_>>();
    let cipher = match view.cipher {
        ConfigCipher::Aes256Gcm => Cipher::Aes256Gcm,
        ConfigCipher::ChaCha20Poly1305 => Cipher::ChaCha20Poly1305,
    };
    let epoch = Epoch(view.epoch.value());
    let key = GroupKey::new(cipher, *view.key.expose());
    Snapshot::new(
        OnId(view.on_id.value()),
        MemberId(local.me.id.value()),
        prefixes(view.prefix.v4(), view.prefix.v6()),
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
