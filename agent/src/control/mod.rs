//! The agent's side of the control plane, for VONs in keymgr mode.
//!
//! Flow for one VON:
//! 1. load and cross-check this member's certificate, TLS key and Noise key;
//! 2. restore the last committed view and key from `state_dir` (if any), so
//!    the VON forwards at once even with the key manager down;
//! 3. with `keymgr = "embedded"`, start the key manager in this process;
//! 4. run the member session (`von_keymgr::client`): every change of the
//!    key set becomes a new [`Snapshot`] stored atomically into the VON's
//!    [`SharedSnapshot`] — packets never wait on the control plane — and
//!    every new committed epoch is saved to disk.
//!
//! 5. the outbound loop forwards "send counter near its limit" through
//!    [`NearLimit`] (once per epoch), and the session publishes the lease
//!    expiry into [`KeymgrVon::lease`], which `von status` shows.
//!
//! [`start`] returns a [`Joining`] VON at once; [`Joining::first_view`]
//! completes once a snapshot exists: at once when one was restored, otherwise
//! after the first commit from the key manager. It can be abandoned at any
//! point (SIGTERM while the key manager is unreachable) with
//! [`Joining::stop`], which leaves like a running VON does.

mod near;
pub mod persist;

pub use near::NearLimit;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use arc_swap::{ArcSwap, ArcSwapOption};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::{Instrument, error, info, info_span, warn};
use von_config::UnderlayEndpoints;
use von_config::{KeymgrEndpoint, KeymgrMode};
use von_crypto::cert::{Holder, Role, VonName, VonPrefix};
use von_crypto::{Epoch, GroupKey, MemberId, OnId};
use von_keymgr::View;
use von_keymgr::client::{OnStanding, Params, Session, Standing};
use von_keymgr::member::{KeySet, MemberKeys, ViewRules};
use von_keymgr::server::{Params as ServerParams, Server};
use von_packet::{
    Ipv4Prefix, Member, PerUnderlay, SharedSnapshot, Snapshot, SnapshotError, UnderlayName,
};

use crate::health::{KeymgrStanding, SharedLease, SharedStanding};

/// Longest wait between reconnects to the key manager.
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How long a stopping VON waits for its leave to finish.
const LEAVE_WAIT: Duration = Duration::from_millis(1000);
/// How long it then waits for its embedded key manager to stop.
const EMBEDDED_WAIT: Duration = Duration::from_millis(400);

