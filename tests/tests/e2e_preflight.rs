//! Issue 16, item 2: every local precondition is checked before a key
//! manager hears of the member, and `von up --check` checks the same.
//!
//! A real `von keymgr` on h4 and a joined h1; then h2's `von up` is run
//! with one fault at a time: a bind address not on the host, no
//! CAP_NET_ADMIN (`setpriv` drops it from the bounding set), the metrics
//! port held by another process, h1's live control socket, a 0644 private
//! key, a missing key file. Each start must exit non-zero with a message
//! naming the file, the field and the fix, `von up --check` must say the
//! same, and the key manager must see no join: its epoch and member list
//! stay as they were, and h1 sends under the same epoch. Finally h2 starts
//! with the unchanged config and joins, which moves the epoch: the
//! observation above can fail.

mod keymgr_common;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use keymgr_common::KmWorld;
use serde_json::Value;
use von_tests::process::Background;
use von_tests::{Result, UNDERLAY_PORT};

/// The key manager's committed epoch and its member names, sorted.
fn keymgr_view(w: &KmWorld) -> Result<(u64, Vec<String>)> {
    let km: Value = w.keymgr_status()?;
    let epoch = km["epoch"].as_u64().expect("keymgr epoch");
    let mut names: Vec<String> = km["members"]
        .as_array()
        .expect("keymgr members")
        .iter()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    names.sort_unstable();
    Ok((epoch, names))
}

struct Case {
    what: &'static str,
    toml: String,
    /// A command `von` runs under (`setpriv ...`).
    wrap: Vec<&'static str>,
    /// Each must appear in `von up`'s error.
    says: Vec<String>,
    /// Whether `von up --check` fails too (false: it passes with a note).
    check_fails: bool,
    /// Found by the preflight (false: by reading von.toml, even earlier).
    preflight: bool,
}

