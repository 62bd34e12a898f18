//! A member's control-plane session: connect to the key manager over QUIC
//! with mutual TLS, join, renew, apply prepares and commits, reconnect with
//! backoff — and keep forwarding on the last keys while it cannot.
//!
//! With replicas (`keymgr = ["a:4433", "b:4433"]`) the member holds one
//! connection to each, every one sending `Join`. Only the leading replica
//! answers; standbys hold the join unanswered until they lead. So a
//! failover needs no reconnect: the new leader answers the join it already
//! holds, and the member follows whichever link last sent `Joined` (renewals
//! and sequence-limit reports go there; acks go back where the prepare came
//! from).
//!
//! Flow per link (one per configured address):
//! 1. handshake; the key manager's certificate (role `keymgr`, this VON's CA)
//!    gives the Noise key that authenticates wrapped group keys from it;
//! 2. `Join { a, b, have_epoch }` on one bidirectional stream;
//! 3. `Joined` makes the link active and sets the renew interval;
//!    `Prepare`/`Commit` go through [`MemberKeys`]; every change calls the
//!    `install` callback, which puts the new keys into the data plane (and
//!    on disk);
//! 4. on shutdown, `Leave` on the active link; on any failure, back off
//!    (0.2 s doubling to the cap, back to 0.2 s after a `Joined`) and start
//!    again at 1. A refusal retrying cannot cure (revoked, outside the VON
//!    prefix) backs off from 5 s to 5 min instead. Grace windows keep
//!    expiring meanwhile.
//!
//! The member's [`Standing`] follows the link it follows: `Joined` makes it
//! a member; a refusal counts when it comes from the active link or while
//! no link is active (a standby never answers, so it never refuses a join,
//! though it refuses a revoked member's handshake); unreachable when the
//! active link is lost or every link is down.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use von_config::UnderlayEndpoints;

use rustls::pki_types::CertificateDer;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{Instant, sleep_until};
use tracing::{debug, info, warn};
use von_crypto::cert::Holder;
use von_crypto::wrap::{NoisePublic, NoiseSecret, Recipient};

use crate::ids::{Epoch, OnId};
use crate::member::MemberKeys;
use crate::proto::{ClientMsg, Refusal, ServerMsg};
use crate::repeats::{Repeats, Verdict};
use crate::tls::{self, TlsMaterial};
use crate::wire::{self, read_msg, write_msg};

/// First reconnect delay; doubles up to [`Params::backoff_max`].
const BACKOFF_MIN: Duration = Duration::from_millis(200);
/// After a refusal retrying cannot cure (revoked, address outside the VON
/// prefix) the delay starts here and doubles up to [`PERMANENT_BACKOFF_MAX`]:
/// the member keeps asking, rarely, in case the operator fixes the key
/// manager's side.
const PERMANENT_BACKOFF_MIN: Duration = Duration::from_secs(5);
/// The longest wait after a permanent refusal.
const PERMANENT_BACKOFF_MAX: Duration = Duration::from_secs(300);
/// The TLS alert a key manager sends to a revoked member's handshake.
const TLS_CERTIFICATE_REVOKED: u8 = 44;

/// What [`Session::on_standing`] calls.
pub type OnStanding = Box<dyn FnMut(&Standing) + Send>;

/// Where this member stands with its key manager, for `von status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
    /// Connecting; no answer yet.
    Connecting,
    /// Admitted and renewing.
    Member,
    /// Refused or dropped by the key manager, with its code and reason.
    Refused {
        /// What kind of refusal.
        code: Refusal,
        /// The key manager's words.
        reason: String,
    },
    /// This member refused the view of `epoch` (it breaks the view rules).
    ViewRefused {
        /// The refused epoch.
        epoch: u32,
        /// Why.
        reason: String,
    },
    /// The key manager could not be reached.
    Unreachable {
        /// The transport's words.
        reason: String,
    },
}

impl Standing {
    /// One word for status: `connecting`, `member`, `revoked`, `refused`,
    /// `view_refused`, `unreachable`.
    pub fn state(&self) -> &'static str {
        match self {
            Self::Connecting => "connecting",
            Self::Member => "member",
            Self::Refused {
                code: Refusal::Revoked,
                ..
            } => "revoked",
            Self::Refused { .. } => "refused",
            Self::ViewRefused { .. } => "view_refused",
            Self::Unreachable { .. } => "unreachable",
        }
    }

    /// The reason, if the standing has one.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Self::Connecting | Self::Member => None,
            Self::Refused { reason, .. }
            | Self::ViewRefused { reason, .. }
            | Self::Unreachable { reason } => Some(reason),
        }
    }
}

