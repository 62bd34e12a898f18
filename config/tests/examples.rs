//! Every example in `packaging/examples/` parses, and says what its comments
//! claim (so the documentation cannot drift from the schema).

use std::path::{Path, PathBuf};

use von_config::{AgentConfig, KeymgrConfig, KeymgrEndpoint, StaticView, Timers, VonMode};

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../packaging/examples")
        .join(name)
}

#[test]
fn static_agent_example() {
    let c = AgentConfig::load(example("von-static.toml")).unwrap();
    assert_eq!(c.metrics.unwrap().to_string(), "127.0.0.1:9469");
    assert_eq!(c.vons.len(), 1);
    let v = &c.vons[0];
    assert_eq!(
        (v.name.as_str(), v.interface.as_str()),
        ("grid", "von-grid")
    );
    assert_eq!(v.rate.bits_per_second(), 20_000_000);
    assert_eq!(v.burst.bytes(), 64 * 1024);
    let VonMode::Static(s) = &v.mode else {
        panic!("expected static mode")
    };
    assert_eq!(s.view, Path::new("/etc/von/grid.view.toml"));
}

#[test]
fn view_example_matches_the_agent_example() {
    let view = StaticView::load(example("grid.view.toml")).unwrap();
    assert_eq!(view.on_id.value(), 7);
    assert_eq!(view.members.len(), 2);
    // h1 of the view is the host of von-static.toml: same underlay addresses.
    let agent = AgentConfig::load(example("von-static.toml")).unwrap();
    let h1 = view.member_named(&"h1".parse().unwrap()).unwrap();
    for u in agent.underlays.values() {
        assert_eq!(h1.underlay.get(&u.name), Some(u.bind.addr()), "{}", u.name);
    }
    assert_eq!(h1.underlay.len(), agent.underlays.len());
}

#[test]
fn keymgr_agent_example() {
    let c = AgentConfig::load(example("von-keymgr.toml")).unwrap();
    assert_eq!(c.state_dir, Path::new("/var/lib/von"));
    assert_eq!(c.metrics, None);
    let [grid, icu] = &c.vons[..] else {
        panic!("expected two VONs")
    };
    let VonMode::Keymgr(g) = &grid.mode else {
        panic!("grid: expected keymgr mode")
    };
    assert_eq!(
        g.endpoint,
        KeymgrEndpoint::Remote(vec!["192.0.2.10:4433".parse().unwrap()])
    );
    let VonMode::Keymgr(i) = &icu.mode else {
        panic!("icu: expected keymgr mode")
    };
    assert_eq!(i.endpoint, KeymgrEndpoint::Embedded);
    assert_eq!(icu.dscp.value(), 34);
    let e = i.embedded.as_ref().unwrap();
    assert_eq!(e.state_dir, Path::new("/var/lib/von/keymgr/icu"));
    assert_eq!(e.ca, Path::new("/etc/von/icu/ca/ca.crt"));
    assert_eq!(
        e.timers,
        Timers::default(),
        "the example claims to show the defaults"
    );
}

#[test]
fn keymgr_example() {
    let c = KeymgrConfig::load(example("keymgr.toml")).unwrap();
    assert_eq!((c.von.as_str(), c.on_id.value()), ("grid", 7));
    assert_eq!(c.listen.to_string(), "192.0.2.10:4433");
    assert_eq!(
        c.timers,
        Timers::default(),
        "the example claims to show the defaults"
    );
}

#[test]
fn every_example_is_checked() {
    let mut names: Vec<String> = std::fs::read_dir(example(""))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "grid.view.toml",
            "keymgr.toml",
            // These two are the router crate's schemas: router/tests/examples.rs.
            "reserve.toml",
            "router.toml",
            "von-keymgr.toml",
            "von-static.toml"
        ]
    );
}
