//! `ping` with the parts of its output the tests judge: transmitted,
//! received, duplicates, errors, and each reply with its timestamp.

use std::net::IpAddr;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::netns::Netns;
use crate::process::{self, Background, Output};

/// A ping to run in a namespace (builder).
#[derive(Debug, Clone)]
pub struct Ping {
    dst: IpAddr,
    count: u32,
    interval: Option<Duration>,
    size: Option<u32>,
    dont_fragment: bool,
    source: Option<IpAddr>,
    wait: u32,
}

impl Ping {
    /// `count` echo requests to `dst` (IPv4 or IPv6), one per second
    /// unless [`Ping::interval`].
    pub fn new(dst: impl Into<IpAddr>, count: u32) -> Self {
        Self {
            dst: dst.into(),
            count,
            interval: None,
            size: None,
            dont_fragment: false,
            source: None,
            wait: 2,
        }
    }

    /// Time between requests (`-i`; below 0.2 s needs root, which we are).
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = Some(interval);
        self
    }

    /// ICMP payload bytes (`-s`); the IP packet is 28 bytes more.
    pub fn size(mut self, size: u32) -> Self {
        self.size = Some(size);
        self
    }

    /// Set DF and never fragment locally (`-M do`).
    pub fn dont_fragment(mut self) -> Self {
        self.dont_fragment = true;
        self
    }

    /// Send from this source address (`-I`).
    pub fn source(mut self, source: impl Into<IpAddr>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// How long to wait for the last reply, in seconds (`-W`).
    pub fn wait(mut self, seconds: u32) -> Self {
        self.wait = seconds;
        self
    }

    /// The argument list after `ping`.
    pub fn args(&self) -> Vec<String> {
        let mut a = vec![
            "-n".into(),
            "-D".into(),
            "-c".into(),
            self.count.to_string(),
        ];
        a.extend(["-W".into(), self.wait.to_string()]);
        if let Some(i) = self.interval {
            a.extend(["-i".into(), format!("{:.3}", i.as_secs_f64())]);
        }
        if let Some(s) = self.size {
            a.extend(["-s".into(), s.to_string()]);
        }
        if self.dont_fragment {
            a.extend(["-M".into(), "do".into()]);
        }
        if let Some(src) = self.source {
            a.extend(["-I".into(), src.to_string()]);
        }
        a.push(self.dst.to_string());
        a
    }

    /// Runs to completion in `ns` and parses the result.
    pub fn run(&self, ns: &Netns) -> Result<PingReport> {
        let out = self.spawn(ns)?.wait(self.timeout())?;
        PingReport::parse(&out)
    }

    /// Starts in the background; finish with [`PingReport::parse`] on
    /// `wait(ping.timeout())`'s output.
    pub fn spawn(&self, ns: &Netns) -> Result<Background> {
        let mut cmd = ns.command("ping");
        cmd.args(self.args());
        Background::spawn(&mut cmd)
    }

    /// Generous: the nominal duration three times over, plus a minute.
    pub fn timeout(&self) -> Duration {
        let each = self.interval.unwrap_or(Duration::from_secs(1));
        each * self.count * 3 + Duration::from_secs(60 + u64::from(self.wait))
    }
}

/// One echo reply line.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub seq: u32,
    /// Unix time of arrival (`-D`), seconds.
    pub at: f64,
    pub duplicate: bool,
}

/// The parsed result of one ping run.
#[derive(Debug, Clone)]
pub struct PingReport {
    pub transmitted: u32,
    pub received: u32,
    pub duplicates: u32,
    pub errors: u32,
    pub replies: Vec<Reply>,
    /// Everything ping printed, for assertion messages.
    pub output: String,
}

impl PingReport {
    /// Parses ping's stdout and stderr.
    pub fn parse(out: &Output) -> Result<Self> {
        let output = format!("{}{}", out.stdout, out.stderr);
        let summary = out
            .stdout
            .lines()
            .find(|l| l.contains("packets transmitted"))
            .ok_or_else(|| Error::Parse {
                what: "ping output",
                reason: "no `packets transmitted` summary line".into(),
                text: output.clone(),
            })?;
        let mut r = Self {
            transmitted: 0,
            received: 0,
            duplicates: 0,
            errors: 0,
            replies: Vec::new(),
            output: output.clone(),
        };
        for part in summary.split(',') {
            let mut words = part.split_whitespace();
            let (Some(number), Some(what)) = (words.next(), words.next()) else {
                continue;
            };
            let Ok(n) = number.trim_start_matches('+').parse::<u32>() else {
                continue;
            };
            match what {
                "packets" => r.transmitted = n,
                "received" => r.received = n,
                "duplicates" => r.duplicates = n,
                "errors" => r.errors = n,
                _ => {}
            }
        }
        r.replies = out.stdout.lines().filter_map(parse_reply).collect();
        Ok(r)
    }

