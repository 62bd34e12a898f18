//! Every local precondition of `von up`, checked before any key manager is
//! contacted, and by `von up --check` with the same code.
//!
//! A precondition found missing only after joining costs the whole group two
//! rekeys (the join, then the lease expiry) and leaves a ghost member until
//! its lease ends. So before the first key-manager connection the agent
//! checks, and reports every failure at once, each naming the file, the
//! field and the fix:
//!
//! - the files each `[[von]]` names exist and are readable, private keys are
//!   0600 (config's `check_files` and the mode check in `AgentConfig::load`),
//!   and certificates chain to their CA with the right role and Noise key;
//! - the agent holds CAP_NET_ADMIN (TUN devices, addresses, routes, nft);
//! - every underlay's bind address, and every embedded key manager's listen
//!   address, is on this host and its UDP port is free;
//! - the metrics port is free;
//! - no live agent answers on `control_socket` (a second agent sharing it
//!   would also share the certificate and join as the same member);
//! - the leak guard's needs (`nft`, interface names a rule can match).
//!
//! Under `--check` a running agent is expected (the operator validates a
//! change before restarting the unit): when one answers on the control
//! socket, the ports it holds are reported as notes, not failures.

use std::io::ErrorKind;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::os::unix::net::UnixStream;
use std::path::Path;

use von_config::{AgentConfig, VonMode};
use von_crypto::cert::{Role, VonName};

/// CAP_NET_ADMIN's bit in the capability sets (linux/capability.h).
const CAP_NET_ADMIN: u32 = 12;

/// Whether the checks precede a start or are `von up --check`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// `von up`: anything in the way is a failure.
    Start,
    /// `von up --check`: a running agent's own ports and socket are notes.
    Check,
}

/// The local checks that failed, one line each.
#[derive(Debug, thiserror::Error)]
#[error("{}", render(.problems))]
pub struct PreflightError {
    /// Each failure: file, field, what is wrong, the fix.
    pub problems: Vec<String>,
}

fn render(problems: &[String]) -> String {
    let head = if problems.len() == 1 {
        "a local check failed before contacting any key manager".to_owned()
    } else {
        format!(
            "{} local checks failed before contacting any key manager",
            problems.len()
        )
    };
    let mut text = head;
    for p in problems {
        text.push_str("\n  ");
        text.push_str(p);
    }
    text
}

/// Runs every check for `config`, read from `path`. Returns the notes (only
/// under [`Purpose::Check`]) or every failure found.
pub fn check(
    config: &AgentConfig,
    path: &Path,
    purpose: Purpose,
) -> Result<Vec<String>, PreflightError> {
    let origin = path.display().to_string();
    let mut problems = Vec::new();
    let mut notes = Vec::new();

    // Files first: a missing one is named at its field.
    match config.check_files(&origin) {
        Err(e) => problems.push(e.to_string()),
        Ok(()) => credentials(config, &origin, &mut problems),
    }

    if let Some(problem) = net_admin_problem(&origin) {
        problems.push(problem);
    }

    // A live agent on control_socket: refused for a start; for --check the
    // ports that agent holds are expected to be in use.
    let live = agent_answers(&config.control_socket);
    if live {
        let text = format!(
            "{origin}: control_socket: \"{}\" is held by a running agent (stop it first, e.g. `systemctl stop von`, or give this agent its own control_socket and state_dir; two agents with one certificate would join as one member)",
            config.control_socket.display()
        );
        match purpose {
            Purpose::Start => problems.push(text),
            Purpose::Check => notes.push(format!(
                "a running agent answers on {}: the ports it holds were not checked",
                config.control_socket.display()
            )),
        }
    }
    let in_use_is_fine = live && purpose == Purpose::Check;

    let mut udp: Vec<(String, SocketAddr)> = config
        .underlays
        .values()
        .map(|u| (format!("underlay.{}.bind", u.name), u.bind.addr()))
        .collect();
    for (i, von) in config.vons.iter().enumerate() {
        if let VonMode::Keymgr(k) = &von.mode {
            if let Some(km) = &k.embedded {
                udp.push((format!("von[{i}].embedded_keymgr.listen"), km.listen.addr()));
            }
        }
    }
    let expected = |e: &std::io::Error| in_use_is_fine && e.kind() == ErrorKind::AddrInUse;
    for (field, addr) in udp {
        match UdpSocket::bind(addr) {
            Err(e) if !expected(&e) => {
                problems.push(bind_problem(&origin, &field, addr, "UDP", &e));
            }
            _ => {}
        }
    }
    if let Some(metrics) = config.metrics {
        let addr = metrics.addr();
        match TcpListener::bind(addr) {
            Err(e) if !expected(&e) => {
                problems.push(bind_problem(&origin, "metrics", addr, "TCP", &e));
            }
            _ => {}
        }
    }

    // The leak guard's needs: `nft`, and interface names a rule can match.
    let interfaces = config
        .vons
        .iter()
        .map(|v| (v.name.as_str(), v.interface.as_str()));
    if let Err(e) = crate::guard::preflight(interfaces) {
        problems.push(format!("{origin}: {e}"));
    }

    if problems.is_empty() {
        Ok(notes)
    } else {
        Err(PreflightError { problems })
    }
}

