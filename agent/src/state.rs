//! Durable per-VON state in `state_dir`: the sequence incarnation.
//!
//! The AEAD nonce is (sender id, sequence) with no random part, so a sequence
//! number must never repeat under one key, not even across a crash. The agent
//! therefore bumps a per-VON incarnation on disk — write a temp file, fsync it,
//! rename it over the old one, fsync the directory — *before* it sends
//! anything, and crypto's `SendCounter` starts the sequence space of that
//! incarnation. A crash at any point leaves either the old or the new number on
//! disk, never a torn or lost one; the next start bumps past it either way.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Why the incarnation could not be read or advanced.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// A filesystem step failed.
    #[error(
        "{step} {path} failed; state_dir must be a writable local directory \
         (set `state_dir` in the config)"
    )]
    Io {
        step: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    /// The file exists but does not hold a number. Starting over at zero could
    /// reuse sequence numbers, so the agent refuses.
    #[error(
        "{path} holds {content:?}, not an incarnation number; restore it, or if the VON's \
         key has changed since, delete it"
    )]
    Corrupt { path: PathBuf, content: String },
    /// Every incarnation has been used.
    #[error("{path}: incarnation {value} is the last one; rekey the VON and delete the file")]
    Exhausted { path: PathBuf, value: u32 },
}

/// Reads the stored incarnation of VON `von` (0 if none), stores the next one
/// durably and returns it. Call before sending anything under the VON.
pub fn bump_incarnation(state_dir: &Path, von: &str) -> Result<u32, StateError> {
    let io_err = |step: &'static str, path: &Path| {
        let path = path.to_owned();
        move |source| StateError::Io { step, path, source }
    };
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(state_dir)
        .map_err(io_err("creating", state_dir))?;
    let path = state_dir.join(format!("{von}.incarnation"));
    let previous = match fs::read_to_string(&path) {
        Ok(text) => text
            .trim()
            .parse::<u32>()
            .map_err(|_| StateError::Corrupt {
                path: path.clone(),
                content: text.chars().take(40).collect(),
            })?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
        Err(e) => return Err(io_err("reading", &path)(e)),
    };
    let next = previous.checked_add(1).ok_or(StateError::Exhausted {
        path: path.clone(),
        value: previous,
    })?;

    let tmp = state_dir.join(format!("{von}.incarnation.tmp"));
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io_err("creating", &tmp))?;
    writeln!(file, "{next}").map_err(io_err("writing", &tmp))?;
    file.sync_all().map_err(io_err("fsync of", &tmp))?;
    drop(file);
    fs::rename(&tmp, &path).map_err(io_err("renaming over", &path))?;
    File::open(state_dir)
        .and_then(|dir| dir.sync_all())
        .map_err(io_err("fsync of directory", state_dir))?;
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("von-state-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn counts_up_per_von_and_survives_reopen() {
        let dir = scratch("up");
        assert_eq!(bump_incarnation(&dir, "grid").unwrap(), 1);
        assert_eq!(bump_incarnation(&dir, "grid").unwrap(), 2);
        assert_eq!(bump_incarnation(&dir, "med").unwrap(), 1);
        assert_eq!(bump_incarnation(&dir, "grid").unwrap(), 3);
        assert_eq!(
            fs::read_to_string(dir.join("grid.incarnation")).unwrap(),
            "3\n"
        );
        assert!(!dir.join("grid.incarnation.tmp").exists());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_corrupt_file_is_refused_not_reset() {
        let dir = scratch("corrupt");
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("grid.incarnation"), "garbage").unwrap();
        let err = bump_incarnation(&dir, "grid").unwrap_err();
        assert!(matches!(err, StateError::Corrupt { .. }), "{err}");
        assert!(err.to_string().contains("garbage"), "{err}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_last_incarnation_is_refused() {
        let dir = scratch("last");
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("grid.incarnation"), u32::MAX.to_string()).unwrap();
        let err = bump_incarnation(&dir, "grid").unwrap_err();
        assert!(matches!(err, StateError::Exhausted { .. }), "{err}");
        fs::remove_dir_all(&dir).unwrap();
    }
}
