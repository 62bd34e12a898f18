//! Durable per-VON state in `state_dir`: the sequence incarnation.
//!
//! The AEAD nonce is (sender id, sequence) with no random part, so a sequence
//! number must never repeat under one key, not even across a crash, a lost
//! `state_dir`, one restored from an old backup, or one copied to a clone.
//! A number kept on disk cannot promise that: a restored copy brings back an
//! old value. So the incarnation is the second of the start, counted from
//! `von_crypto::sequence::INCARNATION_EPOCH_UNIX`: it moves forward whatever
//! happens to the disk, as long as the clock does.
//!
//! Two starts within one second would share an incarnation, and a lost file
//! cannot say that the last start was a moment ago. So a start seals nothing
//! before its second is over: [`bump_incarnation`] returns only once the
//! clock reads a later second. A process that sealed anything under
//! incarnation `s` was therefore alive after `s` ended, and any later start
//! gets a later second — with or without the file.
//!
//! The file keeps the last incarnation used (written to a temp file,
//! fsynced, renamed, directory fsynced, *before* anything is sent) only to
//! catch the clock going back: a clock up to [`MAX_CLOCK_WAIT`] behind the
//! last start is waited out, one further behind is refused with an error
//! naming the fix. See `docs/crypto.md`.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use von_crypto::sequence::{INCARNATION_EPOCH_UNIX, MAX_INCARNATION};

/// How far behind the last start the clock may be before the agent refuses
/// instead of waiting for it (a restart within the same second, a small step
/// back by NTP).
pub const MAX_CLOCK_WAIT: Duration = Duration::from_secs(5);
/// How often the clock is read again while waiting.
const CLOCK_POLL: Duration = Duration::from_millis(50);

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
    /// The file exists but does not hold a number.
    #[error(
        "{path} holds {content:?}, not an incarnation number; restore it, or delete it \
         (the clock alone then guards the next start)"
    )]
    Corrupt { path: PathBuf, content: String },
    /// The clock cannot be the time: nonces derive from it.
    #[error(
        "the system clock reads {unix} s after 1970-01-01, outside 2025-01-01..2059-01; \
         sequence numbers (and so AEAD nonces) derive from it: set the clock \
         (NTP, `timedatectl`, `date -s`) and start again"
    )]
    ClockImplausible { unix: u64 },
    /// The clock is behind the last start by more than [`MAX_CLOCK_WAIT`].
    #[error(
        "{path}: this VON last started at incarnation {stored}, {behind} s ahead of the \
         system clock (incarnation {clock}); starting now could reuse nonces under a key \
         still in use. Fix the system clock (NTP). If the clock is right and the last start \
         ran under a wrong one, replace the VON's key (static mode: a new `key` in the view \
         file on every member; keymgr mode: `von keymgr rekey`, and delete <von>.keys.json \
         here), then delete {path}"
    )]
    ClockBehind {
        path: PathBuf,
        stored: u32,
        clock: u32,
        behind: u64,
    },
    /// The clock did not pass the start's second in [`MAX_CLOCK_WAIT`].
    #[error(
        "the system clock did not move past incarnation {incarnation} (it reads {clock}) \
         within {MAX_CLOCK_WAIT:?}; it went back or stands still: fix it (NTP)"
    )]
    ClockStuck { incarnation: u32, clock: u32 },
}

/// The incarnation of a start now for VON `von`: reads the clock, waits up
/// to [`MAX_CLOCK_WAIT`] if it has not passed the last start yet, stores the
/// result durably and returns it. Before sealing anything under it, call
/// [`wait_until_past`] with the largest incarnation of this start (once for
/// every VON of the agent: they share the wait).
pub fn bump_incarnation(state_dir: &Path, von: &str) -> Result<u32, StateError> {
    store_with_clock(state_dir, von, &SystemTime::now, &mut std::thread::sleep)
}

/// Returns once the clock reads a second after `incarnation` (at most one
/// second after a start): sealing under an incarnation only after its second
/// is over is what keeps two starts from sharing one (see the module doc).
pub fn wait_until_past(incarnation: u32) -> Result<(), StateError> {
    wait_past_with_clock(incarnation, SystemTime::now, std::thread::sleep)
}

