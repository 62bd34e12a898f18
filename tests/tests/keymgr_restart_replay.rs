//! Issue 11 (1) in keymgr mode: a restarted receiver delivers no recorded
//! frame, whether it rejoins on the epoch it had or the group rekeys. h1 and
//! h2 are members of a VON run by a key manager (standalone `von keymgr` on
//! h4, and again with the key manager embedded in h1's agent). h2 records
//! 200 of h1's data frames on underlay A; then h2's agent is restarted four
//! ways — `kill -9` with its `state_dir` kept, a clean stop (SIGTERM; it
//! leaves the group), `kill -9` with `state_dir` deleted (it has no key and
//! must rejoin), `kill -9` with `state_dir` restored from a copy taken at its
//! first start (an old view and key). Before each restart h2 records 200
//! more; after it, both recordings are sent again, byte for byte, from h1's
//! namespace: 0 delivered, 0 opened, every frame counted once as a refusal
//! (`stale`, `unproven`, or `unknown_epoch` when the group rekeyed past the
//! recording's epoch). While h2 restarts, h1 pings it every 10 ms; the test
//! measures when h2 accepts h1's traffic again, and reads the epochs.
//!
//! ```text
//!  ┌──── h1 ─────┐      ┌──── h2 ──────────┐      ┌──── h4 ─────┐
//!  │ ping ──►    │      │ von up ◄ 4 restarts     │ von keymgr  │
//!  │ von up      │      │ ua ◄ record 200 (1)│    │ (or embedded│
//!  │ ua ─────────┼─ A ──┼─►                │      │  in h1)     │
//!  │ send-raw-file (2): both recordings after every restart       │
//!  └─────────────┘      └──────────────────┘      └─────────────┘
//! ```
//! Topology in `keymgr_common/mod.rs`.

mod keymgr_common;

use std::path::Path;
use std::time::{Duration, Instant};

use keymgr_common::{KmWorld, VON};
use von_crypto::{FrameType, Header};
use von_tests::files::{copy_dir, remove_dir};
use von_tests::packet::{readdress_udp, udp_payload};
use von_tests::{Ping, Record, Result, Tool, UNDERLAY_PORT, Underlay, VonCounters};

/// The issue's bound on the time to accept a peer's traffic after a restart.
const ACCEPT_WITHIN: Duration = Duration::from_secs(2);
const RECORDED: usize = 200;

/// What happens to h2's `state_dir` while its agent is down.
#[derive(Debug, Clone, Copy)]
enum State {
    Kept,
    Deleted,
    RestoredFromOldCopy,
}

#[test]
fn standalone_keymgr_restarted_receiver_delivers_no_recorded_frame() -> Result<()> {
    if !von_tests::e2e_enabled("e2e keymgr restart replay")? {
        return Ok(());
    }
    run("standalone key manager", KmWorld::new(2)?)
}

#[test]
fn embedded_keymgr_restarted_receiver_delivers_no_recorded_frame() -> Result<()> {
    if !von_tests::e2e_enabled("e2e keymgr restart replay (embedded)")? {
        return Ok(());
    }
    run("embedded key manager", KmWorld::new_embedded(2)?)
}

/// Frames of h1 recorded at h2, readdressed to be sent from h1 again.
struct Recording {
    name: String,
    packets: Vec<Vec<u8>>,
    /// The epochs the frames were sealed under.
    epochs: Vec<u32>,
}

