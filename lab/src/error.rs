//! The harness's one error type: every variant carries the command or value
//! that failed and, where there is one, what to do about it.

use std::fmt;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

/// Result of every harness call.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong while building a topology or driving programs in it.
#[derive(thiserror::Error)]
pub enum Error {
    /// Not root while `VON_E2E=require` asks for the end-to-end tests to run.
    #[error(
        "the end-to-end tests need root (run as root or via sudo); VON_E2E=require is set, so this is a failure"
    )]
    NotRoot,

    /// A program could not be started at all.
    #[error(
        "could not start `{cmd}`: {source} (is it installed? scripts/setup-debian.sh installs iproute2, iputils-ping, iperf3, nftables)"
    )]
    Spawn {
        cmd: String,
        #[source]
        source: std::io::Error,
    },

    /// A program ran longer than the harness allows.
    #[error(
        "`{cmd}` still running after {after:?}; killed it.\nstdout: {stdout}\nstderr: {stderr}"
    )]
    Timeout {
        cmd: String,
        after: Duration,
        stdout: String,
        stderr: String,
    },

    /// A program exited unsuccessfully where success was required.
    #[error("`{cmd}` failed ({status}).\nstdout: {stdout}\nstderr: {stderr}")]
    Failed {
        cmd: String,
        status: ExitStatus,
        stdout: String,
        stderr: String,
    },

    /// A file of the test could not be written or read.
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A program's output did not have the expected form.
    #[error("could not parse {what}: {reason}\nin: {text}")]
    Parse {
        what: &'static str,
        reason: String,
        text: String,
    },

    /// The `von` binary could not be found or built.
    #[error(
        "no von binary: {reason} (set VON_BIN=/path/to/von or run `cargo build --release -p von-agent`)"
    )]
    Binary { reason: String },

    /// An agent did not come up, or died.
    #[error("agent on {host}: {reason}\n--- its log ({log}) ---\n{tail}")]
    Agent {
        host: String,
        reason: String,
        log: PathBuf,
        tail: String,
    },

    /// A condition polled for never became true.
    #[error("waited {after:?} for {what}; last seen: {last}")]
    WaitTimedOut {
        what: String,
        after: Duration,
        last: String,
    },
}

/// Tests return `Result<(), Error>`; the test runner prints the error with
/// `Debug`, so `Debug` shows the readable message rather than the struct.
impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}
