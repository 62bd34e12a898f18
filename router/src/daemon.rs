//! The two long-running drivers: `von router` (serves the reservation
//! protocol and keeps each link's tc state equal to its reservations) and
//! `von reserve serve` (the service: registry, 2PC, lease renewal; alone on
//! redb, or one of its replicas on etcd, see [`crate::replica`]).
//!
//! Router loop, every [`RECONCILE`]:
//! 1. lapse leases and stale holds (`RouterCore::expire`);
//! 2. per link: read `tc` (qdisc, classes with counters, filters);
//! 3. diff against the desired plan; run only the missing commands.
//!
//! On stop, every root qdisc it installed is deleted.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::config::{RouterConfig, ServiceConfig, ServiceEtcd};
use crate::error::{Error, Result};
use crate::metrics;
use crate::net::{self, TcpTransport};
use crate::participant::RouterCore;
use crate::proto::{Request, Response};
use crate::replica::{Election, Etcd, EtcdRegistry, ReplicaInfo, Role, Term};
use crate::service::{Service, ServiceRequest, ServiceResponse};
use crate::store::RegistryStore;
use crate::tc::{self, ClassCounters, Installed, TcCommand};

/// How often a router re-reads and repairs its tc state.
pub const RECONCILE: Duration = Duration::from_millis(200);

type Counters = BTreeMap<String, BTreeMap<u16, ClassCounters>>;

/// Runs a router until `stop` is set; removes its qdiscs before returning.
pub fn run_router(cfg: &RouterConfig, stop: Arc<AtomicBool>) -> Result<()> {
    let tls = crate::auth::router_server(&cfg.tls()?)?;
    let listener = TcpListener::bind(cfg.listen)
        .map_err(|e| Error::io("listen on", cfg.listen.to_string(), e))?;
    // Bound before anything is installed, so a taken port changes nothing.
    let scrape_listener = cfg.metrics.map(metrics::bind).transpose()?;
    let core = Arc::new(Mutex::new(RouterCore::new(&cfg.name, cfg.budgets())));
    let counters: Arc<Mutex<Counters>> = Arc::default();
    reconcile(&core, &counters)?;
    tracing::info!(router = %cfg.name, listen = %cfg.listen, links = cfg.links.len(), "router up");

    let handler = {
        let (core, counters) = (Arc::clone(&core), Arc::clone(&counters));
        Arc::new(move |req: Request| {
            let mut core = core.lock().unwrap_or_else(PoisonError::into_inner);
            let now = Instant::now();
            if req == Request::Status {
                let counters = counters.lock().unwrap_or_else(PoisonError::into_inner);
                return Response::Status(core.status(now, &counters));
            }
            tracing::info!(?req, "request");
            let resp = core.handle(now, req);
            if let Response::Refused { reason } = &resp {
                tracing::info!(%reason, "refused");
            }
            resp
        })
    };
    let server = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || net::serve_router(listener, tls, stop, handler))
    };
    let scraper = match scrape_listener {
        Some(listener) => {
            let (core, counters, stop) =
                (Arc::clone(&core), Arc::clone(&counters), Arc::clone(&stop));
            tracing::info!(addr = ?listener.local_addr().ok(), "metrics endpoint up");
            Some(std::thread::spawn(move || {
                metrics::serve(listener, stop, move || {
                    let core = core.lock().unwrap_or_else(PoisonError::into_inner);
                    let counters = counters.lock().unwrap_or_else(PoisonError::into_inner);
                    core.status(Instant::now(), &counters)
                });
            }))
        }
        None => None,
    };
    let mut result = Ok(());
    while !stop.load(Ordering::Relaxed) {
        if let Err(e) = reconcile(&core, &counters) {
            // Keep serving: the next round retries (e.g. an interface that
            // was briefly down).
            tracing::warn!(error = %e, "reconcile");
        }
        if server.is_finished() {
            result = Err(Error::Protocol("the control listener stopped".into()));
            break;
        }
        std::thread::sleep(RECONCILE);
    }
    stop.store(true, Ordering::Relaxed);
    let core = core.lock().unwrap_or_else(PoisonError::into_inner);
    for link in core.links() {
        let cmd = tc::teardown(&link.dev);
        match run_tc(&cmd) {
            Ok(_) => tracing::info!(dev = %link.dev, "removed the router's qdisc"),
            Err(e) => tracing::warn!(dev = %link.dev, error = %e, "teardown"),
        }
    }
    if let Some(scraper) = scraper {
        let _ = scraper.join();
    }
    if let Ok(Err(e)) = server.join() {
        return Err(e);
    }
    result
}

