//! `von cert issue`, `von cert list` and `von cert show`: a member's (or the
//! key manager's) keys and certificate, the CA's ledger, and what a
//! certificate says.
//!
//! `issue` checks the request against the CA's ledger (`CA/ledger.json`: the
//! VON prefix, every name, id and address issued), writes `OUT/NAME.key`
//! (TLS, 0600), `OUT/NAME.noise.key` (X25519, 0600) and `OUT/NAME.crt`, and
//! records the certificate in the ledger. See `docs/certificates.md`.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use time::{Duration, OffsetDateTime};
use von_crypto::cert::{
    self, Ca, CertInfo, Holder, IssueRequest, MemberName, Role, VonAddr, rfc3339,
};

use super::ca::{CA_CERT, CA_KEY};
use super::ledger::{Ledger, REVOKED};

/// Issue and inspect member certificates.
#[derive(Debug, Args)]
pub struct CertArgs {
    #[command(subcommand)]
    command: CertCommand,
}

#[derive(Debug, Subcommand)]
enum CertCommand {
    /// Issue a member's keys (TLS and X25519) and certificate.
    Issue(IssueArgs),
    /// Print what a certificate says.
    Show(ShowArgs),
    /// Print the CA's ledger: every certificate it issued.
    List(ListArgs),
    /// Revoke the certificate last issued for a name: the ledger records its
    /// serial and CA/revoked.txt lists it, for routers and reservation
    /// services (their `revoked` setting) to refuse.
    Revoke(RevokeArgs),
}

#[derive(Debug, Args)]
struct RevokeArgs {
    /// The CA directory (ca.crt, ca.key, ledger.json).
    #[arg(long, value_name = "DIR")]
    ca: PathBuf,
    /// The name whose latest certificate is revoked.
    #[arg(long, value_name = "NAME")]
    name: MemberName,
}

#[derive(Debug, Args)]
struct ListArgs {
    /// The CA directory (ca.crt, ca.key, ledger.json).
    #[arg(long, value_name = "DIR")]
    ca: PathBuf,
    /// Print the ledger as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct IssueArgs {
    /// The CA directory written by `von ca init` (ca.crt, ca.key).
    #[arg(long, value_name = "DIR")]
    ca: PathBuf,
    /// Member name, unique in the VON: a-z, 0-9 and '-', at most 63 characters.
    #[arg(long, value_name = "NAME")]
    name: MemberName,
    /// The member's VON address and the VON prefix, e.g. 100.64.0.1/24.
    /// Required for a member; optional for `--role keymgr|router|reserve`:
    /// those have no VON address (only the certificate's prefix is read), so
    /// it defaults to the first host of the CA's prefix and is not reserved.
    #[arg(long, value_name = "CIDR", required_if_eq("role", "member"))]
    addr: Option<VonAddr>,
    /// Validity in days, from now.
    #[arg(long = "valid", value_name = "DAYS", default_value_t = 365,
          value_parser = clap::value_parser!(u32).range(1..=36_500))]
    valid_days: u32,
    /// `member`; `keymgr` for the key manager's own certificate; `router`
    /// for a router (`von router`) and `reserve` for a reservation service
    /// replica (`von reserve serve`), which authenticate each other with
    /// them (docs/isolation.md); these two get no NAME.noise.key.
    #[arg(long, value_enum, default_value_t = IssueRole::Member)]
    role: IssueRole,
    /// Directory to write NAME.crt, NAME.key and NAME.noise.key into.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Replace existing files.
    #[arg(long)]
    force: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum IssueRole {
    Member,
    Keymgr,
    Router,
    Reserve,
}

#[derive(Debug, Args)]
struct ShowArgs {
    /// A certificate file (PEM), e.g. h1.crt or ca.crt.
    #[arg(value_name = "FILE")]
    file: PathBuf,
}

/// Runs `von cert ...`.
pub fn run(args: CertArgs) -> anyhow::Result<()> {
    match args.command {
        CertCommand::Issue(issue) => run_issue(issue),
        CertCommand::Show(show) => run_show(&show.file),
        CertCommand::List(list) => run_list(&list),
        CertCommand::Revoke(revoke) => run_revoke(&revoke),
    }
}

/// The time, whole seconds (certificates carry no fractions).
pub fn now() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    now.replace_nanosecond(0).unwrap_or(now)
}