/// Each keymgr-mode VON's certificate chains to its CA with the right role
/// and carries the Noise key's public half; the same load the control
/// client and an embedded key manager do later.
fn credentials(config: &AgentConfig, origin: &str, problems: &mut Vec<String>) {
    for (i, von) in config.vons.iter().enumerate() {
        let VonMode::Keymgr(mode) = &von.mode else {
            continue;
        };
        let name: VonName = match von.name.as_str().parse() {
            Ok(n) => n,
            Err(e) => {
                problems.push(format!("{origin}: von[{i}].name: {e}"));
                continue;
            }
        };
        let mut load = |at: &str, role, ca: &Path, cert: &Path, key: &Path, noise: &Path| {
            if let Err(e) = von_keymgr::files::load(&name, role, ca, cert, key, noise) {
                problems.push(format!(
                    "{origin}: von[{i}]{at} (VON \"{}\"): {e}",
                    von.name
                ));
            }
        };
        load(
            "",
            Role::Member,
            &mode.ca,
            &mode.cert,
            &mode.key,
            &mode.noise_key,
        );
        if let Some(km) = &mode.embedded {
            load(
                ".embedded_keymgr",
                Role::Keymgr,
                &km.ca,
                &km.cert,
                &km.key,
                &km.noise_key,
            );
        }
    }
}

/// The failure of binding `addr` for `field`, with the fix.
fn bind_problem(
    origin: &str,
    field: &str,
    addr: SocketAddr,
    proto: &str,
    e: &std::io::Error,
) -> String {
    let ip = addr.ip();
    let port = addr.port();
    let why = match e.kind() {
        ErrorKind::AddrNotAvailable => format!(
            "\"{addr}\": {ip} is not an address of this host (`ip -br addr` lists them; fix {field}, or add {ip} to the interface of that network)"
        ),
        ErrorKind::AddrInUse => format!(
            "\"{addr}\": {proto} port {port} is already in use (`ss -{}lpn 'sport = :{port}'` names the process: another von agent? pick a free port or stop it)",
            if proto == "UDP" { "u" } else { "t" }
        ),
        ErrorKind::PermissionDenied => format!(
            "\"{addr}\": binding {proto} port {port} is not permitted ({e}; ports below 1024 need CAP_NET_BIND_SERVICE: pick a port above 1023)"
        ),
        _ => format!("\"{addr}\": cannot bind {proto}: {e}"),
    };
    format!("{origin}: {field}: {why}")
}

/// Whether an agent accepts connections on `socket` (a stale file, or none,
/// does not).
fn agent_answers(socket: &Path) -> bool {
    socket.exists() && UnixStream::connect(socket).is_ok()
}

/// Why the agent cannot manage interfaces, if it cannot: CAP_NET_ADMIN
/// missing from its effective set.
fn net_admin_problem(origin: &str) -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let effective = effective_caps(&status)?;
    (effective & (1 << CAP_NET_ADMIN) == 0).then(|| {
        format!(
            "{origin}: the agent lacks CAP_NET_ADMIN, which it needs to create each [[von]]'s interface and the leak guard's nft rules (run it as root, or as the von.service unit, which grants AmbientCapabilities=CAP_NET_ADMIN)"
        )
    })
}

/// The `CapEff:` line of `/proc/self/status`, as a bit set.
fn effective_caps(status: &str) -> Option<u64> {
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))?
        .trim();
    u64::from_str_radix(hex, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_eff_is_read_from_proc_status() {
        let status = "Name:\tvon\nCapInh:\t0000000000000000\nCapEff:\t0000000000001000\n";
        assert_eq!(effective_caps(status), Some(1 << CAP_NET_ADMIN));
        assert_eq!(effective_caps("Name:\tvon\n"), None);
    }

    #[test]
    fn a_bind_problem_names_the_file_the_field_and_the_fix() {
        let addr: SocketAddr = "192.0.2.99:4789".parse().unwrap();
        let e = std::io::Error::from(ErrorKind::AddrNotAvailable);
        let p = bind_problem("von.toml", "underlay.a.bind", addr, "UDP", &e);
        assert!(
            p.starts_with("von.toml: underlay.a.bind: \"192.0.2.99:4789\": 192.0.2.99 is not an address of this host"),
            "{p}"
        );
        let e = std::io::Error::from(ErrorKind::AddrInUse);
        let p = bind_problem("von.toml", "metrics", addr, "TCP", &e);
        assert!(p.contains("TCP port 4789 is already in use"), "{p}");
        assert!(p.contains("ss -tlpn"), "{p}");
    }

    #[test]
    fn a_port_held_here_is_found_in_use() {
        let held = UdpSocket::bind("127.0.0.1:0").unwrap();
        let e = UdpSocket::bind(held.local_addr().unwrap()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::AddrInUse);
    }

    #[test]
    fn a_stale_socket_file_is_no_live_agent() {
        let dir = std::env::temp_dir().join(format!("von-preflight-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("control.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        assert!(agent_answers(&path));
        drop(listener);
        assert!(path.exists(), "the file stays after the listener closes");
        assert!(!agent_answers(&path));
        assert!(!agent_answers(&dir.join("missing.sock")));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
