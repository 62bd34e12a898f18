//! The thin async driver: opens the OS edges, runs the packet loops, stops
//! cleanly.
//!
//! The packet loops run on a runtime of their own, [`DataPlane`], whose
//! threads carry no control work: a key manager waiting on an fsync, a QUIC
//! handshake or key wrapping for a large view runs on the caller's runtime
//! (or its blocking pool) and can delay joins and rekeys, never a packet or a
//! keepalive. Status and metrics answer from a third, one-thread runtime, so
//! an operator can still look while the control plane is stuck.
//! docs/architecture.md has the table of which work runs where.
//!
//! Tasks:
//!
//! - one **outbound** task per VON: TUN read → [`Outbound::handle`] → send
//!   the frame to every target on underlay A and on underlay B;
//! - one **inbound** task for the host: receive from A or B (whichever is
//!   ready) → [`Demux`] by ON id → that VON's [`Inbound::handle`] → TUN write.
//!   One task owns every VON's inbound half, so the (sender, epoch) windows
//!   that both underlays feed need no lock;
//! - the **status** task answering on the control socket (and the metrics
//!   endpoint), on the operator runtime.
//!
//! The loops batch at the edges and leave the core as it is (one packet in,
//! one action out): a TUN read gives a TCP super-packet split into segments
//! ([`ReadBatch`]), their frames leave together ([`Outgoing`]); an underlay
//! wake-up drains several receives and every VON's delivered packets reach
//! its TUN in one coalescing write ([`WriteBatch`]). What each step bought is
//! in docs/performance.md.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

mod lifecycle;

use tokio::sync::mpsc::UnboundedReceiver;
use tokio::task::JoinSet;
use tracing::{Span, error, info, warn};
use von_config::{AgentConfig, ConfigError, UnderlayEndpoints};
use von_crypto::freshness::MAX_KEEPALIVE_LEN;
use von_packet::demux::{Demux, Unrouted, datagrams};
use von_packet::{
    Action, Challenges, DOWN_AFTER, DropReason, Inbound, OrderingConfig, Outbound, PACKET_OFFSET,
    PerUnderlay, SocketCounters, Underlay, UnderlayName, VonCounters, counters_bump,
};

use crate::control;
use crate::guard::{Guard, GuardError, GuardedVon};
use crate::metrics::{self, MetricsError};
use crate::reload::{Applied, LiveSettings, Registry, VonChange};
use crate::state::{self, StateError};
use crate::static_mode::StaticModeError;
use crate::status::{self, StatusError, StatusSource};
use crate::tun::{ReadBatch, Tun, TunError, WriteBatch};
use crate::underlay::{Outgoing, TrafficClass, UnderlayError, UnderlaySocket};
use lifecycle::{Host, InboundChange, InboundVon, Prepared};

/// Largest IP packet, and so the buffer every loop reads into.
const MAX_PACKET: usize = 65_535;
/// At most one log line per drop reason per task in this period.
const LOG_EVERY: Duration = Duration::from_secs(10);
/// Receives the inbound loop makes per wake-up before it writes to the TUNs:
/// big enough to batch, small enough that the other underlay waits little.
const RECV_BURST: usize = 32;
/// How long the inbound loop sleeps when no link is up (nothing can go down).
const IDLE_TICK: Duration = Duration::from_secs(1);
/// Threads of the data-plane runtime: one per core on the 2-core machines
/// von is measured on, so the outbound and inbound loops run side by side.
const DATA_THREADS: usize = 2;

