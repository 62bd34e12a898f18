//! One VON's life inside a running agent: its view (from its file or its key
//! manager), its incarnation, then its TUN and loops; and the way back out.
//!
//! The same steps start every VON of the file at start-up and a VON that a
//! reload adds, removes or changes (`reload.rs`, [`VonChange`]): a reload
//! never touches the VONs it does not name. Order matters for the leak
//! guard: a VON is guarded before its TUN exists and unguarded only after
//! its TUN is gone.
//!
//! [`VonChange`]: crate::reload::VonChange

use std::future::Future;
use std::path::Path;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use tokio::sync::{mpsc, oneshot};
use tokio::task::{AbortHandle, JoinSet};
use tracing::{Instrument, Span, info, info_span};
use von_config::{AgentConfig, VonConfig, VonMode};
use von_crypto::freshness::Challenge;
use von_crypto::{OnId, SendCounter};
use von_packet::{Inbound, Pipeline, PipelineConfig, SharedSnapshot, VonCounters};

use super::{AgentError, own_endpoints, underlay_names};
use crate::control::{self, KeymgrVon, NearLimit};
use crate::guard::{Guard, GuardedVon};
use crate::health::{SharedLease, SharedStanding};
use crate::reload::{Applied, Registry};
use crate::state;
use crate::static_mode;
use crate::status::{self, SharedWaiting, StatusSource, VonFacts, VonSource};
use crate::tun::{Tun, TunAddrs};
use crate::underlay::UnderlaySocket;

/// How long a stop waits for a VON's TUN to close once its loops are told to
/// end (they end at their next await; this is a bound, not a delay).
const TUN_CLOSE_WAIT: Duration = Duration::from_secs(2);

/// A VON with its view in hand, not yet on the wire.
pub(super) struct Prepared {
    pub von: VonConfig,
    pub shared: SharedSnapshot,
    pub lease: SharedLease,
    pub standing: SharedStanding,
    pub near: Option<NearLimit>,
    pub control: Option<KeymgrVon>,
}

/// Gets `von`'s first view: from its file (static mode) or from its key
/// manager (keymgr mode, joining it). `Ok(None)` if `stop` completed first;
/// a join under way is then left cleanly. While it waits, `waiting` (the
/// status socket's answer before the agent runs) names the VON.
pub(super) async fn prepare(
    config: &AgentConfig,
    von: &VonConfig,
    waiting: Option<&SharedWaiting>,
    stop: impl Future<Output = ()>,
) -> Result<Option<Prepared>, AgentError> {
    let prepared = match &von.mode {
        VonMode::Static(mode) => {
            let (view, me) = mode.load_view()?;
            let local = von_config::LocalView {
                von: von.name.clone(),
                view,
                me,
            };
            let snapshot = static_mode::snapshot(
                &local,
                &mode.view.display().to_string(),
                &underlay_names(config),
            )?;
            Prepared {
                von: von.clone(),
                shared: Arc::new(ArcSwap::from_pointee(snapshot)),
                lease: Default::default(),
                standing: Default::default(),
                near: None,
                control: None,
            }
        }
        VonMode::Keymgr(mode) => {
            let underlays = control::Underlays {
                names: underlay_names(config),
                own: own_endpoints(config),
            };
            let failed = |source| AgentError::Control {
                von: von.name.to_string(),
                source,
            };
            let mut joining = control::start(&config.state_dir, von.name.as_str(), mode, underlays)
                .await
                .map_err(failed)?;
            if let Some(waiting) = waiting {
                lock(waiting).push(status::WaitingSource {
                    name: von.name.to_string(),
                    keymgr: mode.endpoint.to_string(),
                    since: Instant::now(),
                    standing: joining.standing(),
                });
            }
            let first = tokio::select! {
                r = joining.first_view() => r,
                () = stop => {
                    info!(von = %von.name, "stopped before the first view");
                    joining.stop().await;
                    return Ok(None);
                }
            };
            if let Some(waiting) = waiting {
                lock(waiting).retain(|w| w.name != von.name.as_str());
            }
            let k = first.and_then(|()| joining.running()).map_err(failed)?;
            Prepared {
                von: von.clone(),
                shared: k.shared.clone(),
                lease: k.lease.clone(),
                standing: k.standing.clone(),
                near: Some(k.reporter()),
                control: Some(k),
            }
        }
    };
    Ok(Some(prepared))
}

/// The next incarnation of VON `name`, stored durably before anything is
/// sealed under it (state.rs); the caller waits until it is past.
pub(super) fn incarnate(state_dir: &Path, name: &str) -> Result<u32, AgentError> {
    let inc = state::bump_incarnation(state_dir, name).map_err(|source| AgentError::State {
        von: name.to_owned(),
        source,
    })?;
    SendCounter::new(inc).map_err(|source| AgentError::Sequence {
        von: name.to_owned(),
        source,
    })?;
    Ok(inc)
}