/// [`bump_incarnation`], then [`wait_until_past`], with the clock and the
/// sleep passed in (tests).
#[cfg(test)]
fn bump_with_clock(
    state_dir: &Path,
    von: &str,
    now: impl Fn() -> SystemTime,
    mut sleep: impl FnMut(Duration),
) -> Result<u32, StateError> {
    let next = store_with_clock(state_dir, von, &now, &mut sleep)?;
    wait_past_with_clock(next, now, sleep)?;
    Ok(next)
}

/// Creates `state_dir` (and its parents) with mode 0700 if it is missing:
/// the first start saves its first view and key there before anything else
/// would create it. An existing directory is left as it is.
pub fn create_dir(state_dir: &Path) -> Result<(), StateError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(state_dir)
        .map_err(|source| StateError::Io {
            step: "creating",
            path: state_dir.to_owned(),
            source,
        })
}

fn store_with_clock(
    state_dir: &Path,
    von: &str,
    now: &impl Fn() -> SystemTime,
    sleep: &mut impl FnMut(Duration),
) -> Result<u32, StateError> {
    let io_err = |step: &'static str, path: &Path| {
        let path = path.to_owned();
        move |source| StateError::Io { step, path, source }
    };
    create_dir(state_dir)?;
    let path = state_dir.join(format!("{von}.incarnation"));
    let stored = match fs::read_to_string(&path) {
        Ok(text) => Some(
            text.trim()
                .parse::<u32>()
                .map_err(|_| StateError::Corrupt {
                    path: path.clone(),
                    content: text.chars().take(40).collect(),
                })?,
        ),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(io_err("reading", &path)(e)),
    };
    let mut waited = Duration::ZERO;
    let next = loop {
        let clock = clock_incarnation(now())?;
        match stored {
            Some(stored) if stored >= clock => {
                let behind = u64::from(stored - clock);
                if waited >= MAX_CLOCK_WAIT || behind >= MAX_CLOCK_WAIT.as_secs() {
                    return Err(StateError::ClockBehind {
                        path,
                        stored,
                        clock,
                        behind,
                    });
                }
                sleep(CLOCK_POLL);
                waited += CLOCK_POLL;
            }
            _ => break clock,
        }
    };

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

fn wait_past_with_clock(
    incarnation: u32,
    now: impl Fn() -> SystemTime,
    mut sleep: impl FnMut(Duration),
) -> Result<(), StateError> {
    let mut waited = Duration::ZERO;
    loop {
        let clock = clock_incarnation(now())?;
        if clock > incarnation {
            return Ok(());
        }
        if waited >= MAX_CLOCK_WAIT {
            return Err(StateError::ClockStuck { incarnation, clock });
        }
        sleep(CLOCK_POLL);
        waited += CLOCK_POLL;
    }
}

