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
mod params;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};
use von_crypto::MemberId;
use von_crypto::wrap::Wrapper;

pub use control::{ControlReply, ControlRequest, RefusedMember, control_socket_path, request};
pub use params::{Params, STORE_FILE};

use crate::manager::{Identity, JoinError, KeyManager, Output};
use crate::proto::{ClientMsg, ServerMsg};
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
        a: SocketAddr,
        b: SocketAddr,
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
        reply: oneshot::Sender<ControlReply>,
    },
}

/// What the core task tells a connection task.
#[derive(Debug)]
enum ConnCmd {
    Send(ServerMsg),
    Close(String),
}

/// A bound key manager, ready to [`run`](Server::run).
#[derive(Debug)]
pub struct Server {
    endpoint: quinn::Endpoint,
    /// `None` only while a step runs on the blocking pool.
    core: Option<Core>,
    control: tokio::net::UnixListener,
    control_path: std::path::PathBuf,
}

/// What the core task owns: the manager with its store, and where each
/// member's connection task listens. Moved to a blocking thread for every
/// step, so it must be `Send` and is never shared.
#[derive(Debug)]
struct Core {
    km: KeyManager<RedbStore, Wrapper>,
    revoked: Revocations,
    routes: Routes,
}

/// The connection task of each member: (connection number, its channel).
type Routes = HashMap<MemberId, (u64, mpsc::UnboundedSender<ConnCmd>)>;

/// One step of the core: an event from a connection, or the timer.
#[derive(Debug)]
enum Step {
    Event(Event),
    Tick,
}

impl Server {
    /// Open the store, bind the QUIC endpoint and the control socket.
    pub fn bind(p: Params) -> Result<Self, ServerError> {
        std::fs::create_dir_all(&p.state_dir).map_err(|e| ServerError::File {
            what: "state directory",
            path: p.state_dir.display().to_string(),
            detail: format!("{e}; create it or point state_dir elsewhere"),
        })?;
        let store = RedbStore::open(&p.state_dir.join(STORE_FILE))?;
        let revoked = Revocations::new(store.revoked()?);
        let now = tokio::time::Instant::now().into_std();
        let reset_key = stateless_reset_key(&p.noise);
        let wrapper = Wrapper::new(p.noise, p.tls.von.clone(), p.settings.on_id);
        let km = KeyManager::new(p.settings, store, wrapper, now)?;
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
            }),
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
        tokio::pin!(shutdown);
        let result = loop {
            let deadline = self
                .core
                .as_ref()
                .and_then(|c| c.km.poll_timeout())
                .map(tokio::time::Instant::from_std);
            // Events before the timer: a renewal that queued while the disk
            // was slow is applied before the tick that would expire its lease.
            let step = tokio::select! {
                biased;
                () = &mut shutdown => break Ok(()),
                Some(ev) = events.recv() => Step::Event(ev),
                Some(incoming) = self.endpoint.accept() => {
                    next_conn += 1;
                    tokio::spawn(conn::serve(incoming, next_conn, events_tx.clone(), refusals.clone()));
                    continue;
                }
                Ok((stream, _)) = self.control.accept() => {
                    tokio::spawn(control::serve(stream, events_tx.clone()));
                    continue;
                }
                () = sleep_until(deadline) => Step::Tick,
            };
            if let Err(e) = self.step(step).await {
                break Err(e);
            }
        };
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
            let result = match step {
                Step::Event(ev) => core.handle(ev),
                Step::Tick => core.km.tick(now()).map_err(Into::into),
            }
            .map(|out| route(out, &mut core.routes));
            core.km.handed_over(now());
            (core, result)
        })
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
        self.core = Some(core);
        result
    }
}

impl Core {
    fn handle(&mut self, ev: Event) -> Result<Vec<Output>, ServerError> {
        let routes = &mut self.routes;
        let now = now();
        Ok(match ev {
            Event::Join {
                conn,
                who,
                a,
                b,
                have,
                tx,
            } => {
                let id = who.id;
                match self.km.member_joined(now, who, a, b, have) {
                    Ok((_, out)) => {
                        if let Some((_, old)) = routes.insert(id, (conn, tx)) {
                            let _ =
                                old.send(ConnCmd::Close("replaced by a newer connection".into()));
                        }
                        out
                    }
                    Err(JoinError::Store(e)) => return Err(e.into()),
                    Err(e) => {
                        // The key manager logged it and counts it for status.
                        let _ = tx.send(ConnCmd::Send(ServerMsg::Refused {
                            code: e.refusal(),
                            reason: e.to_string(),
                        }));
                        let _ = tx.send(ConnCmd::Close(e.to_string()));
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
                    ClientMsg::Ack { epoch } => self.km.ack(now, member, Epoch(epoch))?,
                    ClientMsg::Refuse { epoch, reason } => {
                        self.km.refuse(now, member, Epoch(epoch), &reason)?
                    }
                    ClientMsg::Renew => self.km.renew(now, member)?,
                    ClientMsg::Leave => self.km.leave(now, member)?,
                    ClientMsg::SequenceNearLimit { epoch } => {
                        self.km.sequence_near_limit(now, member, Epoch(epoch))?
                    }
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
                let (out, what) = match req {
                    ControlRequest::Revoke { name } => {
                        let out = self.km.revoke(now, &name)?;
                        self.revoked.insert(&name);
                        (out, "revoked")
                    }
                    ControlRequest::Rekey => (self.km.force_rekey(now)?, "rekey"),
                    ControlRequest::Status => (Vec::new(), "status"),
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
                let _ = reply.send(ControlReply::new(&self.km, &connected, &self.revoked));
                out
            }
        })
    }
}

fn route(out: Vec<Output>, routes: &mut Routes) {
    for o in out {
        match o {
            Output::Send { to, msg } => {
                if let Some((_, tx)) = routes.get(&to) {
                    let _ = tx.send(ConnCmd::Send(msg));
                }
            }
            Output::Disconnect { member, reason } => {
                if let Some((_, tx)) = routes.remove(&member) {
                    // Say why before closing: a revoked member must learn it
                    // is revoked, not just see the connection end.
                    if let Some(code) = reason.refusal() {
                        let _ = tx.send(ConnCmd::Send(ServerMsg::Refused {
                            code,
                            reason: reason.to_string(),
                        }));
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

fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