/// A keymgr-mode VON could not start.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// A key or certificate file is unusable.
    #[error(transparent)]
    Files(#[from] von_keymgr::files::FileError),
    /// The saved view and key could not be read.
    #[error(transparent)]
    Persist(#[from] persist::PersistError),
    /// The certificate is not a member's.
    #[error("{path}: {detail}")]
    Certificate {
        /// The certificate file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// The embedded key manager could not start.
    #[error("embedded key manager: {0}")]
    Embedded(#[from] von_keymgr::server::ServerError),
    /// The member session could not start.
    #[error(transparent)]
    Client(#[from] von_keymgr::client::ClientError),
    /// The agent stopped before the key manager sent a first view.
    #[error("stopped before the key manager at {0} sent a first view")]
    NoView(String),
}

/// A running keymgr-mode VON: its shared snapshot and the tasks behind it.
#[derive(Debug)]
pub struct KeymgrVon {
    /// The snapshot the pipeline reads; replaced at every change.
    pub shared: SharedSnapshot,
    /// Report "the send counter under this epoch nears its limit" here
    /// (from `Outbound::rekey_requested`); the key manager then rekeys.
    pub near_limit: mpsc::UnboundedSender<Epoch>,
    /// This member's lease expiry, updated at every join and renewal.
    pub lease: SharedLease,
    /// Where this member stands with the key manager (member, revoked,
    /// refused, ...), updated at every change; `von status` shows it.
    pub standing: SharedStanding,
    stop_session: oneshot::Sender<()>,
    session: JoinHandle<()>,
    embedded: Option<(oneshot::Sender<()>, JoinHandle<()>)>,
}

impl KeymgrVon {
    /// The reporter the VON's outbound loop polls (see [`NearLimit`]).
    pub fn reporter(&self) -> NearLimit {
        NearLimit::new(self.near_limit.clone())
    }

    /// Leave the VON cleanly and stop the embedded key manager, if any.
    pub async fn stop(self) {
        stop_tasks(self.stop_session, self.session, self.embedded).await;
    }
}

/// Stops every VON at once, so N VONs take no longer to leave than one.
pub async fn stop_all(vons: Vec<KeymgrVon>) {
    let stops: Vec<_> = vons.into_iter().map(|k| tokio::spawn(k.stop())).collect();
    for stop in stops {
        let _ = stop.await;
    }
}

/// Ends a VON's session (it leaves, if joined), then its embedded key
/// manager. The leave gets [`LEAVE_WAIT`] and the key manager
/// [`EMBEDDED_WAIT`] more: the agent must be gone within 2 s of a SIGTERM
/// even when no key manager answers.
async fn stop_tasks(
    stop_session: oneshot::Sender<()>,
    session: JoinHandle<()>,
    embedded: Option<(oneshot::Sender<()>, JoinHandle<()>)>,
) {
    let _ = stop_session.send(());
    let _ = tokio::time::timeout(LEAVE_WAIT, session).await;
    if let Some((stop, task)) = embedded {
        let _ = stop.send(());
        let _ = tokio::time::timeout(EMBEDDED_WAIT, task).await;
    }
}

/// Where this member sends and receives: its underlays.
#[derive(Debug, Clone)]
pub struct Underlays {
    /// This agent's underlay names, by position (the pipeline's order).
    pub names: PerUnderlay<UnderlayName>,
    /// Where this member receives on each, announced in `Join`.
    pub own: UnderlayEndpoints,
}

/// A keymgr-mode VON whose session runs but which may have no snapshot yet.
#[derive(Debug)]
pub struct Joining {
    slot: Arc<OnceLock<SharedSnapshot>>,
    first: Option<oneshot::Receiver<()>>,
    shown: String,
    span: tracing::Span,
    near_limit: mpsc::UnboundedSender<Epoch>,
    lease: SharedLease,
    standing: SharedStanding,
    stop_session: oneshot::Sender<()>,
    session: JoinHandle<()>,
    embedded: Option<(oneshot::Sender<()>, JoinHandle<()>)>,
}

impl Joining {
    /// Where this member stands with its key manager, as it changes: what
    /// `von status` shows while the first view is awaited.
    pub fn standing(&self) -> SharedStanding {
        self.standing.clone()
    }

    /// Waits until a snapshot exists. Cancel-safe: dropping this future and
    /// calling it again (or [`stop`](Self::stop)) loses nothing.
    pub async fn first_view(&mut self) -> Result<(), ControlError> {
        if self.slot.get().is_none() {
            if self.first.is_some() {
                info!(parent: &self.span, keymgr = %self.shown, "waiting for the key manager's first view");
            }
            if let Some(first) = self.first.as_mut() {
                if first.await.is_err() {
                    return Err(ControlError::NoView(self.shown.clone()));
                }
            }
        }
        self.first = None;
        Ok(())
    }

    /// The running VON, once [`first_view`](Self::first_view) has returned.
    pub fn running(self) -> Result<KeymgrVon, ControlError> {
        let shared = self
            .slot
            .get()
            .cloned()
            .ok_or(ControlError::NoView(self.shown))?;
        Ok(KeymgrVon {
            shared,
            near_limit: self.near_limit,
            lease: self.lease,
            standing: self.standing,
            stop_session: self.stop_session,
            session: self.session,
            embedded: self.embedded,
        })
    }

    /// Gives up before (or after) the first view: leaves the VON if the
    /// session had joined and stops the embedded key manager, if any.
    pub async fn stop(self) {
        stop_tasks(self.stop_session, self.session, self.embedded).await;
    }
}

/// Start VON `von` in keymgr mode; the session runs from here on. Call
/// [`Joining::first_view`] to wait for a snapshot.
pub async fn start(
    state_dir: &Path,
    von: &str,
    mode: &KeymgrMode,
    underlays: Underlays,
) -> Result<Joining, ControlError> {
    let von_name: VonName =
        von.parse()
            .map_err(|e: von_crypto::cert::CertError| ControlError::Certificate {
                path: mode.cert.clone(),
                detail: e.to_string(),
            })?;
    let loaded = von_keymgr::files::load(
        &von_name,
        Role::Member,
        &mode.ca,
        &mode.cert,
        &mode.key,
        &mode.noise_key,
    )?;
    let (me, prefix, on_id, rules) = match &loaded.info.extension.holder {
        Holder::Member(id) => (
            id.member_id,
            Ipv4Prefix::new(id.addr.network(), id.addr.prefix_len()).ok_or_else(|| {
                ControlError::Certificate {
                    path: mode.cert.clone(),
                    detail: format!("VON prefix length {} is not usable", id.addr.prefix_len()),
                }
            })?,
            loaded.info.extension.on_id,
            ViewRules {
                me: id.member_id,
                prefix: VonPrefix::of(&id.addr),
            },
        ),
        other => {
            return Err(ControlError::Certificate {
                path: mode.cert.clone(),
                detail: format!("role {} cannot join a VON", other.role().as_str()),
            });
        }
    };
    let span = info_span!("control", von = %von, member = me.0);

    let embedded = match &mode.embedded {
        Some(cfg) if mode.endpoint == KeymgrEndpoint::Embedded => {
            let server = Server::bind(ServerParams::from_config(cfg)?)?;
            let (stop, stopped) = oneshot::channel::<()>();
            let task = tokio::spawn(
                async move {
                    let r = server
                        .run(async {
                            let _ = stopped.await;
                        })
                        .await;
                    if let Err(e) = r {
                        error!(error = %e, "embedded key manager stopped");
                    }
                }
                .instrument(span.clone()),
            );
            Some((cfg.listen.addr(), stop, task))
        }
        _ => None,
    };
    let keymgr = match (&mode.endpoint, &embedded) {
        (KeymgrEndpoint::Remote(addrs), _) => addrs.clone(),
        (KeymgrEndpoint::Embedded, Some((listen, _, _))) => vec![reachable(*listen)],
        (KeymgrEndpoint::Embedded, None) => {
            return Err(ControlError::Certificate {
                path: mode.cert.clone(),
                detail: "keymgr = \"embedded\" needs a [von.embedded_keymgr] table".into(),
            });
        }
    };

    let file = persist::path(state_dir, von);
    let keys = match persist::load(&file)? {
        Some((view, key)) => {
            info!(parent: &span, epoch = view.epoch.0, members = view.members.len(), "restored the last view and key");
            MemberKeys::restore(view, key)
        }
        None => MemberKeys::new(),
    }
    .with_rules(rules);
    let slot: Arc<OnceLock<SharedSnapshot>> = Arc::new(OnceLock::new());
    let (first_tx, first_rx) = oneshot::channel::<()>();
    let first_tx = Mutex::new(Some(first_tx));
    let ctx = Installer {
        underlays: underlays.names.clone(),
        me,
        prefix,
        on_id,
        saver: saver(file),
        slot: slot.clone(),
        saved: Mutex::new(None),
        first: first_tx,
    };
    ctx.install(&keys);
    let install = Box::new(move |keys: &MemberKeys| ctx.install(keys));
    let (near_limit, near_rx) = mpsc::unbounded_channel::<Epoch>();
    let lease: SharedLease = Arc::new(ArcSwapOption::empty());
    let standing: SharedStanding = Arc::new(ArcSwapOption::from_pointee(KeymgrStanding {
        state: Standing::Connecting.state().to_owned(),
        reason: None,
        views_refused: 0,
        refusals: 0,
    }));
    let shown: Vec<String> = keymgr.iter().map(ToString::to_string).collect();
    let shown = shown.join(", ");
    let session = Session::new(
        Params {
            keymgr,
            tls: loaded.tls,
            noise: loaded.noise,
            on_id,
            underlay: underlays.own.clone(),
            backoff_max: BACKOFF_MAX,
        },
        keys,
        install,
        near_rx,
    )?
    .on_lease({
        let lease = lease.clone();
        Box::new(move |expires| lease.store(Some(Arc::new(expires))))
    })
    .on_standing(publish_standing(standing.clone()));
    let (stop_session, stopped) = oneshot::channel::<()>();
    let session = tokio::spawn(
        async move {
            session
                .run(async {
                    let _ = stopped.await;
                })
                .await;
        }
        .instrument(span.clone()),
    );
    Ok(Joining {
        slot,
        first: Some(first_rx),
        shown,
        span,
        near_limit,
        lease,
        standing,
        stop_session,
        session,
        embedded: embedded.map(|(_, stop, task)| (stop, task)),
    })
}

/// Keeps `shared` up to date with the session's standing, counting the views
/// refused and the refusals received.
fn publish_standing(shared: SharedStanding) -> OnStanding {
    let (mut views_refused, mut refusals) = (0u64, 0u64);
    Box::new(move |s: &Standing| {
        match s {
            Standing::ViewRefused { .. } => views_refused += 1,
            Standing::Refused { .. } => refusals += 1,
            _ => {}
        }
        shared.store(Some(Arc::new(KeymgrStanding {
            state: s.state().to_owned(),
            reason: s.reason().map(str::to_owned),
            views_refused,
            refusals,
        })));
    })
}

/// Turns key sets into snapshots and saves committed epochs.
struct Installer {
    underlays: PerUnderlay<UnderlayName>,
    me: MemberId,
    prefix: Ipv4Prefix,
    on_id: OnId,
    saver: std::sync::mpsc::Sender<(View, GroupKey)>,
    slot: Arc<OnceLock<SharedSnapshot>>,
    saved: Mutex<Option<Epoch>>,
    first: Mutex<Option<oneshot::Sender<()>>>,
}

impl Installer {
    fn install(&self, keys: &MemberKeys) {
        let set = keys.keys();
        let snapshot = match build(self.on_id, self.me, self.prefix, &self.underlays, &set) {
            Some(Ok(s)) => s,
            Some(Err(e)) => {
                return warn!(error = %e, "view not installed; keeping the previous one");
            }
            None => return,
        };
        let epoch = snapshot.send_epoch();
        match self.slot.get() {
            Some(shared) => shared.store(Arc::new(snapshot)),
            None => {
                let _ = self.slot.set(Arc::new(ArcSwap::from_pointee(snapshot)));
                if let Some(tx) = self.first.lock().unwrap_or_else(|p| p.into_inner()).take() {
                    let _ = tx.send(());
                }
            }
        }
        let mut saved = self.saved.lock().unwrap_or_else(|p| p.into_inner());
        if *saved != Some(epoch) {
            if let Some((view, key)) = keys.current() {
                if self.saver.send((view.clone(), key.clone())).is_ok() {
                    *saved = Some(epoch);
                }
            }
        }
    }
}

/// A thread that saves committed views and keys in order. Saving fsyncs;
/// done on the async runtime's worker it would stall the packet loops that
/// share it (measured: TUN queue drops at 50 Mbit/s during rekeys).
fn saver(file: PathBuf) -> std::sync::mpsc::Sender<(View, GroupKey)> {
    let (tx, rx) = std::sync::mpsc::channel::<(View, GroupKey)>();
    std::thread::spawn(move || {
        while let Ok(mut next) = rx.recv() {
            // Only the newest matters when several are queued.
            while let Ok(newer) = rx.try_recv() {
                next = newer;
            }
            if let Err(e) = persist::save(&file, &next.0, &next.1) {
                warn!(error = %e, "could not save the view and key; a restart without the key manager would not forward");
            }
        }
    });
    tx
}

/// The pipeline's snapshot for a key set; `None` before the first commit.
fn build(
    on_id: OnId,
    me: MemberId,
    prefix: Ipv4Prefix,
    underlays: &PerUnderlay<UnderlayName>,
    set: &KeySet<'_>,
) -> Option<Result<Snapshot, SnapshotError>> {
    let view = set.view?;
    let (send_epoch, _) = set.send?;
    let members = view
        .members
        .iter()
        .map(|m| Member {
            id: m.id,
            name: m.name.clone(),
            address: Some(m.address),
            // Keymgr mode is IPv4 for now: certificates carry one IPv4 address.
            address6: None,
            endpoints: m.underlay.on(underlays),
        })
        .collect();
    let keys: Vec<_> = set
        .receive
        .iter()
        .map(|(e, k)| (*e, (*k).clone()))
        .collect();
    Some(Snapshot::new(on_id, me, prefix, members, send_epoch, &keys))
}

/// A listen address members can dial: the unspecified address becomes loopback.
fn reachable(listen: SocketAddr) -> SocketAddr {
    match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::from((Ipv4Addr::LOCALHOST, listen.port()))
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, listen.port()))
        }
        _ => listen,
    }
}