    /// Requests that got no reply.
    pub fn lost(&self) -> u32 {
        self.transmitted.saturating_sub(self.received)
    }
}

/// `[1700000000.123456] 64 bytes from 100.64.1.2: icmp_seq=7 ttl=64 time=0.1 ms (DUP!)`
fn parse_reply(line: &str) -> Option<Reply> {
    let rest = line.strip_prefix('[')?;
    let (at, rest) = rest.split_once(']')?;
    if !rest.contains("bytes from") {
        return None;
    }
    let seq = rest
        .split_whitespace()
        .find_map(|w| w.strip_prefix("icmp_seq="))?
        .parse()
        .ok()?;
    Some(Reply {
        seq,
        at: at.parse().ok()?,
        duplicate: rest.contains("(DUP!)"),
    })
}

/// Runs `ping` and returns the raw output, for the cases whose point is an
/// error message (e.g. "message too long").
pub fn ping_raw(ns: &Netns, ping: &Ping) -> Result<Output> {
    let mut cmd = ns.command("ping");
    cmd.args(ping.args());
    process::run(&mut cmd, ping.timeout())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;
    use std::process::ExitStatus;

    fn out(stdout: &str) -> Output {
        Output {
            status: ExitStatus::from_raw(0),
            stdout: stdout.to_owned(),
            stderr: String::new(),
        }
    }

    #[test]
    fn clean_run() {
        let r = PingReport::parse(&out(concat!(
            "PING 100.64.1.2 (100.64.1.2) 56(84) bytes of data.\n",
            "[1700000000.100000] 64 bytes from 100.64.1.2: icmp_seq=1 ttl=64 time=0.101 ms\n",
            "[1700000000.200000] 64 bytes from 100.64.1.2: icmp_seq=2 ttl=64 time=0.090 ms\n",
            "\n--- 100.64.1.2 ping statistics ---\n",
            "2 packets transmitted, 2 received, 0% packet loss, time 100ms\n",
            "rtt min/avg/max/mdev = 0.090/0.095/0.101/0.005 ms\n",
        )))
        .expect("parses");
        assert_eq!(
            (r.transmitted, r.received, r.duplicates, r.errors),
            (2, 2, 0, 0)
        );
        assert_eq!(r.replies.len(), 2);
        assert_eq!(r.replies[1].seq, 2);
        assert!((r.replies[1].at - 1_700_000_000.2).abs() < 1e-6);
        assert_eq!(r.lost(), 0);
    }

    #[test]
    fn duplicates_and_errors() {
        let r = PingReport::parse(&out(concat!(
            "[1.0] 64 bytes from 100.64.1.2: icmp_seq=1 ttl=64 time=0.1 ms\n",
            "[1.1] 64 bytes from 100.64.1.2: icmp_seq=1 ttl=64 time=0.2 ms (DUP!)\n",
            "10 packets transmitted, 7 received, +3 duplicates, +2 errors, 30% packet loss, time 9ms\n",
        )))
        .expect("parses");
        assert_eq!(
            (r.transmitted, r.received, r.duplicates, r.errors),
            (10, 7, 3, 2)
        );
        assert_eq!(r.lost(), 3);
        assert!(r.replies[1].duplicate);
    }

    #[test]
    fn no_summary_is_an_error() {
        assert!(PingReport::parse(&out("ping: connect: Network is unreachable\n")).is_err());
    }

    #[test]
    fn arguments() {
        let p = Ping::new(std::net::Ipv4Addr::new(100, 64, 1, 2), 5)
            .interval(Duration::from_millis(10))
            .size(1404)
            .dont_fragment();
        assert_eq!(
            p.args().join(" "),
            "-n -D -c 5 -W 2 -i 0.010 -s 1404 -M do 100.64.1.2"
        );
        let v6 = Ping::new("fd00:64:1::2".parse::<std::net::Ipv6Addr>().unwrap(), 1)
            .source("fd00:64:1::1".parse::<std::net::Ipv6Addr>().unwrap());
        assert_eq!(
            v6.args().join(" "),
            "-n -D -c 1 -W 2 -I fd00:64:1::1 fd00:64:1::2"
        );
    }
}