/// What a member session needs.
#[derive(Debug)]
pub struct Params {
    /// The key manager's QUIC address, or its replicas' (at least one).
    pub keymgr: Vec<SocketAddr>,
    /// CA, own certificate and key.
    pub tls: TlsMaterial,
    /// Own X25519 secret (its public half is in the certificate).
    pub noise: NoiseSecret,
    /// The VON's ON id.
    pub on_id: OnId,
    /// Where it receives, per underlay name.
    pub underlay: UnderlayEndpoints,
    /// Longest wait between reconnects.
    pub backoff_max: Duration,
}

/// The session failed to start.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// TLS could not be set up.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// No local UDP socket for QUIC.
    #[error("cannot open a UDP socket for the key manager connection: {0}")]
    Socket(std::io::Error),
    /// No key manager address was given.
    #[error("no key manager address to connect to")]
    NoKeymgr,
}

/// Why one connection ended.
#[derive(Debug)]
enum Ended {
    Shutdown,
    Failed(String),
    Refused { code: Refusal, reason: String },
}

/// What a link tells the session.
#[derive(Debug)]
enum LinkEvent {
    /// Connected and `Join` sent; wrapped keys from it open with `noise`.
    Up { link: usize, noise: NoisePublic },
    /// A message from the key manager on the link.
    Msg { link: usize, msg: ServerMsg },
    /// The connection ended; the link reconnects by itself.
    Down { link: usize, reason: String },
    /// The key manager refused this member on the link (a `Refused`
    /// message, a dropping `Disconnect`, or a revoked handshake); the link
    /// backs off and reconnects by itself.
    Refused {
        link: usize,
        code: Refusal,
        reason: String,
    },
}

/// What the session tells a link.
#[derive(Debug)]
enum LinkCmd {
    Send(ClientMsg),
    /// The key manager refused this member: end this connection; the link
    /// backs off (long, if retrying cannot cure it) and reconnects.
    Refused {
        code: Refusal,
        reason: String,
    },
    /// Say `Leave`, close, and stop; answered when done.
    Leave(oneshot::Sender<()>),
    /// Close without leaving, and stop (a standby link at shutdown).
    Stop,
}

/// One configured key manager address and the session's view of it.
struct Link {
    addr: SocketAddr,
    cmds: mpsc::UnboundedSender<LinkCmd>,
    noise: Option<NoisePublic>,
}

