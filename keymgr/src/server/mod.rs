//! The key manager's network face: a QUIC endpoint with mutual TLS, a local
//! control socket, and one task that owns the sans-IO [`KeyManager`].
//!
//! Flow:
//! 1. a member's QUIC handshake passes [`crate::tls::MemberVerifier`];
//! 2. its connection task reads `Join` on the first bidirectional stream and
//!    hands it, with the identity from its certificate, to the core task;
//! 3. the core task feeds every event to the [`KeyManager`], ticks it at
//!    [`KeyManager::poll_timeout`], and routes each [`Output`] to the
//!    member's connection task, which writes it or closes the connection.
//!
//! One task owns the state, so no lock is held across a network write and a
//! slow member never delays the others.
//!
//! The store is synchronous and fsyncs every epoch and membership change, so
//! the core task hands each step to the blocking pool ([`Server::step`]) and
//! awaits it: a slow or frozen disk delays joins and rekeys, while the
//! runtime's workers go on carrying every QUIC connection (and, in an
//! embedded key manager, the agent's other control tasks).

mod conn;
mod control;
mod encode;
mod params;
mod replica;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use von_config::UnderlayEndpoints;

use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};
use von_crypto::MemberId;
use von_crypto::wrap::Wrapper;

pub use control::{
    ControlReply, ControlRequest, RefusedMember, ReplicaStatus, control_socket_path, request,
};
pub use params::{Params, STORE_FILE};

use crate::manager::{Identity, JoinError, KeyManager, Output};
use crate::proto::{ClientMsg, ServerMsg};
use crate::repeats::{Repeats, Verdict};
use crate::replica::{Election, Etcd, ReplicaInfo, Role};
use crate::store::{RedbStore, Store, StoreError};
use crate::tls::{self, Revocations};
use crate::{Epoch, wire};

/// The key manager could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A file named in the configuration could not be used.
    #[error("{what} {path}: {detail}")]
    File {
        /// What the file is for.
        what: &'static str,
        /// Its path.
        path: String,
        /// What went wrong and how to fix it.
        detail: String,
    },
    /// TLS could not be set up.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// The store failed: the key manager stops rather than risk reusing an epoch.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The UDP socket or control socket could not be bound.
    #[error("cannot listen on {addr}: {source}; is another key manager running there?")]
    Bind {
        /// The address.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
}

/// What a connection task tells the core task.
#[derive(Debug)]
enum Event {
    Join {
        conn: u64,
        who: Identity,
        underlay: UnderlayEndpoints,
        have: Option<Epoch>,
        tx: mpsc::UnboundedSender<ConnCmd>,
    },
    Msg {
        conn: u64,
        member: MemberId,
        msg: ClientMsg,
    },
    Closed {
        conn: u64,
        member: MemberId,
    },
    Control {
        req: ControlRequest,
        reply: oneshot::Sender<Result<ControlReply, String>>,
    },
}

/// What the core task tells a connection task.
#[derive(Debug)]
enum ConnCmd {
    /// A message already encoded ([`encode`]): a rekey's frames share their view.
    Send(encode::Frame),
    /// Close, logging the reason.
    Close(String),
    /// Close; the core already logged why, rate-limited (a refused join, a
    /// connection replaced by a newer one), so the connection task does not.
    CloseQuiet(String),
}

/// The most events one step takes from the queue: bounds how long the
/// timer and the control socket wait behind a burst.
const MAX_BATCH: usize = 4096;

/// A bound key manager, ready to [`run`](Server::run).
#[derive(Debug)]
pub struct Server {
    endpoint: quinn::Endpoint,
    /// `None` only while a step runs on the blocking pool.
    core: Option<Core>,
    /// The configured QUIC address (what other replicas show).
    listen: SocketAddr,
    /// A replica's leadership lease.
    lease: Option<std::time::Duration>,
    control: tokio::net::UnixListener,
    control_path: std::path::PathBuf,
}

