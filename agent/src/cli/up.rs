//! `von up --config FILE`: the agent, in the foreground (systemd runs this).
//!
//! Reads the config, starts logging at its `log` level (`RUST_LOG` overrides),
//! and runs the driver until SIGINT or SIGTERM, which stop it cleanly in
//! every state — waiting for a first view included — within 2 s: the agent
//! leaves its VONs, the interfaces disappear and the control socket is
//! removed. SIGHUP never stops it: it reads the config again
//! ([`von_agent::reload`]).
//!
//! `von up --check` reads the same files and stops before touching the
//! system, so an operator can validate a change before restarting the unit.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use tokio::signal::unix::{SignalKind, signal};
use tracing_subscriber::EnvFilter;
use von_agent::driver;
use von_config::{AgentConfig, VonMode};
use von_crypto::cert::{Role, VonName};

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

/// `von up --check`: everything `von up` reads before it opens an interface.
fn check(config: &AgentConfig, path: &Path) -> anyhow::Result<()> {
    // Static views: members, addresses, and this host's place in each.
    config.load_views()?;
    for von in &config.vons {
        let VonMode::Keymgr(mode) = &von.mode else {
            continue;
        };
        let name: VonName = von
            .name
            .as_str()
            .parse()
            .with_context(|| format!("VON name {:?}", von.name.as_str()))?;
        let files = |role, ca: &Path, cert: &Path, key: &Path, noise: &Path| {
            von_keymgr::files::load(&name, role, ca, cert, key, noise)
                .map_err(|e| anyhow::anyhow!("[[von]] {}: {e}", von.name.as_str()))
        };
        files(
            Role::Member,
            &mode.ca,
            &mode.cert,
            &mode.key,
            &mode.noise_key,
        )?;
        if let Some(km) = &mode.embedded {
            files(Role::Keymgr, &km.ca, &km.cert, &km.key, &km.noise_key)?;
        }
    }
    // The leak guard's needs: `nft`, and interface names a rule can match.
    let interfaces = config.vons.iter();
    von_agent::guard::preflight(interfaces.map(|v| (v.name.as_str(), v.interface.as_str())))?;
    println!(
        "{}: ok ({} VON{})",
        path.display(),
        config.vons.len(),
        if config.vons.len() == 1 { "" } else { "s" }
    );
    Ok(())
}
