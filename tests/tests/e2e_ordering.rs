//! Issue 15: in-order delivery per VON (`ordering = "100ms"`, after RFC
//! 9550's POF) with real agents over skewed paths.
//!
//! h1 streams sequence-numbered UDP datagrams to h2 through the VON.
//! Underlay A reaches h2's agent 50 ms late: nft on h2 drops h1's frames on
//! `ua`, and a relay (`von-e2e-tool delay`) that saw them arrive (AF_PACKET,
//! before netfilter) sends each again, in order, 50 ms later. Underlay B is
//! direct and loses 20 % (nft `numgen random`). A frame lost on B comes 50 ms
//! later on A, behind the ones B delivered in between.
//!
//! 1. Without ordering: some datagrams arrive out of order (counted).
//! 2. `ordering = "100ms"` is added to h2's von.toml and applied live by
//!    SIGHUP; the same stream arrives with 0 out of order, and h2's ordering
//!    counters for h1 add up to the frames its window accepted.
//!
//! ```text
//!  ┌─ h1 ─────────┐ ── ua ──► ┌─ h2: nft drops ua originals; relay +50 ms → agent ─┐
//!  │ seq-send ──► │ ── ub ──► │  nft drops 20 % on ub        seq-recv: in order?    │
//!  └──────────────┘           └──────────────────────────────────────────────────────┘
//! ```

use std::time::{Duration, Instant};

use serde_json::Value;
use von_tests::process::{self, Background};
use von_tests::{Result, Topology, UNDERLAY_PORT, Underlay, VonSpec};

const TOOL: &str = env!("CARGO_BIN_EXE_von-e2e-tool");
/// Datagrams per run, one a millisecond.
const COUNT: u32 = 3_000;
const PORT: u16 = 9_000;

/// h2's status entry for peer h1 in VON grid.
fn h1_at_h2(topo: &Topology) -> Result<Value> {
    let status = topo.agent(2).status()?;
    Ok(status.peer("grid", "h1").cloned().unwrap_or(Value::Null))
}

fn n(v: &Value, path: &[&str]) -> u64 {
    let mut at = v;
    for p in path {
        at = &at[*p];
    }
    at.as_u64()
        .unwrap_or_else(|| panic!("no {} in {v}", path.join(".")))
}

/// One run of the stream: what `seq-recv` reported.
fn stream(topo: &Topology, grid: &VonSpec, run: u32, count: u32) -> Result<Value> {
    let ready = topo.dir().path().join(format!("seq-ready-{run}"));
    let listen = format!("{}:{PORT}", grid.address(2));
    let mut recv = topo.host(2).ns().command(TOOL);
    recv.args([
        "seq-recv",
        "--listen",
        &listen,
        "--count",
        &count.to_string(),
    ])
    .args(["--run", &run.to_string(), "--secs", "60", "--ready"])
    .arg(&ready);
    let recv = Background::spawn(&mut recv)?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ready.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut send = topo.host(1).ns().command(TOOL);
    send.args([
        "seq-send",
        "--connect",
        &listen,
        "--count",
        &count.to_string(),
    ])
    .args(["--interval-us", "1000", "--run", &run.to_string()]);
    let sent = process::run(&mut send, Duration::from_secs(60))?;
    assert!(sent.status.success(), "seq-send: {}", sent.stderr);
    let out = recv.wait(Duration::from_secs(90))?;
    let line = out.stdout.lines().last().unwrap_or_default();
    let v: Value = serde_json::from_str(line)
        .unwrap_or_else(|e| panic!("seq-recv said {line:?} ({e}); stderr {}", out.stderr));
    eprintln!("run {run}: {v}");
    Ok(v)
}

