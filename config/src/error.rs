//! Errors that name the file, the field path, the bad value and the fix.
//!
//! Every newtype's parser produces a [`ValueError`] that already names the
//! value and the fix; [`parse_toml`] adds the file and the field path that
//! `serde_path_to_error` tracked, so an operator reads e.g.
//! `von.toml: underlay.b.bind: "198.51.100.1:99999" is not IP:PORT (example: "198.51.100.1:4789")`.

use std::fmt;
use std::path::PathBuf;

use serde::de::DeserializeOwned;

/// Everything that can be wrong with a configuration file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read at all.
    #[error("{}: cannot read: {source} (check the path and that von may read it)", path.display())]
    Read {
        /// The file that was asked for.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The text is not valid TOML.
    #[error("{origin}: line {line}: {message} (fix the TOML syntax)")]
    Syntax {
        /// The file's name as shown to the operator.
        origin: String,
        /// 1-based line of the error.
        line: usize,
        /// What the TOML parser said.
        message: String,
    },
    /// A field holds a bad value, is missing, is unknown, or contradicts another.
    #[error("{origin}: {path}: {message}")]
    Field {
        /// The file's name as shown to the operator.
        origin: String,
        /// Where in the file, e.g. `von[0].rate`.
        path: String,
        /// The bad value and the fix.
        message: String,
    },
}

impl ConfigError {
    /// The field path of a [`ConfigError::Field`], for tests and tools.
    pub fn path(&self) -> Option<&str> {
        match self {
            Self::Field { path, .. } => Some(path),
            _ => None,
        }
    }
}

/// A value that does not fit its type: the message names the value and the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ValueError(pub String);

impl ValueError {
    pub(crate) fn new(message: impl fmt::Display) -> Self {
        Self(message.to_string())
    }
}

/// Where errors point: the file's name as the operator should see it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Origin<'a>(pub &'a str);

impl Origin<'_> {
    /// An error at `path` (e.g. `von[1].name`).
    pub(crate) fn field(&self, path: impl fmt::Display, message: impl fmt::Display) -> ConfigError {
        ConfigError::Field {
            origin: self.0.to_owned(),
            path: path.to_string(),
            message: message.to_string(),
        }
    }
}

/// Reads a file to a string, naming the file in the error.
pub(crate) fn read(path: &std::path::Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Deserializes `text` into `T`, turning any failure into an error that names
/// `origin`, the field path and the fix.
pub(crate) fn parse_toml<T: DeserializeOwned>(text: &str, origin: &str) -> Result<T, ConfigError> {
    let deserializer = toml::de::Deserializer::parse(text).map_err(|e| ConfigError::Syntax {
        origin: origin.to_owned(),
        line: line_of(text, e.span()),
        message: e.message().trim().to_owned(),
    })?;
    serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let path = e.path().to_string();
        let message = e.inner().message().trim().to_owned();
        let (path, message) = explain(&path, &message);
        Origin(origin).field(path, message)
    })
}

fn line_of(text: &str, span: Option<std::ops::Range<usize>>) -> usize {
    let at = span.map_or(0, |s| s.start.min(text.len()));
    text.as_bytes()[..at]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// Rewrites serde's generic messages into ones that name the key and the fix.
fn explain(path: &str, message: &str) -> (String, String) {
    let here = if path == "." {
        String::new()
    } else {
        path.to_owned()
    };
    let join = |key: &str| {
        if here.is_empty() {
            key.to_owned()
        } else {
            format!("{here}.{key}")
        }
    };
    if let Some(rest) = message.strip_prefix("unknown field `") {
        let (key, expected) = rest.split_once('`').unwrap_or((rest, ""));
        let expected = expected
            .trim_start_matches(", expected ")
            .trim_start_matches("one of ")
            .replace('`', "");
        let hint = if expected.is_empty() {
            "remove it".to_owned()
        } else {
            format!("remove it or fix the spelling; known keys: {expected}")
        };
        // serde_path_to_error already appends the unknown key to the path.
        let at = if here.ends_with(key) {
            here.clone()
        } else {
            join(key)
        };
        return (at, format!("unknown key \"{key}\" ({hint})"));
    }
    if let Some(rest) = message.strip_prefix("missing field `") {
        let key = rest.trim_end_matches('`');
        return (
            join(key),
            format!("missing key \"{key}\" (add it; see packaging/examples/ for every file)"),
        );
    }
    if let Some(rest) = message.strip_prefix("invalid type: ") {
        let expected = rest
            .split_once(", expected ")
            .map_or("another type", |(_, e)| e);
        let expected = match expected {
            "i64" => "an integer without quotes",
            "a string" | "a string key" => "a string in quotes",
            other => other,
        };
        let got = rest.split_once(", expected ").map_or(rest, |(g, _)| g);
        return (
            here_or_top(&here),
            format!("{got} is the wrong type: write {expected}"),
        );
    }
    (here_or_top(&here), message.to_owned())
}

fn here_or_top(here: &str) -> String {
    if here.is_empty() {
        "(top level)".to_owned()
    } else {
        here.to_owned()
    }
}