/// What the core task owns: the manager with its store, and where each
/// member's connection task listens. Moved to a blocking thread for every
/// step, so it must be `Send` and is never shared.
#[derive(Debug)]
struct Core {
    /// `None` while a replica stands by.
    km: Option<KeyManager<Box<dyn Store>, Wrapper>>,
    revoked: Revocations,
    routes: Routes,
    /// `Some` for one of a VON's replicas (state in etcd).
    replica: Option<replica::Replica>,
    /// "Replaced by a newer connection" logged, by member name: a duplicate
    /// member (two agents with one certificate) replaces the other's
    /// connection at every retry; logged once, then once a minute.
    replaced: Repeats<String>,
}

/// The connection task of each member: (connection number, its channel).
type Routes = HashMap<MemberId, (u64, mpsc::UnboundedSender<ConnCmd>)>;

/// One step of the core: an event from a connection, the timer, the
/// election's verdict, or revocations another replica stored.
#[derive(Debug)]
enum Step {
    /// Every event queued when the core got to them, in arrival order: one
    /// trip to the blocking pool for a rekey's n acks, not n trips (each a
    /// thread wake-up, milliseconds on a loaded machine).
    Events(Vec<Event>),
    Tick,
    Role(Role),
    Revoked(std::collections::BTreeSet<String>),
}

impl Server {
    /// Open the store, bind the QUIC endpoint and the control socket.
    pub fn bind(p: Params) -> Result<Self, ServerError> {
        std::fs::create_dir_all(&p.state_dir).map_err(|e| ServerError::File {
            what: "state directory",
            path: p.state_dir.display().to_string(),
            detail: format!("{e}; create it or point state_dir elsewhere"),
        })?;
        let now = tokio::time::Instant::now().into_std();
        let reset_key = stateless_reset_key(&p.noise);
        let (km, revoked, replica) = match &p.etcd {
            None => {
                let store = RedbStore::open(&p.state_dir.join(STORE_FILE))?;
                let revoked = Revocations::new(store.revoked()?);
                let wrapper = Wrapper::new(p.noise.clone(), p.tls.von.clone(), p.settings.on_id);
                let store: Box<dyn Store> = Box::new(store);
                let km = KeyManager::new(p.settings.clone(), store, wrapper, now)?;
                (Some(km), revoked, None)
            }
            Some(e) => {
                let endpoints: Vec<String> =
                    e.endpoints.iter().map(|a| a.addr().to_string()).collect();
                let etcd = Etcd::connect(
                    &endpoints,
                    &e.prefix,
                    e.timeout.duration(),
                    e.lease.duration(),
                )
                .map_err(StoreError::from)?;
                // Refuse revoked members' handshakes from the start when etcd
                // answers; a replica starting without etcd learns them at takeover.
                let known = {
                    let etcd2 = etcd.clone();
                    etcd.block(async move { crate::replica::revocations(&etcd2).await })
                        .unwrap_or_else(|err| {
                            warn!(error = %err, "revocations not loaded yet");
                            Default::default()
                        })
                };
                let replica = replica::Replica::new(
                    etcd,
                    e.replica.clone(),
                    p.settings.clone(),
                    p.noise.clone(),
                    p.tls.von.clone(),
                );
                (None, Revocations::new(known), Some(replica))
            }
        };
        let tls = tls::server_config(p.tls, revoked.clone())?;
        let quic = quinn::crypto::rustls::QuicServerConfig::try_from(tls)
            .map_err(|e| tls::TlsError::Verifier(e.to_string()))?;
        let mut server_config = quinn::ServerConfig::with_crypto(Arc::new(quic));
        server_config.transport_config(Arc::new(wire::transport()));
        let bind_err = |source| ServerError::Bind {
            addr: p.listen.to_string(),
            source,
        };
        let socket = std::net::UdpSocket::bind(p.listen).map_err(bind_err)?;
        let runtime = quinn::default_runtime().ok_or_else(|| {
            bind_err(std::io::Error::other(
                "no async runtime; call bind inside tokio",
            ))
        })?;
        let endpoint = quinn::Endpoint::new(
            quinn::EndpointConfig::new(Arc::new(reset_key)),
            Some(server_config),
            socket,
            runtime,
        )
        .map_err(bind_err)?;
        let control_path = control_socket_path(&p.state_dir);
        let control = control::bind(&control_path)?;
        Ok(Self {
            endpoint,
            core: Some(Core {
                km,
                revoked,
                routes: HashMap::new(),
                replaced: Repeats::default(),
                replica,
            }),
            listen: p.listen,
            lease: p.etcd.as_ref().map(|e| e.lease.duration()),
            control,
            control_path,
        })
    }