/// A member's session; [`run`](Session::run) drives it until shutdown.
pub struct Session {
    params: Params,
    client: quinn::ClientConfig,
    endpoint: quinn::Endpoint,
    keys: MemberKeys,
    install: Box<dyn FnMut(&MemberKeys) + Send>,
    near_limit: mpsc::UnboundedReceiver<Epoch>,
    /// Told this member's lease expiry at every `Joined` and sent `Renew`.
    on_lease: Option<Box<dyn FnMut(SystemTime) + Send>>,
    /// The lease length from the last `Joined`.
    lease: Option<Duration>,
    /// Told every change of [`Standing`].
    on_standing: Option<OnStanding>,
    standing: Standing,
    /// The last refusal logged (numbers left out), so a member retrying
    /// under the same refusal logs it once ...
    logged: Option<String>,
    /// ... and then one summary line a minute with the count.
    repeats: Repeats<String>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("keymgr", &self.params.keymgr)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// A session starting from `keys` (restored from disk, or empty).
    /// `install` runs after every change of the key set; `near_limit`
    /// carries the data plane's "sequence limit near under epoch E" reports.
    pub fn new(
        params: Params,
        keys: MemberKeys,
        install: Box<dyn FnMut(&MemberKeys) + Send>,
        near_limit: mpsc::UnboundedReceiver<Epoch>,
    ) -> Result<Self, ClientError> {
        let first = *params.keymgr.first().ok_or(ClientError::NoKeymgr)?;
        let rustls = tls::client_config(TlsMaterial {
            ca: params.tls.ca.clone(),
            cert: params.tls.cert.clone(),
            key: params.tls.key.clone_key(),
            von: params.tls.von.clone(),
        })?;
        let quic = quinn::crypto::rustls::QuicClientConfig::try_from(rustls)
            .map_err(|e| tls::TlsError::Verifier(e.to_string()))?;
        let mut client = quinn::ClientConfig::new(Arc::new(quic));
        client.transport_config(Arc::new(wire::transport()));
        let bind: SocketAddr = if first.is_ipv4() {
            (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let endpoint = quinn::Endpoint::client(bind).map_err(ClientError::Socket)?;
        Ok(Self {
            params,
            client,
            endpoint,
            keys,
            install,
            near_limit,
            on_lease: None,
            lease: None,
            on_standing: None,
            standing: Standing::Connecting,
            logged: None,
            repeats: Repeats::default(),
        })
    }

    /// Calls `f` with this member's [`Standing`] at every event that sets it:
    /// each refusal counts, even when it repeats the last one.
    pub fn on_standing(mut self, f: OnStanding) -> Self {
        self.on_standing = Some(f);
        self
    }

    /// Publish `standing`; log a refusal the first time it is seen, then at
    /// most one summary line a minute with the count of repeats.
    fn stand(&mut self, standing: Standing) {
        let refusal = matches!(
            standing,
            Standing::Refused { .. } | Standing::ViewRefused { .. }
        );
        if refusal {
            // Revoked is one fact however it was learnt (a Refused message
            // or the handshake's alert): log it once.
            let key = match &standing {
                Standing::Refused {
                    code: Refusal::Revoked,
                    ..
                } => "revoked".to_owned(),
                other => crate::tls::once_key(&format!("{other:?}")),
            };
            if self.logged.as_ref() != Some(&key) {
                let reason = standing.reason().unwrap_or_default();
                match &standing {
                    Standing::ViewRefused { epoch, .. } => {
                        warn!(epoch, %reason, "view refused: not installed, told the key manager")
                    }
                    Standing::Refused {
                        code: Refusal::Revoked,
                        ..
                    } => {
                        warn!(%reason, "this member is revoked; retrying rarely (backoff up to 5 min)")
                    }
                    _ => {
                        warn!(state = standing.state(), %reason, "the key manager refused this member")
                    }
                }
                self.repeats.clear();
                self.repeats.note(&key, Instant::now().into_std());
                self.logged = Some(key);
            } else if let Verdict::Summary { count } =
                self.repeats.note(&key, Instant::now().into_std())
            {
                let reason = standing.reason().unwrap_or_default();
                warn!(
                    state = standing.state(),
                    count,
                    %reason,
                    "still refused by the key manager: {count} more refusals since the last line"
                );
            }
        }
        if standing == Standing::Member {
            self.logged = None;
            self.repeats.clear();
        }
        if let Some(f) = self.on_standing.as_mut() {
            f(&standing);
        }
        self.standing = standing;
    }

    /// Calls `f` with this member's lease expiry (wall clock) after every
    /// `Joined` and every `Renew` sent: when `Joined` arrived or `Renew`
    /// left, plus the lease length (the key manager counts from when it
    /// handled the message: the two differ by one trip).
    /// Renewals carry no reply, so this is the member's best knowledge; while
    /// the key manager is unreachable the last expiry stands and runs out.
    pub fn on_lease(mut self, f: Box<dyn FnMut(SystemTime) + Send>) -> Self {
        self.on_lease = Some(f);
        self
    }

    fn lease_renewed(&mut self) {
        if let (Some(f), Some(lease)) = (self.on_lease.as_mut(), self.lease) {
            f(SystemTime::now() + lease);
        }
    }

    /// Run until `shutdown` resolves; leaves the VON cleanly if connected.
    pub async fn run(mut self, shutdown: impl std::future::Future<Output = ()>) -> MemberKeys {
        tokio::pin!(shutdown);
        let (events_tx, mut events) = mpsc::unbounded_channel();
        let (have_tx, have_rx) = watch::channel(self.keys.newest_epoch().map(|e| e.0));
        let server_name = tls::keymgr_server_name(&self.params.tls.von)
            .to_str()
            .into_owned();
        let mut links: Vec<Link> = Vec::new();
        for (i, &addr) in self.params.keymgr.iter().enumerate() {
            let (cmds, cmd_rx) = mpsc::unbounded_channel();
            let ctx = LinkCtx {
                link: i,
                addr,
                endpoint: self.endpoint.clone(),
                client: self.client.clone(),
                server_name: server_name.clone(),
                underlay: self.params.underlay.clone(),
                have: have_rx.clone(),
                backoff_max: self.params.backoff_max,
            };
            tokio::spawn(ctx.run(cmd_rx, events_tx.clone()));
            links.push(Link {
                addr,
                cmds,
                noise: None,
            });
        }
        drop(events_tx);
        let far = || Instant::now() + Duration::from_secs(86_400);
        let mut active: Option<usize> = None;
        let mut renew_every: Option<Duration> = None;
        let mut next_renew = far();
        loop {
            let grace = self
                .keys
                .poll_timeout()
                .map(Instant::from_std)
                .unwrap_or_else(far);
            tokio::select! {
                () = &mut shutdown => break,
                ev = events.recv() => match ev {
                    Some(LinkEvent::Up { link, noise }) => links[link].noise = Some(noise),
                    Some(LinkEvent::Msg { link, msg: ServerMsg::Joined { member_id, renew_ms, lease_ms } }) => {
                        info!(keymgr = %links[link].addr, member_id, renew_ms, lease_ms, "joined");
                        active = Some(link);
                        self.stand(Standing::Member);
                        let every = Duration::from_millis(renew_ms.max(100));
                        renew_every = Some(every);
                        next_renew = Instant::now() + every;
                        self.lease = Some(Duration::from_millis(lease_ms));
                        self.lease_renewed();
                    }
                    Some(LinkEvent::Msg { link, msg }) => {
                        self.apply(&links[link], msg);
                        let _ = have_tx.send(self.keys.newest_epoch().map(|e| e.0));
                    }
                    Some(LinkEvent::Down { link, reason }) => {
                        links[link].noise = None;
                        let was_active = active == Some(link);
                        if was_active {
                            active = None;
                            renew_every = None;
                            next_renew = far();
                            warn!(keymgr = %links[link].addr, %reason, "key manager unreachable; forwarding on the last keys");
                        } else {
                            debug!(keymgr = %links[link].addr, %reason, "standby link down");
                        }
                        if was_active || (active.is_none() && links.iter().all(|l| l.noise.is_none())) {
                            self.stand(Standing::Unreachable { reason });
                        }
                    }
                    Some(LinkEvent::Refused { link, code, reason }) => {
                        links[link].noise = None;
                        if active == Some(link) {
                            active = None;
                            renew_every = None;
                            next_renew = far();
                        }
                        // A refusal by a replica this member does not follow
                        // says nothing of its standing with the leader.
                        if active.is_none() {
                            self.stand(Standing::Refused { code, reason });
                        } else {
                            debug!(keymgr = %links[link].addr, code = code.as_str(), %reason, "refused by a replica this member does not follow");
                        }
                    }
                    None => break,
                },
                () = sleep_until(next_renew) => {
                    next_renew = renew_every.map_or_else(far, |e| Instant::now() + e);
                    if let Some(l) = active {
                        let _ = links[l].cmds.send(LinkCmd::Send(ClientMsg::Renew));
                        self.lease_renewed();
                    }
                }
                () = sleep_until(grace) => self.tick(),
                Some(epoch) = self.near_limit.recv(), if active.is_some() => {
                    debug!(epoch = epoch.0, "reporting sequence limit");
                    if let Some(l) = active {
                        let _ = links[l].cmds.send(LinkCmd::Send(ClientMsg::SequenceNearLimit { epoch: epoch.0 }));
                    }
                }
            }
        }
        // Leave through the active link; stop the others.
        let mut left = Vec::new();
        for (i, l) in links.iter().enumerate() {
            let (done, wait) = oneshot::channel();
            let cmd = if active == Some(i) {
                LinkCmd::Leave(done)
            } else {
                LinkCmd::Stop
            };
            if l.cmds.send(cmd).is_ok() && active == Some(i) {
                left.push(wait);
            }
        }
        drop(links);
        for wait in left {
            let _ = tokio::time::timeout(Duration::from_secs(2), wait).await;
        }
        self.endpoint.close(0u32.into(), b"shutdown");
        let _ = tokio::time::timeout(Duration::from_secs(2), self.endpoint.wait_idle()).await;
        self.keys
    }

    /// A prepare or commit (or refusal) from `link`: keys from it open with
    /// the Noise key of the certificate that link's key manager presented.
    fn apply(&mut self, link: &Link, msg: ServerMsg) {
        let Some(noise) = link.noise else {
            return debug!(keymgr = %link.addr, "message before the link was up ignored");
        };
        self.keys.set_recipient(Recipient::new(
            self.params.noise.clone(),
            noise,
            self.params.tls.von.clone(),
            self.params.on_id,
        ));
        match self.keys.handle(Instant::now().into_std(), msg) {
            Ok(r) => {
                if r.changed {
                    (self.install)(&self.keys);
                }
                if let Some((epoch, reason)) = r.refused {
                    self.stand(Standing::ViewRefused {
                        epoch: epoch.0,
                        reason,
                    });
                }
                if let Some(reply) = r.reply {
                    let _ = link.cmds.send(LinkCmd::Send(reply));
                }
            }
            Err(crate::member::MemberError::Refused { code, reason }) => {
                let _ = link.cmds.send(LinkCmd::Refused { code, reason });
            }
            Err(e) => warn!(keymgr = %link.addr, error = %e, "key manager message not applied"),
        }
    }

    fn tick(&mut self) {
        if self.keys.tick(Instant::now().into_std()) {
            (self.install)(&self.keys);
        }
    }
}

/// One link's fixed inputs.
struct LinkCtx {
    link: usize,
    addr: SocketAddr,
    endpoint: quinn::Endpoint,
    client: quinn::ClientConfig,
    server_name: String,
    underlay: UnderlayEndpoints,
    /// The newest epoch the member holds, for `Join`.
    have: watch::Receiver<Option<u32>>,
    backoff_max: Duration,
}

impl LinkCtx {
    /// Connect, serve, and reconnect with backoff until told to stop.
    async fn run(
        self,
        mut cmds: mpsc::UnboundedReceiver<LinkCmd>,
        events: mpsc::UnboundedSender<LinkEvent>,
    ) {
        let mut backoff = BACKOFF_MIN;
        loop {
            let (event, wait, cap) = match self.connection(&mut cmds, &events, &mut backoff).await {
                Ended::Shutdown => return,
                Ended::Failed(reason) => (
                    LinkEvent::Down {
                        link: self.link,
                        reason,
                    },
                    backoff.min(self.backoff_max),
                    self.backoff_max,
                ),
                Ended::Refused { code, reason } => {
                    let (wait, cap) = if code.is_permanent() {
                        (backoff.max(PERMANENT_BACKOFF_MIN), PERMANENT_BACKOFF_MAX)
                    } else {
                        (backoff.min(self.backoff_max), self.backoff_max)
                    };
                    let event = LinkEvent::Refused {
                        link: self.link,
                        code,
                        reason,
                    };
                    (event, wait, cap)
                }
            };
            if events.send(event).is_err() {
                return;
            }
            let until = Instant::now() + wait;
            backoff = (wait * 2).min(cap);
            // Wait out the backoff, still obeying a stop.
            loop {
                tokio::select! {
                    () = sleep_until(until) => break,
                    cmd = cmds.recv() => match cmd {
                        None | Some(LinkCmd::Leave(_) | LinkCmd::Stop) => return,
                        // Nothing to send on a link that is down.
                        Some(_) => {}
                    },
                }
            }
        }
    }

    async fn connection(
        &self,
        cmds: &mut mpsc::UnboundedReceiver<LinkCmd>,
        events: &mpsc::UnboundedSender<LinkEvent>,
        backoff: &mut Duration,
    ) -> Ended {
        let connecting =
            match self
                .endpoint
                .connect_with(self.client.clone(), self.addr, &self.server_name)
            {
                Ok(c) => c,
                Err(e) => return Ended::Failed(e.to_string()),
            };
        tokio::pin!(connecting);
        let conn = loop {
            tokio::select! {
                c = &mut connecting => match c {
                    Ok(c) => break c,
                    Err(e) if is_revoked(&e) => return revoked(),
                    Err(e) => return Ended::Failed(e.to_string()),
                },
                cmd = cmds.recv() => match cmd {
                    None | Some(LinkCmd::Leave(_) | LinkCmd::Stop) => return Ended::Shutdown,
                    Some(_) => {}
                },
            }
        };
        let noise = match keymgr_noise_key(&conn) {
            Ok(k) => k,
            Err(e) => return Ended::Failed(e),
        };
        let (mut send, mut recv) = match conn.open_bi().await {
            Ok(s) => s,
            Err(e) => return ended_by(&conn, e.to_string()),
        };
        let join = ClientMsg::Join {
            underlay: self.underlay.clone(),
            have_epoch: *self.have.borrow(),
        };
        if let Err(e) = write_msg(&mut send, &join).await {
            return Ended::Failed(e.to_string());
        }
        if events
            .send(LinkEvent::Up {
                link: self.link,
                noise,
            })
            .is_err()
        {
            return Ended::Shutdown;
        }
        // Reading a length-prefixed message is not cancel-safe: its own task.
        let (msgs_tx, mut msgs) = mpsc::unbounded_channel();
        let reader = tokio::spawn(async move {
            loop {
                let m = read_msg::<ServerMsg, _>(&mut recv).await;
                let stop = !matches!(m, Ok(Some(_)));
                let item = match m {
                    Ok(Some(m)) => Ok(m),
                    Ok(None) => Err("the key manager closed the stream".to_owned()),
                    Err(e) => Err(e.to_string()),
                };
                if msgs_tx.send(item).is_err() || stop {
                    break;
                }
            }
        });
        let ended = loop {
            tokio::select! {
                m = msgs.recv() => match m {
                    // Ended here, not by the session: the key manager closes
                    // right after, and that close must not read as a failure.
                    Some(Ok(ServerMsg::Refused { code, reason })) => break Ended::Refused { code, reason },
                    Some(Ok(msg)) => {
                        if matches!(msg, ServerMsg::Joined { .. }) {
                            *backoff = BACKOFF_MIN;
                        }
                        if events.send(LinkEvent::Msg { link: self.link, msg }).is_err() {
                            break Ended::Shutdown;
                        }
                    }
                    Some(Err(reason)) => break Ended::Failed(reason),
                    None => break Ended::Failed("connection reader stopped".into()),
                },
                cmd = cmds.recv() => match cmd {
                    Some(LinkCmd::Send(msg)) => {
                        if let Err(e) = write_msg(&mut send, &msg).await {
                            break Ended::Failed(e.to_string());
                        }
                    }
                    Some(LinkCmd::Leave(done)) => {
                        let _ = write_msg(&mut send, &ClientMsg::Leave).await;
                        let _ = send.finish();
                        let _ = tokio::time::timeout(Duration::from_secs(1), send.stopped()).await;
                        conn.close(0u32.into(), b"leaving");
                        info!("left the VON");
                        let _ = done.send(());
                        break Ended::Shutdown;
                    }
                    Some(LinkCmd::Stop) | None => {
                        conn.close(0u32.into(), b"shutdown");
                        break Ended::Shutdown;
                    }
                    Some(LinkCmd::Refused { code, reason }) => break Ended::Refused { code, reason },
                },
            }
        };
        reader.abort();
        let ended = match ended {
            Ended::Failed(reason) => ended_by(&conn, reason),
            other => other,
        };
        match &ended {
            Ended::Failed(reason) | Ended::Refused { reason, .. } => {
                conn.close(1u32.into(), reason.as_bytes());
            }
            Ended::Shutdown => {}
        }
        ended
    }
}

/// How a connection that failed with `reason` really ended: a TLS
/// `certificate_revoked` alert from the key manager means this member is
/// revoked, which must not look like a network failure.
fn ended_by(conn: &quinn::Connection, reason: String) -> Ended {
    match conn.close_reason() {
        Some(e) if is_revoked(&e) => revoked(),
        _ => Ended::Failed(reason),
    }
}

fn is_revoked(e: &quinn::ConnectionError) -> bool {
    matches!(e, quinn::ConnectionError::ConnectionClosed(c)
        if c.error_code == quinn::TransportErrorCode::crypto(TLS_CERTIFICATE_REVOKED))
}

fn revoked() -> Ended {
    Ended::Refused {
        code: Refusal::Revoked,
        reason: "the key manager refused this member's certificate as revoked (TLS alert certificate_revoked)".into(),
    }
}

/// The key manager's X25519 key, from the certificate the handshake verified.
fn keymgr_noise_key(conn: &quinn::Connection) -> Result<NoisePublic, String> {
    let certs = conn
        .peer_identity()
        .and_then(|any| any.downcast::<Vec<CertificateDer<'static>>>().ok())
        .ok_or("the key manager presented no certificate")?;
    let leaf = certs.first().ok_or("empty key manager certificate chain")?;
    let info = von_crypto::cert::inspect(leaf).map_err(|e| e.to_string())?;
    match info.extension.holder {
        Holder::Keymgr(id) => Ok(id.noise_public),
        other => Err(format!(
            "the server's certificate has role {}",
            other.role().as_str()
        )),
    }
}
