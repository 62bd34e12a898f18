//! Alarms: conditions an operator (or a SCADA/NMS system) must hear about,
//! raised and cleared with hysteresis.
//!
//! Evaluation is sans-IO: [`Evaluator::evaluate`] takes the status document
//! (counters, link health, standing, lease, guard — everything `von status`
//! shows) and the time, compares it with the previous document, and returns
//! the alarms raised and cleared. It never touches the data path: the agent
//! runs it once a second on the operator runtime ([`run`]), reading the same
//! lock-free counters status reads. Each alarm then appears
//!
//! - in the status document (`alarms`, table and JSON),
//! - as the gauge `von_alarm{alarm,severity,von,peer,underlay,source} 1`,
//! - as one log line when raised (warn) and one when cleared (info),
//! - on the stdin of `alarm_hook` (one JSON object per event), if set.
//!
//! The kinds, thresholds, detection times and what an attacker can do with
//! them are in `docs/alarms.md`.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::health::LinkState;
use crate::status::{StatusReport, StatusSource, VonStatus};

/// How often the agent evaluates.
pub const EVALUATE_EVERY: Duration = Duration::from_secs(1);
/// How long the hook may run before it is killed.
pub const HOOK_TIMEOUT: Duration = Duration::from_secs(5);
/// Events waiting for the hook before new ones are dropped (and counted).
pub const HOOK_QUEUE: usize = 64;

/// ITU-T X.733 perceived severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Service lost.
    Critical,
    /// Service at risk: one more fault loses it.
    Major,
    /// Degraded, not at risk.
    Minor,
    /// Worth a look.
    Warning,
}

impl Severity {
    /// Its name in JSON, logs and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::Major => "major",
            Severity::Minor => "minor",
            Severity::Warning => "warning",
        }
    }
}

/// What an alarm is about; two alarms with equal subjects are one alarm.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Subject {
    /// The kind (`redundancy_lost`, ... see `docs/alarms.md`).
    pub alarm: String,
    /// The VON; `null` for host-wide alarms (unknown ON ids).
    pub von: Option<String>,
    /// The member affected, if one is.
    pub peer: Option<String>,
    /// The underlay affected, if one is.
    pub underlay: Option<String>,
    /// Where it came from, if known: an outer source `IP:PORT` for attack
    /// signatures, the conflicting destination for a route conflict.
    pub source: Option<String>,
}

/// One active (or just cleared) alarm.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alarm {
    /// What it is about.
    #[serde(flatten)]
    pub subject: Subject,
    /// How bad.
    pub severity: Severity,
    /// When its condition was first seen (before any hysteresis),
    /// milliseconds since the Unix epoch.
    pub since_unix_ms: u64,
    /// What was measured, in words (updated while it is active).
    pub detail: String,
}

/// A raise or a clear.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlarmEvent {
    /// `raised` or `cleared`.
    pub event: String,
    /// The alarm (as it was last seen, for a clear).
    #[serde(flatten)]
    pub alarm: Alarm,
    /// When this event happened, milliseconds since the Unix epoch.
    pub at_unix_ms: u64,
}

/// The active alarms, written by [`run`] and read by status and metrics.
pub type SharedAlarms = Arc<ArcSwap<Vec<Alarm>>>;

/// How long a condition must hold before its alarm is raised, and be gone
/// before it is cleared.
#[derive(Debug, Clone, Copy)]
struct Hysteresis {
    raise_after: Duration,
    clear_after: Duration,
}

const fn hyst(raise_ms: u64, clear_ms: u64) -> Hysteresis {
    Hysteresis {
        raise_after: Duration::from_millis(raise_ms),
        clear_after: Duration::from_millis(clear_ms),
    }
}

/// A condition found in one document.
#[derive(Debug, Clone)]
struct Finding {
    subject: Subject,
    severity: Severity,
    detail: String,
    hysteresis: Hysteresis,
}

#[derive(Debug)]
struct Track {
    /// Since when the condition holds without a break (`None`: not now).
    first: Option<(Instant, SystemTime)>,
    /// When it was last seen.
    last: Instant,
    /// The alarm, once raised.
    raised: Option<Alarm>,
    latest: Finding,
}