/// [`incarnate`] and the wait until it is past, off the async threads: for a
/// VON started while the agent runs.
pub(super) async fn incarnate_and_wait(state_dir: &Path, name: &str) -> Result<u32, AgentError> {
    let (dir, von) = (state_dir.to_owned(), name.to_owned());
    tokio::task::spawn_blocking(move || {
        let inc = incarnate(&dir, &von)?;
        state::wait_until_past(inc).map_err(|source| AgentError::State { von, source })?;
        Ok(inc)
    })
    .await
    .map_err(|_| AgentError::TaskEnded("incarnation"))?
}

/// A VON's inbound half, handed to the host's inbound loop.
pub(super) struct InboundVon {
    pub on_id: OnId,
    pub inbound: Inbound,
    /// Its live settings, for `ordering` (see `reload.rs`).
    pub live: Applied,
    pub tun: Arc<Tun>,
    pub span: Span,
    /// The latest suspicious frames, for status and the alarms.
    pub suspicious: Arc<crate::alarms::Suspicious>,
}

/// What the inbound loop is told while it runs.
pub(super) enum InboundChange {
    /// Route this VON's frames to it from now on; say when it does.
    Add(Box<InboundVon>, oneshot::Sender<()>),
    /// Stop routing this ON id and drop its half; say when done.
    Remove(OnId, oneshot::Sender<()>),
}

/// One VON on the wire.
struct Running {
    name: String,
    on_id: OnId,
    guarded: (GuardedVon, SharedSnapshot),
    outbound: AbortHandle,
    tun: Weak<Tun>,
    control: Option<KeymgrVon>,
}

/// The agent's shared parts that every VON plugs into, and the VONs that do.
pub(super) struct Host {
    pub data: tokio::runtime::Handle,
    pub sockets: Arc<PerUnderlaySockets>,
    pub names: von_packet::PerUnderlay<von_packet::UnderlayName>,
    pub guard: Guard,
    pub inbound: mpsc::UnboundedSender<InboundChange>,
    pub status: Arc<StatusSource>,
    running: Vec<Running>,
}

type PerUnderlaySockets = von_packet::PerUnderlay<UnderlaySocket>;

impl Host {
    pub fn new(
        data: tokio::runtime::Handle,
        sockets: Arc<PerUnderlaySockets>,
        names: von_packet::PerUnderlay<von_packet::UnderlayName>,
        guard: Guard,
        inbound: mpsc::UnboundedSender<InboundChange>,
        status: Arc<StatusSource>,
    ) -> Self {
        Host {
            data,
            sockets,
            names,
            guard,
            inbound,
            status,
            running: Vec::new(),
        }
    }

    /// Names of the VONs on the wire.
    pub fn running(&self) -> impl Iterator<Item = &str> {
        self.running.iter().map(|r| r.name.as_str())
    }

    /// Puts `p` on the wire: guarded, TUN open, loops running, in status and
    /// in `live`. On an error nothing of it is left (a joined keymgr-mode VON
    /// leaves again).
    pub async fn launch(
        &mut self,
        mut p: Prepared,
        incarnation: u32,
        tasks: &mut JoinSet<&'static str>,
        live: &Registry,
    ) -> Result<(), AgentError> {
        let control = p.control.take();
        match self.try_launch(p, incarnation, control, tasks, live).await {
            Ok(()) => Ok(()),
            Err((e, control)) => {
                if let Some(k) = control {
                    k.stop().await;
                }
                Err(e)
            }
        }
    }