    /// The UDP address members connect to.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.endpoint.local_addr()
    }

    /// Serve until `shutdown` resolves or the store fails.
    pub async fn run(
        mut self,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<(), ServerError> {
        let (events_tx, mut events) = mpsc::unbounded_channel::<Event>();
        let mut next_conn = 0u64;
        let refusals = conn::Refusals::default();
        info!(addr = ?self.endpoint.local_addr().ok(), control = %self.control_path.display(), "key manager listening");
        let etcd = self.etcd();
        let election = match (&etcd, &self.core) {
            (Some(etcd), Some(core)) => {
                let name = core
                    .replica
                    .as_ref()
                    .map(|r| r.name.clone())
                    .unwrap_or_default();
                let me = ReplicaInfo {
                    name,
                    listen: self.listen,
                };
                Some(Election::start(
                    etcd.clone(),
                    me,
                    self.lease.unwrap_or(std::time::Duration::from_secs(2)),
                ))
            }
            _ => None,
        };
        let mut role = election.as_ref().map(Election::role);
        let (revoked_tx, mut revoked_rx) = mpsc::unbounded_channel();
        if let Some(etcd) = &etcd {
            etcd.handle()
                .spawn(poll_revocations(etcd.clone(), revoked_tx));
        }
        tokio::pin!(shutdown);
        let result = loop {
            let deadline = self
                .core
                .as_ref()
                .and_then(|c| c.km.as_ref())
                .and_then(|km| km.poll_timeout())
                .map(tokio::time::Instant::from_std);
            // Events before the timer: a renewal that queued while the disk
            // was slow is applied before the tick that would expire its lease.
            let step = tokio::select! {
                biased;
                () = &mut shutdown => break Ok(()),
                Some(r) = role_changed(&mut role) => Step::Role(r),
                Some(ev) = events.recv() => {
                    let mut batch = vec![ev];
                    while batch.len() < MAX_BATCH {
                        match events.try_recv() {
                            Ok(ev) => batch.push(ev),
                            Err(_) => break,
                        }
                    }
                    Step::Events(batch)
                }
                Some(incoming) = self.endpoint.accept() => {
                    next_conn += 1;
                    tokio::spawn(conn::serve(incoming, next_conn, events_tx.clone(), refusals.clone()));
                    continue;
                }
                Ok((stream, _)) = self.control.accept() => {
                    tokio::spawn(control::serve(stream, events_tx.clone(), etcd.clone()));
                    continue;
                }
                Some(names) = revoked_rx.recv() => Step::Revoked(names),
                () = sleep_until(deadline) => Step::Tick,
            };
            if let Err(e) = self.step(step).await {
                break Err(e);
            }
            let lost = self
                .core
                .as_mut()
                .and_then(|c| c.replica.as_mut())
                .is_some_and(|r| std::mem::take(&mut r.lost_term));
            if let (true, Some(e)) = (lost, &election) {
                e.step_down();
            }
        };
        if let Some(e) = election {
            // Hand over at once rather than after the lease.
            e.resign().await;
        }
        self.endpoint.close(0u32.into(), b"key manager stopping");
        let _ = std::fs::remove_file(&self.control_path);
        result
    }

    /// Runs one step of the core on the blocking pool and routes its output
    /// there too (routing only queues on unbounded channels).
    async fn step(&mut self, step: Step) -> Result<(), ServerError> {
        let mut core = self
            .core
            .take()
            .unwrap_or_else(|| unreachable!("every step puts the core back"));
        let (core, result) = tokio::task::spawn_blocking(move || {
            let mut encoder = encode::Encoder::default();
            let result = match step {
                Step::Events(events) => {
                    // Each event's outputs are routed before the next event
                    // runs, as if it had had a step of its own: a join
                    // after a disconnect must find its own new route.
                    let mut result = Ok(Vec::new());
                    for ev in events {
                        match core.handle(ev) {
                            Ok(out) => route(out, &mut core.routes, &mut encoder),
                            Err(e) => {
                                result = Err(e);
                                break;
                            }
                        }
                    }
                    result
                }
                Step::Tick => match core.km.as_mut() {
                    Some(km) => km.tick(now()).map_err(Into::into),
                    None => Ok(Vec::new()),
                },
                Step::Role(role) => core.set_role(role),
                Step::Revoked(names) => core.revoke_all(names),
            };
            let result = match result {
                Ok(out) => {
                    route(out, &mut core.routes, &mut encoder);
                    Ok(())
                }
                // A replica that cannot write under its term steps down and
                // lets the election pick again; the state is safe in etcd.
                Err(ServerError::Store(e)) if e.is_leadership() && core.replica.is_some() => {
                    core.step_down(&e.to_string());
                    if let Some(r) = core.replica.as_mut() {
                        r.lost_term = true;
                    }
                    Ok(())
                }
                Err(e) => Err(e),
            };
            if let Some(km) = core.km.as_mut() {
                km.handed_over(now());
            }
            (core, result)
        })
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
        self.core = Some(core);
        result
    }

    fn etcd(&self) -> Option<Etcd> {
        self.core
            .as_ref()
            .and_then(|c| c.replica.as_ref())
            .map(|r| r.etcd.clone())
    }
}

