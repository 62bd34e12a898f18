//! Issue 16, item 3: one way to administer a key manager, embedded or not.
//! `von keymgr status|rekey|revoke --config von.toml` finds the key manager
//! the agent embeds from its `[[von]]` table; no keymgr.toml repeats its
//! settings. Serving it with `von keymgr` is refused (it runs inside the
//! agent), `--von` naming a VON it does not embed is refused with the
//! reason, a revocation prints the view it leads to, and with the agent
//! stopped the advice is to start the agent, not a key manager.
//! Topology in `keymgr_common/mod.rs` (h1's agent embeds the key manager).

mod keymgr_common;

use keymgr_common::KmWorld;
use serde_json::Value;
use von_tests::Result;

#[test]
fn an_embedded_key_manager_is_administered_through_von_toml() -> Result<()> {
    if !von_tests::e2e_enabled("e2e keymgr embedded admin")? {
        return Ok(());
    }
    let mut w = KmWorld::new_embedded(2)?;
    w.start(2)?;
    let config = w.path("h1.toml");

    // status through the agent's own file.
    let out = w.von_in(1, &["keymgr", "status", "--json", "--config", &config])?;
    assert!(out.status.success(), "status: {out:?}");
    let status: Value = serde_json::from_str(&out.stdout).expect("status --json is JSON");
    // Views list members by id, and ids come from the certificates: compare
    // the set, not the order.
    let mut members: Vec<&str> = status["members"]
        .as_array()
        .expect("members")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    members.sort_unstable();
    assert_eq!(members, ["h1", "h2"], "{status}");
    let epoch = status["epoch"].as_u64().expect("epoch");

    // Serving an embedded key manager with `von keymgr` is refused.
    let out = w.von_in(1, &["keymgr", "--config", &config])?;
    assert!(!out.status.success(), "serve was accepted: {out:?}");
    assert!(
        out.stderr.contains("embedded in the agent") && out.stderr.contains("von up --config"),
        "{}",
        out.stderr
    );

    // --von naming a VON that is not there.
    let out = w.von_in(
        1,
        &["keymgr", "status", "--config", &config, "--von", "nope"],
    )?;
    assert!(!out.status.success(), "{out:?}");
    assert!(
        out.stderr.contains("no [[von]] is named nope")
            && out.stderr.contains("embedded key manager: grid"),
        "{}",
        out.stderr
    );
    // --von with a keymgr.toml is a mistake named as such.
    let km = w.path("keymgr.toml");
    let out = w.von_in(1, &["keymgr", "status", "--config", &km, "--von", "grid"])?;
    assert!(!out.status.success(), "{out:?}");
    assert!(out.stderr.contains("drop --von"), "{}", out.stderr);

    // A revocation says what the view becomes, not the view before it.
    let out = w.von_in(
        1,
        &[
            "keymgr", "revoke", "--name", "h2", "--config", &config, "--von", "grid",
        ],
    )?;
    assert!(out.status.success(), "revoke: {out:?}");
    let said = out.stdout.trim();
    assert!(
        said.starts_with("revoked h2; rekeying from epoch")
            && said.ends_with("without it, members then: h1"),
        "{said}"
    );
    w.wait(10, "h1's view without h2", |w| {
        w.members(1).ok() == Some(1) && w.epoch(1).is_ok_and(|e| e > epoch)
    })?;

    // With the agent stopped, the advice is to start the agent.
    w.stop_agent(1, "TERM")?;
    let out = w.von_in(1, &["keymgr", "status", "--config", &config])?;
    assert!(!out.status.success(), "{out:?}");
    assert!(
        out.stderr
            .contains("embedded in the agent, which is not running")
            && out.stderr.contains(&format!("von up --config {config}")),
        "{}",
        out.stderr
    );
    assert!(
        !out.stderr.contains("von keymgr --config"),
        "advice for a standalone key manager given for an embedded one: {}",
        out.stderr
    );
    Ok(())
}
