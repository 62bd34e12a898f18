//! Driving the `von-e2e-tool` helper binary from a test. Cargo hands its
//! path to integration tests only (`env!("CARGO_BIN_EXE_von-e2e-tool")`), so
//! tests construct [`Tool`] with it.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use crate::error::{Error, Result};
use crate::netns::{Netns, QUICK};
use crate::process::{self, Background, Output};

/// The helper binary.
#[derive(Debug, Clone)]
pub struct Tool {
    path: PathBuf,
}

/// Which datagrams [`Tool::start_record`] records.
#[derive(Debug, Clone, Copy)]
pub struct Record {
    /// Only from this source, if given.
    pub src: Option<Ipv4Addr>,
    /// To this UDP port.
    pub dport: u16,
    /// With a UDP payload of at least this many bytes.
    pub min_len: usize,
    /// Stop after this many, if given.
    pub count: Option<u64>,
    /// Stop after this many seconds.
    pub seconds: u64,
}

/// A UDP receiver [`Tool::udp_recv`] started, and its result.
#[derive(Debug)]
pub struct UdpReceiver {
    process: Background,
}

/// What `udp-recv` reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpReport {
    /// Distinct datagrams that arrived intact.
    pub received: u64,
    /// Datagrams whose bytes were not what was sent.
    pub damaged: u64,
    /// Datagrams that arrived a second time.
    pub duplicates: u64,
    /// The source addresses seen.
    pub sources: Vec<String>,
}

impl UdpReceiver {
    /// Waits for the receiver to finish and reads its report.
    pub fn finish(self) -> Result<UdpReport> {
        let out = self.process.wait(Duration::from_secs(120))?;
        let json = json_line(&out, "udp-recv")?;
        Ok(UdpReport {
            received: json["received"].as_u64().unwrap_or(0),
            damaged: json["damaged"].as_u64().unwrap_or(0),
            duplicates: json["duplicates"].as_u64().unwrap_or(0),
            sources: json["sources"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect(),
        })
    }
}

/// What `stream-recv` reported.
#[derive(Debug, Clone)]
pub struct StreamResult {
    pub received: u64,
    pub first_mismatch: Option<u64>,
    pub sha256: String,
    pub seconds: f64,
}

impl Tool {
    /// The helper at `path` (pass `env!("CARGO_BIN_EXE_von-e2e-tool")`).
    pub fn new(path: &str) -> Self {
        Self { path: path.into() }
    }

    /// Streams `bytes` of the stream for `seed` from `from` to `listen` in
    /// `to`; returns what the receiver verified.
    pub fn stream(
        &self,
        to: &Netns,
        listen: SocketAddr,
        from: &Netns,
        seed: u64,
        bytes: u64,
        timeout: Duration,
    ) -> Result<StreamResult> {
        let mut recv = to.command(&self.path);
        recv.args([
            "stream-recv",
            "--listen",
            &listen.to_string(),
            "--seed",
            &seed.to_string(),
        ]);
        let recv = Background::spawn(&mut recv)?;
        let mut send = from.command(&self.path);
        send.args([
            "stream-send",
            "--connect",
            &listen.to_string(),
            "--seed",
            &seed.to_string(),
            "--bytes",
            &bytes.to_string(),
        ]);
        process::run_ok(&mut send, timeout)?;
        let out = recv.wait(Duration::from_secs(60))?;
        let json = json_line(&out, "stream-recv")?;
        let field = |name: &str| json[name].clone();
        Ok(StreamResult {
            received: field("received").as_u64().unwrap_or(0),
            first_mismatch: field("first_mismatch").as_u64(),
            sha256: field("sha256").as_str().unwrap_or_default().to_owned(),
            seconds: field("seconds").as_f64().unwrap_or(0.0),
        })
    }

    /// Starts capturing, in `ns`, the first UDP datagram from `src` to
    /// `dport` with a payload of at least `min_len` bytes. Finish with
    /// [`Tool::captured`].
    pub fn start_capture(
        &self,
        ns: &Netns,
        src: Ipv4Addr,
        dport: u16,
        min_len: usize,
    ) -> Result<Background> {
        let mut cmd = ns.command(&self.path);
        cmd.args([
            "capture",
            "--src",
            &src.to_string(),
            "--dport",
            &dport.to_string(),
            "--min-len",
            &min_len.to_string(),
        ]);
        Background::spawn(&mut cmd)
    }

    /// The captured IPv4 packet, as bytes.
    pub fn captured(&self, capture: Background) -> Result<Vec<u8>> {
        let out = capture.wait(Duration::from_secs(60))?;
        let json = json_line(&out, "capture")?;
        let text = json["packet"].as_str().unwrap_or_default();
        hex::decode(text).map_err(|e| Error::Parse {
            what: "capture output",
            reason: e.to_string(),
            text: text.to_owned(),
        })
    }

