//! Running programs with a deadline: in the foreground (`run`) or in the
//! background (`Background`, killed on drop). Output is read by threads so a
//! chatty program can never block on a full pipe.

use std::io::Read;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// What a finished program printed.
#[derive(Debug, Clone)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `cmd` to completion or kills it after `timeout`.
pub fn run(cmd: &mut Command, timeout: Duration) -> Result<Output> {
    Background::spawn(cmd)?.wait(timeout)
}

/// Runs `cmd` and requires exit status 0.
pub fn run_ok(cmd: &mut Command, timeout: Duration) -> Result<Output> {
    let shown = show(cmd);
    let out = run(cmd, timeout)?;
    if !out.status.success() {
        return Err(Error::Failed {
            cmd: shown,
            status: out.status,
            stdout: out.stdout,
            stderr: out.stderr,
        });
    }
    Ok(out)
}

/// The command line as a person would type it, for error messages.
pub fn show(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        s.push(' ');
        s.push_str(&arg.to_string_lossy());
    }
    s
}

/// A program running in the background; killed (SIGKILL) if still running
/// when dropped.
#[derive(Debug)]
pub struct Background {
    cmd: String,
    child: Child,
    stdout: Option<JoinHandle<String>>,
    stderr: Option<JoinHandle<String>>,
}

impl Background {
    /// Starts `cmd` with stdout and stderr captured.
    pub fn spawn(cmd: &mut Command) -> Result<Self> {
        let shown = show(cmd);
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| Error::Spawn {
                cmd: shown.clone(),
                source,
            })?;
        let stdout = child.stdout.take().map(drain);
        let stderr = child.stderr.take().map(drain);
        Ok(Self {
            cmd: shown,
            child,
            stdout,
            stderr,
        })
    }

    /// The process id (for signals sent by the test).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the program is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits up to `timeout` for the program to end; kills it after that.
    pub fn wait(mut self, timeout: Duration) -> Result<Output> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return Ok(self.collect(status)),
                Ok(None) if Instant::now() >= deadline => {
                    let _ = self.child.kill();
                    let status = self.child.wait().map_err(|source| Error::Spawn {
                        cmd: self.cmd.clone(),
                        source,
                    })?;
                    let out = self.collect(status);
                    return Err(Error::Timeout {
                        cmd: self.cmd.clone(),
                        after: timeout,
                        stdout: out.stdout,
                        stderr: out.stderr,
                    });
                }
                Ok(None) => thread::sleep(Duration::from_millis(5)),
                Err(source) => {
                    return Err(Error::Spawn {
                        cmd: self.cmd.clone(),
                        source,
                    });
                }
            }
        }
    }

    /// Sends SIGINT (as Ctrl-C would), then waits like [`Background::wait`].
    /// Programs such as `ping` print their summary only on a clean stop.
    pub fn interrupt(self, timeout: Duration) -> Result<Output> {
        signal(self.pid(), "INT")?;
        self.wait(timeout)
    }

    fn collect(&mut self, status: ExitStatus) -> Output {
        let join =
            |h: Option<JoinHandle<String>>| h.and_then(|h| h.join().ok()).unwrap_or_default();
        Output {
            status,
            stdout: join(self.stdout.take()),
            stderr: join(self.stderr.take()),
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Sends a signal by name (`TERM`, `INT`, ...) with `kill(1)`, which keeps
/// this crate free of `unsafe`.
pub fn signal(pid: u32, name: &str) -> Result<()> {
    let mut cmd = Command::new("kill");
    cmd.arg(format!("-{name}")).arg(pid.to_string());
    run_ok(&mut cmd, Duration::from_secs(10)).map(drop)
}

fn drain<R: Read + Send + 'static>(mut r: R) -> JoinHandle<String> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captures_output_and_status() {
        let out = run(
            Command::new("sh").args(["-c", "echo out; echo err >&2; exit 3"]),
            Duration::from_secs(10),
        )
        .expect("sh runs");
        assert_eq!(out.stdout, "out\n");
        assert_eq!(out.stderr, "err\n");
        assert_eq!(out.status.code(), Some(3));
    }

    #[test]
    fn run_ok_reports_the_failure() {
        let err = run_ok(
            Command::new("sh").args(["-c", "exit 2"]),
            Duration::from_secs(10),
        )
        .expect_err("exit 2 is a failure");
        assert!(err.to_string().contains("sh -c exit 2"), "{err}");
    }

    #[test]
    fn timeout_kills() {
        let started = Instant::now();
        let err = run(Command::new("sleep").arg("30"), Duration::from_millis(200))
            .expect_err("sleep 30 outlives 200 ms");
        assert!(matches!(err, Error::Timeout { .. }), "{err}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn missing_program_is_a_spawn_error() {
        let err = run(
            &mut Command::new("von-no-such-program"),
            Duration::from_secs(1),
        )
        .expect_err("no such program");
        assert!(matches!(err, Error::Spawn { .. }), "{err}");
    }
}
