//! Logging: `tracing` to stderr, shaped for where stderr goes.
//!
//! Under systemd, stderr is a stream into journald (which sets
//! `JOURNAL_STREAM`): journald stamps every line itself and shows colour
//! codes as garbage, so lines go out plain — no ANSI colours, no timestamp.
//! Everywhere else every line starts with a UTC timestamp (a file or a pipe
//! has no other clock), and colours are added only on a terminal.
//!
//! What the agent logs, and what it never does (key material, a line per
//! packet), is in `docs/operations.md`: each VON's lines carry a `von` span
//! with its name, interface and ON id; drops are summarised per reason at
//! most once per interval, with the count held back.

use std::ffi::OsStr;
use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// How log lines are decorated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Style {
    /// ANSI colours.
    pub ansi: bool,
    /// A timestamp at the start of each line.
    pub timestamps: bool,
}

impl Style {
    /// The style for a stderr that is (or is not) a terminal, with
    /// `JOURNAL_STREAM` as found in the environment.
    pub fn for_stderr(is_terminal: bool, journal_stream: Option<&OsStr>) -> Self {
        let journald = journal_stream.is_some_and(|s| !s.is_empty());
        Style {
            ansi: is_terminal && !journald,
            timestamps: !journald,
        }
    }
}

/// Installs the global subscriber writing to stderr through `filter`.
pub fn init(filter: EnvFilter) {
    let style = Style::for_stderr(
        std::io::stderr().is_terminal(),
        std::env::var_os("JOURNAL_STREAM").as_deref(),
    );
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(style.ansi);
    if style.timestamps {
        builder.init();
    } else {
        builder.without_time().init();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_under_journald_stamped_elsewhere() {
        let plain = Style {
            ansi: false,
            timestamps: false,
        };
        let journal = Some(OsStr::new("8:12345"));
        assert_eq!(Style::for_stderr(true, journal), plain, "systemd on a tty");
        assert_eq!(Style::for_stderr(false, journal), plain, "systemd");
        let file = Style {
            ansi: false,
            timestamps: true,
        };
        assert_eq!(Style::for_stderr(false, None), file, "a pipe or file");
        let rich = Style::for_stderr(true, None);
        assert!(rich.ansi && rich.timestamps, "a person at a terminal");
        assert_eq!(Style::for_stderr(true, Some(OsStr::new(""))), rich);
    }
}
