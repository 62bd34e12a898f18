//! Helpers for the health and metrics tests: a link's state from `von
//! status --json`, an agent restarted with a metrics endpoint, and a scrape
//! with a plain TCP client (bash's `/dev/tcp`, so nothing beyond what CI
//! installs) inside the host's namespace.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::error::{Error, Result};
use crate::netns::QUICK;
use crate::process::{self, Background};
use crate::status::Status;
use crate::topology::{Topology, Underlay};
use crate::vonbin::von_bin;

/// `peers[name == peer].<underlay>` of VON `von` in a status document.
pub fn link<'a>(status: &'a Status, von: &str, peer: &str, u: Underlay) -> Result<&'a Value> {
    status.json()["vons"]
        .as_array()
        .and_then(|vons| vons.iter().find(|v| v["name"] == von))
        .and_then(|v| v["peers"].as_array())
        .and_then(|peers| peers.iter().find(|p| p["name"] == peer))
        .map(|p| &p["underlay"][u.key()])
        .filter(|l| l.is_object())
        .ok_or_else(|| Error::Parse {
            what: "von status --json peers",
            reason: format!("VON {von:?} has no peer {peer:?} with link {}", u.key()),
            text: status.json().to_string(),
        })
}

/// Whether that link is `up`.
pub fn link_up(status: &Status, von: &str, peer: &str, u: Underlay) -> Result<bool> {
    Ok(link(status, von, peer, u)?["state"] == "up")
}

/// A `von up` on one host with a metrics endpoint, replacing the harness's
/// agent there (same config plus `metrics`); killed on drop.
#[derive(Debug)]
pub struct MetricsAgent {
    ns: String,
    socket: PathBuf,
    port: u16,
    process: Option<Background>,
}

impl MetricsAgent {
    /// Stops the harness's agent on `hN` and starts it again from the same
    /// `von.toml` with `metrics = "127.0.0.1:<port>"` added; returns once
    /// its status socket answers.
    pub fn restart(topo: &mut Topology, n: usize, port: u16) -> Result<Self> {
        let h = format!("h{n}");
        // The harness keeps each host's files in `<dir>/hN/`.
        let base = topo.dir().path().join(&h);
        let config = base.join("von.toml");
        // Public API only: stop the harness's agent (it stays in the
        // topology, exited) and wait until it has released its sockets.
        process::signal(topo.agent(n).pid(), "TERM")?;
        crate::wait_for(
            "the harness's agent to exit",
            Duration::from_secs(10),
            || {
                Ok(if topo.agent_mut(n).running() {
                    Err("still running".to_owned())
                } else {
                    Ok(())
                })
            },
        )?;
        let io = |what: &'static str| {
            let path = config.clone();
            move |source| Error::Io { what, path, source }
        };
        let toml = std::fs::read_to_string(&config).map_err(io("read"))?;
        let toml = format!("metrics = \"127.0.0.1:{port}\"\n{toml}");
        std::fs::write(&config, toml).map_err(io("write"))?;
        let ns = topo.host(n).ns();
        let mut cmd = ns.command(von_bin()?);
        cmd.arg("up").arg("--config").arg(&config);
        let agent = Self {
            ns: ns.name().to_owned(),
            socket: base.join("control.sock"),
            port,
            process: Some(Background::spawn(&mut cmd)?),
        };
        crate::wait_for(
            "the restarted agent to answer",
            Duration::from_secs(60),
            || Ok(agent.status().map_err(|e| e.to_string())),
        )?;
        Ok(agent)
    }

    /// `von status --json` of this agent.
    pub fn status(&self) -> Result<Status> {
        let mut cmd = std::process::Command::new("ip");
        cmd.args(["netns", "exec", &self.ns])
            .arg(von_bin()?)
            .args(["status", "--json", "--socket"])
            .arg(&self.socket);
        Status::parse(&process::run_ok(&mut cmd, QUICK)?.stdout)
    }

    /// `GET /metrics` over a plain TCP connection; returns the body.
    pub fn scrape(&self) -> Result<String> {
        let script = format!(
            "exec 3<>/dev/tcp/127.0.0.1/{} && printf 'GET /metrics HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n' >&3 && cat <&3",
            self.port
        );
        let mut cmd = std::process::Command::new("ip");
        cmd.args(["netns", "exec", &self.ns, "bash", "-c", &script]);
        let out = process::run_ok(&mut cmd, QUICK)?.stdout;
        let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
        if !head.starts_with("HTTP/1.1 200") {
            return Err(Error::Parse {
                what: "metrics response",
                reason: "not 200 OK".to_owned(),
                text: out.clone(),
            });
        }
        Ok(body.to_owned())
    }
}

impl Drop for MetricsAgent {
    fn drop(&mut self) {
        let Some(p) = self.process.take() else { return };
        let _ = process::signal(p.pid(), "TERM");
        let deadline = Instant::now() + Duration::from_secs(5);
        if let Ok(out) = p.wait(deadline.saturating_duration_since(Instant::now())) {
            if std::thread::panicking() {
                eprintln!("--- metrics agent in {} ---\n{}", self.ns, out.stderr);
            }
        }
    }
}

/// The value of sample `name{labels}` in Prometheus/OpenMetrics text.
pub fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut want: Vec<(&str, &str)> = labels.to_vec();
    want.sort_unstable();
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (n, rest) = series.split_once('{').unwrap_or((series, "}"));
            let mut got: Vec<(&str, &str)> = rest
                .strip_suffix('}')?
                .split(',')
                .filter_map(|p| p.split_once('='))
                .map(|(k, v)| (k, v.trim_matches('"')))
                .collect();
            got.sort_unstable();
            (n == name && got == want).then(|| value.parse().ok())?
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_by_name_and_labels() {
        let text = "# TYPE von_link_up gauge\nvon_link_up{von=\"grid\",peer=\"h2\",underlay=\"a\"} 0\n\
                    von_link_up{von=\"grid\",peer=\"h2\",underlay=\"b\"} 1\nvon_epoch{von=\"grid\"} 1\n# EOF\n";
        let l = |u| {
            sample(
                text,
                "von_link_up",
                &[("underlay", u), ("von", "grid"), ("peer", "h2")],
            )
        };
        assert_eq!((l("a"), l("b")), (Some(0.0), Some(1.0)));
        assert_eq!(sample(text, "von_epoch", &[("von", "grid")]), Some(1.0));
        assert_eq!(sample(text, "von_epoch", &[]), None);
        assert_eq!(sample(text, "von_members", &[("von", "grid")]), None);
    }
}