/// Reads `ca.crt` and `ca.key` from `dir`, refusing a CA key group or
/// others may read.
pub fn load_ca(dir: &Path) -> anyhow::Result<Ca> {
    let key_path = dir.join(CA_KEY);
    if let Some(problem) = von_config::private_key_problem(&key_path) {
        bail!("--ca {}: {problem}", dir.display());
    }
    let cert_pem = read(&dir.join(CA_CERT))?;
    let key_pem = read(&key_path)?;
    Ca::from_pem(&cert_pem, &key_pem)
        .with_context(|| format!("loading the CA from {}", dir.display()))
}

fn run_issue(args: IssueArgs) -> anyhow::Result<()> {
    let ca = load_ca(&args.ca)?;
    let mut ledger = Ledger::load(&args.ca)?;
    let name = args.name.as_str();
    let role = match args.role {
        IssueRole::Member => Role::Member,
        IssueRole::Keymgr => Role::Keymgr,
        IssueRole::Router => Role::Router,
        IssueRole::Reserve => Role::Reserve,
    };
    // Routers and services use only the TLS key: no X25519 key to keep.
    let noise = matches!(role, Role::Member | Role::Keymgr);
    let files = [
        format!("{name}.key"),
        format!("{name}.noise.key"),
        format!("{name}.crt"),
    ];
    let written: Vec<&str> = files
        .iter()
        .enumerate()
        .filter(|(i, _)| noise || *i != 1)
        .map(|(_, f)| f.as_str())
        .collect();
    let out = Output::prepare(&args.out, &written, args.force)?;

    let not_before = now();
    // Only a member's certificate holds a VON address.
    let keymgr = role != Role::Member;
    let addr = match args.addr {
        Some(addr) => addr,
        None if keymgr => ledger.keymgr_addr()?,
        None => bail!(
            "--addr is required for a member certificate: its VON address and the VON prefix, \
             e.g. --addr 100.64.0.1/24"
        ),
    };
    let member_id = ledger.admit(name, &addr, keymgr, not_before)?;
    let req = IssueRequest {
        role,
        name: args.name.clone(),
        member_id,
        addr,
        not_before,
        not_after: not_before + Duration::days(args.valid_days.into()),
    };
    let issued = ca.issue(&req).context("issuing the certificate")?;
    out.write_secret(&files[0], issued.tls_key_pem.as_bytes())?;
    if noise {
        out.write_secret(&files[1], issued.noise_secret.to_file_text().as_bytes())?;
    }
    out.write_public(&files[2], issued.cert_pem.as_bytes())?;
    let info = cert::inspect(&cert::pem_to_der(&issued.cert_pem, "issued certificate")?)?;
    ledger.record(&info);
    ledger.save(&args.ca)?;
    let wrote = written
        .iter()
        .rev()
        .map(|f| out.path(f).display().to_string())
        .collect::<Vec<_>>();
    println!(
        "{} {name} of VON {} (member id {}, {}): wrote {} (valid until {})",
        req.role.as_str(),
        info.extension.von,
        member_id.0,
        if keymgr {
            format!("prefix {}", von_crypto::cert::VonPrefix::of(&addr))
        } else {
            addr.to_string()
        },
        match wrote.as_slice() {
            [a, b] => format!("{a} and {b}"),
            [a, b, c] => format!("{a}, {c} and {b}"),
            other => other.join(", "),
        },
        rfc3339(&info.not_after),
    );
    Ok(())
}

fn run_revoke(args: &RevokeArgs) -> anyhow::Result<()> {
    // The CA key is not needed, but loading it proves this is the CA's own
    // directory (and that its key is kept private).
    load_ca(&args.ca)?;
    let mut ledger = Ledger::load(&args.ca)?;
    let new = ledger.revoke(args.name.as_str(), now())?;
    ledger.save(&args.ca)?;
    let list = args.ca.join(REVOKED);
    let tmp = args.ca.join(format!(".{REVOKED}.tmp"));
    fs::write(&tmp, ledger.revocation_list())
        .and_then(|()| fs::rename(&tmp, &list))
        .with_context(|| format!("writing {}", list.display()))?;
    let r = ledger
        .revoked
        .iter()
        .rev()
        .find(|r| r.name == args.name.as_str())
        .expect("just revoked");
    println!(
        "{} {} {} (serial {}); {} lists {} certificate{}: copy it to every router and \
         reservation service whose `revoked` names it (they re-read it at each connection)",
        if new { "revoked" } else { "already revoked:" },
        r.role,
        r.name,
        r.serial,
        list.display(),
        ledger.revoked.len(),
        if ledger.revoked.len() == 1 { "" } else { "s" }
    );
    Ok(())
}