/// The incarnation of a start at `now`: whole seconds since the epoch of
/// incarnations, at least 1.
fn clock_incarnation(now: SystemTime) -> Result<u32, StateError> {
    let unix = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    unix.checked_sub(INCARNATION_EPOCH_UNIX)
        .filter(|&s| s >= 1)
        .and_then(|s| u32::try_from(s).ok())
        .filter(|&s| s <= MAX_INCARNATION)
        .ok_or(StateError::ClockImplausible { unix })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("von-state-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    /// A clock at `unix` seconds that moves only when slept on.
    struct FakeClock(Cell<Duration>);

    impl FakeClock {
        fn at(unix: u64) -> Self {
            FakeClock(Cell::new(Duration::from_secs(unix)))
        }
        fn now(&self) -> SystemTime {
            UNIX_EPOCH + self.0.get()
        }
        fn sleep(&self, d: Duration) {
            self.0.set(self.0.get() + d);
        }
        fn set(&self, unix: u64) {
            self.0.set(Duration::from_secs(unix));
        }
    }

    fn bump(dir: &Path, von: &str, clock: &FakeClock) -> Result<u32, StateError> {
        bump_with_clock(dir, von, || clock.now(), |d| clock.sleep(d))
    }

    const T: u64 = INCARNATION_EPOCH_UNIX + 40_000_000;

    #[test]
    fn the_incarnation_is_the_start_second_and_is_stored() {
        let dir = scratch("clock");
        let clock = FakeClock::at(T);
        assert_eq!(bump(&dir, "grid", &clock).unwrap(), 40_000_000);
        assert!(
            clock.now() >= UNIX_EPOCH + Duration::from_secs(T + 1),
            "returns only once the start's second is over"
        );
        assert_eq!(bump(&dir, "med", &clock).unwrap(), 40_000_001);
        assert_eq!(
            fs::read_to_string(dir.join("grid.incarnation")).unwrap(),
            "40000000\n"
        );
        assert!(!dir.join("grid.incarnation.tmp").exists());
        clock.set(T + 100);
        assert_eq!(bump(&dir, "grid", &clock).unwrap(), 40_000_100);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_restart_within_the_same_second_gets_the_next_one_even_without_the_file() {
        for lose_the_file in [false, true] {
            let dir = scratch("same");
            let clock = FakeClock::at(T);
            let first = bump(&dir, "grid", &clock).unwrap();
            // Killed the moment it returned, restarted at once.
            if lose_the_file {
                fs::remove_dir_all(&dir).unwrap();
            }
            let second = bump(&dir, "grid", &clock).unwrap();
            assert_eq!(second, first + 1, "file lost: {lose_the_file}");
            assert!(clock.now() < UNIX_EPOCH + Duration::from_millis((T + 2) * 1000 + 100));
            fs::remove_dir_all(&dir).unwrap();
        }
    }

    #[test]
    fn lost_or_restored_state_still_moves_forward() {
        let dir = scratch("lost");
        let clock = FakeClock::at(T);
        let first = bump(&dir, "grid", &clock).unwrap();
        let backup = fs::read(dir.join("grid.incarnation")).unwrap();
        clock.set(T + 10);
        let second = bump(&dir, "grid", &clock).unwrap();
        // Restored from the old copy: still above both.
        fs::write(dir.join("grid.incarnation"), &backup).unwrap();
        clock.set(T + 20);
        let third = bump(&dir, "grid", &clock).unwrap();
        // Deleted altogether.
        fs::remove_dir_all(&dir).unwrap();
        clock.set(T + 30);
        let fourth = bump(&dir, "grid", &clock).unwrap();
        assert!(first < second && second < third && third < fourth);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_clock_far_behind_the_last_start_is_refused_with_the_fix() {
        let dir = scratch("behind");
        let clock = FakeClock::at(T + 3600);
        bump(&dir, "grid", &clock).unwrap();
        clock.set(T);
        let err = bump(&dir, "grid", &clock).unwrap_err();
        assert!(
            matches!(err, StateError::ClockBehind { behind: 3600, .. }),
            "{err}"
        );
        let text = err.to_string();
        for needle in ["grid.incarnation", "Fix the system clock", "new `key`"] {
            assert!(text.contains(needle), "{needle} missing: {text}");
        }
        // A few seconds behind is waited out instead.
        clock.set(T + 3598);
        assert_eq!(bump(&dir, "grid", &clock).unwrap(), 40_003_601);
        assert!(clock.now() >= UNIX_EPOCH + Duration::from_secs(T + 3602));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_implausible_clock_is_refused() {
        let dir = scratch("implausible");
        for unix in [0, 1_000_000_000, INCARNATION_EPOCH_UNIX, 4_000_000_000] {
            let clock = FakeClock::at(unix);
            let err = bump(&dir, "grid", &clock).unwrap_err();
            assert!(
                matches!(err, StateError::ClockImplausible { .. }),
                "{unix}: {err}"
            );
            assert!(err.to_string().contains("set the clock"), "{err}");
        }
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_corrupt_file_is_refused_not_reset() {
        let dir = scratch("corrupt");
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("grid.incarnation"), "garbage").unwrap();
        let err = bump(&dir, "grid", &FakeClock::at(T)).unwrap_err();
        assert!(matches!(err, StateError::Corrupt { .. }), "{err}");
        assert!(err.to_string().contains("garbage"), "{err}");
        fs::remove_dir_all(&dir).unwrap();
    }
}
