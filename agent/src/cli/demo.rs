//! `von demo`: checks what the demo needs (root, `ip`, `ping`), runs it
//! (see `demo/mod.rs` for the flow) and prints its report. Exit status: 0
//! when the run showed what it should, 1 on an error or a failed figure,
//! 130 when interrupted (after cleaning up).

use std::process::{Command, ExitCode, Stdio};

use clap::Args;

use crate::demo::{self, Interrupted, Stop};

/// Three hosts in network namespaces, two underlays, real agents: pings,
/// an underlay cut with 0 lost, and a report. Needs root; removes
/// everything it made, also on Ctrl-C.
#[derive(Debug, Args)]
pub struct DemoArgs {}

/// Programs the demo runs, and the Debian package that has each.
const TOOLS: [(&str, &str); 2] = [("ip", "iproute2"), ("ping", "iputils-ping")];

/// Runs `von demo`.
pub fn run(_args: DemoArgs) -> anyhow::Result<ExitCode> {
    if !von_lab::is_root() {
        anyhow::bail!(
            "von demo needs root: it creates network namespaces, veth links, bridges and TUN \
             interfaces. Run it as root: `sudo von demo` (or `sudo ./demo.sh` in the source tree)"
        );
    }
    let missing: Vec<String> = TOOLS
        .iter()
        .filter(|(tool, _)| !runs(tool))
        .map(|(tool, package)| format!("{tool} (apt-get install {package})"))
        .collect();
    if !missing.is_empty() {
        anyhow::bail!(
            "von demo needs {}; scripts/setup-debian.sh installs everything",
            missing.join(", ")
        );
    }
    let stop = Stop::install()?;
    let mut out = std::io::stdout();
    match demo::run(&stop, &mut out) {
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
                eprintln!("von demo: {i}");
                Ok(ExitCode::from(130))
            }
            None => Err(e.context("von demo failed; everything it made was removed")),
        },
    }
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
