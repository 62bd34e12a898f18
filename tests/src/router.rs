//! A router between the hosts of a [`Topology`] with bridges (3+ hosts),
//! running `von router`, and the processes and traffic the isolation tests
//! drive through it.
//!
//! [`RouterNet::insert`] turns the topology's switch namespace into a router
//! per underlay: the ports of the "far" hosts move to a bridge in a new
//! namespace `<prefix>-far`, joined to the router by one veth per underlay
//! (`sha`, `shb`: the shared links). The router routes between its near
//! bridge and the shared link with proxy ARP, so every host keeps its /24
//! and its agent config, yet every packet between near and far is routed
//! (and shaped on the router's egress `sha`/`shb`). Over an IPv6 underlay
//! the same is done with proxy NDP and /128 routes, so the hosts keep their
//! /64.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::netns::Netns;
use crate::process::{self, Background, Output};
use crate::topology::{Topology, Underlay};
use crate::vonbin::von_bin;

/// The router's control address (on its loopback: tests run `von reserve`
/// inside the router's namespace).
pub const CONTROL: &str = "127.0.0.1:7300";

/// The far side of the router.
#[derive(Debug)]
pub struct RouterNet {
    far: Netns,
}

impl RouterNet {
    /// Moves hosts `far_hosts` behind the router formed by `topo`'s switch.
    pub fn insert(topo: &Topology, far_hosts: &[u8]) -> Result<Self> {
        let sw = topo.switch().ok_or_else(|| Error::Parse {
            what: "topology",
            reason: "a router needs the bridged topology (3 hosts or more)".into(),
            text: String::new(),
        })?;
        let far = Netns::create(&format!("{}-far", topo.prefix()))?;
        for key in [
            "ip_forward=1",
            "conf.all.proxy_arp=1",
            "conf.all.rp_filter=0",
        ] {
            sw.exec_ok(["sysctl", "-qw", &format!("net.ipv4.{key}")])?;
        }
        let mut any_v6 = false;
        for u in Underlay::BOTH {
            let v6 = topo.host(1).underlay_ip(u).is_ipv6();
            any_v6 |= v6;
            let (bridge, shared) = (format!("lan{}", u.key()), format!("sh{}", u.key()));
            far.ip(&["link", "add", &bridge, "type", "bridge"])?;
            far.ip(&["link", "set", &bridge, "up"])?;
            for &n in far_hosts {
                let port = format!("h{n}{}", u.key());
                sw.ip(&["link", "set", &port, "netns", far.name()])?;
                far.ip(&["link", "set", &port, "master", &bridge])?;
                far.ip(&["link", "set", &port, "up"])?;
            }
            let up = format!("up{}", u.key());
            sw.ip(&[
                "link",
                "add",
                &shared,
                "type",
                "veth",
                "peer",
                "name",
                &up,
                "netns",
                far.name(),
            ])?;
            far.ip(&["link", "set", &up, "master", &bridge])?;
            far.ip(&["link", "set", &up, "up"])?;
            sw.ip(&["link", "set", &shared, "up"])?;
            if v6 {
                Self::route_v6(topo, sw, u, far_hosts, &bridge, &shared)?;
                continue;
            }
            let router_addr = format!("{}/32", u.address(254));
            for dev in [&bridge, &shared] {
                sw.ip(&["addr", "add", &router_addr, "dev", dev])?;
                sw.exec_ok([
                    "sysctl",
                    "-qw",
                    &format!("net.ipv4.neigh.{dev}.proxy_delay=0"),
                ])?;
            }
            for host in topo.hosts() {
                let dev = if far_hosts.contains(&host.index()) {
                    &shared
                } else {
                    &bridge
                };
                let to = format!("{}/32", host.underlay_addr(u));
                sw.ip(&["route", "add", &to, "dev", dev])?;
            }
        }
        if any_v6 {
            // Last: `all` reaches every interface enabled above.
            for key in ["conf.all.forwarding=1", "conf.all.proxy_ndp=1"] {
                sw.exec_ok(["sysctl", "-qw", &format!("net.ipv6.{key}")])?;
            }
        }
        Ok(Self { far })
    }

