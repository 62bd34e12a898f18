//! `von up --config FILE`: the agent, in the foreground (systemd runs this).
//!
//! Reads the config, starts logging at its `log` level (`RUST_LOG` overrides),
//! and runs the driver until SIGINT or SIGTERM, which stop it cleanly: the
//! interfaces disappear and the control socket is removed.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use tokio::signal::unix::{SignalKind, signal};
use tracing_subscriber::EnvFilter;
use von_agent::driver;
use von_config::AgentConfig;

/// Run the agent in the foreground.
#[derive(Debug, Args)]
pub struct UpArgs {
    /// The agent's configuration (von.toml).
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
}

/// Runs `von up`.
pub fn run(args: UpArgs) -> anyhow::Result<()> {
    let config = AgentConfig::load(&args.config)?;
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
        let shutdown = async move {
            tokio::select! {
                _ = terminate.recv() => tracing::info!("SIGTERM: stopping"),
                _ = interrupt.recv() => tracing::info!("SIGINT: stopping"),
            }
        };
        driver::run(&config, shutdown).await?;
        Ok(())
    })
}