/// Why the agent could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    StaticMode(#[from] StaticModeError),
    #[error("VON {von}")]
    State { von: String, source: StateError },
    #[error(transparent)]
    StateDir(#[from] StateError),
    #[error(transparent)]
    Underlay(#[from] UnderlayError),
    #[error("VON {von}")]
    Tun { von: String, source: TunError },
    #[error(transparent)]
    Status(#[from] StatusError),
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    #[error(transparent)]
    Guard(#[from] GuardError),
    #[error("VON {von}")]
    Control {
        von: String,
        source: crate::control::ControlError,
    },
    #[error("VON {von}")]
    Sequence {
        von: String,
        source: von_crypto::SequenceError,
    },
    #[error("the {0} loop stopped unexpectedly")]
    TaskEnded(&'static str),
    #[error("starting the {0} runtime")]
    Runtime(&'static str, #[source] std::io::Error),
    #[error("the operating system's random number generator failed")]
    Random,
    #[error(
        "VON {von}: its view has ON id {on_id}, which VON {other} on this host already uses; \
         every VON needs its own ON id (ask the key managers' operators)"
    )]
    OnIdInUse {
        von: String,
        on_id: u32,
        other: String,
    },
}

/// The runtimes the agent's own work runs on, apart from the caller's, which
/// keeps the control plane (key-manager sessions, an embedded key manager).
struct Runtimes {
    /// TUN and underlay I/O and the packet core: nothing else is spawned here.
    data: tokio::runtime::Runtime,
    /// The status socket and the metrics endpoint.
    operator: tokio::runtime::Runtime,
}

impl Runtimes {
    fn new() -> Result<Self, AgentError> {
        let build = |name: &'static str, threads: usize| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(threads)
                .thread_name(format!("von-{name}"))
                .enable_all()
                .build()
                .map_err(|e| AgentError::Runtime(name, e))
        };
        Ok(Self {
            data: build("data", DATA_THREADS)?,
            operator: build("operator", 1)?,
        })
    }

    /// Ends both runtimes without waiting on their threads: the caller has
    /// already stopped every task, and this may run inside an async context.
    fn close(self) {
        self.data.shutdown_background();
        self.operator.shutdown_background();
    }
}

/// Runs the agent for `config` until `shutdown` completes, then removes the
/// interfaces and the control socket. Each VON registers its live settings
/// in `live` once it runs, for a reload to change; VONs a reload adds,
/// removes or changes arrive through `live` as well (`reload.rs`).
pub async fn run(
    config: &AgentConfig,
    live: &Registry,
    shutdown: impl Future<Output = ()>,
) -> Result<(), AgentError> {
    // Every state stops on `shutdown`, the wait for a first view included.
    // Views first: a bad file fails before anything is touched.
    config.load_views()?;
    // The first start creates state_dir (0700): the first view is saved there.
    state::create_dir(&config.state_dir)?;
    // The control socket is claimed before any key manager is asked (a live
    // agent on it is refused), and answers "waiting" until the views are in.
    let claimed = status::claim(&config.control_socket)?;
    // A reload during start-up is carried out once the agent runs.
    let (changes, changed) = tokio::sync::mpsc::unbounded_channel();
    live.connect(changes);
    let result = run_claimed(config, live, changed, claimed, shutdown).await;
    let _ = std::fs::remove_file(&config.control_socket);
    result
}

/// [`run`] once the control socket is this agent's.
async fn run_claimed(
    config: &AgentConfig,
    live: &Registry,
    changed: UnboundedReceiver<VonChange>,
    claimed: std::os::unix::net::UnixListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), AgentError> {
    let mut shutdown = std::pin::pin!(shutdown);
    let waiting = status::SharedWaiting::default();
    let (stop_waiting, waiting_stopped) = tokio::sync::oneshot::channel();
    let waiter = tokio::spawn(status::serve_waiting(
        claimed,
        waiting.clone(),
        waiting_stopped,
    ));
    // Every VON's first view, in config order (keymgr mode: from its key
    // manager, which can take long; SIGTERM ends the wait).
    let mut prepared: Vec<Prepared> = Vec::with_capacity(config.vons.len());
    for von in &config.vons {
        let got = lifecycle::prepare(config, von, Some(&waiting), &mut shutdown).await;
        match got {
            Ok(Some(p)) => prepared.push(p),
            Ok(None) | Err(_) => {
                let controls = prepared.iter_mut().filter_map(|p| p.control.take());
                control::stop_all(controls.collect()).await;
                return got.map(drop);
            }
        }
    }

    // Durable incarnations before anything can be sent.
    let mut incarnations = Vec::with_capacity(prepared.len());
    for p in &prepared {
        incarnations.push(lifecycle::incarnate(
            &config.state_dir,
            p.von.name.as_str(),
        )?);
    }
    // Nothing is sealed within the second of the start (state.rs).
    if let Some(&newest) = incarnations.iter().max() {
        state::wait_until_past(newest).map_err(|source| AgentError::State {
            von: prepared
                .iter()
                .map(|p| p.von.name.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            source,
        })?;
    }

    // Every view is in: the real status answers from here on.
    let _ = stop_waiting.send(());
    let listener = waiter
        .await
        .map_err(|_| AgentError::TaskEnded("status"))?
        .map_err(|source| {
            AgentError::Status(StatusError::Io {
                step: "serving",
                path: config.control_socket.clone(),
                source,
            })
        })?;

    let runtimes = Runtimes::new()?;
    let result = run_on(
        config,
        live,
        changed,
        &runtimes,
        listener,
        prepared.into_iter().zip(incarnations).collect(),
        shutdown,
    )
    .await;
    runtimes.close();
    result
}

/// A VON a reload asked for, on its way to its first view.
struct Starting {
    /// Tells [`Starting`] apart from a later start of the same VON.
    id: u64,
    name: String,
    /// Ends the wait for a first view; taken when used.
    cancel: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

/// What a start ended with: the VON with its incarnation, `None` if it was
/// cancelled, or why it could not start.
type Started = (u64, String, Result<Option<(Prepared, u32)>, AgentError>);

/// The second half of [`run`]: opens the OS edges on the data-plane runtime
/// (tokio I/O stays with the runtime it was registered on), spawns the loops
/// there and the status socket on the operator runtime, then runs until
/// `shutdown`, starting and stopping VONs as reloads ask.
async fn run_on(
    config: &AgentConfig,
    live: &Registry,
    mut changed: UnboundedReceiver<VonChange>,
    runtimes: &Runtimes,
    listener: std::os::unix::net::UnixListener,
    vons: Vec<(Prepared, u32)>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), AgentError> {
    let data = runtimes.data.handle();
    let names = underlay_names(config);
    let sockets: Arc<PerUnderlay<UnderlaySocket>> = {
        let _entered = data.enter();
        Arc::new(PerUnderlay::try_from_fn(config.underlays.len(), |u| {
            let c = &config.underlays[u];
            UnderlaySocket::bind(u, c.name, c.bind.addr())
        })?)
    };
    let socket_counters = sockets.map(|_, _| Arc::new(SocketCounters::default()));
    // The leak guard before any TUN exists; removed when `guard` drops.
    let guarded = vons.iter().map(|(p, _)| {
        let guarded = GuardedVon {
            name: p.von.name.to_string(),
            interface: p.von.interface.as_str().to_owned(),
            prefixes: p.shared.load().prefixes(),
        };
        (guarded, p.shared.clone())
    });
    let mut guard = Guard::install(
        guarded.collect(),
        sockets
            .values()
            .map(|s| (s.name(), s.local_addr()))
            .collect(),
    )?;

    let mut tasks = JoinSet::new();
    // The guard's checks run `nft` and read routes: control work, on the
    // caller's runtime.
    tasks.spawn(guard.watch());
    let (inbound_changes, inbound_changed) = tokio::sync::mpsc::unbounded_channel();
    tasks.spawn_on(
        inbound_loop(
            sockets.clone(),
            inbound_changed,
            socket_counters.clone(),
            names.clone(),
        ),
        data,
    );

    let operator = runtimes.operator.handle();
    let control: PathBuf = config.control_socket.clone();
    let listener = {
        let _operator = operator.enter();
        tokio::net::UnixListener::from_std(listener).map_err(|source| StatusError::Io {
            step: "serving",
            path: control.clone(),
            source,
        })?
    };
    let source = Arc::new(StatusSource {
        vons: std::sync::Mutex::new(Vec::with_capacity(vons.len())),
        underlays: sockets.map(|u, s| (s.name(), s.local_addr(), socket_counters[u].clone())),
        guard: guard.shared(),
        alarms: Arc::default(),
        alarm_hook_dropped: Arc::default(),
    });
    let mut host = Host::new(
        data.clone(),
        sockets,
        names,
        guard,
        inbound_changes,
        source.clone(),
    );
    let mut result = Ok(());
    for (p, incarnation) in vons {
        if let Err(e) = host.launch(p, incarnation, &mut tasks, live).await {
            result = Err(e);
            break;
        }
    }
    if result.is_ok() {
        result = serve_operator(config, operator, listener, source, &mut tasks).await;
    }
    if result.is_ok() {
        info!(control_socket = %control.display(), "agent running");
        result = run_until(config, live, &mut changed, &mut host, &mut tasks, shutdown).await;
    }
    // Leave keymgr-mode VONs cleanly (members move on at once), then stop.
    control::stop_all(host.take_controls()).await;
    // Dropping the tasks drops the TUN devices: the interfaces disappear.
    tasks.shutdown().await;
    // Only now, with the TUNs gone, may VON addresses follow other routes.
    drop(host);
    let _ = std::fs::remove_file(&control);
    info!("agent stopped");
    result
}

/// The status socket and, if configured, the metrics endpoint, on the
/// operator runtime.
async fn serve_operator(
    config: &AgentConfig,
    operator: &tokio::runtime::Handle,
    listener: tokio::net::UnixListener,
    source: Arc<StatusSource>,
    tasks: &mut JoinSet<&'static str>,
) -> Result<(), AgentError> {
    if let Some(addr) = config.metrics {
        let listener = operator
            .spawn(metrics::bind(addr.addr()))
            .await
            .map_err(|_| AgentError::TaskEnded("metrics"))??;
        info!(metrics = %addr.addr(), "serving Prometheus metrics at /metrics");
        let source = source.clone();
        tasks.spawn_on(
            async move {
                metrics::serve(listener, source).await;
                "metrics"
            },
            operator,
        );
    }
    // Alarms: evaluated once a second from what status reads, here on
    // the operator runtime, never on the data path.
    tasks.spawn_on(
        {
            let source = source.clone();
            let hook = config.alarm_hook.clone();
            async move {
                crate::alarms::run(source, hook).await;
                "alarms"
            }
        },
        operator,
    );
    tasks.spawn_on(
        async move {
            status::serve(listener, source).await;
            "status"
        },
        operator,
    );
    Ok(())
}

/// Runs until `shutdown` or a task ends, carrying out each [`VonChange`]: a
/// VON to stop goes at once; a VON to start gets its view in a task of its
/// own (a key manager may take long), then goes on the wire here.
async fn run_until(
    config: &AgentConfig,
    live: &Registry,
    changed: &mut UnboundedReceiver<VonChange>,
    host: &mut Host,
    tasks: &mut JoinSet<&'static str>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), AgentError> {
    let mut shutdown = std::pin::pin!(shutdown);
    let (started_tx, mut started) = tokio::sync::mpsc::unbounded_channel::<Started>();
    let mut starting: Vec<Starting> = Vec::new();
    let mut next_id = 0u64;
    let result = loop {
        tokio::select! {
            () = &mut shutdown => break Ok(()),
            ended = tasks.join_next() => match ended {
                // A stopped VON's outbound loop.
                Some(Err(e)) if e.is_cancelled() => {}
                Some(Ok(name)) => break Err(AgentError::TaskEnded(name)),
                _ => break Err(AgentError::TaskEnded("packet")),
            },
            Some(change) = changed.recv() => match change {
                VonChange::Stop(name) => {
                    for s in starting.iter_mut().filter(|s| s.name == name) {
                        s.cancel.take().map(|c| c.send(()));
                    }
                    host.stop(&name, live).await;
                }
                VonChange::Start(von) => {
                    next_id += 1;
                    let (cancel, cancelled) = tokio::sync::oneshot::channel::<()>();
                    let (id, name, config, done) =
                        (next_id, von.name.to_string(), config.clone(), started_tx.clone());
                    let started_name = name.clone();
                    info!(von = %name, "starting VON");
                    let task = tokio::spawn(async move {
                        let stop = async {
                            let _ = cancelled.await;
                        };
                        let got = match lifecycle::prepare(&config, &von, None, stop).await {
                            Ok(Some(p)) => {
                                match lifecycle::incarnate_and_wait(&config.state_dir, &name).await {
                                    Ok(inc) => Ok(Some((p, inc))),
                                    Err(e) => {
                                        if let Some(k) = p.control {
                                            k.stop().await;
                                        }
                                        Err(e)
                                    }
                                }
                            }
                            Ok(None) => Ok(None),
                            Err(e) => Err(e),
                        };
                        let _ = done.send((id, name, got));
                    });
                    starting.push(Starting { id, name: started_name, cancel: Some(cancel), task });
                }
            },
            Some((id, name, got)) = started.recv() => {
                // A stop that came while this start finished its incarnation
                // (past the point where it listens for the cancel) still wins.
                let cancelled = starting
                    .iter()
                    .find(|s| s.id == id)
                    .is_none_or(|s| s.cancel.is_none());
                starting.retain(|s| s.id != id);
                let launched = match got {
                    Ok(Some((p, _))) if cancelled || host.running().any(|r| r == name) => {
                        // Stopped meanwhile, or started twice (the one on the
                        // wire stays): this one leaves again.
                        if let Some(k) = p.control {
                            k.stop().await;
                        }
                        Ok(())
                    }
                    Ok(Some((p, inc))) => host.launch(p, inc, tasks, live).await,
                    Ok(None) => Ok(()),
                    Err(e) => Err(e),
                };
                if let Err(e) = launched {
                    error!(von = %name, "VON {name} did not start, the others run on: {}; fix the config and reload", chain(&e));
                    live.start_failed(&name);
                }
            }
        }
    };
    // Starts still under way leave their key managers, within the stop bound.
    for mut s in starting {
        s.cancel.take().map(|c| c.send(()));
        let _ = tokio::time::timeout(Duration::from_secs(2), s.task).await;
    }
    result
}

/// An error and its causes on one line, for a log.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// TUN → every underlay for one VON. One TUN read gives a batch (a TCP
/// super-packet split into segments); every packet of it goes through the
/// core, then the sealed frames leave together, underlay by underlay.
async fn outbound_loop(
    tun: Arc<Tun>,
    mut mtu: u16,
    mut outbound: Outbound,
    sockets: Arc<PerUnderlay<UnderlaySocket>>,
    mut live: Applied,
    counters: Arc<VonCounters>,
    mut near: Option<control::NearLimit>,
) -> &'static str {
    let mut batch = ReadBatch::new(mtu, PACKET_OFFSET, von_crypto::frame::TAG_LEN);
    let mut outgoing = Outgoing::with_capacity(2 * tun_rs::IDEAL_BATCH_SIZE);
    // Packets leaving the shaping queue are sealed here, apart from `batch`,
    // which the TUN read borrows while the loop waits.
    let mut queue_buf = vec![0u8; PACKET_OFFSET + MAX_PACKET + von_crypto::frame::TAG_LEN];
    let mut log = LogLimiter::default();
    let mut keepalive_buf = [0u8; MAX_KEEPALIVE_LEN];
    let challenges = outbound.challenges();
    let mut class = TrafficClass::new(live.current().dscp);
    loop {
        // A reload's new rate, DSCP and MTU, from this wake-up on (reload.rs).
        if let Some(s) = live.changed() {
            outbound.set_rate(Instant::now(), s.rate_bps, s.burst_bytes);
            class = TrafficClass::new(s.dscp);
            if s.mtu != mtu {
                match tun.set_mtu(s.mtu) {
                    Ok(()) => {
                        mtu = s.mtu;
                        batch = ReadBatch::new(mtu, PACKET_OFFSET, von_crypto::frame::TAG_LEN);
                        info!(mtu, "MTU applied");
                    }
                    Err(e) => warn!(mtu = s.mtu, "setting the MTU of {}: {e}", tun.name()),
                }
            }
        }
        let out = Out {
            sockets: &sockets,
            class: &class,
            counters: &counters,
        };
        // Once per wake-up, never per packet: a worn send key → key manager.
        if let Some(near) = near.as_mut() {
            near.poll(outbound.rekey_requested());
        }
        // Keepalives when the core's timer is due (`None`: at once); queued
        // packets when the bucket lets the oldest leave (`None`: never).
        let due = outbound.poll_timeout().map(tokio::time::Instant::from_std);
        let release = outbound
            .poll_queue(Instant::now())
            .map(tokio::time::Instant::from_std);
        let received = tokio::select! {
            r = tun.recv_batch(&mut batch) => r,
            () = keepalive_due(due, &challenges) => {
                let now = Instant::now();
                while let Some(k) = outbound.handle_timeout(now, &mut keepalive_buf) {
                    let c = counters.on(k.underlay);
                    let socket = &sockets[k.underlay];
                    match socket.send_to(k.frame, k.to, &class).await {
                        Ok(n) => {
                            counters_bump(&c.tx_keepalives);
                            c.tx_bytes.fetch_add(n as u64, Ordering::Relaxed);
                        }
                        Err(e) => {
                            counters_bump(&c.tx_errors);
                            log.warn_on(now, "send", Some(k.underlay), || {
                                format!("underlay {}: keepalive to {}: {e}", socket.name(), k.to)
                            });
                        }
                    }
                }
                continue;
            }
            () = sleep_until_or_never(release) => {
                let now = Instant::now();
                while let Some(action) = outbound.handle_queue(now, &mut queue_buf) {
                    out.act(now, action, &mut log).await;
                }
                continue;
            }
        };
        if let Err(e) = received {
            counters_bump(&counters.tun_errors);
            log.warn(Instant::now(), "tun_read", || {
                format!("reading {}: {e}", tun.name())
            });
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        }
        let now = Instant::now();
        outgoing.clear();
        for i in 0..batch.len() {
            let (buf, len) = batch.packet_mut(i);
            let start = buf.as_ptr();
            match outbound.handle(now, buf, len) {
                // The frame is a prefix of packet i's buffer: send it from there.
                Action::Send { frame, to } if frame.as_ptr() == start => {
                    to.iter().for_each(|t| outgoing.push(i, frame.len(), t));
                }
                action => out.act(now, action, &mut log).await,
            }
        }
        if !outgoing.is_empty() {
            out.send_batch(now, &outgoing, &batch, &mut log).await;
        }
    }
}

/// Where one VON's outbound frames go.
struct Out<'a> {
    sockets: &'a PerUnderlay<UnderlaySocket>,
    class: &'a TrafficClass,
    counters: &'a VonCounters,
}

impl Out<'_> {
    /// Sends a batch of sealed frames, all of them on the first underlay,
    /// then all on the next, and so on.
    async fn send_batch(
        &self,
        now: Instant,
        outgoing: &Outgoing,
        batch: &ReadBatch,
        log: &mut LogLimiter,
    ) {
        for (u, socket) in self.sockets.iter() {
            let c = self.counters.on(u);
            let report = socket
                .send_all(outgoing, |i| batch.buf(i), self.class)
                .await;
            c.tx_frames.fetch_add(report.sent, Ordering::Relaxed);
            c.tx_bytes.fetch_add(report.sent_bytes, Ordering::Relaxed);
            c.tx_errors.fetch_add(report.failed, Ordering::Relaxed);
            if let Some((to, e)) = report.last_error {
                log.warn_on(now, "send", Some(u), || {
                    format!("underlay {}: sending to {to}: {e}", socket.name())
                });
            }
        }
    }

    /// Carries out an outbound action: a frame to every target, on every
    /// underlay the target runs.
    async fn act(&self, now: Instant, action: Action<'_>, log: &mut LogLimiter) {
        match action {
            Action::Send { frame, to } => {
                for target in to {
                    for (u, socket) in self.sockets.iter() {
                        let Some(dst) = target.get(u).copied().flatten() else {
                            continue;
                        };
                        let c = self.counters.on(u);
                        match socket.send_to(frame, dst, self.class).await {
                            Ok(n) => {
                                counters_bump(&c.tx_frames);
                                c.tx_bytes.fetch_add(n as u64, Ordering::Relaxed);
                            }
                            Err(e) => {
                                counters_bump(&c.tx_errors);
                                log.warn_on(now, "send", Some(u), || {
                                    format!("underlay {}: sending to {dst}: {e}", socket.name())
                                });
                            }
                        }
                    }
                }
            }
            Action::Drop(reason) => log.dropped(now, reason),
            Action::Deliver { .. } | Action::Queued | Action::Held => {}
        }
    }
}

/// Until the next keepalive round is due, or a peer's new challenge wants
/// its answer at once (a restarted peer accepts our traffic only then).
async fn keepalive_due(due: Option<tokio::time::Instant>, challenges: &Challenges) {
    tokio::select! {
        () = sleep_until_opt(due) => {}
        () = std::future::poll_fn(|cx| challenges.poll_answer_wanted(cx)) => {}
    }
}

/// Sleeps until `deadline`, or forever if there is none.
async fn sleep_until_or_never(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// One VON's part of the inbound loop.
struct InboundSlot {
    von: InboundVon,
    writes: WriteBatch,
    /// Drops are summarised per VON, so one VON's noise never hides another's.
    log: LogLimiter,
}

/// Every underlay → the VONs' TUNs. A wake-up drains up to [`RECV_BURST`]
/// receives from a socket that is ready (one receive may hold many
/// datagrams), opens every frame, and writes each VON's delivered packets to
/// its TUN in one batch. VONs join and leave through `changes`.
async fn inbound_loop(
    sockets: Arc<PerUnderlay<UnderlaySocket>>,
    mut changes: UnboundedReceiver<InboundChange>,
    socket_counters: PerUnderlay<Arc<SocketCounters>>,
    names: PerUnderlay<UnderlayName>,
) -> &'static str {
    let mut buf = vec![0u8; MAX_PACKET];
    let mut vons: Vec<InboundSlot> = Vec::new();
    let mut demux = Demux::default();
    let mut log = LogLimiter::default();
    // Which socket a wake-up looks at first: the one after the last served,
    // so a busy underlay never starves the others.
    let mut next_first = 0;
    loop {
        // The earliest instant a link may go down, over every VON.
        let due = vons
            .iter()
            .filter_map(|v| v.von.inbound.poll_timeout())
            .min()
            .map(tokio::time::Instant::from_std);
        let (underlay, ready) = tokio::select! {
            r = any_readable(&sockets, next_first) => r,
            change = changes.recv() => {
                match change {
                    Some(InboundChange::Add(mut von, routed)) => {
                        // Start its health clock, so peers never heard show as down.
                        von.inbound.handle_timeout(Instant::now());
                        vons.push(InboundSlot {
                            von: *von,
                            writes: WriteBatch::new(tun_rs::IDEAL_BATCH_SIZE),
                            log: LogLimiter::default(),
                        });
                        demux = Demux::new(vons.iter().map(|v| v.von.on_id)).unwrap_or_default();
                        let _ = routed.send(());
                        continue;
                    }
                    Some(InboundChange::Remove(on_id, done)) => {
                        vons.retain(|v| v.von.on_id != on_id);
                        let _ = done.send(());
                    }
                    None => return "inbound",
                }
                // Positions moved: route by the new ones. The host refuses a
                // second VON with a running one's ON id, so this always holds.
                demux = Demux::new(vons.iter().map(|v| v.von.on_id)).unwrap_or_default();
                continue;
            }
            () = sleep_until_opt(due.or(Some(tokio::time::Instant::now() + IDLE_TICK))) => {
                let now = Instant::now();
                for v in &mut vons {
                    if let Some(s) = v.von.live.changed() {
                        v.von.inbound.set_ordering(ordering_of(&s));
                    }
                    v.von.inbound.handle_timeout(now);
                    log_health(&mut v.von.inbound, &v.von.span, &names);
                    released(v, now, &mut log, true).await;
                }
                continue;
            }
        };
        next_first = underlay.index() + 1;
        let socket = &sockets[underlay];
        let counters = &socket_counters[underlay];
        let name = socket.name();
        if let Err(e) = ready {
            counters_bump(&counters.rx_errors);
            log.warn_on(Instant::now(), "recv", Some(underlay), || {
                format!("underlay {name}: receive: {e}")
            });
            tokio::task::yield_now().await;
            continue;
        }
        for _ in 0..RECV_BURST {
            let received = match socket.try_recv(&mut buf) {
                Ok(received) => received,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    counters_bump(&counters.rx_errors);
                    log.warn_on(Instant::now(), "recv", Some(underlay), || {
                        format!("underlay {name}: receive: {e}")
                    });
                    break;
                }
            };
            let now = Instant::now();
            for datagram in datagrams(&mut buf[..received.len], received.segment) {
                let len = datagram.len();
                let v = match demux.route(datagram, counters) {
                    Ok(i) => &mut vons[i],
                    Err(Unrouted::Malformed) => {
                        log.warn_on(now, "short", Some(underlay), || {
                            format!("underlay {name}: datagram of {len} bytes")
                        });
                        continue;
                    }
                    Err(Unrouted::UnknownOnId(id)) => {
                        log.warn_on(now, "on_id", Some(underlay), || {
                            format!("underlay {name}: unknown ON id {}", id.0)
                        });
                        continue;
                    }
                };
                let action = v.von.inbound.handle(now, underlay, datagram);
                log_health(&mut v.von.inbound, &v.von.span, &names);
                match action {
                    Action::Deliver { packet } => {
                        if v.writes.is_full() {
                            write_tun(&v.von.tun, &mut v.writes, &v.von.inbound, now, &mut log)
                                .await;
                        }
                        v.writes.push(&datagram[packet]);
                    }
                    Action::Drop(reason) => {
                        if reason.is_suspicious() {
                            v.von
                                .suspicious
                                .record(reason, name, received.source, datagram);
                        }
                        let _entered = v.von.span.enter();
                        v.log.dropped(now, reason);
                    }
                    Action::Send { .. } | Action::Queued | Action::Held => {}
                }
                // What the ordering stage releases follows, in order.
                released(v, now, &mut log, false).await;
            }
        }
        let now = Instant::now();
        for v in &mut vons {
            if !v.writes.is_empty() {
                write_tun(&v.von.tun, &mut v.writes, &v.von.inbound, now, &mut log).await;
            }
        }
    }
}