    /// The IPv6 half of [`RouterNet::insert`] for underlay `u`: the router
    /// answers neighbour solicitations for the hosts of the other side
    /// (proxy NDP) and routes each host's /128 to its side.
    fn route_v6(
        topo: &Topology,
        sw: &Netns,
        u: Underlay,
        far_hosts: &[u8],
        bridge: &str,
        shared: &str,
    ) -> Result<()> {
        for dev in [bridge, shared] {
            for key in ["accept_dad=0", "disable_ipv6=0"] {
                sw.exec_ok(["sysctl", "-qw", &format!("net.ipv6.conf.{dev}.{key}")])?;
            }
            sw.exec_ok([
                "sysctl",
                "-qw",
                &format!("net.ipv6.neigh.{dev}.proxy_delay=0"),
            ])?;
            let router_addr = format!("{}/128", u.address_v6(254));
            sw.ip(&["-6", "addr", "add", &router_addr, "dev", dev, "nodad"])?;
        }
        for host in topo.hosts() {
            let (dev, other) = if far_hosts.contains(&host.index()) {
                (shared, bridge)
            } else {
                (bridge, shared)
            };
            let addr = host.underlay_ip(u).to_string();
            sw.ip(&["-6", "route", "add", &format!("{addr}/128"), "dev", dev])?;
            sw.ip(&["-6", "neigh", "add", "proxy", &addr, "dev", other])?;
        }
        Ok(())
    }

    /// The namespace of the far bridges.
    pub fn far(&self) -> &Netns {
        &self.far
    }
}

/// A `von` subcommand running in the background in a namespace.
#[derive(Debug)]
pub struct VonProcess {
    proc: Option<Background>,
}

impl VonProcess {
    /// Starts `von <args>` in `ns`.
    pub fn spawn(ns: &Netns, args: &[&str]) -> Result<Self> {
        let mut cmd = ns.command(von_bin()?);
        cmd.args(args).env("RUST_LOG", "info");
        Ok(Self {
            proc: Some(Background::spawn(&mut cmd)?),
        })
    }

    /// Sends `signal` and returns what it printed.
    pub fn stop(mut self, signal: &str) -> Result<Output> {
        // `spawn` always sets it; `stop` consumes self.
        let proc = self.proc.take().expect("process present until stopped");
        process::signal(proc.pid(), signal)?;
        proc.wait(Duration::from_secs(10))
    }

    /// Whether it still runs.
    pub fn running(&mut self) -> bool {
        self.proc.as_mut().is_some_and(Background::running)
    }
}

/// Runs `von <args>` in `ns` to completion (any exit status).
pub fn von(ns: &Netns, args: &[&str]) -> Result<Output> {
    let mut cmd = ns.command(von_bin()?);
    cmd.args(args).env("RUST_BACKTRACE", "0");
    process::run(&mut cmd, Duration::from_secs(60))
}

/// Greedy TCP from `client` to `server` on `port` for `seconds`, in the
/// background (iperf3, 4 parallel streams).
#[derive(Debug)]
pub struct Flood {
    _server: Background,
    client: Background,
}

impl Flood {
    pub fn start(
        server: &Netns,
        addr: IpAddr,
        port: u16,
        client: &Netns,
        seconds: u32,
    ) -> Result<Self> {
        let (addr, port) = (addr.to_string(), port.to_string());
        let mut srv = server.command("iperf3");
        srv.args(["-s", "-1", "-B", &addr, "-p", &port]);
        let srv = Background::spawn(&mut srv)?;
        std::thread::sleep(Duration::from_millis(300));
        let mut cli = client.command("iperf3");
        cli.args([
            "-c",
            &addr,
            "-p",
            &port,
            "-P",
            "4",
            "-t",
            &seconds.to_string(),
            "--json",
        ]);
        Ok(Self {
            _server: srv,
            client: Background::spawn(&mut cli)?,
        })
    }

