//! `von ca init`: a new VON, that is its CA key and certificate and the
//! ledger that records the VON prefix; `von ca upgrade`: the ledger for a CA
//! directory made before it existed.
//!
//! Writes `DIR/ca.key` (mode 0600), `DIR/ca.crt` and `DIR/ledger.json`; see
//! `docs/certificates.md` for every file name.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use von_crypto::OnId;
use von_crypto::cert::{CA_VALIDITY_DAYS, Ca, Role, VonName, VonPrefix};

use super::cert::{Output, load_ca, now, read};
use super::ledger::{LEDGER, Ledger, OLD_LEDGER, entry_of, read_old_ledger};

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
    /// Create a new VON: its CA key (ca.key), certificate (ca.crt) and ledger.
    Init(InitArgs),
    /// Give a CA directory made by an older von its ledger (ledger.json).
    Upgrade(UpgradeArgs),
}

#[derive(Debug, Args)]
struct UpgradeArgs {
    /// The CA directory (ca.crt, ca.key, issued.txt).
    #[arg(long, value_name = "DIR")]
    ca: PathBuf,
    /// The VON prefix, e.g. 100.64.0.0/24.
    #[arg(long, value_name = "CIDR")]
    prefix: VonPrefix,
    /// Every certificate issued so far (NAME.crt), so the ledger knows their
    /// addresses; each name in issued.txt needs one.
    #[arg(value_name = "CERT")]
    certs: Vec<PathBuf>,
}

#[derive(Debug, Args)]
struct InitArgs {
    /// The VON's name: a-z, 0-9 and '-', at most 11 characters.
    #[arg(long = "von", value_name = "NAME")]
    von: VonName,
    /// The VON's globally unique ON id (1 to 4294967295), first 4 bytes of every frame.
    #[arg(long = "on-id", value_name = "ID")]
    on_id: u32,
    /// The VON prefix, e.g. 100.64.0.0/24: every member's address must be a
    /// host of it; `von cert issue` refuses others.
    #[arg(long, value_name = "CIDR")]
    prefix: VonPrefix,
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
        CaCommand::Upgrade(up) => run_upgrade(up),
    }
}

fn run_init(args: InitArgs) -> anyhow::Result<()> {
    if args.on_id == 0 {
        bail!(
            "--on-id 0 is reserved; use 1 to {} (example: --on-id 7)",
            u32::MAX
        );
    }
    let out = Output::prepare(&args.out, &[CA_KEY, CA_CERT, LEDGER], args.force)?;
    let ca = Ca::create(args.von.clone(), OnId(args.on_id), now(), args.valid_days)
        .context("creating the CA")?;
    out.write_secret(CA_KEY, ca.key_pem().as_bytes())?;
    out.write_public(CA_CERT, ca.cert_pem().as_bytes())?;
    // A new CA starts a new ledger, even over an old one with --force.
    Ledger::new(args.von.as_str(), args.on_id, args.prefix).save(&args.out)?;
    println!(
        "VON {} (ON id {}, prefix {}): wrote {}, {} and {} (valid until {})",
        args.von,
        args.on_id,
        args.prefix,
        out.path(CA_CERT).display(),
        out.path(CA_KEY).display(),
        out.path(LEDGER).display(),
        von_crypto::cert::rfc3339(&ca.info().not_after),
    );
    println!("keep {} secret: it signs every member of this VON", CA_KEY);
    Ok(())
}

/// `von ca upgrade`: build `ledger.json` from `issued.txt` and the
/// certificates it lists. Refuses if a listed name has no certificate, or a
/// certificate is not this CA's; warns about certificates the key manager
/// will refuse (outside the prefix, or sharing an address), which should be
/// reissued.
fn run_upgrade(args: UpgradeArgs) -> anyhow::Result<()> {
    let ca = load_ca(&args.ca)?;
    let ledger_path = args.ca.join(LEDGER);
    if ledger_path.exists() {
        bail!(
            "{} exists: this CA directory is already upgraded",
            ledger_path.display()
        );
    }
    let old = read_old_ledger(&args.ca.join(OLD_LEDGER))?;
    let von = &ca.info().extension.von;
    let mut ledger = Ledger::new(von.as_str(), ca.info().extension.on_id.0, args.prefix);
    for path in &args.certs {
        let der = von_crypto::cert::pem_to_der(&read(path)?, "certificate")?;
        let info = von_crypto::cert::inspect(&der)
            .with_context(|| format!("reading {}", path.display()))?;
        if info.issuer != ca.info().subject || &info.extension.von != von {
            bail!(
                "{}: issued by {:?}, not by this CA ({:?})",
                path.display(),
                info.issuer,
                ca.info().subject
            );
        }
        // Signature too: the ledger must list only what this CA signed.
        von_crypto::cert::verify(&ca.info().der, &der, von, info.not_before)
            .with_context(|| format!("{}: not signed by this CA", path.display()))?;
        let entry =
            entry_of(&info).with_context(|| format!("{}: a CA certificate", path.display()))?;
        if old
            .get(&entry.name)
            .is_some_and(|&id| id != entry.member_id)
        {
            bail!(
                "{}: member id {} but {OLD_LEDGER} lists {} for {}; give the certificate issued last for that name",
                path.display(),
                entry.member_id,
                old[&entry.name],
                entry.name
            );
        }
        ledger.record(&info);
    }
    let missing: Vec<&str> = old
        .keys()
        .filter(|n| !ledger.issued.iter().any(|e| &e.name == *n))
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        bail!(
            "{OLD_LEDGER} lists {} without a certificate given; pass their NAME.crt files too (their addresses must be known to refuse duplicates)",
            missing.join(", ")
        );
    }
    let mut warnings = 0;
    for e in &ledger.issued {
        let role_ok = [Role::Member, Role::Keymgr, Role::Router, Role::Reserve]
            .iter()
            .any(|r| e.role == r.as_str());
        if !args.prefix.contains_host(e.address) || !role_ok {
            println!(
                "warning: {} has address {}, outside {}; the key manager will refuse it: reissue it with `von cert issue --force`",
                e.name, e.address, args.prefix
            );
            warnings += 1;
        }
        if let Some(other) = ledger
            .issued
            .iter()
            .find(|o| o.name != e.name && o.address == e.address)
        {
            println!(
                "warning: {} and {} share address {}; the key manager admits only one: reissue one with `von cert issue --force`",
                e.name, other.name, e.address
            );
            warnings += 1;
        }
    }
    ledger.save(&args.ca)?;
    println!(
        "wrote {} (prefix {}, {} certificates, {warnings} warnings); {OLD_LEDGER} is no longer read",
        ledger_path.display(),
        args.prefix,
        ledger.issued.len()
    );
    Ok(())
}
