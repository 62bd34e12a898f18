//! `von completions SHELL` and the hidden `von man --dir DIR`: both are
//! generated from the one clap definition, so they can never disagree with
//! the binary.
//!
//! The man pages and the bash, zsh and fish completions are also checked in
//! under `packaging/man/` and `packaging/completions/` (cargo-deb packages
//! files, it runs no commands); tests below fail when they are stale and
//! print the command that regenerates them. `von.toml.5` beside the
//! generated pages is written by hand: no clap definition describes a file.

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

/// Write the man pages (von.8 and one per subcommand) into DIR, and with
/// `--completions DIR2` the bash, zsh and fish completions into DIR2.
#[derive(Debug, Args)]
pub struct ManArgs {
    /// Where to write the pages; created if missing.
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
    /// Where to write the packaged completion scripts; created if missing.
    #[arg(long, value_name = "DIR2")]
    completions: Option<PathBuf>,
}

/// The man section of every generated page: von is a system administration
/// command (it configures interfaces and runs as a daemon), hence section 8.
const SECTION: &str = "8";

/// The completion scripts the package installs: (shell, file name here,
/// where Debian's bash-completion, zsh and fish look for them).
pub const PACKAGED_COMPLETIONS: [(Shell, &str, &str); 3] = [
    (
        Shell::Bash,
        "von.bash",
        "usr/share/bash-completion/completions/von",
    ),
    (Shell::Zsh, "_von", "usr/share/zsh/vendor-completions/_von"),
    (
        Shell::Fish,
        "von.fish",
        "usr/share/fish/vendor_completions.d/von.fish",
    ),
];

/// The completion script for `shell`.
pub fn completion_script(shell: Shell, mut cmd: Command) -> Vec<u8> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, "von", &mut script);
    script
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
    for (name, page) in pages(cmd.clone())? {
        write_page(&args.dir, &name, &page)?;
    }
    if let Some(dir) = &args.completions {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        for (shell, name, _) in PACKAGED_COMPLETIONS {
            write_page(dir, name, &completion_script(shell, cmd.clone()))?;
        }
    }
    Ok(())
}

/// Every page as (file name, roff text): `von.8`, then `von-ca.8`,
/// `von-ca-init.8`, ... depth first. Hidden subcommands get no page, and
/// neither does clap's `help` (no page would list a `von-help(8)`).
pub fn pages(cmd: Command) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let mut cmd = cmd.disable_help_subcommand(true);
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
        .section(SECTION)
        .render(&mut page)
        .with_context(|| format!("rendering the man page of {name}"))?;
    page.extend_from_slice(extra_sections(&name).as_bytes());
    out.push((format!("{name}.{SECTION}"), page));
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        collect(sub, out)?;
    }
    Ok(())
}

