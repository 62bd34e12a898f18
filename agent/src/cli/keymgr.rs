//! `von keymgr --config FILE`: the standalone key manager, in the foreground;
//! `von keymgr revoke|rekey|status --config FILE`: operations on it.
//!
//! The operations talk to the running key manager over its control socket
//! (`<state_dir>/control.sock`): the redb store is locked by the process
//! that has it open. With no key manager running, `revoke` writes the
//! revocation straight into the store, where the next start finds it.
//!
//! One way to administer either kind: `--config` takes a standalone key
//! manager's keymgr.toml or the agent's von.toml, whose `[[von]]` with
//! `keymgr = "embedded"` (chosen with `--von NAME` when there are several)
//! names the embedded key manager. Its settings come from that table, so
//! no second file repeats them.

use std::io::{ErrorKind, IsTerminal};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use tokio::signal::unix::{SignalKind, signal};
use tracing_subscriber::EnvFilter;
use von_config::{KeymgrConfig, VonMode};
use von_keymgr::server::{
    ControlReply, ControlRequest, Params, STORE_FILE, Server, control_socket_path, request,
};
use von_keymgr::{RedbStore, Store};

/// The key manager of one VON.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = false)]
pub struct KeymgrArgs {
    /// The key manager's configuration (keymgr.toml).
    /// Or the agent's von.toml, for a key manager it embeds.
    #[arg(long, value_name = "FILE", global = true)]
    config: Option<PathBuf>,
    /// With a von.toml: the VON whose embedded key manager to address
    /// (needed only when the agent embeds more than one).
    #[arg(long, value_name = "NAME", global = true)]
    von: Option<String>,
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
        bail!(
            "--config FILE is required: the key manager's keymgr.toml, or the agent's von.toml for a key manager it embeds"
        );
    };
    let target = Target::load(&path, args.von.as_deref())?;
    if let (None, Target::Embedded { von, .. }) = (&args.op, &target) {
        bail!(
            "the key manager of VON {von} is embedded in the agent ({}: keymgr = \"embedded\"): it runs with the agent (`von up --config {}`, or `systemctl start von`), not with `von keymgr`",
            path.display(),
            path.display()
        );
    }
    let config = target.config().clone();
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
                    println!("{}", describe_revoked(&name, &reply));
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
                .map_err(|e| asking(&socket, &target, e))?;
            println!("rekeying; {}", describe(&reply));
            Ok(())
        }
        Some(Op::Status { json }) => {
            let reply = runtime
                .block_on(request(&socket, &ControlRequest::Status))
                .map_err(|e| asking(&socket, &target, e))?;
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
fn asking(socket: &Path, target: &Target, e: std::io::Error) -> anyhow::Error {
    if not_running(&e) {
        anyhow::Error::new(e).context(target.running_hint(socket))
    } else {
        anyhow::Error::new(e).context(format!(
            "the key manager on {} refused the request",
            socket.display()
        ))
    }
}

/// Which key manager `--config` names.
enum Target {
    /// A standalone key manager's keymgr.toml.
    Standalone { file: PathBuf, config: KeymgrConfig },
    /// A `[[von]]` with `keymgr = "embedded"` in the agent's von.toml.
    Embedded {
        file: PathBuf,
        von: String,
        config: KeymgrConfig,
    },
}

impl Target {
    /// Reads `path` as a von.toml when it has `[[von]]` tables, else as a
    /// keymgr.toml (whose `von` is the VON's name), so each file gets its
    /// own schema's errors.
    fn load(path: &Path, von: Option<&str>) -> anyhow::Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        if !von_config::AgentConfig::is_agent_file(&text) {
            if let Some(v) = von {
                bail!(
                    "--von {v} applies to an agent's von.toml; {} is a key manager's keymgr.toml (its VON is set by its `von` field): drop --von",
                    path.display()
                );
            }
            return Ok(Self::Standalone {
                file: path.to_owned(),
                config: KeymgrConfig::load(path)?,
            });
        }
        let agent = von_config::AgentConfig::load(path)?;
        let embedded: Vec<(&str, &KeymgrConfig)> = agent
            .vons
            .iter()
            .filter_map(|v| match &v.mode {
                VonMode::Keymgr(k) => k.embedded.as_ref().map(|c| (v.name.as_str(), c)),
                VonMode::Static(_) => None,
            })
            .collect();
        let names = || {
            embedded
                .iter()
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
                .join(", ")
        };
        let (name, config) = match von {
            Some(want) => match embedded.iter().find(|(n, _)| *n == want) {
                Some(found) => *found,
                None => {
                    let elsewhere = agent.vons.iter().find(|v| v.name.as_str() == want);
                    bail!(
                        "{}: {}",
                        path.display(),
                        match elsewhere.map(|v| &v.mode) {
                            Some(VonMode::Keymgr(k)) => format!(
                                "VON {want} does not embed its key manager (keymgr = {}): administer it on its own host with `von keymgr … --config keymgr.toml`",
                                k.endpoint
                            ),
                            Some(VonMode::Static(_)) => format!(
                                "VON {want} is in static mode: it has no key manager (its members come from its view file)"
                            ),
                            None if embedded.is_empty() => format!(
                                "no [[von]] is named {want}, and none has keymgr = \"embedded\""
                            ),
                            None => format!(
                                "no [[von]] is named {want}; VONs with an embedded key manager: {}",
                                names()
                            ),
                        }
                    );
                }
            },
            None => match embedded.as_slice() {
                [one] => *one,
                [] => bail!(
                    "{}: no [[von]] has keymgr = \"embedded\", so this agent runs no key manager: give a standalone key manager's keymgr.toml instead",
                    path.display()
                ),
                _ => bail!(
                    "{}: the agent embeds the key managers of several VONs ({}): choose one with --von NAME",
                    path.display(),
                    names()
                ),
            },
        };
        Ok(Self::Embedded {
            file: path.to_owned(),
            von: name.to_owned(),
            config: config.clone(),
        })
    }

    fn config(&self) -> &KeymgrConfig {
        match self {
            Self::Standalone { config, .. } | Self::Embedded { config, .. } => config,
        }
    }

    /// What to do when nothing answers: an embedded key manager lives and
    /// dies with its agent, so the advice is to start the agent.
    fn running_hint(&self, socket: &Path) -> String {
        match self {
            Self::Standalone { file, .. } => format!(
                "no key manager answers on {}; start it with `von keymgr --config {}` (or `systemctl start von-keymgr`)",
                socket.display(),
                file.display()
            ),
            Self::Embedded { file, von, .. } => format!(
                "no key manager answers on {}; VON {von}'s key manager is embedded in the agent, which is not running: start it with `von up --config {}` (or `systemctl start von`)",
                socket.display(),
                file.display()
            ),
        }
    }
}

/// The reply to a revocation comes before the rekey commits, so its
/// committed view still lists the member: say what the view becomes.
fn describe_revoked(name: &str, r: &ControlReply) -> String {
    match r.pending {
        Some(next) if r.replica.is_none() && r.members.iter().any(|m| m == name) => {
            let after: Vec<&str> = r
                .members
                .iter()
                .map(String::as_str)
                .filter(|m| *m != name)
                .collect();
            format!(
                "revoked {name}; rekeying from epoch {} to {next} without it, members then: {}",
                r.epoch,
                after.join(" ")
            )
        }
        _ => format!("revoked {name}; {}", describe(r)),
    }
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