#[test]
fn each_local_failure_stops_von_up_before_the_key_manager_hears_of_it() -> Result<()> {
    if !von_tests::e2e_enabled("e2e preflight")? {
        return Ok(());
    }
    let mut w = KmWorld::new(2)?;
    w.start(1)?;
    let before = keymgr_view(&w)?;
    assert_eq!(before.1, ["h1"], "only h1 joined");
    let e1 = w.epoch(1)?;

    let base = w.agent_toml(2);
    let h2_a = format!("192.0.2.2:{UNDERLAY_PORT}");
    assert!(base.contains(&h2_a), "{base}");
    let key = w.path("h2/h2.key");
    let loose = w.path("h2/h2-loose.key");
    std::fs::copy(&key, &loose).expect("copy the key");
    std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let config = w.path("h2-once.toml");
    let metrics_port = 5399;
    // Another program holds h2's metrics port.
    let _holder = Background::spawn(w.topo.host(2).ns().command("iperf3").args([
        "-s",
        "-B",
        "127.0.0.1",
        "-p",
        &metrics_port.to_string(),
    ]))?;
    w.wait(5, "iperf3 listening in h2", |w| {
        w.topo
            .host(2)
            .ns()
            .exec(["ss", "-tln"], Duration::from_secs(2))
            .is_ok_and(|o| o.stdout.contains(&format!("127.0.0.1:{metrics_port}")))
    })?;

    let cases = vec![
        Case {
            what: "a bind address not on the host",
            toml: base.replace(&h2_a, &format!("192.0.2.99:{UNDERLAY_PORT}")),
            wrap: vec![],
            says: vec![
                format!("{config}: underlay.a.bind: \"192.0.2.99:{UNDERLAY_PORT}\""),
                "192.0.2.99 is not an address of this host".into(),
                "ip -br addr".into(),
            ],
            check_fails: true,
            preflight: true,
        },
        Case {
            what: "no CAP_NET_ADMIN",
            toml: base.clone(),
            wrap: vec!["setpriv", "--bounding-set=-net_admin", "--"],
            says: vec![
                format!("{config}: the agent lacks CAP_NET_ADMIN"),
                "AmbientCapabilities=CAP_NET_ADMIN".into(),
            ],
            check_fails: true,
            preflight: true,
        },
        Case {
            what: "the metrics port in use",
            toml: base.replace(
                "log = \"info\"\n",
                &format!("log = \"info\"\nmetrics = \"127.0.0.1:{metrics_port}\"\n"),
            ),
            wrap: vec![],
            says: vec![
                format!(
                    "{config}: metrics: \"127.0.0.1:{metrics_port}\": TCP port {metrics_port} is already in use"
                ),
                "ss -tlpn".into(),
            ],
            check_fails: true,
            preflight: true,
        },
        Case {
            what: "h1's live control socket",
            toml: base.replace(&w.path("h2.sock"), &w.path("h1.sock")),
            wrap: vec![],
            says: vec![
                format!(
                    "{config}: control_socket: \"{}\" is held by a running agent",
                    w.path("h1.sock")
                ),
                "systemctl stop von".into(),
            ],
            // --check expects a running agent: a note, not a failure.
            check_fails: false,
            preflight: true,
        },
        Case {
            what: "a private key readable by others",
            toml: base.replace(&key, &loose),
            wrap: vec![],
            says: vec![
                format!(
                    "{config}: von[0].key: {loose} is a private key readable by group or others (mode 0644)"
                ),
                format!("chmod 600 {loose}"),
            ],
            check_fails: true,
            // AgentConfig::load refuses it, before the preflight runs.
            preflight: false,
        },
        Case {
            what: "a missing key file",
            toml: base.replace(&key, "/nonexistent/h2.key"),
            wrap: vec![],
            says: vec![
                format!(
                    "{config}: von[0].key: \"/nonexistent/h2.key\" (VON \"grid\"): No such file or directory"
                ),
                "von cert issue".into(),
            ],
            check_fails: true,
            preflight: true,
        },
    ];
    assert!(base.contains(&w.path("h2.sock")) && base.contains(&key));

    for case in &cases {
        let out = w.run_up(2, &case.toml, &case.wrap, &[])?;
        eprintln!("{}: exit {}\n{}", case.what, out.status, out.stderr.trim());
        assert!(
            !out.status.success(),
            "{}: von up started:\n{}{}",
            case.what,
            out.stdout,
            out.stderr
        );
        for says in &case.says {
            assert!(
                out.stderr.contains(says.as_str()),
                "{}: von up's error lacks {says:?}:\n{}",
                case.what,
                out.stderr
            );
        }
        assert!(
            !case.preflight || out.stderr.contains("before contacting any key manager"),
            "{}:\n{}",
            case.what,
            out.stderr
        );

        let checked = w.run_up(2, &case.toml, &case.wrap, &["--check"])?;
        if case.check_fails {
            assert!(
                !checked.status.success(),
                "{}: von up --check passed:\n{}",
                case.what,
                checked.stdout
            );
            assert!(
                checked.stderr.contains(case.says[0].as_str()),
                "{}: von up --check does not say {:?}:\n{}",
                case.what,
                case.says[0],
                checked.stderr
            );
        } else {
            assert!(
                checked.status.success() && checked.stdout.contains("note: a running agent"),
                "{}: von up --check: {}\n{}{}",
                case.what,
                checked.status,
                checked.stdout,
                checked.stderr
            );
        }

        // The key manager saw nothing: no join, no rekey.
        assert_eq!(
            keymgr_view(&w)?,
            before,
            "{}: the key manager changed",
            case.what
        );
        assert_eq!(w.epoch(1)?, e1, "{}: h1 rekeyed", case.what);
    }
    // h1 kept its socket through the attempt to share it.
    assert!(w.agent_running(1), "h1 stopped:\n{}", w.logs());
    w.status(1)?;

    // The control: the unchanged config joins, and the key manager shows it.
    let ok = w.run_up(2, &base, &[], &["--check"])?;
    assert!(
        ok.status.success(),
        "--check of the good config: {}{}",
        ok.stdout,
        ok.stderr
    );
    w.start_agent(2)?;
    w.wait(10, "h2 in the key manager's view", |w| {
        keymgr_view(w).is_ok_and(|(e, names)| e > before.0 && names == ["h1", "h2"])
    })?;
    let after = keymgr_view(&w)?;
    eprintln!(
        "key manager: epoch {} members {:?} through 6 refused starts; after h2's real start: epoch {} members {:?}",
        before.0, before.1, after.0, after.1
    );
    Ok(())
}