/// Counters of one VON as of the previous evaluation.
#[derive(Debug, Clone, Default)]
struct Previous {
    rate_drops: u64,
    auth_failures: u64,
    replays: u64,
    unknown_sender: u64,
    stale: u64,
    views_refused: u64,
    /// Per peer: frames passed, and per underlay the data copies arrived.
    passed: HashMap<String, u64>,
    copies: HashMap<(String, String), u64>,
}

/// Thresholds (`docs/alarms.md`).
pub mod limits {
    /// Data frames a peer must pass in one evaluation before the copies
    /// per underlay are compared.
    pub const LATENT_MIN_FRAMES: u64 = 20;
    /// A link is latent-faulty when fewer than this share (percent) of the
    /// peer's data frames arrived on it as a copy.
    pub const LATENT_COPIES_PERCENT: u64 = 80;
    /// Suspicious frames of one kind per evaluation that make a burst.
    pub const ATTACK_BURST: u64 = 20;
    /// A lease this close to expiry alarms.
    pub const LEASE_NEAR_MS: i64 = 10_000;
    /// Path skew alarms once skew × rate reaches this share (percent) of
    /// the replay window.
    pub const SKEW_PERCENT: u64 = 50;
    /// The replay window, in sequence numbers (`von_crypto::window`).
    pub const WINDOW: u64 = 16_320;
}

/// Raises and clears alarms from successive status documents.
#[derive(Debug, Default)]
pub struct Evaluator {
    tracks: BTreeMap<Subject, Track>,
    previous: HashMap<String, Previous>,
    last: Option<Instant>,
    /// Member ids seen in any view of each VON, with their names: a sender
    /// id refused as unknown that is here was a member (revoked, or left).
    former: HashMap<String, HashMap<u32, String>>,
    /// Host-wide frames with an unknown ON id per underlay, as of the
    /// previous evaluation.
    unknown_on_id: HashMap<String, u64>,
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn subject(alarm: &str, von: &str) -> Subject {
    Subject {
        alarm: alarm.to_owned(),
        von: Some(von.to_owned()),
        peer: None,
        underlay: None,
        source: None,
    }
}

impl Evaluator {
    /// Evaluates `report` at `now` (`wall` the same instant on the wall
    /// clock); returns the events, raises and clears, in subject order.
    pub fn evaluate(
        &mut self,
        now: Instant,
        wall: SystemTime,
        report: &StatusReport,
    ) -> Vec<AlarmEvent> {
        let elapsed = self
            .last
            .map(|t| now.saturating_duration_since(t))
            .unwrap_or(EVALUATE_EVERY);
        self.last = Some(now);
        let mut findings = Vec::new();
        for v in &report.vons {
            let prev = self.previous.get(&v.name).cloned();
            self.von(v, prev.as_ref(), elapsed, &mut findings);
            self.previous.insert(v.name.clone(), previous_of(v));
        }
        self.previous
            .retain(|name, _| report.vons.iter().any(|v| &v.name == name));
        for (name, u) in &report.underlays {
            let n = u.counters.unknown_on_id;
            if let Some(prev) = self.unknown_on_id.insert(name.to_string(), n) {
                let burst = n.saturating_sub(prev);
                if burst >= limits::ATTACK_BURST {
                    findings.push(Finding {
                        subject: Subject {
                            alarm: "attack_unknown_on_id".into(),
                            von: None,
                            peer: None,
                            underlay: Some(name.to_string()),
                            source: None,
                        },
                        severity: Severity::Major,
                        detail: format!(
                            "{burst} datagrams on underlay {name} in the last {:.1} s named an ON id no VON here serves",
                            elapsed.as_secs_f64()
                        ),
                        hysteresis: hyst(0, 10_000),
                    });
                }
            }
        }

        let mut events = Vec::new();
        let at_unix_ms = unix_ms(wall);
        let mut seen = Vec::with_capacity(findings.len());
        for f in findings {
            seen.push(f.subject.clone());
            let track = self.tracks.entry(f.subject.clone()).or_insert(Track {
                first: None,
                last: now,
                raised: None,
                latest: f.clone(),
            });
            let (first, first_wall) = *track.first.get_or_insert((now, wall));
            track.last = now;
            if let Some(a) = &mut track.raised {
                a.detail.clone_from(&f.detail);
                a.severity = f.severity;
            } else if now.saturating_duration_since(first) >= f.hysteresis.raise_after {
                let alarm = Alarm {
                    subject: f.subject.clone(),
                    severity: f.severity,
                    since_unix_ms: unix_ms(first_wall),
                    detail: f.detail.clone(),
                };
                events.push(AlarmEvent {
                    event: "raised".into(),
                    alarm: alarm.clone(),
                    at_unix_ms,
                });
                track.raised = Some(alarm);
            }
            track.latest = f;
        }
        self.tracks.retain(|subject, track| {
            if seen.contains(subject) {
                return true;
            }
            track.first = None;
            let gone = now.saturating_duration_since(track.last);
            match &track.raised {
                None => false,
                Some(_) if gone < track.latest.hysteresis.clear_after => true,
                Some(alarm) => {
                    events.push(AlarmEvent {
                        event: "cleared".into(),
                        alarm: alarm.clone(),
                        at_unix_ms,
                    });
                    false
                }
            }
        });
        events
    }

