//! `von keymgr --config FILE`: the standalone key manager, in the foreground;
//! `von keymgr revoke|rekey|status --config FILE`: operations on it.
//!
//! The operations talk to the running key manager over its control socket
//! (`<state_dir>/control.sock`): the redb store is locked by the process
//! that has it open. With no key manager running, `revoke` writes the
//! revocation straight into the store, where the next start finds it.

use std::io::{ErrorKind, IsTerminal};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use tokio::signal::unix::{SignalKind, signal};
use tracing_subscriber::EnvFilter;
use von_config::KeymgrConfig;
use von_keymgr::server::{
    ControlReply, ControlRequest, Params, STORE_FILE, Server, control_socket_path, request,
};
use von_keymgr::{RedbStore, Store};

/// The key manager of one VON.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = false)]
pub struct KeymgrArgs {
    /// The key manager's configuration (keymgr.toml).
    #[arg(long, value_name = "FILE", global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    op: Option<Op>,
}

#[derive(Debug, Subcommand)]
enum Op {
    /// Revoke a member: it is dropped and the group rekeyed at once (if the
    /// key manager runs) and refused from then on.
    Revoke {
        /// The member's name, as in its certificate.
        #[arg(long)]
        name: String,
    },
    /// Rekey now with the same members (a new epoch and group key).
    Rekey,
    /// The committed epoch, the epoch being prepared, and the members.
    Status {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// Runs `von keymgr`.
pub fn run(args: KeymgrArgs) -> anyhow::Result<()> {
    let Some(path) = args.config else {
        bail!("--config FILE is required: the key manager's keymgr.toml");
    };
    let config = KeymgrConfig::load(&path)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let socket = control_socket_path(&config.state_dir);
    match args.op {
        None => runtime.block_on(serve(config)),
        Some(Op::Revoke { name }) => {
            let req = ControlRequest::Revoke { name: name.clone() };
            match runtime.block_on(request(&socket, &req)) {
                Ok(reply) => {
                    println!("revoked {name}; {}", describe(&reply));
                    Ok(())
                }
                Err(e) if not_running(&e) => match &config.etcd {
                    Some(etcd) => runtime.block_on(revoke_in_etcd(etcd, &name)),
                    None => revoke_offline(&config.state_dir, &name),
                },
                Err(e) => Err(e)
                    .with_context(|| format!("asking the key manager at {}", socket.display())),
            }
        }
        Some(Op::Rekey) => {
            let reply = runtime
                .block_on(request(&socket, &ControlRequest::Rekey))
                .map_err(|e| asking(&socket, e))?;
            println!("rekeying; {}", describe(&reply));
            Ok(())
        }
        Some(Op::Status { json }) => {
            let reply = runtime
                .block_on(request(&socket, &ControlRequest::Status))
                .map_err(|e| asking(&socket, e))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&reply)?);
            } else {
                println!("{}", describe(&reply));
            }
            Ok(())
        }
    }
}

async fn serve(config: KeymgrConfig) -> anyhow::Result<()> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let params = Params::from_config(&config)?;
    // Bound before the key manager starts, so a taken port changes nothing.
    let scrape = match config.metrics {
        Some(addr) => Some(von_agent::metrics::bind(addr.addr()).await?),
        None => None,
    };
    let server = Server::bind(params)?;
    if let Some(listener) = scrape {
        let socket = control_socket_path(&config.state_dir);
        let von = config.von.as_str().to_owned();
        tracing::info!(metrics = %listener.local_addr()?, "serving Prometheus metrics at /metrics");
        tokio::spawn(von_agent::metrics::serve_with(listener, move || {
            let (socket, von) = (socket.clone(), von.clone());
            async move {
                let reply = request(&socket, &ControlRequest::Status).await.ok();
                von_agent::keymgr_metrics::render(&von, reply.as_ref())
            }
        }));
    }
    let mut terminate =
        signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    server
        .run(async move {
            tokio::select! {
                _ = terminate.recv() => tracing::info!("SIGTERM: stopping"),
                _ = interrupt.recv() => tracing::info!("SIGINT: stopping"),
            }
        })
        .await?;
    Ok(())
}

fn revoke_offline(state_dir: &Path, name: &str) -> anyhow::Result<()> {
    std::fs::create_dir_all(state_dir).with_context(|| {
        format!(
            "creating the key manager's state directory {}",
            state_dir.display()
        )
    })?;
    let mut store = RedbStore::open(&state_dir.join(STORE_FILE))?;
    let new = store.revoke(name)?;
    println!(
        "{} {name} in {}; no key manager is running, the revocation applies when it starts",
        if new { "revoked" } else { "already revoked:" },
        state_dir.display()
    );
    Ok(())
}

/// A replica not running here: the revocation goes straight into etcd,
/// where whichever replica leads applies it.
async fn revoke_in_etcd(e: &von_config::EtcdSettings, name: &str) -> anyhow::Result<()> {
    let endpoints: Vec<String> = e.endpoints.iter().map(|a| a.addr().to_string()).collect();
    let etcd = von_keymgr::replica::Etcd::connect(
        &endpoints,
        &e.prefix,
        e.timeout.duration(),
        e.lease.duration(),
    )?;
    let new = von_keymgr::replica::revoke(&etcd, name).await?;
    println!(
        "{} {name} in etcd ({}); the leading replica applies it",
        if new { "revoked" } else { "already revoked:" },
        e.prefix
    );
    Ok(())
}

fn not_running(e: &std::io::Error) -> bool {
    matches!(e.kind(), ErrorKind::NotFound | ErrorKind::ConnectionRefused)
}

/// A failed control request: "not running" only when nothing answers; a
/// key manager that answered with a refusal (a standby asked to rekey, no
/// etcd quorum) is quoted as such.
fn asking(socket: &Path, e: std::io::Error) -> anyhow::Error {
    if not_running(&e) {
        anyhow::Error::new(e).context(running_hint(socket))
    } else {
        anyhow::Error::new(e).context(format!(
            "the key manager on {} refused the request",
            socket.display()
        ))
    }
}

fn running_hint(socket: &Path) -> String {
    format!(
        "no key manager answers on {}; start it with `von keymgr --config FILE`",
        socket.display()
    )
}

fn describe(r: &ControlReply) -> String {
    let pending = r
        .pending
        .map(|p| format!(", preparing epoch {p}"))
        .unwrap_or_default();
    let mut view = format!(
        "epoch {}{pending}, members: {}",
        r.epoch,
        r.members.join(" ")
    );
    for f in &r.refused {
        view.push_str(&format!(
            "\nrefused {} ({} times): {}",
            f.name, f.count, f.reason
        ));
    }
    let Some(rep) = &r.replica else {
        return view;
    };
    let mut out = match rep.role.as_str() {
        "leader" => format!("replica {}: leader; {view}", rep.name),
        role => format!(
            "replica {}: {role}{}{}; {} member joins held",
            rep.name,
            rep.leader
                .as_ref()
                .map(|l| format!(" (leader: {l})"))
                .unwrap_or_default(),
            rep.detail
                .as_ref()
                .map(|d| format!(" ({d})"))
                .unwrap_or_default(),
            rep.held
        ),
    };
    if !rep.replicas.is_empty() {
        out.push_str(&format!("\nreplicas: {}", rep.replicas.join(", ")));
    }
    for e in &rep.etcd {
        out.push_str(&format!(
            "\netcd {}: {} ({})",
            e.endpoint,
            if e.healthy { "healthy" } else { "unhealthy" },
            e.detail
        ));
    }
    out
}
