//! `von up --config FILE`: the agent, in the foreground (systemd runs this).
//!
//! Reads the config, starts logging at its `log` level (`RUST_LOG` overrides),
//! and runs the driver until SIGINT or SIGTERM, which stop it cleanly in
//! every state — waiting for a first view included — within 2 s: the agent
//! leaves its VONs, the interfaces disappear and the control socket is
//! removed. SIGHUP never stops it: it reads the config again
//! ([`von_agent::reload`]).
//!
//! Before any key manager is contacted, every local precondition is checked
//! ([`von_agent::preflight`]): files and key modes, CAP_NET_ADMIN, bind
//! addresses and ports, the control socket. `von up --check` runs the same
//! checks and stops before touching the system, so an operator can validate
//! a change before restarting the unit.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use tokio::signal::unix::{SignalKind, signal};
use tracing_subscriber::EnvFilter;
use von_agent::driver;
use von_agent::preflight::{self, Purpose};
use von_config::AgentConfig;

/// Run the agent in the foreground.
#[derive(Debug, Args)]
pub struct UpArgs {
    /// The agent's configuration (von.toml).
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// Only validate: the config, every view file and every certificate and
    /// key it names; change nothing and exit 0 if all is well.
    #[arg(long)]
    check: bool,
}

/// Runs `von up`.
pub fn run(args: UpArgs) -> anyhow::Result<()> {
    let config = AgentConfig::load(&args.config)?;
    if args.check {
        return check(&config, &args.config);
    }
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.log))
        .with_context(|| format!("log level {:?} in {}", config.log, args.config.display()))?;
    // Plain lines for journald or a file, decorated ones on a terminal.
    von_agent::logs::init(filter);
    // Every local precondition before any key manager hears of this member:
    // a failure after joining would cost the group two rekeys.
    preflight::check(&config, &args.config, Purpose::Start)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let mut terminate =
            signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
        let mut interrupt =
            signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
        let mut hangup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
        let (mut running, path) = (config.clone(), args.config.clone());
        let live = std::sync::Arc::new(von_agent::reload::Registry::default());
        let registry = live.clone();
        let shutdown = async move {
            loop {
                tokio::select! {
                    _ = terminate.recv() => break tracing::info!("SIGTERM: stopping"),
                    _ = interrupt.recv() => break tracing::info!("SIGINT: stopping"),
                    _ = hangup.recv() => {
                        tracing::info!(config = %path.display(), "SIGHUP: reading the config again");
                        von_agent::reload::reload(&path, &mut running, &registry);
                    }
                }
            }
        };
        driver::run(&config, &live, shutdown).await?;
        Ok(())
    })
}

/// `von up --check`: everything `von up` reads and checks before it
/// contacts a key manager or opens an interface ([`preflight`]), with a
/// running agent's own ports and socket as notes.
fn check(config: &AgentConfig, path: &Path) -> anyhow::Result<()> {
    // Static views: members, addresses, and this host's place in each.
    config.load_views()?;
    for note in preflight::check(config, path, Purpose::Check)? {
        println!("note: {note}");
    }
    println!(
        "{}: ok ({} VON{})",
        path.display(),
        config.vons.len(),
        if config.vons.len() == 1 { "" } else { "s" }
    );
    Ok(())
}