/// The next role the election announces (never, without an election).
async fn role_changed(role: &mut Option<tokio::sync::watch::Receiver<Role>>) -> Option<Role> {
    match role {
        Some(rx) => match rx.changed().await {
            Ok(()) => Some(rx.borrow_and_update().clone()),
            Err(_) => std::future::pending().await,
        },
        None => std::future::pending().await,
    }
}

/// Revocations any replica stored, every second, for the leader to apply.
async fn poll_revocations(
    etcd: Etcd,
    tx: mpsc::UnboundedSender<std::collections::BTreeSet<String>>,
) {
    let mut seen = std::collections::BTreeSet::new();
    loop {
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        if let Ok(names) = crate::replica::revocations(&etcd).await {
            if names != seen {
                seen = names.clone();
                if tx.send(names).is_err() {
                    return;
                }
            }
        }
    }
}

impl Core {
    /// Apply revocations stored by another replica (the leader only).
    fn revoke_all(
        &mut self,
        names: std::collections::BTreeSet<String>,
    ) -> Result<Vec<Output>, ServerError> {
        let mut out = Vec::new();
        for name in names {
            self.revoked.insert(&name);
            if let Some(km) = self.km.as_mut().filter(|km| !km.is_revoked(&name)) {
                info!(member = %name, "revocation stored by another replica; applying");
                out.extend(km.revoke(now(), &name)?);
            }
        }
        Ok(out)
    }

