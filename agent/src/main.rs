//! `von`: one binary for the agent, the key manager and the operator's tools.
//!
//! Each subcommand lives in `cli/<name>.rs`; this file only dispatches.

mod cli;

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

/// Virtual dedicated networks over two independent underlays.
#[derive(Debug, Parser)]
#[command(name = "von", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// A VON's certificate authority (`von ca init`).
    Ca(cli::ca::CaArgs),
    /// Member certificates (`von cert issue`, `von cert show`).
    Cert(cli::cert::CertArgs),
    /// The standalone key manager (`von keymgr --config FILE`) and its
    /// operations (`von keymgr revoke|rekey|status --config FILE`).
    Keymgr(cli::keymgr::KeymgrArgs),
    /// Run the agent in the foreground (`von up --config FILE`).
    Up(cli::up::UpArgs),
    /// Make the running agent read von.toml again (`von reload [--config FILE]`).
    Reload(cli::reload::ReloadArgs),
    /// What the running agent reports (`von status [--json] [--socket PATH]`).
    Status(cli::status::StatusArgs),
    /// A completion script for bash, zsh, fish, elvish or powershell (`von completions bash`).
    Completions(cli::completions::CompletionsArgs),
    /// Write the man pages into a directory (packaging runs it; hidden).
    #[command(hide = true)]
    Man(cli::completions::ManArgs),
    /// Shape a router's links for reserved ONs (`von router --config FILE`, `von router status`).
    Router(cli::router::RouterArgs),
    /// Reservations on routers (`von reserve serve|add|list|release`).
    Reserve(cli::reserve::ReserveArgs),
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            report(&e);
            ExitCode::FAILURE
        }
    }
}

/// An error for an operator: the message and its causes, never a backtrace
/// (`RUST_BACKTRACE` is for panics, which still print theirs).
fn report(e: &anyhow::Error) {
    eprintln!("Error: {e}");
    let causes: Vec<_> = e.chain().skip(1).collect();
    if !causes.is_empty() {
        eprintln!("\nCaused by:");
        for (i, cause) in causes.iter().enumerate() {
            eprintln!("    {i}: {cause}");
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Ca(args) => cli::ca::run(args),
        Command::Cert(args) => cli::cert::run(args),
        Command::Keymgr(args) => cli::keymgr::run(args),
        Command::Up(args) => cli::up::run(args),
        Command::Reload(args) => cli::reload::run(args),
        Command::Status(args) => cli::status::run(args),
        Command::Completions(args) => cli::completions::completions(args, Cli::command()),
        Command::Man(args) => cli::completions::man(args, Cli::command()),
        Command::Router(args) => cli::router::run(args),
        Command::Reserve(args) => cli::reserve::run(args),
    }?;
    Ok(ExitCode::SUCCESS)
}
