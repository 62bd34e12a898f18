//! A member's control-plane session: connect to the key manager over QUIC
//! with mutual TLS, join, renew, apply prepares and commits, reconnect with
//! backoff — and keep forwarding on the last keys while it cannot.
//!
//! Flow per connection:
//! 1. handshake; the key manager's certificate (role `keymgr`, this VON's CA)
//!    gives the Noise key that authenticates wrapped group keys;
//! 2. `Join { a, b, have_epoch }` on one bidirectional stream;
//! 3. `Joined` sets the renew interval; `Prepare`/`Commit` go through
//!    [`MemberKeys`]; every change calls the `install` callback, which puts
//!    the new keys into the data plane (and on disk);
//! 4. on shutdown, `Leave`; on any failure, back off (0.2 s doubling to the
//!    cap, back to 0.2 s after a successful join) and start again at 1.
//!    Grace windows keep expiring meanwhile.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustls::pki_types::CertificateDer;
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until};
use tracing::{debug, info, warn};
use von_crypto::cert::Holder;
use von_crypto::wrap::{NoiseSecret, Recipient};

use crate::ids::{Epoch, OnId};
use crate::member::MemberKeys;
use crate::proto::{ClientMsg, Refusal, ServerMsg};
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
    /// The key manager's QUIC address.
    pub keymgr: SocketAddr,
    /// CA, own certificate and key.
    pub tls: TlsMaterial,
    /// Own X25519 secret (its public half is in the certificate).
    pub noise: NoiseSecret,
    /// The VON's ON id.
    pub on_id: OnId,
    /// Own underlay A endpoint, as others should send to it.
    pub a: SocketAddr,
    /// Own underlay B endpoint.
    pub b: SocketAddr,
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
}

