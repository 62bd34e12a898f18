//! Finding the `von` binary the tests run as a real process (`von-demo`
//! names the one it was given with [`use_binary`] instead).
//!
//! Cargo builds the binaries of *other* packages only when asked, so a plain
//! `cargo test -p von-tests` would otherwise run a stale or missing `von`.
//! The choice (documented in docs/testing.md):
//!
//! 1. `VON_BIN=/path/to/von` wins: CI or a developer can point at any build.
//! 2. Otherwise the first test of a process runs
//!    `cargo build --release -p von-agent --bin von --message-format=json`
//!    once (behind a `OnceLock`; cargo's own lock makes concurrent test
//!    processes safe) and takes the executable path cargo reports. When
//!    `test.sh` has already built it, this is a no-op of a second or two.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::process;

/// A release build of the whole agent on two busy cores can take long.
const BUILD_TIMEOUT: Duration = Duration::from_secs(1800);

static VON: OnceLock<Result<PathBuf, String>> = OnceLock::new();

/// Makes `path` the `von` binary for this process, before anything asks
/// for one: `von-demo` runs the `von` it was given. Refused (with the binary
/// already chosen) once [`von_bin`] has answered.
pub fn use_binary(path: PathBuf) -> Result<()> {
    VON.set(Ok(path)).map_err(|_| Error::Binary {
        reason: format!(
            "the von binary was already chosen ({:?}) before use_binary",
            VON.get()
        ),
    })
}

/// The path of the `von` binary, building it on first use if needed.
pub fn von_bin() -> Result<PathBuf> {
    VON.get_or_init(locate)
        .clone()
        .map_err(|reason| Error::Binary { reason })
}

fn locate() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("VON_BIN") {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(format!("VON_BIN={} is not a file", path.display()))
        };
    }
    build()
}

fn build() -> Result<PathBuf, String> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .ok_or("the tests crate has no parent directory")?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace).args([
        "build",
        "--release",
        "-p",
        "von-agent",
        "--bin",
        "von",
        "--message-format=json",
    ]);
    eprintln!("von-tests: {} (once per test process)", process::show(&cmd));
    let out = process::run(&mut cmd, BUILD_TIMEOUT).map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!(
            "cargo build failed ({}):\n{}",
            out.status, out.stderr
        ));
    }
    executable_from_messages(&out.stdout)
        .ok_or_else(|| format!("cargo reported no executable named von:\n{}", out.stdout))
}

/// Picks the `von` executable out of cargo's JSON messages.
fn executable_from_messages(stdout: &str) -> Option<PathBuf> {
    stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|msg| msg["reason"] == "compiler-artifact" && msg["target"]["name"] == "von")
        .find_map(|msg| msg["executable"].as_str().map(PathBuf::from))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn use_binary_wins_and_is_set_once() {
        // The only test in this crate that touches the process-wide choice.
        let path = PathBuf::from("/usr/bin/von");
        use_binary(path.clone()).expect("first choice");
        assert_eq!(von_bin().expect("chosen"), path);
        assert!(use_binary(PathBuf::from("/other")).is_err());
    }

    #[test]
    fn picks_the_von_executable() {
        let stdout = concat!(
            r#"{"reason":"compiler-artifact","target":{"name":"von_agent"},"executable":null}"#,
            "\n",
            r#"{"reason":"compiler-artifact","target":{"name":"von"},"executable":"/w/target/release/von"}"#,
            "\n",
            r#"{"reason":"build-finished","success":true}"#,
            "\n",
        );
        assert_eq!(
            executable_from_messages(stdout),
            Some(PathBuf::from("/w/target/release/von"))
        );
        assert_eq!(executable_from_messages("not json\n"), None);
    }
}
