//! The crate's one error type: each variant carries the values and says what
//! to do.

use std::path::PathBuf;

/// Result of every fallible call in this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong configuring a router or reserving a share of it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration file could not be read or parsed.
    #[error("{path}: {reason}")]
    Config { path: PathBuf, reason: String },

    /// A value given on the command line or in a request is out of range.
    #[error("{what}: {reason}")]
    Invalid { what: String, reason: String },

    /// A router refused a request (admission, unknown link, ON id taken...).
    #[error("router {router} refused: {reason}")]
    Refused { router: String, reason: String },

    /// A router could not be reached or its answer was not authentic.
    #[error("router {router} at {addr}: {reason}")]
    Unreachable {
        router: String,
        addr: String,
        reason: String,
    },

    /// A `tc` command failed.
    #[error("`{cmd}` failed: {stderr} (is the interface there, and are we root?)")]
    Tc { cmd: String, stderr: String },

    /// `tc` printed something the parser does not understand.
    #[error("could not parse `tc` output ({reason}): {line:?}")]
    TcParse { reason: String, line: String },

    /// Reading or writing a file or socket failed.
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },

    /// A peer sent a message that does not follow the protocol.
    #[error("protocol: {0}")]
    Protocol(String),
}

impl Error {
    /// Shorthand for [`Error::Invalid`].
    pub fn invalid(what: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Invalid {
            what: what.into(),
            reason: reason.into(),
        }
    }

    /// Shorthand for [`Error::Io`].
    pub fn io(what: &'static str, path: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            what,
            path: path.into(),
            source,
        }
    }
}