    /// The alarms raised and not cleared, most severe first.
    pub fn active(&self) -> Vec<Alarm> {
        let mut v: Vec<Alarm> = self
            .tracks
            .values()
            .filter_map(|t| t.raised.clone())
            .collect();
        v.sort_by(|a, b| (a.severity, &a.subject).cmp(&(b.severity, &b.subject)));
        v
    }

    fn von(
        &mut self,
        v: &VonStatus,
        prev: Option<&Previous>,
        elapsed: Duration,
        out: &mut Vec<Finding>,
    ) {
        let secs = elapsed.as_secs_f64().max(0.001);
        let former = self.former.entry(v.name.clone()).or_default();
        for p in &v.peers {
            former.insert(p.id, p.name.clone());
        }
        former.insert(v.member_id, v.member.clone());

        // Redundancy: a peer reachable on fewer than all its underlays, or
        // on none.
        for p in &v.peers {
            let links: Vec<_> = p
                .underlay
                .iter()
                .filter(|(_, l)| l.endpoint.is_some())
                .collect();
            let up = links
                .iter()
                .filter(|(_, l)| l.state == LinkState::Up)
                .count();
            if up == 0 && !links.is_empty() {
                out.push(Finding {
                    subject: Subject {
                        peer: Some(p.name.clone()),
                        ..subject("peer_unreachable", &v.name)
                    },
                    severity: Severity::Critical,
                    detail: format!(
                        "{} is heard on none of its {} underlays",
                        p.name,
                        links.len()
                    ),
                    hysteresis: hyst(0, 2_000),
                });
                continue;
            }
            for (name, l) in &links {
                if l.state == LinkState::Down {
                    out.push(Finding {
                        subject: Subject {
                            peer: Some(p.name.clone()),
                            underlay: Some(name.to_string()),
                            ..subject("redundancy_lost", &v.name)
                        },
                        severity: Severity::Major,
                        detail: format!(
                            "{} is heard on {up} of {} underlays: nothing authenticated on {name} for {}",
                            p.name,
                            links.len(),
                            l.last_heard_ms
                                .map_or("ever".to_owned(), |ms| format!("{:.1} s", ms as f64 / 1000.0))
                        ),
                        hysteresis: hyst(0, 2_000),
                    });
                }
            }
            // Latent error: the link is up (keepalives pass) but the peer's
            // data copies do not arrive on it.
            let Some(prev) = prev else { continue };
            let passed = p
                .elimination
                .passed
                .saturating_sub(prev.passed.get(&p.name).copied().unwrap_or(0));
            if passed < limits::LATENT_MIN_FRAMES || links.len() < 2 {
                continue;
            }
            for (name, l) in &links {
                if l.state != LinkState::Up {
                    continue;
                }
                let key = (p.name.clone(), name.to_string());
                let copies = (l.data_first + l.data_discarded)
                    .saturating_sub(prev.copies.get(&key).copied().unwrap_or(0));
                if copies * 100 < passed * limits::LATENT_COPIES_PERCENT {
                    out.push(Finding {
                        subject: Subject {
                            peer: Some(p.name.clone()),
                            underlay: Some(name.to_string()),
                            ..subject("latent_error", &v.name)
                        },
                        severity: Severity::Major,
                        detail: format!(
                            "{name} is up (keepalives pass) but carried {copies} of {passed} data frames from {} in the last {secs:.1} s: a path that drops data but not keepalives (MTU black hole, DSCP-based drop)",
                            p.name
                        ),
                        hysteresis: hyst(1_500, 5_000),
                    });
                }
            }
            // Path skew: the copies of one frame arrive this many sequence
            // numbers apart; past the window the slower copy cannot stand in.
            let rtts: Vec<u64> = links.iter().filter_map(|(_, l)| l.rtt_us).collect();
            if rtts.len() >= 2 {
                let skew_us = (rtts.iter().max().copied().unwrap_or(0)
                    - rtts.iter().min().copied().unwrap_or(0))
                    / 2;
                let rate = passed as f64 / secs;
                let frames = (skew_us as f64 / 1e6 * rate) as u64;
                if frames * 100 >= limits::WINDOW * limits::SKEW_PERCENT {
                    out.push(Finding {
                        subject: Subject {
                            peer: Some(p.name.clone()),
                            ..subject("path_skew", &v.name)
                        },
                        severity: if frames >= limits::WINDOW {
                            Severity::Major
                        } else {
                            Severity::Warning
                        },
                        detail: format!(
                            "the underlays to {} differ by about {:.1} ms one way; at {rate:.0} frames/s that is {frames} frames, {}% of the {}-frame window",
                            p.name,
                            skew_us as f64 / 1000.0,
                            frames * 100 / limits::WINDOW,
                            limits::WINDOW
                        ),
                        hysteresis: hyst(3_000, 5_000),
                    });
                }
            }
        }

        let c = &v.counters;
        if let Some(prev) = prev {
            // Contract: the edge drops what is over the rate.
            let drops = c.rate_drops.saturating_sub(prev.rate_drops);
            if drops > 0 {
                out.push(Finding {
                    subject: Subject {
                        peer: Some(v.member.clone()),
                        ..subject("contract_exceeded", &v.name)
                    },
                    severity: Severity::Minor,
                    detail: format!(
                        "{drops} packets from the applications dropped at the edge in the last {secs:.1} s: over the contracted {} bit/s",
                        v.rate_bps
                    ),
                    hysteresis: hyst(2_000, 5_000),
                });
            }
            // Attack signatures: bursts of frames refused as forged,
            // replayed, from unknown senders or stale.
            let evidence = &v.suspicious;
            for (kind, now_n, prev_n) in [
                ("auth_failures", c.auth_failures, prev.auth_failures),
                ("replays", c.replays, prev.replays),
                ("unknown_sender", c.unknown_sender, prev.unknown_sender),
                ("stale", c.stale, prev.stale),
            ] {
                let n = now_n.saturating_sub(prev_n);
                if n < limits::ATTACK_BURST {
                    continue;
                }
                let last = evidence.get(kind);
                let former_member = (kind == "unknown_sender")
                    .then(|| last.and_then(|e| e.sender))
                    .flatten()
                    .and_then(|id| former.get(&id).map(|name| (id, name.clone())));
                if let Some((id, name)) = &former_member {
                    if !v.peers.iter().any(|p| p.id == *id) {
                        out.push(Finding {
                            subject: Subject {
                                peer: Some(name.clone()),
                                underlay: last.and_then(|e| e.underlay.clone()),
                                source: last.and_then(|e| e.source.clone()),
                                ..subject("revoked_sender", &v.name)
                            },
                            severity: Severity::Major,
                            detail: format!(
                                "{n} frames in the last {secs:.1} s from {name} (member id {id}), no longer in the view (revoked or left), still sending"
                            ),
                            hysteresis: hyst(0, 10_000),
                        });
                        continue;
                    }
                }
                out.push(Finding {
                    subject: Subject {
                        underlay: last.and_then(|e| e.underlay.clone()),
                        source: last.and_then(|e| e.source.clone()),
                        ..subject(&format!("attack_{kind}"), &v.name)
                    },
                    severity: Severity::Major,
                    detail: format!(
                        "{n} frames refused as {} in the last {secs:.1} s{}",
                        kind.replace('_', " "),
                        last.map_or(String::new(), |e| format!(
                            ", the latest on {} from {}",
                            e.underlay.as_deref().unwrap_or("?"),
                            e.source.as_deref().unwrap_or("?")
                        ))
                    ),
                    hysteresis: hyst(0, 10_000),
                });
            }
        }

        // Control plane.
        if let Some(k) = &v.keymgr {
            let reason = k
                .reason
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default();
            let standing = match k.state.as_str() {
                "unreachable" => Some((
                    "keymgr_unreachable",
                    Severity::Major,
                    format!(
                        "the key manager cannot be reached{reason}; forwarding on the last view"
                    ),
                )),
                "revoked" => Some((
                    "member_revoked",
                    Severity::Critical,
                    format!("this member was revoked{reason}"),
                )),
                "refused" => Some((
                    "member_refused",
                    Severity::Critical,
                    format!("the key manager refused this member{reason}"),
                )),
                "view_refused" => Some((
                    "view_refused",
                    Severity::Major,
                    format!("this member refused a view{reason}"),
                )),
                _ => None,
            };
            if let Some((alarm, severity, detail)) = standing {
                out.push(Finding {
                    subject: subject(alarm, &v.name),
                    severity,
                    detail,
                    hysteresis: hyst(0, 2_000),
                });
            }
            if prev.is_some_and(|p| k.views_refused > p.views_refused) && k.state != "view_refused"
            {
                out.push(Finding {
                    subject: subject("view_refused", &v.name),
                    severity: Severity::Major,
                    detail: format!(
                        "this member refused a view ({} since start){reason}",
                        k.views_refused
                    ),
                    hysteresis: hyst(0, 60_000),
                });
            }
        }
        if let Some(l) = v.lease {
            if l.expires_in_ms < limits::LEASE_NEAR_MS {
                let (alarm, severity, detail) = if l.expires_in_ms < 0 {
                    (
                        "lease_lost",
                        Severity::Critical,
                        format!(
                            "the lease expired {:.1} s ago: the key manager has dropped this member",
                            -l.expires_in_ms as f64 / 1000.0
                        ),
                    )
                } else {
                    (
                        "lease_near_expiry",
                        Severity::Major,
                        format!(
                            "the lease expires in {:.1} s and is not renewed",
                            l.expires_in_ms as f64 / 1000.0
                        ),
                    )
                };
                out.push(Finding {
                    subject: subject(alarm, &v.name),
                    severity,
                    detail,
                    hysteresis: hyst(0, 2_000),
                });
            }
        }

        // Route conflicts, from the guard's 2 s check (docs/leaks.md).
        for r in &v.guard.route_conflicts {
            out.push(Finding {
                subject: Subject {
                    source: Some(r.dst.to_string()),
                    ..subject("route_conflict", &v.name)
                },
                severity: Severity::Major,
                detail: format!("{} conflict {}: {}", r.kind.name(), r.dst, r.reason),
                // Held one guard check (2 s): the guard's first check can
                // see the TUN route missing for a moment at start-up.
                hysteresis: hyst(2_000, 3_000),
            });
        }
    }
}

fn previous_of(v: &VonStatus) -> Previous {
    let c = &v.counters;
    Previous {
        rate_drops: c.rate_drops,
        auth_failures: c.auth_failures,
        replays: c.replays,
        unknown_sender: c.unknown_sender,
        stale: c.stale,
        views_refused: v.keymgr.as_ref().map_or(0, |k| k.views_refused),
        passed: v
            .peers
            .iter()
            .map(|p| (p.name.clone(), p.elimination.passed))
            .collect(),
        copies: v
            .peers
            .iter()
            .flat_map(|p| {
                p.underlay.iter().map(|(u, l)| {
                    (
                        (p.name.clone(), u.to_string()),
                        l.data_first + l.data_discarded,
                    )
                })
            })
            .collect(),
    }
}

/// One log line per event.
fn log(event: &AlarmEvent) {
    let a = &event.alarm;
    let s = &a.subject;
    let field = |o: &Option<String>| o.clone().unwrap_or_default();
    if event.event == "raised" {
        warn!(
            alarm = %s.alarm, severity = a.severity.name(), von = %field(&s.von),
            peer = %field(&s.peer), underlay = %field(&s.underlay), source = %field(&s.source),
            "alarm raised: {}", a.detail
        );
    } else {
        info!(
            alarm = %s.alarm, severity = a.severity.name(), von = %field(&s.von),
            peer = %field(&s.peer), underlay = %field(&s.underlay), source = %field(&s.source),
            "alarm cleared after {:.1} s",
            event.at_unix_ms.saturating_sub(a.since_unix_ms) as f64 / 1000.0
        );
    }
}

/// Evaluates `source` every [`EVALUATE_EVERY`], publishes the active alarms
/// in `shared`, logs each event and hands it to the hook. Runs on the
/// operator runtime until the agent stops.
pub async fn run(source: Arc<StatusSource>, hook: Option<PathBuf>) {
    let shared = source.alarms.clone();
    let hook = hook.map(|program| {
        let (tx, rx) = tokio::sync::mpsc::channel::<AlarmEvent>(HOOK_QUEUE);
        tokio::spawn(run_hook(program, rx, source.alarm_hook_dropped.clone()));
        tx
    });
    let mut evaluator = Evaluator::default();
    let mut tick = tokio::time::interval(EVALUATE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        let report = source.report();
        let events = evaluator.evaluate(Instant::now(), SystemTime::now(), &report);
        shared.store(Arc::new(evaluator.active()));
        for e in events {
            log(&e);
            if let Some(tx) = &hook {
                if tx.try_send(e).is_err() {
                    let n = source
                        .alarm_hook_dropped
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if n.is_power_of_two() || n == 0 {
                        warn!(
                            dropped = n + 1,
                            "alarm hook is behind ({HOOK_QUEUE} events waiting): event not handed to it"
                        );
                    }
                }
            }
        }
    }
}

/// Runs `program` once per event, one at a time, the event's JSON on its
/// stdin; kills it after [`HOOK_TIMEOUT`]. Never blocks the evaluation:
/// events queue (at most [`HOOK_QUEUE`]) while one runs.
async fn run_hook(
    program: PathBuf,
    mut rx: tokio::sync::mpsc::Receiver<AlarmEvent>,
    _dropped: Arc<std::sync::atomic::AtomicU64>,
) {
    use tokio::io::AsyncWriteExt;
    while let Some(event) = rx.recv().await {
        let mut json = serde_json::to_vec(&event).unwrap_or_default();
        json.push(b'\n');
        let child = tokio::process::Command::new(&program)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn();
        let mut child = match child {
            Ok(c) => c,
            Err(e) => {
                warn!(hook = %program.display(), "alarm hook could not start: {e} (check alarm_hook in von.toml)");
                continue;
            }
        };
        let run = async {
            if let Some(mut stdin) = child.stdin.take() {
                // A hook that does not read its stdin only loses the event.
                let _ = stdin.write_all(&json).await;
            }
            child.wait().await
        };
        match tokio::time::timeout(HOOK_TIMEOUT, run).await {
            Ok(Ok(status)) if status.success() => {}
            Ok(Ok(status)) => {
                warn!(hook = %program.display(), alarm = %event.alarm.subject.alarm, "alarm hook exited with {status}");
            }
            Ok(Err(e)) => warn!(hook = %program.display(), "alarm hook: {e}"),
            Err(_) => {
                let _ = child.kill().await;
                warn!(hook = %program.display(), alarm = %event.alarm.subject.alarm,
                    "alarm hook killed after {HOOK_TIMEOUT:?}");
            }
        }
    }
}

/// The latest suspicious frame of each kind one VON refused: on which
/// underlay, from which outer source, naming which sender. Written by the
/// inbound loop on the drop path only (one uncontended lock per refused
/// frame and no allocation: a flood of forgeries lands here, so what is
/// kept is `Copy` and becomes text only when status reads it), read by
/// status; the alarms name the underlay and source.
#[derive(Debug, Default)]
pub struct Suspicious {
    kinds: [std::sync::Mutex<Option<Refused>>; SUSPICIOUS.len()],
}

/// One refused frame as the drop path keeps it.
#[derive(Debug, Clone, Copy)]
struct Refused {
    underlay: von_packet::UnderlayName,
    source: Option<std::net::SocketAddr>,
    sender: Option<u32>,
}

/// The kinds [`Suspicious`] keeps, by their counter names.
const SUSPICIOUS: [(von_packet::DropReason, &str); 4] = [
    (von_packet::DropReason::AuthFailed, "auth_failures"),
    (von_packet::DropReason::Replay, "replays"),
    (von_packet::DropReason::UnknownSender, "unknown_sender"),
    (von_packet::DropReason::Stale, "stale"),
];

/// One suspicious frame, as status shows it (`suspicious.KIND`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    /// The underlay it arrived on.
    pub underlay: Option<String>,
    /// Its outer source `IP:PORT`.
    pub source: Option<String>,
    /// The sender id its header named.
    pub sender: Option<u32>,
}

