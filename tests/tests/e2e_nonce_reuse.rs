//! Issue 11 (2): no (key, nonce) pair is ever used twice, whatever happens
//! to `state_dir`. h2 records every frame on underlay A (data and
//! keepalives, from any source) while member h1 is restarted with its
//! `state_dir` kept, deleted, and restored from an old copy, and while a
//! clone — h3 started as member h1 from a copy of h1's `state_dir`, as a
//! cloned VM would be — runs beside it. Each run sends 100 pings. The
//! recording is then searched for a (sender, epoch, sequence) that carries
//! two different ciphertexts: the nonce reuse that breaks AES-GCM. There
//! must be none.
//!
//! ```text
//!  ┌──── h1 (member h1) ────┐            ┌──────── h2 ────────┐
//!  │ restarted: kept,       │── A, B ───►│ ua ◄── record all  │
//!  │ deleted, old copy      │            │                    │
//!  └────────────────────────┘            └────────────────────┘
//!  ┌──── h3 (clone: member h1, copy of h1's state_dir) ──────────┐
//!  │ pings h2 too, from its own underlay addresses               │
//!  └─────────────────────────────────────────────────────────────┘
//! ```

use std::collections::{BTreeSet, HashMap};

use std::time::Duration;
use von_tests::files::{copy_dir, remove_dir};

use von_tests::agent::Stop;
use von_tests::packet::udp_payload;
use von_tests::{Ping, Record, Result, Tool, Topology, UNDERLAY_PORT, VonSpec};

#[test]
fn no_sequence_is_sealed_twice_whatever_happens_to_state_dir() -> Result<()> {
    if !von_tests::e2e_enabled("e2e nonce reuse")? {
        return Ok(());
    }
    let tool = Tool::new(env!("CARGO_BIN_EXE_von-e2e-tool"));
    let mut topo = Topology::new(3)?;
    let grid = VonSpec::new("grid", 7, 1, &[1, 2]);
    topo.start(std::slice::from_ref(&grid))?;
    let file = topo.dir().path().join("recorded.hex");
    let what = Record {
        src: None,
        dport: UNDERLAY_PORT,
        min_len: von_crypto::frame::MIN_FRAME_LEN,
        count: None,
        seconds: 120,
    };
    let recorder = tool.start_record(topo.host(2).ns(), &what, &file)?;
    std::thread::sleep(Duration::from_millis(300));
    // What is sent is what counts, not what is answered: h2 answers member
    // h1 at h1's endpoints, so the clone's pings get no replies.
    let pings = |topo: &Topology, host: usize| -> Result<()> {
        Ping::new(grid.address(2), 100)
            .interval(Duration::from_millis(10))
            .run(topo.host(host).ns())
            .map(drop)
    };

    pings(&topo, 1)?;
    let old_copy = topo.dir().path().join("h1-state-old");
    copy_dir(&topo.state_dir(1), &old_copy)?;
    topo.restart_agent(1, Stop::Kill, |_| Ok(()))?;
    pings(&topo, 1)?;
    topo.restart_agent(1, Stop::Kill, remove_dir)?;
    pings(&topo, 1)?;
    topo.restart_agent(1, Stop::Kill, |dir| {
        remove_dir(dir)?;
        copy_dir(&old_copy, dir)
    })?;
    pings(&topo, 1)?;

    // The clone: h3 runs as member h1 from a copy of h1's state_dir, and h1
    // restarts too (as both halves of a cloned VM would come up).
    copy_dir(&topo.state_dir(1), &topo.state_dir(3))?;
    let view = topo.dir().path().join("grid.view.toml");
    let mut toml = topo.agent_config_head(topo.host(3));
    toml.push_str(&format!(
        "\n[[von]]\nname = \"grid\"\ninterface = \"{}\"\nrate = \"10gbit\"\n\
         static = {{ view = \"{}\", member = \"h1\" }}\n",
        grid.interface(),
        view.display()
    ));
    topo.start_agent(3, &toml, vec![(grid.interface(), grid.address(1))])?;
    topo.restart_agent(1, Stop::Kill, |_| Ok(()))?;
    pings(&topo, 3)?;
    pings(&topo, 1)?;
    std::thread::sleep(Duration::from_millis(500));
    drop(recorder);

    // Every frame of sender 1 (h1 and its clone), by nonce.
    let mut by_nonce: HashMap<(u32, u32, u64), BTreeSet<Vec<u8>>> = HashMap::new();
    let mut frames = 0u64;
    let mut incarnations = BTreeSet::new();
    for packet in Tool::recorded(&file)? {
        let Some(frame) = udp_payload(&packet) else {
            continue;
        };
        let Ok(header) = von_crypto::Header::parse_bytes(frame) else {
            continue;
        };
        if header.sender.0 != 1 {
            continue;
        }
        frames += 1;
        incarnations.insert(von_crypto::sequence::incarnation_of(header.seq));
        by_nonce
            .entry((header.sender.0, header.epoch.0, header.seq))
            .or_default()
            .insert(frame[von_crypto::frame::HEADER_LEN..].to_vec());
    }
    let reused: Vec<_> = by_nonce.iter().filter(|(_, c)| c.len() > 1).collect();
    eprintln!(
        "recorded {frames} frames of sender 1 on A under {} incarnations {:?}; \
         (sender, epoch, sequence) with two ciphertexts: {}",
        incarnations.len(),
        incarnations,
        reused.len()
    );
    assert!(frames >= 500, "h1 and its clone sent {frames} frames");
    assert_eq!(
        reused.len(),
        0,
        "nonces reused, e.g. {:?}",
        reused.first().map(|(k, _)| k)
    );
    // Six starts of member h1 (first, kept, deleted, old copy, clone, and
    // h1 beside the clone), each under its own incarnation.
    assert_eq!(incarnations.len(), 6, "{incarnations:?}");
    Ok(())
}
