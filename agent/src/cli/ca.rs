//! `von ca init`: a new VON, that is its CA key and certificate.
//!
//! Writes `DIR/ca.key` (mode 0600) and `DIR/ca.crt`; see
//! `docs/certificates.md` for every file name.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use von_crypto::OnId;
use von_crypto::cert::{CA_VALIDITY_DAYS, Ca, VonName};

use super::cert::{Output, now};

/// File name of the CA certificate in its directory.
pub const CA_CERT: &str = "ca.crt";
/// File name of the CA private key in its directory.
pub const CA_KEY: &str = "ca.key";

/// Manage a VON's certificate authority.
#[derive(Debug, Args)]
pub struct CaArgs {
    #[command(subcommand)]
    command: CaCommand,
}

#[derive(Debug, Subcommand)]
enum CaCommand {
    /// Create a new VON: its CA key (ca.key) and certificate (ca.crt).
    Init(InitArgs),
}

#[derive(Debug, Args)]
struct InitArgs {
    /// The VON's name: a-z, 0-9 and '-', at most 11 characters.
    #[arg(long = "von", value_name = "NAME")]
    von: VonName,
    /// The VON's globally unique ON id (1 to 4294967295), first 4 bytes of every frame.
    #[arg(long = "on-id", value_name = "ID")]
    on_id: u32,
    /// Directory to write ca.crt and ca.key into (created if missing).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// How long the CA is valid, in days.
    #[arg(long = "valid", value_name = "DAYS", default_value_t = CA_VALIDITY_DAYS,
          value_parser = clap::value_parser!(u32).range(1..=36_500))]
    valid_days: u32,
    /// Replace ca.crt and ca.key if they exist.
    #[arg(long)]
    force: bool,
}

/// Runs `von ca ...`.
pub fn run(args: CaArgs) -> anyhow::Result<()> {
    match args.command {
        CaCommand::Init(init) => run_init(init),
    }
}

fn run_init(args: InitArgs) -> anyhow::Result<()> {
    if args.on_id == 0 {
        bail!(
            "--on-id 0 is reserved; use 1 to {} (example: --on-id 7)",
            u32::MAX
        );
    }
    let out = Output::prepare(&args.out, &[CA_KEY, CA_CERT], args.force)?;
    let ca = Ca::create(args.von.clone(), OnId(args.on_id), now(), args.valid_days)
        .context("creating the CA")?;
    out.write_secret(CA_KEY, ca.key_pem().as_bytes())?;
    out.write_public(CA_CERT, ca.cert_pem().as_bytes())?;
    println!(
        "VON {} (ON id {}): wrote {} and {} (valid until {})",
        args.von,
        args.on_id,
        out.path(CA_CERT).display(),
        out.path(CA_KEY).display(),
        von_crypto::cert::rfc3339(&ca.info().not_after),
    );
    println!("keep {} secret: it signs every member of this VON", CA_KEY);
    Ok(())
}