#[test]
fn skewed_paths_reorder_and_ordering_delivers_them_in_order() -> Result<()> {
    if !von_tests::e2e_enabled("e2e ordering")? {
        return Ok(());
    }
    let mut topo = Topology::new(2)?;
    let grid = VonSpec::new("grid", 7, 1, &[1, 2]);
    topo.start(std::slice::from_ref(&grid))?;
    let h2 = topo.host(2).ns();
    let h1_a = Underlay::A.address(1);

    // A: the relay first, then the drop of the originals it resends.
    let mut relay = h2.command(TOOL);
    relay.args(["delay", "--src", &h1_a.to_string()]).args([
        "--dport",
        &UNDERLAY_PORT.to_string(),
        "--delay-ms",
        "50",
        "--secs",
        "600",
    ]);
    let relay = Background::spawn(&mut relay)?;
    std::thread::sleep(Duration::from_millis(300));
    let script = format!(
        "table inet ordtest {{\n chain input {{\n  type filter hook input priority -20;\n  \
         iifname \"{}\" ip saddr {h1_a} udp dport {UNDERLAY_PORT} counter drop\n }}\n}}\n",
        Underlay::A.interface()
    );
    h2.exec_ok(["sh", "-c", &format!("nft -f - <<'EOF'\n{script}EOF\n")])?;
    // B: direct, 20 % lost.
    topo.host(2).add_loss(Underlay::B, 20)?;
    // Both links stay up (A through the relay): wait out a keepalive round.
    std::thread::sleep(Duration::from_secs(1));
    let status = h1_at_h2(&topo)?;
    assert_eq!(status["underlay"]["a"]["state"], "up", "{status}");

    // 1. Without ordering.
    let before = h1_at_h2(&topo)?;
    let off = stream(&topo, &grid, 1, COUNT)?;
    let received = n(&off, &["received"]);
    let ooo = n(&off, &["out_of_order"]);
    eprintln!(
        "without ordering: {ooo} of {received} datagrams out of order ({:.1} %)",
        100.0 * ooo as f64 / received.max(1) as f64
    );
    assert!(
        received >= u64::from(COUNT) * 95 / 100,
        "A loses nothing but what the relay missed: {off}"
    );
    assert!(
        ooo > u64::from(COUNT) / 20,
        "skew + loss on B reorders: {off}"
    );
    let mid = h1_at_h2(&topo)?;
    assert_eq!(mid["ordering"], before["ordering"], "no ordering stage yet");

    // 2. ordering = "100ms", live.
    let path = topo.config_path(2);
    let toml = std::fs::read_to_string(&path).expect("read von.toml");
    let with = toml.replacen(
        &format!("rate = \"{}\"\n", grid.rate),
        &format!("rate = \"{}\"\nordering = \"100ms\"\n", grid.rate),
        1,
    );
    assert_ne!(with, toml, "the [[von]] table has its rate line");
    std::fs::write(&path, with).expect("write von.toml");
    process::signal(topo.agent(2).pid(), "HUP")?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while !topo
        .agent(2)
        .log()
        .contains("ordering off -> 100ms: applied")
    {
        assert!(
            Instant::now() < deadline,
            "reload not applied: {}",
            topo.agent(2).log_report()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The inbound loop takes it at its next timer (at most a few seconds);
    // a short warm-up stream shows when the stage runs.
    let deadline = Instant::now() + Duration::from_secs(30);
    for run in 2.. {
        stream(&topo, &grid, run, 200)?;
        let now = h1_at_h2(&topo)?;
        if n(&now, &["ordering", "in_order"]) > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "ordering never ran: {now}");
    }

    let before = h1_at_h2(&topo)?;
    let on = stream(&topo, &grid, 100, COUNT)?;
    let after = h1_at_h2(&topo)?;
    let d = |path: &[&str]| n(&after, path) - n(&before, path);
    let received = n(&on, &["received"]);
    let (in_order, reordered, timeout, overflow, late) = (
        d(&["ordering", "in_order"]),
        d(&["ordering", "reordered"]),
        d(&["ordering", "released_on_timeout"]),
        d(&["ordering", "released_on_overflow"]),
        d(&["ordering", "late"]),
    );
    let passed = d(&["elimination", "passed"]);
    let held = n(&after, &["ordering", "held"]);
    let held_before = n(&before, &["ordering", "held"]);
    eprintln!(
        "ordering 100ms: {} of {received} out of order; in_order {in_order}, reordered \
         {reordered}, released_on_timeout {timeout}, released_on_overflow {overflow}, late \
         {late}, held {held}; elimination passed {passed}",
        n(&on, &["out_of_order"])
    );
    assert_eq!(
        n(&on, &["out_of_order"]),
        0,
        "in order within the bound: {on}"
    );
    assert_eq!(n(&on, &["duplicates"]), 0, "{on}");
    assert!(
        received >= u64::from(COUNT) * 95 / 100,
        "ordering loses nothing the skew did not: {on}"
    );
    assert!(
        reordered > 0,
        "frames were held for the gaps B left: {after}"
    );
    // Every frame the window accepted was delivered (at once or held, then
    // released) or dropped late; what is still held waits for its gap.
    let delivered = in_order + reordered + timeout + overflow;
    assert_eq!(
        delivered + late + held,
        passed + held_before,
        "{before}\n{after}"
    );
    assert!(
        delivered >= received,
        "the application got what was delivered"
    );

    // The table shows the stage.
    let text = topo.agent(2).status_text()?;
    assert!(text.contains("reordered"), "{text}");
    drop(relay);
    Ok(())
}