    /// Starts recording, in `ns`, the datagrams `what` names, as hex lines
    /// into `out` (written as they arrive). Stop it early by dropping the
    /// handle.
    pub fn start_record(
        &self,
        ns: &Netns,
        what: &Record,
        out: &std::path::Path,
    ) -> Result<Background> {
        let Record {
            src,
            dport,
            min_len,
            count,
            seconds,
        } = *what;
        let mut cmd = ns.command(&self.path);
        cmd.args([
            "record",
            "--dport",
            &dport.to_string(),
            "--min-len",
            &min_len.to_string(),
            "--seconds",
            &seconds.to_string(),
        ]);
        cmd.arg("--out").arg(out);
        if let Some(src) = src {
            cmd.args(["--src", &src.to_string()]);
        }
        if let Some(count) = count {
            cmd.args(["--count", &count.to_string()]);
        }
        Background::spawn(&mut cmd)
    }

    /// The IPv4 packets a recording wrote so far.
    pub fn recorded(path: &std::path::Path) -> Result<Vec<Vec<u8>>> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            what: "read",
            path: path.to_owned(),
            source,
        })?;
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                hex::decode(l.trim()).map_err(|e| Error::Parse {
                    what: "recording",
                    reason: e.to_string(),
                    text: l.to_owned(),
                })
            })
            .collect()
    }

    /// Sends every packet of `packets` verbatim from `ns`, in order.
    pub fn send_raw_all(
        &self,
        ns: &Netns,
        packets: &[Vec<u8>],
        scratch: &std::path::Path,
    ) -> Result<()> {
        let text: String = packets.iter().map(|p| hex::encode(p) + "\n").collect();
        std::fs::write(scratch, text).map_err(|source| Error::Io {
            what: "write",
            path: scratch.to_owned(),
            source,
        })?;
        let mut cmd = ns.command(&self.path);
        cmd.arg("send-raw-file").arg("--file").arg(scratch);
        process::run_ok(&mut cmd, Duration::from_secs(60)).map(drop)
    }

    /// Starts a UDP receiver in `ns` on `bind`, joined to the IPv6 `group`
    /// on `interface` if given, for `count` datagrams or `secs` seconds;
    /// returns once it listens.
    pub fn udp_recv(
        &self,
        ns: &Netns,
        bind: SocketAddr,
        group: Option<(Ipv6Addr, &str)>,
        count: u64,
        secs: u64,
        ready: &std::path::Path,
    ) -> Result<UdpReceiver> {
        let _ = std::fs::remove_file(ready);
        let mut cmd = ns.command(&self.path);
        cmd.args([
            "udp-recv",
            "--bind",
            &bind.to_string(),
            "--count",
            &count.to_string(),
            "--secs",
            &secs.to_string(),
        ])
        .arg("--ready")
        .arg(ready);
        if let Some((g, interface)) = group {
            cmd.args(["--join", &g.to_string(), "--interface", interface]);
        }
        let process = Background::spawn(&mut cmd)?;
        crate::wait_for(
            "the UDP receiver to listen",
            Duration::from_secs(20),
            || {
                Ok(if ready.exists() {
                    Ok(())
                } else {
                    Err("no ready file yet".to_owned())
                })
            },
        )?;
        Ok(UdpReceiver { process })
    }

    /// Sends `count` numbered UDP datagrams of `size` bytes from `ns` to
    /// `to`, out of `interface` for an IPv6 multicast group.
    pub fn udp_send(
        &self,
        ns: &Netns,
        to: SocketAddr,
        interface: Option<&str>,
        count: u64,
        size: usize,
    ) -> Result<()> {
        let mut cmd = ns.command(&self.path);
        cmd.args([
            "udp-send",
            "--to",
            &to.to_string(),
            "--count",
            &count.to_string(),
            "--size",
            &size.to_string(),
        ]);
        if let Some(i) = interface {
            cmd.args(["--interface", i]);
        }
        process::run_ok(&mut cmd, Duration::from_secs(60)).map(drop)
    }

    /// Sends an IPv4 packet verbatim from `ns`.
    pub fn send_raw(&self, ns: &Netns, packet: &[u8]) -> Result<()> {
        let mut cmd = ns.command(&self.path);
        cmd.args(["send-raw", "--hex", &hex::encode(packet)]);
        process::run_ok(&mut cmd, QUICK).map(drop)
    }
}

fn json_line(out: &Output, what: &'static str) -> Result<Value> {
    if !out.status.success() {
        return Err(Error::Parse {
            what,
            reason: format!("exited {}: {}", out.status, out.stderr.trim()),
            text: out.stdout.clone(),
        });
    }
    serde_json::from_str(out.stdout.trim()).map_err(|e| Error::Parse {
        what,
        reason: e.to_string(),
        text: out.stdout.clone(),
    })
}