fn run(kind: &str, mut w: KmWorld) -> Result<()> {
    w.start(2)?;
    let tool = Tool::new(env!("CARGO_BIN_EXE_von-e2e-tool"));
    let state = std::path::PathBuf::from(w.path("h2-state"));
    let old_copy = std::path::PathBuf::from(w.path("h2-state-at-first-start"));
    copy_dir(&state, &old_copy)?;
    let first = record(&w, &tool, "first recording")?;

    let scenarios = [
        ("kill -9, state_dir kept", "KILL", State::Kept),
        ("clean stop, state_dir kept", "TERM", State::Kept),
        ("kill -9, state_dir deleted", "KILL", State::Deleted),
        (
            "kill -9, state_dir restored from an old copy",
            "KILL",
            State::RestoredFromOldCopy,
        ),
    ];
    let mut failures = Vec::new();
    for (i, (what, sig, how)) in scenarios.into_iter().enumerate() {
        let last = record(
            &w,
            &tool,
            &format!("recorded just before restart {}", i + 1),
        )?;
        let before = (w.epoch(1)?, w.epoch(2)?);

        // h1 pings h2 all through the restart, every 10 ms.
        let ping = Ping::new(KmWorld::address(2), 3_000)
            .interval(Duration::from_millis(10))
            .spawn(w.topo.host(1).ns())?;
        w.stop_agent(2, sig)?;
        match how {
            State::Kept => {}
            State::Deleted => remove_dir(&state)?,
            State::RestoredFromOldCopy => {
                remove_dir(&state)?;
                copy_dir(&old_copy, &state)?;
            }
        }
        let started = Instant::now();
        w.spawn_agent(2)?;
        w.wait(20, "h2 to report a view after its restart", |w| {
            w.epoch(2).is_ok()
        })?;
        let ready = Instant::now();
        let restarted_on = w.epoch(2)?;
        w.wait(10, "h2 to accept h1's new traffic", |w| {
            counters(w).is_ok_and(|c| c.get("delivered").unwrap_or(0) >= 1)
        })?;
        let accepted = Instant::now();
        drop(ping);
        std::thread::sleep(Duration::from_millis(300));
        let after = (w.epoch(1)?, w.epoch(2)?);
        let since_start = accepted - started;
        let since_ready = accepted - ready;
        eprintln!(
            "{kind}, {what}: epochs h1/h2 {}/{} before; h2 came up on {restarted_on}; \
             {}/{} once h1's traffic was accepted ({}); accepted {:.0} ms after `von up` \
             started, {:.0} ms after h2 reported a view",
            before.0,
            before.1,
            after.0,
            after.1,
            if after.1 == before.1 {
                "rejoined on the same epoch"
            } else {
                "the group rekeyed"
            },
            since_start.as_secs_f64() * 1e3,
            since_ready.as_secs_f64() * 1e3,
        );
        if since_ready > ACCEPT_WITHIN {
            failures.push(format!(
                "{kind}, {what}: h1's traffic accepted only {since_ready:?} after h2 had a view"
            ));
        }

        // (2) Both recordings again, each byte for byte.
        for rec in [&first, &last] {
            if let Err(e) = replay(&w, &tool, rec, &format!("{kind}, {what}")) {
                failures.push(e);
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}\n{}", w.logs());
    Ok(())
}

/// h2's counters of the VON now.
fn counters(w: &KmWorld) -> Result<VonCounters> {
    w.status(2)?.von(VON)
}

/// Records `RECORDED` of h1's data frames on underlay A at h2 (pings of 200
/// bytes; keepalives are far shorter than the 250-byte floor).
fn record(w: &KmWorld, tool: &Tool, name: &str) -> Result<Recording> {
    let (h1a, h2a) = (
        w.topo.host(1).underlay_addr(Underlay::A),
        w.topo.host(2).underlay_addr(Underlay::A),
    );
    let file = Path::new(&w.path(&format!("{}.hex", name.replace(' ', "-")))).to_owned();
    let what = Record {
        src: Some(h1a),
        dport: UNDERLAY_PORT,
        min_len: 250,
        count: Some(RECORDED as u64),
        seconds: 30,
    };
    let recorder = tool.start_record(w.topo.host(2).ns(), &what, &file)?;
    // More pings than recorded frames: the recorder may open its socket
    // after the first ones left.
    let r = Ping::new(KmWorld::address(2), RECORDED as u32 + 50)
        .size(200)
        .interval(Duration::from_millis(10))
        .run(w.topo.host(1).ns())?;
    assert_eq!(r.lost(), 0, "{}\n{}", r.output, w.logs());
    recorder.wait(Duration::from_secs(30))?;
    let mut packets = Vec::new();
    let mut epochs = Vec::new();
    for p in Tool::recorded(&file)? {
        let header = udp_payload(&p)
            .and_then(|f| Header::parse_bytes(f).ok())
            .expect("a recorded von frame");
        assert_eq!(header.frame_type, FrameType::Data, "{name}: {header:?}");
        if !epochs.contains(&header.epoch.0) {
            epochs.push(header.epoch.0);
        }
        packets.push(readdress_udp(&p, h1a, h2a).expect("an IPv4/UDP packet"));
    }
    assert_eq!(packets.len(), RECORDED, "{name}: frames recorded");
    Ok(Recording {
        name: name.to_owned(),
        packets,
        epochs,
    })
}

/// Sends `rec` to h2 again and checks every frame was refused unopened;
/// the error says what was wrong.
fn replay(
    w: &KmWorld,
    tool: &Tool,
    rec: &Recording,
    when: &str,
) -> std::result::Result<(), String> {
    let scratch = Path::new(&w.path("replay.hex")).to_owned();
    let run = || -> Result<(VonCounters, VonCounters)> {
        let before = counters(w)?;
        tool.send_raw_all(w.topo.host(1).ns(), &rec.packets, &scratch)?;
        let after = von_tests::wait_for(
            "the replayed frames to be counted",
            Duration::from_secs(10),
            || {
                let now = counters(w)?;
                let got = before.delta_on(&now, Underlay::A, "rx_frames")?;
                let judged = before.judged(&now)?;
                Ok(if got >= RECORDED as u64 && judged >= RECORDED as u64 {
                    Ok(now)
                } else {
                    Err(format!("{got} of {RECORDED} received, {judged} judged"))
                })
            },
        )?;
        Ok((before, after))
    };
    let (before, after) = run().map_err(|e| format!("{when}, {}: {e}", rec.name))?;
    let d = |name: &str| before.delta(&after, name).unwrap_or(u64::MAX);
    let refusals = [
        "stale",
        "unproven",
        "unknown_epoch",
        "replays",
        "duplicates",
        "too_old",
    ];
    let refused: u64 = refusals.iter().map(|n| d(n)).sum();
    let breakdown: Vec<String> = refusals
        .iter()
        .filter(|n| d(n) > 0)
        .map(|n| format!("{} {n}", d(n)))
        .collect();
    let (delivered, opened) = (d("delivered"), d("aead_opens"));
    eprintln!(
        "  {when}: replayed {RECORDED} of the {} (epochs {:?}): delivered {delivered}, \
         opened {opened}, refused {refused} ({})",
        rec.name,
        rec.epochs,
        breakdown.join(", "),
    );
    if delivered != 0 || opened != 0 || refused != RECORDED as u64 {
        return Err(format!(
            "{when}, {}: delivered {delivered}, opened {opened}, refused {refused} ({})",
            rec.name,
            breakdown.join(", ")
        ));
    }
    Ok(())
}
