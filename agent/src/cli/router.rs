//! `von router --config FILE`: shape a Linux router's links for the ONs
//! reserved through it (docs/isolation.md); `von router status`: what a
//! router holds, with per-ON bytes and drops from its tc classes.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use clap::{Args, Subcommand};
use tracing_subscriber::EnvFilter;
use von_router::config::RouterConfig;
use von_router::proto::{Request, Response, RouterStatus};

/// Run a router's reservation endpoint, or ask one what it holds.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct RouterArgs {
    #[command(subcommand)]
    command: Option<RouterCommand>,
    /// The router's configuration (router.toml); runs it in the foreground.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum RouterCommand {
    /// Reservations, link budgets and per-ON counters of a running router.
    Status(StatusArgs),
}

#[derive(Debug, Args)]
struct StatusArgs {
    /// The router's control address (its `listen`).
    #[arg(long, value_name = "IP:PORT")]
    addr: std::net::SocketAddr,
    /// The CA certificate of router control (reserve.toml `ca`).
    #[arg(long, value_name = "FILE")]
    ca: PathBuf,
    /// A `reserve` certificate (routers answer only the reservation
    /// service's role), e.g. reserve.toml `cert`.
    #[arg(long, value_name = "FILE")]
    cert: PathBuf,
    /// Its TLS private key (reserve.toml `tls_key`).
    #[arg(long, value_name = "FILE")]
    tls_key: PathBuf,
    /// The router's name: refuse a router whose certificate names another.
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// The CA's revocation list: refuse a revoked router.
    #[arg(long, value_name = "FILE")]
    revoked: Option<PathBuf>,
    /// Print the JSON document.
    #[arg(long)]
    json: bool,
}

/// Runs `von router`.
pub fn run(args: RouterArgs) -> anyhow::Result<()> {
    match (args.command, args.config) {
        (Some(RouterCommand::Status(s)), _) => status(&s),
        (None, Some(config)) => serve(&config),
        (None, None) => anyhow::bail!("give --config FILE to run a router, or `status` to ask one"),
    }
}

fn serve(path: &std::path::Path) -> anyhow::Result<()> {
    let cfg = RouterConfig::load(path)?;
    init_logging()?;
    let stop = Arc::new(AtomicBool::new(false));
    stop_on_signal(Arc::clone(&stop))?;
    von_router::daemon::run_router(&cfg, stop)?;
    Ok(())
}

fn status(args: &StatusArgs) -> anyhow::Result<()> {
    let files = von_router::auth::TlsFiles {
        ca: args.ca.clone(),
        cert: args.cert.clone(),
        key: args.tls_key.clone(),
        revoked: args.revoked.clone(),
    };
    let tls = von_router::auth::service_client(&files, args.name.as_deref())?;
    let name = args.name.as_deref().unwrap_or("router");
    let status = match von_router::net::call(name, args.addr, &tls, &Request::Status)? {
        Response::Status(s) => s,
        other => anyhow::bail!(
            "router {} answered {other:?} to a status request",
            args.addr
        ),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        print!("{}", human(&status));
    }
    Ok(())
}

/// The status for a person.
pub fn human(s: &RouterStatus) -> String {
    use std::fmt::Write as _;
    let mut out = format!("router {} ({} prepared, uncommitted)\n", s.router, s.holds);
    for l in &s.links {
        let _ = writeln!(
            out,
            "  link {:<10} capacity {} bit/s, ONs may book {}, booked {}; default class sent {} bytes, dropped {}",
            l.budget.dev,
            l.budget.capacity_bps,
            l.budget.on_share_bps,
            l.booked_bps,
            l.default.bytes,
            l.default.drops
        );
    }
    for r in &s.reservations {
        let _ = writeln!(
            out,
            "  ON {} ({}) lease {} ms left",
            r.on_id, r.name, r.lease_left_ms
        );
        for c in &r.classes {
            let _ = writeln!(
                out,
                "    {:<10} class {:<6} {} bit/s  sent {} bytes {} packets, dropped {}",
                c.dev,
                c.classid,
                c.rate_bps,
                c.counters.bytes,
                c.counters.packets,
                c.counters.drops
            );
        }
    }
    out
}

/// Logging on stderr at `info` unless `RUST_LOG` says otherwise.
pub fn init_logging() -> anyhow::Result<()> {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new("info"))
        .context("log filter")?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    Ok(())
}

/// Sets `stop` on SIGINT or SIGTERM (a thread with a small tokio runtime).
pub fn stop_on_signal(stop: Arc<AtomicBool>) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the signal runtime")?;
    let (mut term, mut int) = runtime.block_on(async {
        anyhow::Ok((
            signal(SignalKind::terminate()).context("installing the SIGTERM handler")?,
            signal(SignalKind::interrupt()).context("installing the SIGINT handler")?,
        ))
    })?;
    std::thread::spawn(move || {
        runtime.block_on(async {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM: stopping"),
                _ = int.recv() => tracing::info!("SIGINT: stopping"),
            }
        });
        stop.store(true, Ordering::Relaxed);
    });
    Ok(())
}