/// Queues for the TUN every packet the VON's ordering stage releases now
/// (`ordering.rs` of von-packet), after whatever was delivered before;
/// `flush` writes them at once (after a timeout nothing else would).
async fn released(v: &mut InboundSlot, now: Instant, log: &mut LogLimiter, flush: bool) {
    loop {
        if v.writes.is_full() {
            write_tun(&v.von.tun, &mut v.writes, &v.von.inbound, now, log).await;
        }
        let Some(packet) = v.von.inbound.poll_deliver(now) else {
            break;
        };
        v.writes.push(packet);
    }
    if flush && !v.writes.is_empty() {
        write_tun(&v.von.tun, &mut v.writes, &v.von.inbound, now, log).await;
    }
}

/// The ordering stage a VON's live settings ask for: its bound, and a slot
/// for one packet of its MTU.
pub(crate) fn ordering_of(s: &LiveSettings) -> Option<OrderingConfig> {
    s.ordering.map(|bound| OrderingConfig {
        bound,
        slot_len: usize::from(s.mtu),
    })
}

/// Writes one VON's delivered packets; a failed write counts once.
async fn write_tun(
    tun: &Tun,
    batch: &mut WriteBatch,
    inbound: &Inbound,
    now: Instant,
    log: &mut LogLimiter,
) {
    if let Err(e) = tun.send_batch(batch).await {
        counters_bump(&inbound.counters().tun_errors);
        log.warn(now, "tun_write", || format!("writing {}: {e}", tun.name()));
    }
}

