//! `von reserve`: the reservation service (`serve`) and its client
//! (`add`, `list`, `release`). See docs/isolation.md.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use clap::{Args, Subcommand};
use von_config::Rate;
use von_router::config::ServiceConfig;
use von_router::model::{Family, LinkId, ReservationSpec};
use von_router::net::service_call;
use von_router::service::{ServiceRequest, ServiceResponse};

use super::router::{init_logging, stop_on_signal};

/// Reserve a share of every router on a VON's paths.
#[derive(Debug, Args)]
pub struct ReserveArgs {
    #[command(subcommand)]
    command: ReserveCommand,
}

#[derive(Debug, Subcommand)]
enum ReserveCommand {
    /// Run the reservation service in the foreground (renews leases).
    Serve {
        /// The service's configuration (reserve.toml).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Reserve a VON's rate on every link of its path (all or nothing).
    Add(AddArgs),
    /// The reservations the service holds.
    List {
        /// A service replica's socket; repeat for each replica (the one
        /// that leads answers).
        #[arg(long, value_name = "PATH", required = true)]
        socket: Vec<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Release a VON's reservation on every router.
    Release {
        /// A service replica's socket; repeat for each replica.
        #[arg(long, value_name = "PATH", required = true)]
        socket: Vec<PathBuf>,
        #[arg(long, value_name = "ID")]
        on_id: u32,
    },
}

#[derive(Debug, Args)]
struct AddArgs {
    /// The service's socket (reserve.toml `socket`); repeat for each
    /// replica of a service on etcd: the one that leads answers.
    #[arg(long, value_name = "PATH", required = true)]
    socket: Vec<PathBuf>,
    /// The VON's name.
    #[arg(long)]
    name: String,
    /// The VON's ON id.
    #[arg(long, value_name = "ID")]
    on_id: u32,
    /// The contracted rate of inner packets, as in von.toml (e.g. 20mbit).
    #[arg(long)]
    rate: Rate,
    /// Inner packet size the wire rate is computed for [default: the
    /// agent's default MTU over the path's families: 1432 over IPv4 only,
    /// 1412 once a path entry is IPv6].
    #[arg(long)]
    packet: Option<u16>,
    /// The VON's DSCP.
    #[arg(long, default_value_t = 46, value_parser = clap::value_parser!(u8).range(0..=63))]
    dscp: u8,
    /// The VON's underlay UDP port.
    #[arg(long, default_value_t = 4789)]
    port: u16,
    /// A link a copy of the frames leaves by, ROUTER:DEV for a copy over
    /// IPv4, ROUTER:DEV:ipv6 for one over IPv6 (40-byte outer header: 20
    /// bytes more per packet on the wire); repeat per link, and twice for a
    /// link carrying both underlays.
    #[arg(long = "path", value_name = "ROUTER:DEV[:ipv6]", required = true)]
    path: Vec<LinkId>,
}

/// Runs `von reserve`.
pub fn run(args: ReserveArgs) -> anyhow::Result<()> {
    match args.command {
        ReserveCommand::Serve { config } => {
            let cfg = ServiceConfig::load(&config)?;
            init_logging()?;
            let stop = Arc::new(AtomicBool::new(false));
            stop_on_signal(Arc::clone(&stop))?;
            von_router::daemon::run_service(&cfg, stop)?;
            Ok(())
        }
        ReserveCommand::Add(a) => {
            let packet = a
                .packet
                .unwrap_or_else(|| Family::default_packet(a.path.iter().map(|l| l.family)));
            let spec = ReservationSpec {
                name: a.name,
                on_id: a.on_id,
                rate_bps: a.rate.bits_per_second(),
                packet,
                dscp: a.dscp,
                port: a.port,
                path: a.path,
            };
            let wire = wire_rates(&spec);
            expect_ok(ask(&a.socket, &ServiceRequest::Add { spec })?)?;
            println!(
                "reserved: {wire} on the wire per copy on every link of the path ({packet}-byte packets)"
            );
            Ok(())
        }
        ReserveCommand::List { socket, json } => match ask(&socket, &ServiceRequest::List)? {
            ServiceResponse::List { reservations } if json => {
                println!("{}", serde_json::to_string_pretty(&reservations)?);
                Ok(())
            }
            ServiceResponse::List { reservations } => {
                for r in reservations {
                    let path: Vec<String> = r.path.iter().map(ToString::to_string).collect();
                    println!(
                        "ON {} ({}): {} bit/s contracted, {} per copy on the wire, dscp {}, port {}, path {}",
                        r.on_id,
                        r.name,
                        r.rate_bps,
                        wire_rates(&r),
                        r.dscp,
                        r.port,
                        path.join(" ")
                    );
                }
                Ok(())
            }
            other => expect_ok(other),
        },
        ReserveCommand::Release { socket, on_id } => {
            expect_ok(ask(&socket, &ServiceRequest::Release { on_id })?)
        }
    }
}

/// The wire rate of one copy, per family the path uses: `21152000 bit/s`,
/// or `21168000 bit/s over IPv4, 21448000 bit/s over IPv6`.
fn wire_rates(spec: &ReservationSpec) -> String {
    let families: std::collections::BTreeSet<Family> = spec.path.iter().map(|l| l.family).collect();
    if families.len() <= 1 && !families.contains(&Family::Ipv6) {
        return format!("{} bit/s", spec.wire_rate());
    }
    families
        .iter()
        .map(|&f| {
            let name = match f {
                Family::Ipv4 => "IPv4",
                Family::Ipv6 => "IPv6",
            };
            format!("{} bit/s over {name}", spec.wire_rate_over(f))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Sends `req` to each socket in turn until a replica that serves answers:
/// an unreachable socket or a standby replica passes it to the next.
fn ask(sockets: &[PathBuf], req: &ServiceRequest) -> anyhow::Result<ServiceResponse> {
    let mut tried = Vec::new();
    for socket in sockets {
        match service_call(socket, req) {
            Ok(ServiceResponse::Standby { replica, leader }) => tried.push(format!(
                "{}: replica {replica} stands by (leader: {})",
                socket.display(),
                leader.as_deref().unwrap_or("none yet")
            )),
            Ok(resp) => return Ok(resp),
            Err(e) => tried.push(e.to_string()),
        }
    }
    anyhow::bail!(
        "no reservation service replica serves: {}; give every replica's socket with --socket, \
         and check that etcd has a quorum",
        tried.join("; ")
    )
}

fn expect_ok(resp: ServiceResponse) -> anyhow::Result<()> {
    match resp {
        ServiceResponse::Ok => Ok(()),
        ServiceResponse::Error { message } => anyhow::bail!("{message}"),
        ServiceResponse::List { .. } => anyhow::bail!("the service answered a list"),
        ServiceResponse::Standby { replica, .. } => {
            anyhow::bail!("replica {replica} stands by")
        }
    }
}
