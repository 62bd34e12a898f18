//! `von-demo`: checks what the demo needs (root, `ip`, `ping`, a `von`
//! binary), runs it (see `lib.rs` for the flow) and prints its report.
//! Exit status: 0 when the run showed what it should, 1 on an error or a
//! failed figure, 130 when interrupted (after cleaning up).

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use anyhow::Context;
use clap::Parser;

use von_demo::{Interrupted, Stop};

/// Three hosts in network namespaces, two underlays, real `von` agents:
/// pings, an underlay cut with 0 lost, the contract enforced, a member
/// revoked, and a report. Needs root; removes everything it made, also on
/// Ctrl-C.
#[derive(Debug, Parser)]
#[command(name = "von-demo", version, about, long_about = None)]
struct DemoArgs {
    /// The `von` binary the hosts run. Default: `$VON_BIN`, else the `von`
    /// beside this program (where `cargo build` puts both).
    #[arg(long, value_name = "PATH")]
    von: Option<PathBuf>,
}

/// Programs the demo runs, and the Debian package that has each.
const TOOLS: [(&str, &str); 2] = [("ip", "iproute2"), ("ping", "iputils-ping")];

fn main() -> ExitCode {
    match run(DemoArgs::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("Error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    if !von_lab::is_root() {
        anyhow::bail!(
            "von-demo needs root: it creates network namespaces, veth links, bridges and TUN \
             interfaces. Run it as root: `sudo ./demo.sh` in the source tree"
        );
    }
    let missing: Vec<String> = TOOLS
        .iter()
        .filter(|(tool, _)| !runs(tool))
        .map(|(tool, package)| format!("{tool} (apt-get install {package})"))
        .collect();
    if !missing.is_empty() {
        anyhow::bail!(
            "von-demo needs {}; scripts/setup-debian.sh installs everything",
            missing.join(", ")
        );
    }
    let bin = von_binary(args.von)?;
    let stop = Stop::install()?;
    let mut out = std::io::stdout();
    match von_demo::run(bin, &stop, &mut out) {
        Ok(report) => {
            println!("\n{report}");
            Ok(if report.failures().is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Err(e) => match e.downcast_ref::<Interrupted>() {
            Some(i) => {
                eprintln!("von-demo: {i}");
                Ok(ExitCode::from(130))
            }
            None => Err(e.context("von-demo failed; everything it made was removed")),
        },
    }
}

/// The `von` the hosts run: `--von`, else `$VON_BIN`, else the sibling.
fn von_binary(given: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let (path, from) = match given {
        Some(path) => (path, "--von"),
        None => match std::env::var_os("VON_BIN") {
            Some(path) => (PathBuf::from(path), "VON_BIN"),
            None => {
                let me = std::env::current_exe().context("finding this program's directory")?;
                (sibling(&me), "the directory of von-demo")
            }
        },
    };
    anyhow::ensure!(
        path.is_file(),
        "no von binary at {} (from {from}): build it with `cargo build --release -p von-agent \
         --bin von`, or name it with `--von PATH`",
        path.display()
    );
    path.canonicalize()
        .with_context(|| format!("resolving {}", path.display()))
}

/// `von` in the same directory as `me`.
fn sibling(me: &Path) -> PathBuf {
    me.with_file_name("von")
}

/// Whether `tool` can be started at all (`-V` prints its version).
fn runs(tool: &str) -> bool {
    Command::new(tool)
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_von_is_beside_von_demo() {
        assert_eq!(
            sibling(Path::new("/w/target/release/von-demo")),
            PathBuf::from("/w/target/release/von")
        );
    }

    #[test]
    fn a_missing_von_names_where_it_looked_and_the_fix() {
        let err = von_binary(Some(PathBuf::from("/nonexistent/von"))).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("/nonexistent/von"), "{msg}");
        assert!(msg.contains("--von"), "{msg}");
        assert!(msg.contains("cargo build"), "{msg}");
    }
}
