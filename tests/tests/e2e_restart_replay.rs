//! Issue 11 (1): a receiver restarted at any moment never delivers a frame
//! it could have delivered before. h2 records 200 of h1's data frames on
//! underlay A; then h2's agent is restarted four ways — `kill -9` with its
//! `state_dir` kept, a clean stop (SIGTERM), `kill -9` with `state_dir`
//! deleted, `kill -9` with `state_dir` restored from a copy taken at its
//! first start — and after each the recording is sent again, byte for byte,
//! from h1's namespace. Each time: 0 delivered, every frame counted as
//! `stale` (or `unproven`), none opened. While h2 restarts, h1 pings it
//! every 10 ms; the test measures when h2 accepts h1's traffic again.
//!
//! ```text
//!  ┌─────────── h1 ───────────┐                ┌─────────── h2 ───────────┐
//!  │ ping ─► von-grid         │                │ von-grid 100.64.1.2      │
//!  │ [von up]                 │                │ [von up] ◄─ restarted 4x │
//!  │ ua 192.0.2.1 ────────────┼─── veth A ─────┼─► ua ◄── record 200 (1)  │
//!  │ ub 198.51.100.1 ─────────┼─── veth B ─────┼── ub                     │
//!  │ send-raw-file (2) ──► the 200 again, after every restart             │
//!  └──────────────────────────┘                └──────────────────────────┘
//! ```

use std::time::{Duration, Instant};
use von_tests::files::{copy_dir, remove_dir};

use von_tests::agent::Stop;
use von_tests::{Ping, Record, Result, Tool, Topology, UNDERLAY_PORT, Underlay, VonSpec};

/// What happens to h2's `state_dir` while its agent is down.
#[derive(Debug, Clone, Copy)]
enum State {
    Kept,
    Deleted,
    RestoredFromOldCopy,
}

/// The issue's bound on the time to accept a peer's traffic after a restart.
const ACCEPT_WITHIN: Duration = Duration::from_secs(2);
const RECORDED: usize = 200;

#[test]
fn a_restarted_receiver_delivers_no_recorded_frame_and_soon_accepts_new_ones() -> Result<()> {
    if !von_tests::e2e_enabled("e2e restart replay")? {
        return Ok(());
    }
    let tool = Tool::new(env!("CARGO_BIN_EXE_von-e2e-tool"));
    let mut topo = Topology::new(2)?;
    let grid = VonSpec::new("grid", 7, 1, &[1, 2]);
    topo.start(std::slice::from_ref(&grid))?;
    let (h1a, h2a) = (
        topo.host(1).underlay_addr(Underlay::A),
        topo.host(2).underlay_addr(Underlay::A),
    );
    let old_copy = topo.dir().path().join("h2-state-at-first-start");
    copy_dir(&topo.state_dir(2), &old_copy)?;

    // (1) Record 200 data frames from h1 (pings of 200 bytes; keepalives
    // are shorter than the 150-byte floor of the recording).
    let file = topo.dir().path().join("recorded.hex");
    let what = Record {
        src: Some(h1a),
        dport: UNDERLAY_PORT,
        min_len: 150,
        count: Some(RECORDED as u64),
        seconds: 30,
    };
    let recorder = tool.start_record(topo.host(2).ns(), &what, &file)?;
    // More pings than recorded frames: the recorder may open its socket
    // after the first ones left.
    let r = Ping::new(grid.address(2), RECORDED as u32 + 50)
        .size(200)
        .interval(Duration::from_millis(10))
        .run(topo.host(1).ns())?;
    assert_eq!(r.lost(), 0, "{}", r.output);
    recorder.wait(Duration::from_secs(30))?;
    let replay: Vec<Vec<u8>> = Tool::recorded(&file)?
        .iter()
        .map(|p| von_tests::packet::readdress_udp(p, h1a, h2a).expect("an IPv4/UDP packet"))
        .collect();
    assert_eq!(replay.len(), RECORDED, "frames recorded");
    let scratch = topo.dir().path().join("replay.hex");

    let scenarios = [
        ("kill -9, state_dir kept", Stop::Kill, State::Kept),
        ("clean stop, state_dir kept", Stop::Term, State::Kept),
        ("kill -9, state_dir deleted", Stop::Kill, State::Deleted),
        (
            "kill -9, state_dir restored from an old copy",
            Stop::Kill,
            State::RestoredFromOldCopy,
        ),
    ];
    let mut failures = Vec::new();
    for (what, how, state) in scenarios {
        // h1 pings h2 all through the restart, every 10 ms.
        let ping = Ping::new(grid.address(2), 3_000)
            .interval(Duration::from_millis(10))
            .spawn(topo.host(1).ns())?;
        let started = topo.restart_agent(2, how, |dir| match state {
            State::Kept => Ok(()),
            State::Deleted => remove_dir(dir),
            State::RestoredFromOldCopy => {
                remove_dir(dir)?;
                copy_dir(&old_copy, dir)
            }
        })?;
        let ready = Instant::now();
        let accepted = von_tests::wait_for(
            "h2 to accept h1's new traffic",
            Duration::from_secs(10),
            || {
                let c = topo.agent(2).counters("grid")?;
                Ok(if c.get("delivered")? >= 1 {
                    Ok(Instant::now())
                } else {
                    Err(format!(
                        "nothing delivered yet; unproven {}",
                        c.get("unproven").unwrap_or(0)
                    ))
                })
            },
        )?;
        drop(ping);
        std::thread::sleep(Duration::from_millis(300));

        // (2) The recording again.
        let agent = topo.agent(2);
        let before = agent.counters("grid")?;
        tool.send_raw_all(topo.host(1).ns(), &replay, &scratch)?;
        let after = von_tests::wait_for(
            "the replayed frames to be counted",
            Duration::from_secs(10),
            || {
                let now = agent.counters("grid")?;
                let got = before.delta_on(&now, Underlay::A, "rx_frames")?;
                Ok(if got >= RECORDED as u64 {
                    Ok(now)
                } else {
                    Err(format!("{got} of {RECORDED} received"))
                })
            },
        )?;
        let delivered = before.delta(&after, "delivered")?;
        // (Read leniently: an agent from before these counters has neither.)
        let lenient = |name: &str| {
            after
                .get(name)
                .unwrap_or(0)
                .saturating_sub(before.get(name).unwrap_or(0))
        };
        let refused = lenient("stale") + lenient("unproven");
        let opened = before.delta(&after, "aead_opens")?;
        let since_start = accepted - started;
        let since_ready = accepted.saturating_duration_since(ready);
        eprintln!(
            "{what}: replayed {RECORDED}, delivered {delivered}, refused (stale + unproven) \
             {refused}, opened {opened}; h1's traffic accepted {:.0} ms after `von up` \
             started ({:.0} ms after it was ready)",
            since_start.as_secs_f64() * 1e3,
            since_ready.as_secs_f64() * 1e3,
        );
        if delivered != 0 || refused != RECORDED as u64 || opened != 0 {
            failures.push(format!(
                "{what}: delivered {delivered}, refused {refused}, opened {opened}"
            ));
        }
        if since_ready > ACCEPT_WITHIN {
            failures.push(format!("{what}: accepted only {since_ready:?} after ready"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    Ok(())
}