    async fn try_launch(
        &mut self,
        p: Prepared,
        incarnation: u32,
        control: Option<KeymgrVon>,
        tasks: &mut JoinSet<&'static str>,
        live: &Registry,
    ) -> Result<(), (AgentError, Option<KeymgrVon>)> {
        let von = &p.von;
        let name = von.name.to_string();
        let snapshot = p.shared.load_full();
        let me = snapshot.me().clone();
        let prefixes = snapshot.prefixes();
        let on_id = snapshot.on_id();
        if let Some(other) = self.running.iter().find(|r| r.on_id == on_id) {
            let e = AgentError::OnIdInUse {
                von: name,
                on_id: on_id.0,
                other: other.name.clone(),
            };
            return Err((e, control));
        }
        let guarded = (
            GuardedVon {
                name: name.clone(),
                interface: von.interface.as_str().to_owned(),
                prefixes,
            },
            p.shared.clone(),
        );
        // Guarded before the TUN exists.
        let mut set = self.guarded();
        set.push(guarded.clone());
        if let Err(e) = self.guard.set(set).await {
            return Err((e.into(), control));
        }
        let tun = {
            let _data = self.data.enter();
            Tun::open(
                von.interface.as_str(),
                TunAddrs {
                    v4: me.address.zip(prefixes.v4.map(|p| p.prefix_len())),
                    v6: me.address6.zip(prefixes.v6.map(|p| p.prefix_len())),
                },
                von.mtu.bytes(),
            )
        };
        let tun = match tun {
            Ok(tun) => Arc::new(tun),
            Err(source) => {
                let _ = self.guard.set(self.guarded()).await;
                return Err((AgentError::Tun { von: name, source }, control));
            }
        };
        let challenge = match Challenge::generate() {
            Ok(c) => c,
            Err(_) => {
                drop(tun);
                let _ = self.guard.set(self.guarded()).await;
                return Err((AgentError::Random, control));
            }
        };
        let counters = Arc::new(VonCounters::new(&self.names));
        let pipeline = Pipeline::new(
            PipelineConfig {
                rate_bps: von.rate.bits_per_second(),
                burst_bytes: von.burst.bytes(),
                incarnation,
                challenge,
            },
            p.shared.clone(),
            counters.clone(),
        );
        info!(
            von = %name, interface = tun.name(), address = ?me.address, address6 = ?me.address6,
            member = %me.name,
            members = snapshot.members().len(), mtu = von.mtu.bytes(), dscp = von.dscp.value(),
            incarnation, "VON up"
        );
        let span = info_span!(
            "von", name = %name, interface = von.interface.as_str(), on_id = on_id.0
        );
        let settings = live.register(von);
        let mut pipeline = pipeline;
        let inbound_live = Applied::new(settings.clone());
        pipeline
            .inbound
            .set_ordering(super::ordering_of(&inbound_live.current()));
        // The inbound half first, and in place before the first keepalive
        // leaves: a peer answers that one at once, and an answer the demux
        // does not route yet would cost the freshness proof a whole round.
        let health = pipeline.inbound.health();
        let suspicious = Arc::new(crate::alarms::Suspicious::default());
        let (routed, in_place) = oneshot::channel();
        let _ = self.inbound.send(InboundChange::Add(
            Box::new(InboundVon {
                on_id,
                inbound: pipeline.inbound,
                live: inbound_live,
                tun: tun.clone(),
                span: span.clone(),
                suspicious: suspicious.clone(),
            }),
            routed,
        ));
        let _ = in_place.await;
        let outbound = tasks.spawn_on(
            super::outbound_loop(
                tun.clone(),
                von.mtu.bytes(),
                pipeline.outbound,
                self.sockets.clone(),
                Applied::new(settings.clone()),
                counters.clone(),
                p.near,
            )
            .instrument(span),
            &self.data,
        );
        lock(&self.status.vons).push(VonSource {
            facts: VonFacts {
                name: name.clone(),
                interface: von.interface.as_str().to_owned(),
                mode: match von.mode {
                    VonMode::Static(_) => "static",
                    VonMode::Keymgr(_) => "keymgr",
                },
                rate_bps: von.rate.bits_per_second(),
                dscp: von.dscp.value(),
                mtu: von.mtu.bytes(),
            },
            snapshot: p.shared.clone(),
            counters,
            health,
            lease: p.lease,
            standing: p.standing,
            live: Some(settings),
            suspicious,
        });
        self.running.push(Running {
            name,
            on_id,
            guarded,
            outbound,
            tun: Arc::downgrade(&tun),
            control,
        });
        Ok(())
    }

    /// Takes VON `name` off the wire: it leaves its group (keymgr mode), its
    /// loops end, its TUN goes, then its guard rules. False if it was not
    /// running.
    pub async fn stop(&mut self, name: &str, live: &Registry) -> bool {
        let Some(i) = self.running.iter().position(|r| r.name == name) else {
            return false;
        };
        let r = self.running.remove(i);
        if let Some(k) = r.control {
            k.stop().await;
        }
        r.outbound.abort();
        let (done, removed) = oneshot::channel();
        if self
            .inbound
            .send(InboundChange::Remove(r.on_id, done))
            .is_ok()
        {
            let _ = removed.await;
        }
        let deadline = Instant::now() + TUN_CLOSE_WAIT;
        while r.tun.strong_count() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        lock(&self.status.vons).retain(|v| v.facts.name != name);
        live.deregister(name);
        let set = self.guarded();
        if r.tun.strong_count() > 0 {
            // Still open: its rules stay, rather than leave its prefix unguarded.
            tracing::warn!(
                von = name,
                "VON stopped but its TUN is still open; its guard rules stay"
            );
        } else if let Err(e) = self.guard.set(set).await {
            tracing::warn!(von = name, "removing the VON's leak guard rules: {e}");
        }
        info!(von = name, "VON down");
        true
    }

    /// What the leak guard covers while exactly the running VONs run.
    fn guarded(&self) -> Vec<(GuardedVon, SharedSnapshot)> {
        self.running.iter().map(|r| r.guarded.clone()).collect()
    }

    /// Every keymgr-mode VON's session, for leaving at shutdown.
    pub fn take_controls(&mut self) -> Vec<KeymgrVon> {
        self.running
            .iter_mut()
            .filter_map(|r| r.control.take())
            .collect()
    }
}

/// Locks `m`, taking over a poisoned lock: the data is plain handles.
pub(super) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