    fn handle(&mut self, ev: Event) -> Result<Vec<Output>, ServerError> {
        let Some(km) = self.km.as_mut() else {
            return self.standby(ev);
        };
        let routes = &mut self.routes;
        let now = now();
        Ok(match ev {
            Event::Join {
                conn,
                who,
                underlay,
                have,
                tx,
            } => {
                let id = who.id;
                let name = who.name.clone();
                match km.member_joined(now, who, underlay, have) {
                    Ok((_, out)) => {
                        if let Some((_, old)) = routes.insert(id, (conn, tx)) {
                            log_replaced(&mut self.replaced, &name, now);
                            let _ = old
                                .send(ConnCmd::CloseQuiet("replaced by a newer connection".into()));
                        }
                        out
                    }
                    Err(JoinError::Store(e)) => return Err(e.into()),
                    Err(e) => {
                        // The key manager logged it and counts it for status.
                        let _ = tx.send(ConnCmd::Send(encode::frame(ServerMsg::Refused {
                            code: e.refusal(),
                            reason: e.to_string(),
                        })));
                        let _ = tx.send(ConnCmd::CloseQuiet(e.to_string()));
                        Vec::new()
                    }
                }
            }
            Event::Msg { conn, member, msg } => {
                if routes.get(&member).is_none_or(|(c, _)| *c != conn) {
                    // A replaced connection still talking: ignore it.
                    return Ok(Vec::new());
                }
                match msg {
                    ClientMsg::Ack { epoch } => km.ack(now, member, Epoch(epoch))?,
                    ClientMsg::Refuse { epoch, reason } => {
                        km.refuse(now, member, Epoch(epoch), &reason)?
                    }
                    ClientMsg::Renew => km.renew(now, member)?,
                    ClientMsg::Leave => km.leave(now, member)?,
                    ClientMsg::SequenceNearLimit { epoch } => {
                        km.sequence_near_limit(now, member, Epoch(epoch))?
                    }
                    ClientMsg::NeedView { epoch } => km.need_view(now, member, Epoch(epoch))?,
                    ClientMsg::Join { .. } => {
                        warn!(member = member.0, "second Join on one connection ignored");
                        Vec::new()
                    }
                }
            }
            Event::Closed { conn, member } => {
                // The lease, not the connection, decides membership.
                if routes.get(&member).is_some_and(|(c, _)| *c == conn) {
                    routes.remove(&member);
                }
                Vec::new()
            }
            Event::Control { req, reply } => {
                let done = match req {
                    ControlRequest::Revoke { name } => km.revoke(now, &name).map(|out| {
                        self.revoked.insert(&name);
                        (out, "revoked")
                    }),
                    ControlRequest::Rekey => km.force_rekey(now).map(|out| (out, "rekey")),
                    ControlRequest::Status => Ok((Vec::new(), "status")),
                };
                let (out, what) = match done {
                    Ok(done) => done,
                    Err(e) => {
                        // Tell the operator why before stepping down or stopping.
                        let _ = reply.send(Err(e.to_string()));
                        return Err(e.into());
                    }
                };
                if what != "status" {
                    info!(request = what, "control request");
                }
                // Routes as they will be once `out` is routed.
                let gone: Vec<MemberId> = out
                    .iter()
                    .filter_map(|o| match o {
                        Output::Disconnect { member, .. } => Some(*member),
                        Output::Send { .. } => None,
                    })
                    .collect();
                let connected: Vec<MemberId> = routes
                    .keys()
                    .filter(|id| !gone.contains(id))
                    .copied()
                    .collect();
                let _ = reply.send(Ok(ControlReply::new(
                    km,
                    &connected,
                    &self.revoked,
                    self.replica.as_ref(),
                )));
                out
            }
        })
    }
}

fn route(out: Vec<Output>, routes: &mut Routes, encoder: &mut encode::Encoder) {
    for o in out {
        match o {
            Output::Send { to, msg } => {
                if let Some((_, tx)) = routes.get(&to) {
                    let _ = tx.send(ConnCmd::Send(encoder.frame(msg)));
                }
            }
            Output::Disconnect { member, reason } => {
                if let Some((_, tx)) = routes.remove(&member) {
                    // Say why before closing: a revoked member must learn it
                    // is revoked, not just see the connection end.
                    if let Some(code) = reason.refusal() {
                        let _ = tx.send(ConnCmd::Send(encode::frame(ServerMsg::Refused {
                            code,
                            reason: reason.to_string(),
                        })));
                    }
                    let _ = tx.send(ConnCmd::Close(reason.to_string()));
                }
            }
        }
    }
}

/// The key for QUIC stateless resets, derived from the key manager's
/// Noise secret so it survives a restart: a member still holding a
/// connection to the previous process can get a reset it recognises at its
/// next packet. (Measured: reconnects still came at the 6 s idle timeout;
/// see docs/keymgr.md. The restart grace covers that.)
fn stateless_reset_key(noise: &von_crypto::wrap::NoiseSecret) -> ring::hmac::Key {
    let mut material = b"von keymgr stateless reset v1".to_vec();
    material.extend_from_slice(noise.as_bytes());
    let digest = ring::digest::digest(&ring::digest::SHA256, &material);
    zeroize::Zeroize::zeroize(&mut material);
    ring::hmac::Key::new(ring::hmac::HMAC_SHA256, digest.as_ref())
}

/// Log that `name`'s connection was replaced by a newer one: the first time
/// in full, then at most once a minute with the count.
fn log_replaced(seen: &mut Repeats<String>, name: &str, now: std::time::Instant) {
    match seen.note(&name.to_owned(), now) {
        Verdict::First => info!(
            member = %name,
            "connection replaced by a newer connection of the same member \
             (two agents sharing one certificate retry against each other)"
        ),
        Verdict::Summary { count } => info!(
            member = %name,
            count,
            "connection replaced by a newer one {count} more times since the last line"
        ),
        Verdict::Quiet => {}
    }
}

fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
