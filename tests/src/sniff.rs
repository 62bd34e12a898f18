//! Watching an underlay for plaintext: `tcpdump` on one interface of a
//! namespace, printing one line per packet that matches a filter, until the
//! test stops it. The leak tests filter on the VON addresses: a sealed frame
//! carries them only inside its ciphertext, so every line is a leak.

use std::path::PathBuf;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::netns::Netns;
use crate::process::Background;
use crate::wait_for;

/// A running capture.
#[derive(Debug)]
pub struct Sniffer {
    what: String,
    process: Background,
}

impl Sniffer {
    /// Starts `tcpdump -i iface FILTER` in `ns` and returns once it listens
    /// (tcpdump says so on stderr, which goes to a file in `dir`).
    pub fn start(ns: &Netns, iface: &str, filter: &str, dir: &std::path::Path) -> Result<Self> {
        let what = format!("{}:{iface}", ns.name());
        let log: PathBuf = dir.join(format!("tcpdump-{}-{iface}.err", ns.name()));
        let script = format!(
            "exec tcpdump -i {iface} -n -l --immediate-mode -Q inout '{filter}' 2>'{}'",
            log.display()
        );
        let mut cmd = ns.command("sh");
        cmd.args(["-c", &script]);
        let process = Background::spawn(&mut cmd)?;
        wait_for("tcpdump to listen", Duration::from_secs(30), || {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            Ok(if text.contains("listening on") {
                Ok(())
            } else {
                Err(format!("not yet: {text:?}"))
            })
        })?;
        Ok(Self { what, process })
    }

    /// Stops the capture; returns one line per packet seen.
    pub fn stop(self) -> Result<Vec<String>> {
        // tcpdump flushes and exits on SIGINT; `-l` made every line whole.
        let out = self.process.interrupt(Duration::from_secs(20))?;
        if !out.status.success() && out.status.code() != Some(130) {
            return Err(Error::Parse {
                what: "tcpdump",
                reason: format!("{} exited {}", self.what, out.status),
                text: out.stderr,
            });
        }
        Ok(out
            .stdout
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| format!("{}: {l}", self.what))
            .collect())
    }
}

/// Starts a [`Sniffer`] on both underlays (`ua`, `ub`) of `ns`.
pub fn both_underlays(ns: &Netns, filter: &str, dir: &std::path::Path) -> Result<[Sniffer; 2]> {
    Ok([
        Sniffer::start(ns, "ua", filter, dir)?,
        Sniffer::start(ns, "ub", filter, dir)?,
    ])
}

/// Stops every sniffer; returns all the lines together.
pub fn stop_all(sniffers: impl IntoIterator<Item = Sniffer>) -> Result<Vec<String>> {
    let mut lines = Vec::new();
    for s in sniffers {
        lines.extend(s.stop()?);
    }
    Ok(lines)
}
