//! The last committed view and group key of a keymgr-mode VON, on disk, so
//! an agent restarted while the key manager is down still forwards.
//!
//! `<state_dir>/<von>.keys.json`, mode 0600, written to a temporary file
//! (created 0600, never chmod'ed after), fsync'ed and renamed over the old
//! one, then the directory fsync'ed: a crash leaves the old or the new file.
//! The key is stored in the clear, protected by the file mode and the
//! directory (root only, like `/var/lib/von`): the agent must be able to
//! read it unattended at boot, so wrapping it under another key on the same
//! disk would add no protection. Only the committed epoch is kept; an epoch
//! in its grace window or being prepared is not.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use von_crypto::{Cipher, GroupKey};
use von_keymgr::View;
use von_keymgr::view::WireView;
use zeroize::Zeroizing;

/// The file for `von` in `state_dir`.
pub fn path(state_dir: &Path, von: &str) -> PathBuf {
    state_dir.join(format!("{von}.keys.json"))
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Saved {
    view: WireView,
    cipher: String,
    key: String,
}

/// The saved view and key could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    /// A filesystem step failed.
    #[error("{step} {path}: {source}; state_dir must be a writable local directory")]
    Io {
        /// What was being done.
        step: &'static str,
        /// Which file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file does not hold a saved view and key.
    #[error(
        "{path} is not a saved view and key ({detail}); delete it and let the key manager send a new one"
    )]
    Corrupt {
        /// Which file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
}

/// Save `view` and `key` durably.
pub fn save(file: &Path, view: &View, key: &GroupKey) -> Result<(), PersistError> {
    let saved = Saved {
        view: view.to_wire(),
        cipher: key.cipher().as_str().to_owned(),
        key: hex::encode(key.secret_bytes()),
    };
    // Owned strings and plain structs always serialize.
    let text = Zeroizing::new(serde_json::to_vec(&saved).expect("saved keys serialize"));
    drop(Zeroizing::new(saved.key));
    let io = |step, source| PersistError::Io {
        step,
        path: file.to_owned(),
        source,
    };
    let tmp = file.with_extension("json.tmp");
    let _ = fs::remove_file(&tmp);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| io("creating", e))?;
    f.write_all(&text).map_err(|e| io("writing", e))?;
    f.sync_all().map_err(|e| io("syncing", e))?;
    fs::rename(&tmp, file).map_err(|e| io("renaming over", e))?;
    if let Some(dir) = file.parent() {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io("syncing the directory of", e))?;
    }
    Ok(())
}

/// The saved view and key, or `None` when nothing was saved yet.
pub fn load(file: &Path) -> Result<Option<(View, GroupKey)>, PersistError> {
    let text = match fs::read(file) {
        Ok(t) => Zeroizing::new(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(PersistError::Io {
                step: "reading",
                path: file.to_owned(),
                source,
            });
        }
    };
    let corrupt = |detail: String| PersistError::Corrupt {
        path: file.to_owned(),
        detail,
    };
    let saved: Saved = serde_json::from_slice(&text).map_err(|e| corrupt(e.to_string()))?;
    let cipher: Cipher = saved
        .cipher
        .parse()
        .map_err(|e: von_crypto::AeadError| corrupt(e.to_string()))?;
    let secret = Zeroizing::new(hex::decode(&saved.key).map_err(|e| corrupt(e.to_string()))?);
    drop(Zeroizing::new(saved.key));
    let key = GroupKey::from_slice(cipher, &secret).map_err(|e| corrupt(e.to_string()))?;
    let view = saved.view.into_view().map_err(|e| corrupt(e.to_string()))?;
    Ok(Some((view, key)))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use von_crypto::{Epoch, MemberId, OnId};
    use von_keymgr::Member;

    use super::*;

    #[test]
    fn round_trip_with_mode_0600() {
        let dir = std::env::temp_dir().join(format!("von-persist-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let file = path(&dir, "grid");
        assert!(load(&file).unwrap().is_none());
        let view = View {
            on_id: OnId(7),
            epoch: Epoch(42),
            members: vec![Member {
                id: MemberId(1),
                name: "h1".into(),
                address: "100.64.0.1".parse().unwrap(),
                underlay: von_config::UnderlayEndpoints::from_names([
                    ("a", "192.0.2.1:4789".parse().unwrap()),
                    ("b", "198.51.100.1:4789".parse().unwrap()),
                ])
                .unwrap(),
            }],
        };
        let key = GroupKey::new(Cipher::ChaCha20Poly1305, [9; 32]);
        save(&file, &view, &key).unwrap();
        assert_eq!(
            fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let (v, k) = load(&file).unwrap().unwrap();
        assert_eq!(v, view);
        assert_eq!(k.secret_bytes(), key.secret_bytes());
        assert_eq!(k.cipher(), Cipher::ChaCha20Poly1305);
        // A file saved by the first release names endpoints `a` and `b`:
        // it still loads, as the underlays called a and b.
        let text = fs::read_to_string(&file).unwrap();
        let new_form = r#""underlay":{"a":"192.0.2.1:4789","b":"198.51.100.1:4789"}"#;
        assert!(text.contains(new_form), "{text}");
        let old = text.replace(new_form, r#""a":"192.0.2.1:4789","b":"198.51.100.1:4789""#);
        fs::write(&file, old).unwrap();
        assert_eq!(load(&file).unwrap().unwrap().0, view, "the old form loads");
        fs::write(&file, b"{}").unwrap();
        assert!(matches!(load(&file), Err(PersistError::Corrupt { .. })));
        fs::remove_dir_all(dir).unwrap();
    }
}
