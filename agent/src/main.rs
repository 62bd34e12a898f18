//! `von`: one binary for the agent, the key manager and the operator's tools.
//!
//! Each subcommand lives in `cli/<name>.rs`; this file only dispatches.

mod cli;

use clap::{Parser, Subcommand};

/// Virtual dedicated networks over two independent underlays.
#[derive(Debug, Parser)]
#[command(name = "von", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {}
}
