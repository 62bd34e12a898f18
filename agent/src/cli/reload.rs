//! `von reload [--config FILE]`: ask the running agent to read von.toml again.
//!
//! Validates the file first, exactly as `von up --check` reads it, so a bad
//! file is refused here with its error and the agent is not disturbed. Then
//! finds the agent by its control socket (the kernel names the process on
//! the other end, `SO_PEERCRED`) and sends it SIGHUP, as `systemctl reload
//! von` does. What the agent found and applied is in its log.

use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;
use von_config::AgentConfig;

/// Make the running agent read its config again (SIGHUP).
#[derive(Debug, Args)]
pub struct ReloadArgs {
    /// The agent's configuration (von.toml); its `control_socket` finds the agent.
    #[arg(long, value_name = "FILE", default_value = "/etc/von/von.toml")]
    config: PathBuf,
}

/// Runs `von reload`.
pub fn run(args: ReloadArgs) -> anyhow::Result<()> {
    let config = AgentConfig::load(&args.config)?;
    config.load_views()?;
    let socket = &config.control_socket;
    let stream = UnixStream::connect(socket).with_context(|| {
        format!(
            "no agent answers on {} (control_socket in {}); start it with \
             `von up --config {}` or `systemctl start von`",
            socket.display(),
            args.config.display(),
            args.config.display()
        )
    })?;
    let pid = peer_pid(&stream)
        .with_context(|| format!("finding the agent behind {}", socket.display()))?;
    // As root, kill(2) reaches any process: a control_socket that names some
    // other daemon's socket (a typo, a stale path) must not get it a SIGHUP.
    let name = process_name(pid);
    if name.as_deref() != Some("von") {
        bail!(
            "the process behind {} (pid {pid}, {}) is not a von agent; check control_socket in {}",
            socket.display(),
            name.map_or_else(|| "name unknown".to_owned(), |n| format!("named {n:?}")),
            args.config.display()
        );
    }
    // SAFETY: kill(2) with a pid the kernel reported and a valid signal.
    if unsafe { libc::kill(pid, libc::SIGHUP) } != 0 {
        let e = std::io::Error::last_os_error();
        bail!("sending SIGHUP to the agent (pid {pid}): {e}");
    }
    println!(
        "asked the agent (pid {pid}) to reload {}; its log names what changed",
        args.config.display()
    );
    Ok(())
}

/// The process's name as the kernel keeps it (`/proc/PID/comm`).
fn process_name(pid: libc::pid_t) -> Option<String> {
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    Some(comm.trim_end().to_owned())
}

/// The pid of the process that accepted `stream`.
fn peer_pid(stream: &UnixStream) -> std::io::Result<libc::pid_t> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` and `len` are valid for writes of the sizes given.
    let r = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&raw mut cred).cast(),
            &raw mut len,
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    if cred.pid <= 0 {
        return Err(std::io::Error::other("the kernel names no process"));
    }
    Ok(cred.pid)
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixListener;

    use super::*;

    /// The guard `von reload` puts before kill(2): the process behind a
    /// socket this test binary listens on is found, and it is not `von`.
    #[test]
    fn a_socket_held_by_another_program_is_not_taken_for_the_agent() {
        let dir = std::env::temp_dir().join(format!("von-reload-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("control.sock");
        let _ = std::fs::remove_file(&path);
        let _listener = UnixListener::bind(&path).unwrap();
        let stream = UnixStream::connect(&path).unwrap();
        let pid = peer_pid(&stream).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(pid, std::process::id() as libc::pid_t);
        let name = process_name(pid).expect("/proc names this process");
        assert_ne!(name, "von");
    }
}