/// Why one connection ended.
#[derive(Debug)]
enum Ended {
    Shutdown,
    Failed(String),
    Refused { code: Refusal, reason: String },
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
    /// The next reconnect delay; back to the minimum after every `Joined`.
    backoff: Duration,
    /// Told every change of [`Standing`].
    on_standing: Option<OnStanding>,
    standing: Standing,
    /// The last refusal logged (numbers left out), so a member retrying
    /// under the same refusal logs it once.
    logged: Option<String>,
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
        let bind: SocketAddr = if params.keymgr.is_ipv4() {
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
            backoff: BACKOFF_MIN,
            on_standing: None,
            standing: Standing::Connecting,
            logged: None,
        })
    }

    /// Calls `f` with this member's [`Standing`] at every event that sets it:
    /// each refusal counts, even when it repeats the last one.
    pub fn on_standing(mut self, f: OnStanding) -> Self {
        self.on_standing = Some(f);
        self
    }

    /// Publish `standing`; log a refusal the first time it is seen.
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
                self.logged = Some(key);
            }
        }
        if standing == Standing::Member {
            self.logged = None;
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
        loop {
            let (wait, cap) = match self.connection(&mut shutdown).await {
                Ended::Shutdown => break,
                Ended::Failed(reason) => {
                    warn!(keymgr = %self.params.keymgr, %reason, "key manager unreachable; forwarding on the last keys");
                    self.stand(Standing::Unreachable { reason });
                    (
                        self.backoff.min(self.params.backoff_max),
                        self.params.backoff_max,
                    )
                }
                Ended::Refused { code, reason } => {
                    self.stand(Standing::Refused { code, reason });
                    if code.is_permanent() {
                        (
                            self.backoff.max(PERMANENT_BACKOFF_MIN),
                            PERMANENT_BACKOFF_MAX,
                        )
                    } else {
                        (
                            self.backoff.min(self.params.backoff_max),
                            self.params.backoff_max,
                        )
                    }
                }
            };
            let until = Instant::now() + wait;
            self.backoff = (wait * 2).min(cap);
            loop {
                let next = self
                    .keys
                    .poll_timeout()
                    .map(Instant::from_std)
                    .map_or(until, |t| t.min(until));
                tokio::select! {
                    () = &mut shutdown => {
                        self.endpoint.close(0u32.into(), b"shutdown");
                        return self.keys;
                    }
                    () = sleep_until(next) => {}
                }
                self.tick();
                if Instant::now() >= until {
                    break;
                }
            }
        }
        self.endpoint.close(0u32.into(), b"shutdown");
        self.endpoint.wait_idle().await;
        self.keys
    }

    fn tick(&mut self) {
        if self.keys.tick(Instant::now().into_std()) {
            (self.install)(&self.keys);
        }
    }

    async fn connection(
        &mut self,
        shutdown: &mut std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
    ) -> Ended {
        let server_name = tls::keymgr_server_name(&self.params.tls.von);
        let connecting = match self.endpoint.connect_with(
            self.client.clone(),
            self.params.keymgr,
            &server_name.to_str(),
        ) {
            Ok(c) => c,
            Err(e) => return Ended::Failed(e.to_string()),
        };
        let conn = tokio::select! {
            () = shutdown.as_mut() => return Ended::Shutdown,
            c = connecting => match c {
                Ok(c) => c,
                Err(e) if is_revoked(&e) => return revoked(),
                Err(e) => return Ended::Failed(e.to_string()),
            },
        };
        let keymgr_noise = match keymgr_noise_key(&conn) {
            Ok(k) => k,
            Err(e) => return Ended::Failed(e),
        };
        self.keys.set_recipient(Recipient::new(
            self.params.noise.clone(),
            keymgr_noise,
            self.params.tls.von.clone(),
            self.params.on_id,
        ));
        let (mut send, mut recv) = match conn.open_bi().await {
            Ok(s) => s,
            Err(e) => return ended_by(&conn, e.to_string()),
        };
        let join = ClientMsg::Join {
            a: self.params.a,
            b: self.params.b,
            have_epoch: self.keys.newest_epoch().map(|e| e.0),
        };
        if let Err(e) = write_msg(&mut send, &join).await {
            return Ended::Failed(e.to_string());
        }
        let (msgs_tx, mut msgs) = mpsc::unbounded_channel();
        let reader = tokio::spawn(async move {
            loop {
                match read_msg::<ServerMsg, _>(&mut recv).await {
                    Ok(Some(m)) => {
                        if msgs_tx.send(Ok(m)).is_err() {
                            break;
                        }
                    }
                    Ok(None) => {
                        let _ = msgs_tx.send(Err("the key manager closed the stream".to_owned()));
                        break;
                    }
                    Err(e) => {
                        let _ = msgs_tx.send(Err(e.to_string()));
                        break;
                    }
                }
            }
        });
        let ended = match self.serve(&conn, &mut send, &mut msgs, shutdown).await {
            Ended::Failed(reason) => ended_by(&conn, reason),
            other => other,
        };
        reader.abort();
        if let Ended::Failed(reason) = &ended {
            conn.close(1u32.into(), reason.as_bytes());
        }
        ended
    }

    async fn serve(
        &mut self,
        conn: &quinn::Connection,
        send: &mut quinn::SendStream,
        msgs: &mut mpsc::UnboundedReceiver<Result<ServerMsg, String>>,
        shutdown: &mut std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
    ) -> Ended {
        let far = || Instant::now() + Duration::from_secs(86_400);
        let mut renew_every: Option<Duration> = None;
        let mut next_renew = far();
        loop {
            let grace = self
                .keys
                .poll_timeout()
                .map(Instant::from_std)
                .unwrap_or_else(far);
            let out = tokio::select! {
                () = shutdown.as_mut() => {
                    let _ = write_msg(send, &ClientMsg::Leave).await;
                    let _ = send.finish();
                    let _ = tokio::time::timeout(Duration::from_secs(1), send.stopped()).await;
                    conn.close(0u32.into(), b"leaving");
                    info!("left the VON");
                    return Ended::Shutdown;
                }
                m = msgs.recv() => match m {
                    Some(Ok(ServerMsg::Joined { member_id, renew_ms, lease_ms })) => {
                        info!(member_id, renew_ms, lease_ms, "joined");
                        self.backoff = BACKOFF_MIN;
                        self.stand(Standing::Member);
                        let every = Duration::from_millis(renew_ms.max(100));
                        renew_every = Some(every);
                        next_renew = Instant::now() + every;
                        self.lease = Some(Duration::from_millis(lease_ms));
                        self.lease_renewed();
                        None
                    }
                    Some(Ok(msg)) => match self.keys.handle(Instant::now().into_std(), msg) {
                        Ok(r) => {
                            if r.changed {
                                (self.install)(&self.keys);
                            }
                            if let Some((epoch, reason)) = r.refused {
                                self.stand(Standing::ViewRefused { epoch: epoch.0, reason });
                            }
                            r.reply
                        }
                        Err(crate::member::MemberError::Refused { code, reason }) => {
                            return Ended::Refused { code, reason };
                        }
                        Err(e) => {
                            warn!(error = %e, "key manager message not applied");
                            None
                        }
                    },
                    Some(Err(reason)) => return Ended::Failed(reason),
                    None => return Ended::Failed("connection reader stopped".into()),
                },
                () = sleep_until(next_renew) => {
                    next_renew = renew_every.map_or_else(far, |e| Instant::now() + e);
                    Some(ClientMsg::Renew)
                }
                () = sleep_until(grace) => {
                    self.tick();
                    None
                }
                Some(epoch) = self.near_limit.recv() => {
                    debug!(epoch = epoch.0, "reporting sequence limit");
                    Some(ClientMsg::SequenceNearLimit { epoch: epoch.0 })
                }
            };
            if let Some(reply) = out {
                if let Err(e) = write_msg(send, &reply).await {
                    return Ended::Failed(e.to_string());
                }
                if matches!(reply, ClientMsg::Renew) {
                    self.lease_renewed();
                }
            }
        }
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
fn keymgr_noise_key(conn: &quinn::Connection) -> Result<von_crypto::wrap::NoisePublic, String> {
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