/// Sleeps until `deadline`; `None` means it is due already.
async fn sleep_until_opt(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(t) => tokio::time::sleep_until(t).await,
        None => tokio::task::yield_now().await,
    }
}

/// Logs every link that went up or down, in the VON's span.
fn log_health(inbound: &mut Inbound, span: &Span, names: &PerUnderlay<UnderlayName>) {
    while let Some(e) = inbound.poll_event() {
        let _entered = span.enter();
        let underlay = names.get(e.underlay).map_or("?", UnderlayName::as_str);
        if e.up {
            info!(peer = %e.name, peer_id = e.peer.0, underlay, "link up");
        } else {
            warn!(
                peer = %e.name, peer_id = e.peer.0, underlay,
                silent_ms = DOWN_AFTER.as_millis() as u64, "link down: nothing authenticated"
            );
        }
    }
}

/// The agent's underlay names, by position.
fn underlay_names(config: &AgentConfig) -> PerUnderlay<UnderlayName> {
    config.underlays.map(|_, u| u.name)
}

/// Where this member receives, per underlay name: its bind addresses.
fn own_endpoints(config: &AgentConfig) -> UnderlayEndpoints {
    UnderlayEndpoints::new(config.underlays.values().map(|u| (u.name, u.bind.addr())))
        .unwrap_or_else(|e| unreachable!("the config checked its underlays: {e}"))
}

