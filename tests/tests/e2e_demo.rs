//! `von-demo` as an operator runs it (`./demo.sh`): a process of the real
//! demo binary, whose hosts run the real `von`.
//!
//! - A full run exits 0, its report shows the mesh and the underlay cut with
//!   0 lost, and every namespace it names is gone afterwards.
//! - Ctrl-C (SIGINT to the demo alone) in the middle of the run: exit 130,
//!   and again no namespace left.
//! - Without root it refuses, says what it needs, and exits non-zero.
//!
//! ```text
//!   ┌── h1 ──┐ ┌── h2 ──┐ ┌── h3 ──┐     made by `von-demo` itself
//!   │ ua  ub │ │ ua  ub │ │ ua  ub │     (namespaces <prefix>-h1..h3, -sw)
//!   └─┬────┬─┘ └─┬────┬─┘ └─┬────┬─┘
//!   ┌─┴────┴─────┴────┴─────┴────┴─┐
//!   │ sw:  lana (A)      lanb (B)   │
//!   └───────────────────────────────┘
//! ```

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use von_tests::vonbin::von_bin;
use von_tests::{Netns, Result};

/// A whole demo takes ~15 s on an idle machine; allow for a busy one.
const RUN_LIMIT: Duration = Duration::from_secs(300);

/// A running `von-demo` with its stdout read line by line.
struct Demo {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Demo {
    fn start() -> Result<Self> {
        let mut child = Command::new(demo_bin()?)
            .arg("--von")
            .arg(von_bin()?)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("von demo starts");
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout)
                .lines()
                .map_while(std::io::Result::ok)
            {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Self {
            child,
            lines,
            seen: Vec::new(),
        })
    }

    /// Reads lines until one contains `needle`; false if the output ended
    /// or `limit` passed first.
    fn wait_line(&mut self, needle: &str, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let hit = line.contains(needle);
                    self.seen.push(line);
                    if hit {
                        return true;
                    }
                }
                Err(_) => return false,
            }
        }
        false
    }

    /// Waits for exit (killing it after `limit`); returns the exit code and
    /// the whole output.
    fn finish(mut self, limit: Duration) -> (Option<i32>, String) {
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                break self.child.wait().expect("wait after kill");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(2)) {
            self.seen.push(line);
        }
        (status.code(), self.seen.join("\n"))
    }
}

/// The namespace names the demo printed on its `hosts:` or progress lines.
fn namespaces(output: &str) -> Vec<String> {
    let mut names: Vec<String> = output
        .split_whitespace()
        .map(|w| w.trim_matches(|c: char| "():,".contains(c)))
        .filter(|w| {
            w.starts_with('v')
                && (w.ends_with("-h1")
                    || w.ends_with("-h2")
                    || w.ends_with("-h3")
                    || w.ends_with("-sw"))
        })
        .map(str::to_owned)
        .collect();
    names.sort();
    names.dedup();
    names
}

fn assert_none_left(names: &[String], output: &str) -> Result<()> {
    assert_eq!(
        names.len(),
        4,
        "expected h1..h3 and sw in the output:\n{output}"
    );
    for name in names {
        assert!(
            !Netns::exists(name)?,
            "{name} is left after the demo:\n{output}"
        );
    }
    Ok(())
}

#[test]
fn demo_runs_reports_zero_lost_and_leaves_nothing() -> Result<()> {
    if !von_tests::e2e_enabled("e2e demo")? {
        return Ok(());
    }
    let _heavy = von_tests::heavy();
    let demo = Demo::start()?;
    let (code, output) = demo.finish(RUN_LIMIT);
    eprintln!("{output}");
    assert_eq!(code, Some(0), "von demo failed:\n{output}");
    let report = output
        .split("== von demo report ==")
        .nth(1)
        .unwrap_or_else(|| panic!("no report in:\n{output}"));
    assert!(
        report.contains("ping mesh: 6 pairs, 30 sent, 0 lost"),
        "{report}"
    );
    assert!(
        report.contains("underlay A cut: 500 sent, 500 received, 0 lost, 0 duplicates delivered"),
        "{report}"
    );
    assert!(
        report.contains("cleanup: 4 namespaces removed, 0 left"),
        "{report}"
    );
    assert!(report.trim_end().ends_with("result: ok"), "{report}");
    assert_none_left(&namespaces(&output), &output)
}

#[test]
fn ctrl_c_stops_the_demo_and_removes_everything() -> Result<()> {
    if !von_tests::e2e_enabled("e2e demo ctrl-c")? {
        return Ok(());
    }
    let mut demo = Demo::start()?;
    let pid = demo.child.id();
    let started = demo.wait_line("ping mesh over", RUN_LIMIT);
    // SIGINT to the demo only: it must clean up by itself (a terminal's
    // Ctrl-C would also reach the agents and pings it started).
    let killed = Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status();
    let (code, output) = demo.finish(RUN_LIMIT);
    eprintln!("{output}");
    assert!(started, "the demo never reached the ping mesh:\n{output}");
    assert!(killed.is_ok_and(|s| s.success()), "kill -INT {pid} failed");
    assert_eq!(code, Some(130), "exit status after SIGINT:\n{output}");
    assert!(!output.contains("== von demo report =="), "{output}");
    assert_none_left(&namespaces(&output), &output)
}

/// `von-demo`, built beside the `von` under test (`cargo build --workspace
/// --bins`, as test.sh does, puts both in one directory).
fn demo_bin() -> Result<std::path::PathBuf> {
    let demo = von_bin()?.with_file_name("von-demo");
    assert!(
        demo.is_file(),
        "no {} beside the von under test: build it with `cargo build --release -p von-demo`",
        demo.display()
    );
    Ok(demo)
}

#[test]
fn without_root_it_says_what_it_needs() -> Result<()> {
    if !von_tests::e2e_enabled("e2e demo without root")? {
        return Ok(());
    }
    // `setpriv` (util-linux) drops to nobody for just this process.
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(demo_bin()?)
        .arg("--von")
        .arg(von_bin()?)
        .output()
        .expect("setpriv runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "demo ran without root: {stderr}");
    assert!(stderr.contains("needs root"), "{stderr}");
    assert!(stderr.contains("sudo ./demo.sh"), "{stderr}");
    Ok(())
}