fn run_list(args: &ListArgs) -> anyhow::Result<()> {
    let ledger = Ledger::load(&args.ca)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&ledger)?);
        return Ok(());
    }
    println!(
        "VON {} (ON id {}), prefix {}: {} certificate{}",
        ledger.von,
        ledger.on_id,
        ledger.prefix,
        ledger.issued.len(),
        if ledger.issued.len() == 1 { "" } else { "s" }
    );
    println!(
        "{:<10} {:<16} {:<7} {:<15} {:<20} SERIAL",
        "ID", "NAME", "ROLE", "ADDRESS", "NOT AFTER"
    );
    for e in &ledger.issued {
        println!(
            "{:<10} {:<16} {:<7} {:<15} {:<20} {}",
            e.member_id,
            e.name,
            e.role,
            e.address.to_string(),
            e.not_after,
            e.serial
        );
    }
    Ok(())
}

fn run_show(file: &Path) -> anyhow::Result<()> {
    let pem = read(file)?;
    let info = cert::inspect(&cert::pem_to_der(&pem, "certificate")?)
        .with_context(|| format!("reading {}", file.display()))?;
    print!("{}", describe(&info, now()));
    Ok(())
}

/// The human-readable form `von cert show` prints.
fn describe(info: &CertInfo, now: OffsetDateTime) -> String {
    let ext = &info.extension;
    let mut out = String::new();
    let mut line = |k: &str, v: String| out.push_str(&format!("{k:<12} {v}\n"));
    line("role", ext.holder.role().as_str().to_owned());
    line("von", format!("{} (ON id {})", ext.von, ext.on_id.0));
    if let Holder::Member(id) | Holder::Keymgr(id) = &ext.holder {
        line("name", id.name.to_string());
        line(
            "member id",
            format!("{} (0x{:08x})", id.member_id.0, id.member_id.0),
        );
        line("address", id.addr.to_string());
        line("noise key", id.noise_public.to_string());
    }
    let state = if now > info.not_after {
        "EXPIRED".to_owned()
    } else if now < info.not_before {
        "not yet valid".to_owned()
    } else {
        format!("{} days left", (info.not_after - now).whole_days())
    };
    line("not before", rfc3339(&info.not_before));
    line(
        "not after",
        format!("{} ({state})", rfc3339(&info.not_after)),
    );
    line("subject", info.subject.clone());
    line("issuer", info.issuer.clone());
    line("serial", info.serial.clone());
    line("tls key", info.key_algorithm.clone());
    out
}

pub(super) fn read(path: &Path) -> anyhow::Result<String> {
    fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

/// An output directory whose target files were checked before anything is written.
#[derive(Debug)]
pub struct Output {
    dir: PathBuf,
    force: bool,
}

impl Output {
    /// Creates `dir` if needed and refuses, before writing anything, if any
    /// of `files` exists and `force` is off.
    pub fn prepare(dir: &Path, files: &[&str], force: bool) -> anyhow::Result<Self> {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        if !force {
            if let Some(existing) = files.iter().map(|f| dir.join(f)).find(|p| p.exists()) {
                bail!("{} exists; pass --force to replace it", existing.display());
            }
        }
        Ok(Self {
            dir: dir.to_owned(),
            force,
        })
    }

    /// Where `file` goes.
    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    /// Writes a private key, created with mode 0600 (never widened, then narrowed).
    pub fn write_secret(&self, file: &str, bytes: &[u8]) -> anyhow::Result<()> {
        self.write(file, bytes, 0o600)
    }

    /// Writes a certificate, mode 0644.
    pub fn write_public(&self, file: &str, bytes: &[u8]) -> anyhow::Result<()> {
        self.write(file, bytes, 0o644)
    }

    fn write(&self, file: &str, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
        let path = self.path(file);
        if self.force {
            // Removed rather than truncated, so the new file gets `mode`
            // whatever the old one had.
            match fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(e).with_context(|| format!("replacing {}", path.display()));
                }
                _ => {}
            }
        }
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&path)
            .with_context(|| match self.force {
                false => format!("creating {} (pass --force to replace it)", path.display()),
                true => format!("creating {}", path.display()),
            })?;
        f.write_all(bytes)
            .and_then(|()| f.sync_all())
            .with_context(|| format!("writing {}", path.display()))
    }
}