fn reconcile(core: &Mutex<RouterCore>, counters: &Mutex<Counters>) -> Result<()> {
    let plans = {
        let mut core = core.lock().unwrap_or_else(PoisonError::into_inner);
        for on_id in core.expire(Instant::now()) {
            tracing::info!(on_id, "lease lapsed; removing the ON's classes");
        }
        core.plans()
    };
    let mut seen = Counters::new();
    for plan in &plans {
        let installed = read_installed(&plan.dev)?;
        for cmd in tc::diff(plan, &installed) {
            tracing::info!(%cmd, "apply");
            run_tc(&cmd)?;
        }
        seen.insert(
            plan.dev.clone(),
            installed
                .classes
                .iter()
                .map(|(m, c)| (*m, c.counters))
                .collect(),
        );
    }
    *counters.lock().unwrap_or_else(PoisonError::into_inner) = seen;
    Ok(())
}

/// What `tc` shows on `dev`.
pub fn read_installed(dev: &str) -> Result<Installed> {
    let args = |a: &[&str]| TcCommand(a.iter().map(|s| (*s).to_owned()).collect());
    let qdisc = run_tc(&args(&["-j", "qdisc", "show", "dev", dev]))?;
    let classes = run_tc(&args(&["-s", "class", "show", "dev", dev]))?;
    let filters = run_tc(&args(&["filter", "show", "dev", dev]))?;
    Installed::parse(&qdisc, &classes, &filters)
}