    /// Waits for the client and returns its receiver-side bits per second.
    pub fn finish(self, timeout: Duration) -> Result<f64> {
        let out = self.client.wait(timeout)?;
        let json: serde_json::Value =
            serde_json::from_str(&out.stdout).map_err(|e| Error::Parse {
                what: "iperf3 --json",
                reason: e.to_string(),
                text: out.stdout.chars().take(2000).collect(),
            })?;
        json["end"]["sum_received"]["bits_per_second"]
            .as_f64()
            .ok_or_else(|| Error::Parse {
                what: "iperf3 --json",
                reason: "no end.sum_received.bits_per_second".into(),
                text: out.stdout.chars().take(2000).collect(),
            })
    }
}

/// The median and mean round-trip time, ms, of a ping's replies.
pub fn rtt_ms(output: &str) -> Option<(f64, f64)> {
    let mut times: Vec<f64> = output
        .lines()
        .filter_map(|l| {
            l.split("time=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .collect();
    if times.is_empty() {
        return None;
    }
    times.sort_by(f64::total_cmp);
    let mean = times.iter().sum::<f64>() / times.len() as f64;
    Some((times[times.len() / 2], mean))
}

/// Router control's PKI in the test's directory, made by the real `von ca
/// init` and `von cert issue --role router|reserve` (run on the host, not in
/// a namespace: only files).
#[derive(Debug, Clone)]
pub struct ControlPki {
    dir: PathBuf,
}

impl ControlPki {
    /// A new CA for router control under `DIR/control-ca`, with an empty
    /// revocation list.
    pub fn new(topo: &Topology) -> Result<Self> {
        let dir = topo.dir().path().join("control-ca");
        let d = dir.to_string_lossy().into_owned();
        run_von(&[
            "ca",
            "init",
            "--von",
            "infra",
            "--on-id",
            "1",
            "--prefix",
            "100.127.0.0/24",
            "--out",
            &d,
        ])?;
        let list = dir.join("revoked.txt");
        std::fs::write(&list, "").map_err(|source| Error::Io {
            what: "writing",
            path: list,
            source,
        })?;
        Ok(Self { dir })
    }

    /// Issues `name` with `role` (`router` or `reserve`), replacing an old one.
    pub fn issue(&self, role: &str, name: &str) -> Result<()> {
        let d = self.dir.to_string_lossy().into_owned();
        run_von(&[
            "cert", "issue", "--ca", &d, "--role", role, "--name", name, "--out", &d, "--force",
        ])?;
        Ok(())
    }

    /// `von cert revoke --ca DIR --name NAME`.
    pub fn revoke(&self, name: &str) -> Result<()> {
        let d = self.dir.to_string_lossy().into_owned();
        run_von(&["cert", "revoke", "--ca", &d, "--name", name])?;
        Ok(())
    }

    /// The TOML lines `ca`, `cert`, `tls_key`, `revoked` for `name`.
    pub fn toml(&self, name: &str) -> String {
        let d = self.dir.display();
        format!(
            "ca = \"{d}/ca.crt\"\ncert = \"{d}/{name}.crt\"\ntls_key = \"{d}/{name}.key\"\nrevoked = \"{d}/revoked.txt\"\n"
        )
    }

    /// The CLI flags of `von router status` for the service `name`.
    pub fn flags(&self, name: &str) -> Vec<String> {
        let d = self.dir.display();
        vec![
            "--ca".into(),
            format!("{d}/ca.crt"),
            "--cert".into(),
            format!("{d}/{name}.crt"),
            "--tls-key".into(),
            format!("{d}/{name}.key"),
        ]
    }
}

fn run_von(args: &[&str]) -> Result<Output> {
    let mut cmd = Command::new(von_bin()?);
    cmd.args(args);
    process::run_ok(&mut cmd, Duration::from_secs(30))
}

/// `tc class show dev DEV` in `ns`: the text, for assertions.
pub fn classes(ns: &Netns, dev: &str) -> Result<String> {
    let mut cmd = Command::new("ip");
    cmd.args([
        "netns",
        "exec",
        ns.name(),
        "tc",
        "class",
        "show",
        "dev",
        dev,
    ]);
    Ok(process::run_ok(&mut cmd, crate::netns::QUICK)?.stdout)
}

/// `GET /metrics` from the router's endpoint on `127.0.0.1:port` in `ns`,
/// over a plain TCP connection (bash's /dev/tcp); returns the body.
pub fn scrape(ns: &Netns, port: u16) -> Result<String> {
    let script = format!(
        "exec 3<>/dev/tcp/127.0.0.1/{port} && printf 'GET /metrics HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n' >&3 && cat <&3"
    );
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns.name(), "bash", "-c", &script]);
    let out = process::run_ok(&mut cmd, crate::netns::QUICK)?.stdout;
    match out.split_once("\r\n\r\n") {
        Some((head, body)) if head.starts_with("HTTP/1.1 200") => Ok(body.to_owned()),
        _ => Err(Error::Parse {
            what: "router metrics response",
            reason: "not 200 OK".into(),
            text: out,
        }),
    }
}

/// Sends `count` UDP datagrams from `from` (an address of `ns`) to `to` that
/// look like a VON's frames to a router's filter: DSCP `dscp`, and the 4
/// bytes of `on_id` first in a 64-byte payload. With `extension`, each
/// carries what a router's filter refuses to look past: IPv4 options (three
/// NOPs and an end, so IHL 6) or an IPv6 hop-by-hop header (one PadN
/// option). python3's socket module sets them with `IP_OPTIONS` /
/// `IPV6_HOPOPTS`, as any program of the sender may.
pub fn send_marked(
    ns: &Netns,
    from: IpAddr,
    to: std::net::SocketAddr,
    on_id: u32,
    dscp: u8,
    extension: bool,
    count: u32,
) -> Result<()> {
    let tos = u32::from(dscp) << 2;
    let (family, setup) = if to.is_ipv6() {
        (
            "AF_INET6",
            format!(
                "s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_TCLASS, {tos})\n\
                 if ext: s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_HOPOPTS, bytes([0, 0, 1, 4, 0, 0, 0, 0]))\n"
            ),
        )
    } else {
        (
            "AF_INET",
            format!(
                "s.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, {tos})\n\
                 if ext: s.setsockopt(socket.IPPROTO_IP, socket.IP_OPTIONS, bytes([1, 1, 1, 0]))\n"
            ),
        )
    };
    let script = format!(
        "import socket, struct, time\n\
         ext = {ext}\n\
         s = socket.socket(socket.{family}, socket.SOCK_DGRAM)\n\
         {setup}\
         s.bind(('{from}', 0))\n\
         payload = struct.pack('>I', {on_id}) + bytes(60)\n\
         for i in range({count}):\n\
         \x20   s.sendto(payload, ('{ip}', {port}))\n\
         \x20   if i % 50 == 49: time.sleep(0.01)\n",
        ext = if extension { "True" } else { "False" },
        ip = to.ip(),
        port = to.port(),
    );
    ns.exec_ok(["python3", "-c", &script]).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtt_from_ping_lines() {
        let out = "[1.0] 64 bytes from 100.64.1.2: icmp_seq=1 ttl=64 time=0.300 ms\n\
                   [1.1] 64 bytes from 100.64.1.2: icmp_seq=2 ttl=64 time=0.100 ms\n\
                   [1.2] 64 bytes from 100.64.1.2: icmp_seq=3 ttl=64 time=2.00 ms\n";
        let (median, mean) = rtt_ms(out).expect("three replies");
        assert!((median - 0.3).abs() < 1e-9);
        assert!((mean - 0.8).abs() < 1e-9);
        assert_eq!(rtt_ms("no replies"), None);
    }
}