impl Suspicious {
    /// A frame refused for `reason` arrived on `underlay` from `source`;
    /// `frame` is its bytes (the header names the sender). Other reasons
    /// are ignored.
    pub fn record(
        &self,
        reason: von_packet::DropReason,
        underlay: von_packet::UnderlayName,
        source: Option<std::net::SocketAddr>,
        frame: &[u8],
    ) {
        let Some(i) = SUSPICIOUS.iter().position(|(r, _)| *r == reason) else {
            return;
        };
        let sender = von_crypto::Header::parse_bytes(frame)
            .ok()
            .map(|h| h.sender.0);
        *self.kinds[i].lock().unwrap_or_else(|p| p.into_inner()) = Some(Refused {
            underlay,
            source,
            sender,
        });
    }

    /// The latest of each kind seen, by counter name.
    pub fn snapshot(&self) -> BTreeMap<String, Evidence> {
        SUSPICIOUS
            .iter()
            .zip(&self.kinds)
            .filter_map(|((_, name), k)| {
                let r = (*k.lock().unwrap_or_else(|p| p.into_inner()))?;
                let e = Evidence {
                    underlay: Some(r.underlay.as_str().to_owned()),
                    source: r.source.map(|s| s.to_string()),
                    sender: r.sender,
                };
                Some(((*name).to_owned(), e))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A document of VON "grid" with one peer, h1, both links up.
    fn report() -> StatusReport {
        let source = crate::status::tests::test_source("static", Arc::default());
        let mut r = source.report();
        for l in r.vons[0].peers[0].underlay.values_mut() {
            l.state = LinkState::Up;
        }
        r
    }

    fn link<'a>(r: &'a mut StatusReport, u: &str) -> &'a mut crate::health::LinkStatus {
        r.vons[0].peers[0]
            .underlay
            .iter_mut()
            .find(|(n, _)| n.as_str() == u)
            .map(|(_, l)| l)
            .expect("the underlay")
    }

    fn names(events: &[AlarmEvent]) -> Vec<(String, String)> {
        events
            .iter()
            .map(|e| (e.event.clone(), e.alarm.subject.alarm.clone()))
            .collect()
    }

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn a_link_down_raises_redundancy_lost_at_once_and_clears_two_seconds_after() {
        let (t0, w0) = (Instant::now(), SystemTime::now());
        let mut e = Evaluator::default();
        let mut r = report();
        assert!(e.evaluate(t0, w0, &r).is_empty(), "healthy: nothing");
        link(&mut r, "b").state = LinkState::Down;
        let ev = e.evaluate(t0 + S, w0 + S, &r);
        assert_eq!(names(&ev), [("raised".into(), "redundancy_lost".into())]);
        let a = &ev[0].alarm;
        assert_eq!(a.severity, Severity::Major);
        assert_eq!(a.subject.peer.as_deref(), Some("h2"));
        assert_eq!(a.subject.underlay.as_deref(), Some("b"));
        assert_eq!(e.active().len(), 1);
        assert!(
            e.evaluate(t0 + 2 * S, w0 + 2 * S, &r).is_empty(),
            "raised once"
        );
        link(&mut r, "b").state = LinkState::Up;
        assert!(
            e.evaluate(t0 + 3 * S, w0 + 3 * S, &r).is_empty(),
            "hysteresis: not cleared at once"
        );
        let ev = e.evaluate(t0 + 5 * S, w0 + 5 * S, &r);
        assert_eq!(names(&ev), [("cleared".into(), "redundancy_lost".into())]);
        assert!(e.active().is_empty());
        // Both down: the peer is unreachable, one critical alarm.
        link(&mut r, "a").state = LinkState::Down;
        link(&mut r, "b").state = LinkState::Down;
        let ev = e.evaluate(t0 + 6 * S, w0 + 6 * S, &r);
        assert_eq!(names(&ev), [("raised".into(), "peer_unreachable".into())]);
        assert_eq!(ev[0].alarm.severity, Severity::Critical);
    }

    #[test]
    fn data_copies_missing_on_an_up_link_raise_latent_error() {
        let (t0, w0) = (Instant::now(), SystemTime::now());
        let mut e = Evaluator::default();
        let mut r = report();
        e.evaluate(t0, w0, &r);
        let mut raised = None;
        for i in 1..=4u32 {
            r.vons[0].peers[0].elimination.passed += 100;
            link(&mut r, "a").data_first += 100;
            link(&mut r, "b").data_discarded += 10;
            let ev = e.evaluate(t0 + i * S, w0 + i * S, &r);
            if !ev.is_empty() {
                assert_eq!(names(&ev), [("raised".into(), "latent_error".into())]);
                assert_eq!(ev[0].alarm.subject.underlay.as_deref(), Some("b"));
                raised.get_or_insert(i);
            }
        }
        assert_eq!(
            raised,
            Some(3),
            "held 1.5 s: raised at the third bad second"
        );
        // Copies flow on B again: cleared 5 s after the last bad second.
        let mut cleared = None;
        for i in 5..=12u32 {
            r.vons[0].peers[0].elimination.passed += 100;
            link(&mut r, "a").data_first += 60;
            link(&mut r, "b").data_first += 40;
            link(&mut r, "a").data_discarded += 40;
            link(&mut r, "b").data_discarded += 60;
            if !e.evaluate(t0 + i * S, w0 + i * S, &r).is_empty() {
                cleared.get_or_insert(i);
            }
        }
        assert_eq!(cleared, Some(9));
    }

    #[test]
    fn sustained_edge_drops_raise_contract_exceeded() {
        let (t0, w0) = (Instant::now(), SystemTime::now());
        let mut e = Evaluator::default();
        let mut r = report();
        e.evaluate(t0, w0, &r);
        r.vons[0].counters.rate_drops += 5;
        assert!(
            e.evaluate(t0 + S, w0 + S, &r).is_empty(),
            "one second is a burst"
        );
        r.vons[0].counters.rate_drops += 5;
        assert!(e.evaluate(t0 + 2 * S, w0 + 2 * S, &r).is_empty());
        r.vons[0].counters.rate_drops += 5;
        let ev = e.evaluate(t0 + 3 * S, w0 + 3 * S, &r);
        assert_eq!(names(&ev), [("raised".into(), "contract_exceeded".into())]);
        assert_eq!(
            ev[0].alarm.since_unix_ms,
            unix_ms(w0 + S),
            "since the first drop"
        );
    }

    #[test]
    fn a_burst_of_forgeries_names_underlay_and_source_and_a_former_member_is_revoked_sender() {
        let (t0, w0) = (Instant::now(), SystemTime::now());
        let mut e = Evaluator::default();
        let mut r = report();
        e.evaluate(t0, w0, &r);
        r.vons[0].counters.auth_failures += 50;
        let evidence = Evidence {
            underlay: Some("b".into()),
            source: Some("198.51.100.9:4000".into()),
            sender: Some(2),
        };
        r.vons[0]
            .suspicious
            .insert("auth_failures".into(), evidence.clone());
        let ev = e.evaluate(t0 + S, w0 + S, &r);
        assert_eq!(
            names(&ev),
            [("raised".into(), "attack_auth_failures".into())]
        );
        assert_eq!(
            ev[0].alarm.subject.source.as_deref(),
            Some("198.51.100.9:4000")
        );
        assert_eq!(ev[0].alarm.subject.underlay.as_deref(), Some("b"));
        // h2 (id 2) leaves the view, and its frames keep coming.
        let peer = r.vons[0].peers.remove(0);
        assert_eq!(peer.id, 2);
        r.vons[0].counters.unknown_sender += 30;
        r.vons[0]
            .suspicious
            .insert("unknown_sender".into(), evidence);
        let ev = e.evaluate(t0 + 2 * S, w0 + 2 * S, &r);
        assert_eq!(names(&ev), [("raised".into(), "revoked_sender".into())]);
        assert_eq!(ev[0].alarm.subject.peer.as_deref(), Some("h2"));
        // A trickle below the burst raises nothing new.
        r.vons[0].counters.auth_failures += 3;
        assert!(e.evaluate(t0 + 3 * S, w0 + 3 * S, &r).is_empty());
    }
}