fn run_tc(cmd: &TcCommand) -> Result<String> {
    let out = Command::new("tc")
        .args(&cmd.0)
        .output()
        .map_err(|e| Error::Tc {
            cmd: cmd.to_string(),
            stderr: format!("could not run tc: {e} (install iproute2)"),
        })?;
    if !out.status.success() {
        return Err(Error::Tc {
            cmd: cmd.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs the reservation service until `stop`. Alone (no `[etcd]`), its
/// registry is the redb file and a clean stop releases every reservation (a
/// killed service leaves them to lapse). As a replica (`[etcd]`), it serves
/// and renews only while it leads; a clean stop hands the seat over and
/// releases nothing, since the next leader renews them.
pub fn run_service(cfg: &ServiceConfig, stop: Arc<AtomicBool>) -> Result<()> {
    let mut routers = BTreeMap::new();
    let files = cfg.tls()?;
    for r in &cfg.routers {
        // Each router's config accepts only the certificate of that name.
        let tls = crate::auth::service_client(&files, Some(&r.name))?;
        routers.insert(r.name.clone(), (r.addr, tls));
    }
    let transport = Arc::new(Mutex::new(TcpTransport::new(routers)));
    let mut replica = match &cfg.etcd {
        Some(e) => Some(Replica::start(e)?),
        None => None,
    };
    let slot = match &replica {
        Some(r) => Slot::Standby {
            replica: r.name.clone(),
            leader: None,
        },
        None => {
            let store = RegistryStore::open(&cfg.state)?;
            let mut service = Service::with_store(cfg.lease.duration(), first_tx(), store)?;
            let reloaded = service.reservations().count();
            if reloaded > 0 {
                // Resume the leases before the routers let them lapse.
                let mut t = transport.lock().unwrap_or_else(PoisonError::into_inner);
                for e in service.renew_all(&mut *t) {
                    tracing::warn!(error = %e, "renewal of a reloaded reservation");
                }
            }
            tracing::info!(state = %cfg.state.display(), reloaded, "registry loaded");
            Slot::Serving(service)
        }
    };
    let slot = Arc::new(Mutex::new(slot));
    let _ = std::fs::remove_file(&cfg.socket);
    let shown = cfg.socket.display().to_string();
    let listener =
        UnixListener::bind(&cfg.socket).map_err(|e| Error::io("bind", shown.clone(), e))?;
    std::fs::set_permissions(&cfg.socket, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| Error::io("chmod 600", shown.clone(), e))?;
    let handler = {
        let (slot, transport) = (Arc::clone(&slot), Arc::clone(&transport));
        Arc::new(move |req: ServiceRequest| {
            let mut slot = slot.lock().unwrap_or_else(PoisonError::into_inner);
            tracing::info!(?req, "request");
            let resp = match &mut *slot {
                Slot::Serving(s) => {
                    let mut t = transport.lock().unwrap_or_else(PoisonError::into_inner);
                    s.handle(&mut *t, req)
                }
                Slot::Standby { replica, leader } => ServiceResponse::Standby {
                    replica: replica.clone(),
                    leader: leader.clone(),
                },
            };
            if let ServiceResponse::Error { message } = &resp {
                tracing::info!(%message, "refused");
            }
            resp
        })
    };
    let server = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || net::serve_service(listener, stop, handler))
    };
    tracing::info!(socket = %shown, lease = %cfg.lease, "reservation service up");
    let renew_every = cfg.lease.duration() / 3;
    let mut next = Instant::now() + renew_every;
    while !stop.load(Ordering::Relaxed) && !server.is_finished() {
        if let Some(r) = &mut replica {
            if r.follow(&slot, &transport, cfg.lease.duration()) {
                next = Instant::now() + renew_every;
            }
        }
        if Instant::now() >= next {
            let mut slot = slot.lock().unwrap_or_else(PoisonError::into_inner);
            if let Slot::Serving(s) = &mut *slot {
                let mut t = transport.lock().unwrap_or_else(PoisonError::into_inner);
                for e in s.renew_all(&mut *t) {
                    tracing::warn!(error = %e, "renewal");
                }
            }
            next = Instant::now() + renew_every;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::Relaxed);
    match replica {
        Some(r) => r.resign(),
        None => {
            let mut slot = slot.lock().unwrap_or_else(PoisonError::into_inner);
            if let Slot::Serving(s) = &mut *slot {
                let mut t = transport.lock().unwrap_or_else(PoisonError::into_inner);
                for e in s.release_all(&mut *t) {
                    tracing::warn!(error = %e, "release at shutdown");
                }
            }
        }
    }
    let _ = std::fs::remove_file(&cfg.socket);
    match server.join() {
        Ok(r) => r,
        Err(_) => Err(Error::Protocol("the service listener panicked".into())),
    }
}

/// A transaction id that differs between runs and between terms: the time
/// in microseconds, so a router never confuses two services' transactions.
fn first_tx() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| u64::try_from(d.as_micros()).unwrap_or(1))
}

/// What answers `von reserve`: the service, or (a replica that does not
/// lead) a pointer to the one that does.
enum Slot {
    Serving(Service),
    Standby {
        replica: String,
        leader: Option<String>,
    },
}

/// This process as one of the service's replicas.
struct Replica {
    name: String,
    etcd: Etcd,
    election: Election,
    /// The term the slot serves under, if it serves.
    serving: Option<Term>,
    /// When a failed takeover may be tried again.
    retry_at: Instant,
}

impl Replica {
    fn start(e: &ServiceEtcd) -> Result<Self> {
        let etcd = Etcd::connect(
            &e.endpoints,
            &e.prefix,
            e.timeout.duration(),
            e.lease.duration(),
        )
        .map_err(|err| Error::invalid("reserve.toml [etcd]", err.to_string()))?;
        // The election publishes a QUIC address for the key manager's
        // members; the service's clients use its local socket, so it has none.
        let me = ReplicaInfo {
            name: e.replica.clone(),
            listen: std::net::SocketAddr::from(([0, 0, 0, 0], 0)),
        };
        let election = Election::start(etcd.clone(), me, e.lease.duration());
        tracing::info!(replica = %e.replica, endpoints = ?e.endpoints, prefix = %e.prefix, "campaigning on etcd");
        Ok(Self {
            name: e.replica.clone(),
            etcd,
            election,
            serving: None,
            retry_at: Instant::now(),
        })
    }

    /// Follows the election's role: takes over (reload from etcd, renew
    /// every lease at once) when this replica starts to lead, stands by when
    /// it stops. True when it just took over (the leases were renewed).
    fn follow(
        &mut self,
        slot: &Mutex<Slot>,
        transport: &Mutex<TcpTransport>,
        lease: Duration,
    ) -> bool {
        let role = self.election.role().borrow().clone();
        match role {
            Role::Leader(term) if self.serving == Some(term) => false,
            Role::Leader(term) => {
                if Instant::now() < self.retry_at {
                    return false;
                }
                let registry = EtcdRegistry::new(self.etcd.clone(), term);
                let mut service = match Service::with_store(lease, first_tx(), registry) {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot load the registry to take over; retrying");
                        self.retry_at = Instant::now() + Duration::from_millis(500);
                        return false;
                    }
                };
                let mut slot = slot.lock().unwrap_or_else(PoisonError::into_inner);
                let mut t = transport.lock().unwrap_or_else(PoisonError::into_inner);
                let failures = service.renew_all(&mut *t);
                for e in &failures {
                    tracing::warn!(error = %e, "renewal at takeover");
                }
                tracing::info!(
                    replica = %self.name,
                    term = term.revision,
                    reservations = service.reservations().count(),
                    renewal_failures = failures.len(),
                    "leading: registry loaded from etcd, leases renewed"
                );
                *slot = Slot::Serving(service);
                self.serving = Some(term);
                true
            }
            other => {
                let leader = match &other {
                    Role::Standby { leader } => leader.clone(),
                    _ => None,
                };
                let mut slot = slot.lock().unwrap_or_else(PoisonError::into_inner);
                if self.serving.take().is_some() {
                    tracing::warn!(replica = %self.name, role = other.as_str(), "no longer leading; standing by");
                }
                let standby = Slot::Standby {
                    replica: self.name.clone(),
                    leader,
                };
                if !matches!((&*slot, &standby), (Slot::Standby { leader: a, .. }, Slot::Standby { leader: b, .. }) if a == b)
                {
                    *slot = standby;
                }
                false
            }
        }
    }

    /// Hands the seat over at once (a clean stop).
    fn resign(self) {
        let election = self.election;
        let _ = self.etcd.block(async move {
            election.resign().await;
            Ok(())
        });
        tracing::info!(replica = %self.name, "resigned");
    }
}