/// FILES, EXAMPLES and SEE ALSO, which clap knows nothing about: the whole
/// set on `von.8` and `von-up.8`, a SEE ALSO back to them on the others.
fn extra_sections(name: &str) -> String {
    const FILES: &str = r#".SH FILES
.TP
\fI/etc/von/von.toml\fR
The agent's configuration, read by \fBvon up\fR and \fBvon up \-\-check\fR; see \fBvon.toml\fR(5).
.TP
\fI/etc/von/keymgr.toml\fR
A standalone key manager's configuration, read by \fBvon keymgr\fR.
.TP
\fI/etc/von/\fRVON\fI/\fR
A VON's CA directory (\fIca/\fR, on the CA machine only), and each member's certificate, TLS key and X25519 key as \fBvon cert issue\fR writes them (keys mode 0600).
.TP
\fI/var/lib/von/\fR
State: sequence incarnations, the last view and key, an embedded key manager's database.
.TP
\fI/run/von/control.sock\fR
The control socket \fBvon status\fR reads.
.TP
\fI/usr/share/doc/von/\fR
The operator's guide (README.md), the design notes (docs/) and commented examples of every file (examples/).
"#;
    const EXAMPLES: &str = r#".SH EXAMPLES
Create a VON's CA, once, on an offline machine, and a member's credentials:
.PP
.nf
.RS
von ca init \-\-von grid \-\-on\-id 7 \-\-prefix 100.64.0.0/24 \-\-out /etc/von/grid/ca
von cert issue \-\-ca /etc/von/grid/ca \-\-name h1 \-\-addr 100.64.0.1/24 \-\-out /etc/von/grid
.RE
.fi
.PP
Check a configuration without touching the network, then run the agent:
.PP
.nf
.RS
von up \-\-check \-\-config /etc/von/von.toml
systemctl enable \-\-now von
von status
.RE
.fi
"#;
    const SEE_ALSO: &str = r#".SH SEE ALSO
\fBvon.toml\fR(5), \fBvon\fR(8), \fBsystemctl\fR(1), \fBjournalctl\fR(1)
"#;
    match name {
        "von" | "von-up" => format!("{FILES}{EXAMPLES}{SEE_ALSO}"),
        _ => SEE_ALSO.to_owned(),
    }
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
            "von.8",
            "von-ca.8",
            "von-ca-init.8",
            "von-cert-issue.8",
            "von-up.8",
        ] {
            assert!(
                names.contains(&expected),
                "{expected} missing from {names:?}"
            );
        }
        assert!(!names.contains(&"von-man.8"), "the hidden `man` got a page");
        assert!(!names.contains(&"von-help.8"), "clap's `help` got a page");
        let top = String::from_utf8_lossy(&pages[0].1).into_owned();
        assert!(top.contains(".TH von 8"), "{top}");
        for section in [".SH FILES", ".SH EXAMPLES", ".SH SEE ALSO"] {
            assert!(top.contains(section), "von.8 lacks {section}");
        }
        assert!(
            !top.contains("von\\-help"),
            "von.8 points to a von-help page"
        );
        assert!(
            top.contains("completions"),
            "von.1 lists no completions: {top}"
        );
    }

    #[test]
    fn checked_in_man_pages_are_current() {
        let dir = checked_in();
        let regenerate = REGENERATE;
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
                name == HAND_WRITTEN || pages.iter().any(|(n, _)| *n == name),
                "packaging/man/{name} is no longer generated: {regenerate}"
            );
        }
    }

    #[test]
    fn checked_in_completions_are_current() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/completions");
        for (shell, name, _) in PACKAGED_COMPLETIONS {
            let path = dir.join(name);
            let on_disk = std::fs::read(&path).unwrap_or_default();
            assert!(
                on_disk == completion_script(shell, crate::Cli::command()),
                "{} is missing or stale: {REGENERATE}",
                path.display()
            );
        }
    }

    /// `von.toml.5` is hand-written, so a test keeps it complete: every key
    /// the packaged examples use is described there.
    #[test]
    fn von_toml_page_names_every_key_of_the_examples() {
        let page = std::fs::read_to_string(checked_in().join(HAND_WRITTEN)).expect("von.toml.5");
        for example in ["von-static.toml", "von-keymgr.toml"] {
            let path = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../packaging/examples")
                .join(example);
            let text = std::fs::read_to_string(&path).expect("example");
            let value: toml::Value = toml::from_str(&text).expect("the example parses");
            let mut keys = Vec::new();
            collect_keys(&value, &mut keys);
            for key in keys {
                // As a bold key, or inside a bold table name.
                let described = [
                    format!("\\fB{key}\\fR"),
                    format!("[{key}."),
                    format!(".{key}]"),
                    format!("[[{key}]]"),
                ];
                assert!(
                    described.iter().any(|d| page.contains(d.as_str())),
                    "von.toml.5 does not describe `{key}` (used in {example}); \
                     add it to packaging/man/{HAND_WRITTEN}"
                );
            }
        }
        for section in [".SH FILES", ".SH EXAMPLES", ".SH SEE ALSO"] {
            assert!(page.contains(section), "von.toml.5 lacks {section}");
        }
    }

    fn collect_keys(value: &toml::Value, out: &mut Vec<String>) {
        match value {
            toml::Value::Table(table) => {
                for (key, inner) in table {
                    if !out.contains(key) {
                        out.push(key.clone());
                    }
                    match (key.as_str(), inner) {
                        // `[underlay.NAME]`: the names are the operator's.
                        ("underlay", toml::Value::Table(named)) => {
                            named.values().for_each(|v| collect_keys(v, out));
                        }
                        _ => collect_keys(inner, out),
                    }
                }
            }
            toml::Value::Array(items) => items.iter().for_each(|v| collect_keys(v, out)),
            _ => {}
        }
    }

    /// The hand-written page among the generated ones.
    const HAND_WRITTEN: &str = "von.toml.5";
    const REGENERATE: &str = "regenerate with `rm packaging/man/*.8 && cargo run -p von-agent --bin von -- \
                              man --dir packaging/man --completions packaging/completions`";

    #[test]
    fn bash_completion_names_the_subcommands() {
        let mut script = Vec::new();
        clap_complete::generate(Shell::Bash, &mut crate::Cli::command(), "von", &mut script);
        let script = String::from_utf8(script).expect("utf-8");
        for word in ["ca", "cert", "up", "status", "reload", "completions"] {
            assert!(script.contains(word), "bash completion lacks {word}");
        }
    }
}