/// The first of `sockets` with a datagram waiting, looking from position
/// `first` on: as `select!` over every socket, for any number of them.
async fn any_readable(
    sockets: &PerUnderlay<UnderlaySocket>,
    first: usize,
) -> (Underlay, std::io::Result<()>) {
    std::future::poll_fn(|cx| {
        let n = sockets.len();
        for k in 0..n {
            let Some(u) = Underlay::at((first + k) % n) else {
                continue;
            };
            if let std::task::Poll::Ready(r) = sockets[u].poll_recv_ready(cx) {
                return std::task::Poll::Ready((u, r));
            }
        }
        std::task::Poll::Pending
    })
    .await
}

/// At most one warning per kind per [`LOG_EVERY`], with the count of the
/// ones it held back: bad input never turns into a log line per packet.
#[derive(Debug, Default)]
struct LogLimiter {
    /// (kind, underlay it is about) → when last logged, how many held back.
    kinds: Vec<(LogKind, Instant, u64)>,
}

/// What a rate-limited warning is about: its kind, and the underlay if any.
type LogKind = (&'static str, Option<Underlay>);

impl LogLimiter {
    fn dropped(&mut self, now: Instant, reason: DropReason) {
        if reason.is_suspicious() {
            self.warn(now, reason.name(), || format!("dropped: {}", reason.name()));
        }
    }

    fn warn(&mut self, now: Instant, kind: &'static str, message: impl FnOnce() -> String) {
        self.warn_on(now, kind, None, message);
    }

    /// [`LogLimiter::warn`], limited per underlay: one noisy underlay never
    /// hides another's trouble.
    fn warn_on(
        &mut self,
        now: Instant,
        kind: &'static str,
        underlay: Option<Underlay>,
        message: impl FnOnce() -> String,
    ) {
        let key = (kind, underlay);
        match self.kinds.iter_mut().find(|(k, _, _)| *k == key) {
            Some((_, last, held)) if now.duration_since(*last) < LOG_EVERY => *held += 1,
            Some((_, last, held)) => {
                warn!(kind, suppressed = *held, "{}", message());
                *last = now;
                *held = 0;
            }
            None => {
                warn!(
                    kind,
                    "{} (similar ones at most every {LOG_EVERY:?})",
                    message()
                );
                self.kinds.push((key, now, 0));
            }
        }
    }
}
