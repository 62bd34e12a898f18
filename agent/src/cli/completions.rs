//! `von completions SHELL` and the hidden `von man --dir DIR`: both are
//! generated from the one clap definition, so they can never disagree with
//! the binary.
//!
//! The man pages are also checked in under `packaging/man/` (cargo-deb
//! packages files, it runs no commands); a test below fails when they are
//! stale and prints the command that regenerates them.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Command};
use clap_complete::Shell;

/// Print a completion script for SHELL on stdout.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// bash, zsh, fish, elvish or powershell.
    #[arg(value_name = "SHELL")]
    shell: Shell,
}

/// Write the man pages (von.1 and one per subcommand) into DIR.
#[derive(Debug, Args)]
pub struct ManArgs {
    /// Where to write the pages; created if missing.
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
}

/// Runs `von completions SHELL`.
pub fn completions(args: CompletionsArgs, mut cmd: Command) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    clap_complete::generate(args.shell, &mut cmd, "von", &mut out);
    out.flush()
        .context("writing the completion script to stdout")
}

/// Runs `von man --dir DIR`.
pub fn man(args: ManArgs, cmd: Command) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("creating {}", args.dir.display()))?;
    for (name, page) in pages(cmd)? {
        write_page(&args.dir, &name, &page)?;
    }
    Ok(())
}

/// Every page as (file name, roff text): `von.1`, then `von-ca.1`,
/// `von-ca-init.1`, ... depth first. Hidden subcommands get no page.
pub fn pages(cmd: Command) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let mut cmd = cmd;
    // Fills in the names of nested subcommands (`von-ca-init`) and the
    // version, as `--help` would.
    cmd.build();
    let mut out = Vec::new();
    collect(&cmd, &mut out)?;
    Ok(out)
}

fn collect(cmd: &Command, out: &mut Vec<(String, Vec<u8>)>) -> anyhow::Result<()> {
    // After `build()`, a subcommand's display name is its page name
    // (`von-ca-init`); clap_mangen titles the page with it.
    let name = cmd.get_display_name().unwrap_or(cmd.get_name()).to_owned();
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .render(&mut page)
        .with_context(|| format!("rendering the man page of {name}"))?;
    out.push((format!("{name}.1"), page));
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        if sub.get_name() != "help" {
            collect(sub, out)?;
        }
    }
    Ok(())
}

fn write_page(dir: &Path, name: &str, page: &[u8]) -> anyhow::Result<()> {
    let path = dir.join(name);
    std::fs::write(&path, page).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    /// The checked-in pages, relative to this crate.
    const CHECKED_IN: &str = "../packaging/man";

    fn checked_in() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join(CHECKED_IN)
    }

    #[test]
    fn man_pages_cover_every_visible_subcommand() {
        let pages = pages(crate::Cli::command()).expect("renders");
        let names: Vec<&str> = pages.iter().map(|(n, _)| n.as_str()).collect();
        for expected in [
            "von.1",
            "von-ca.1",
            "von-ca-init.1",
            "von-cert-issue.1",
            "von-up.1",
        ] {
            assert!(
                names.contains(&expected),
                "{expected} missing from {names:?}"
            );
        }
        assert!(!names.contains(&"von-man.1"), "the hidden `man` got a page");
        let top = String::from_utf8_lossy(&pages[0].1).into_owned();
        assert!(top.contains(".TH von 1"), "{top}");
        assert!(
            top.contains("completions"),
            "von.1 lists no completions: {top}"
        );
    }

    #[test]
    fn checked_in_man_pages_are_current() {
        let dir = checked_in();
        let regenerate = "regenerate with `cargo run -p von-agent --bin von -- man --dir packaging/man` \
                          (after `rm packaging/man/*.1`)";
        let pages = pages(crate::Cli::command()).expect("renders");
        for (name, page) in &pages {
            let path = dir.join(name);
            let on_disk = std::fs::read(&path).unwrap_or_default();
            assert!(
                on_disk == *page,
                "{} is missing or stale: {regenerate}",
                path.display()
            );
        }
        let listed = std::fs::read_dir(&dir).expect("packaging/man exists");
        for entry in listed {
            let name = entry
                .expect("readable")
                .file_name()
                .to_string_lossy()
                .into_owned();
            assert!(
                pages.iter().any(|(n, _)| *n == name),
                "packaging/man/{name} is no longer generated: {regenerate}"
            );
        }
    }

    #[test]
    fn bash_completion_names_the_subcommands() {
        let mut script = Vec::new();
        clap_complete::generate(Shell::Bash, &mut crate::Cli::command(), "von", &mut script);
        let script = String::from_utf8(script).expect("utf-8");
        for word in ["ca", "cert", "up", "status", "demo", "completions"] {
            assert!(script.contains(word), "bash completion lacks {word}");
        }
    }
}
