//! Network namespaces and a scratch directory, both removed on drop.
//!
//! Names are unique per process and per test: `v<pid % 10000>-<n>-<role>`,
//! short enough for `ip netns` and leaving interface names (<= 15 bytes)
//! free to be the same in every namespace.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::process::{self, Output};

/// How long a plain `ip`/`sysctl`/`nft` call may take on a busy machine.
pub const QUICK: Duration = Duration::from_secs(30);

static NEXT_ID: AtomicU32 = AtomicU32::new(1);

/// A fresh prefix for one test's names, e.g. `v4242-3`.
pub fn unique_prefix() -> String {
    let n = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    format!("v{}-{n}", std::process::id() % 10_000)
}

/// A network namespace that exists while this value lives.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates the namespace, brings up its loopback, and turns IPv6 off
    /// (so no router solicitation or MLD report ever enters a VON interface
    /// and the counters of a clean run add up exactly).
    pub fn create(name: &str) -> Result<Self> {
        process::run_ok(Command::new("ip").args(["netns", "add", name]), QUICK)?;
        let ns = Self {
            name: name.to_owned(),
        };
        ns.ip(&["link", "set", "lo", "up"])?;
        for key in ["all", "default"] {
            ns.exec_ok([
                "sysctl",
                "-qw",
                &format!("net.ipv6.conf.{key}.disable_ipv6=1"),
            ])?;
        }
        Ok(ns)
    }

    /// The name `ip netns` knows it by.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A command that will run inside this namespace (`ip netns exec`).
    pub fn command<S: AsRef<OsStr>>(&self, program: S) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).arg(program);
        cmd
    }

    /// Runs `argv` in the namespace; any exit status is returned.
    pub fn exec<I, S>(&self, argv: I, timeout: Duration) -> Result<Output>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        process::run(&mut self.argv_command(argv)?, timeout)
    }

    /// Runs `argv` in the namespace and requires success.
    pub fn exec_ok<I, S>(&self, argv: I) -> Result<Output>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        process::run_ok(&mut self.argv_command(argv)?, QUICK)
    }

    /// `argv` as a command run in the namespace; an empty one is an error.
    fn argv_command<I, S>(&self, argv: I) -> Result<Command>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut it = argv.into_iter();
        let program = it.next().ok_or_else(|| Error::Parse {
            what: "command line",
            reason: "empty argv".into(),
            text: String::new(),
        })?;
        let mut cmd = self.command(program);
        cmd.args(it);
        Ok(cmd)
    }

    /// `ip -n <ns> <args>`, requiring success.
    pub fn ip(&self, args: &[&str]) -> Result<Output> {
        let mut cmd = Command::new("ip");
        cmd.args(["-n", &self.name]).args(args);
        process::run_ok(&mut cmd, QUICK)
    }

    /// Whether `ip netns list` still shows this namespace.
    pub fn exists(name: &str) -> Result<bool> {
        let out = process::run_ok(Command::new("ip").args(["netns", "list"]), QUICK)?;
        Ok(out
            .stdout
            .lines()
            .any(|l| l.split_whitespace().next() == Some(name)))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let result = process::run(Command::new("ip").args(["netns", "del", &self.name]), QUICK);
        if let Err(e) = result {
            eprintln!("von-tests: could not delete namespace {}: {e}", self.name);
        }
    }
}

/// A scratch directory for configs, views, state and sockets of one test.
#[derive(Debug)]
pub struct TestDir {
    path: PathBuf,
}

impl TestDir {
    /// Creates `$TMPDIR/<prefix>` afresh (a stale one from a killed run of
    /// the same pid is removed first).
    pub fn create(prefix: &str) -> Result<Self> {
        let path = std::env::temp_dir().join(format!("von-e2e-{prefix}"));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).map_err(|source| Error::Io {
            what: "create directory",
            path: path.clone(),
            source,
        })?;
        Ok(Self { path })
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `contents` to `name` inside the directory; returns the path.
    pub fn write(&self, name: &str, contents: &str) -> Result<PathBuf> {
        let path = self.path.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|source| Error::Io {
                what: "create directory",
                path: parent.to_owned(),
                source,
            })?;
        }
        std::fs::write(&path, contents).map_err(|source| Error::Io {
            what: "write",
            path: path.clone(),
            source,
        })?;
        Ok(path)
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        if std::env::var_os("VON_E2E_KEEP").is_some() {
            eprintln!(
                "von-tests: kept {} (VON_E2E_KEEP is set)",
                self.path.display()
            );
            return;
        }
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_unique_and_short() {
        let a = unique_prefix();
        let b = unique_prefix();
        assert_ne!(a, b);
        // Namespace names are `<prefix>-sw` / `-h9`; keep them short.
        assert!(a.len() <= 12, "{a}");
    }

    #[test]
    fn test_dir_is_removed_on_drop() {
        let dir = TestDir::create(&unique_prefix()).expect("temp dir");
        let file = dir.write("sub/file.toml", "x = 1").expect("write");
        assert!(file.exists());
        let path = dir.path().to_owned();
        drop(dir);
        assert!(!path.exists());
    }
}
