//! `von.toml`: defaults, each error's text (file, field path, value, fix),
//! and the cross-field rules.

use std::path::Path;

use von_config::{AgentConfig, ConfigError, KeymgrEndpoint, VonMode};

const BASE: &str = r#"
[underlay.a]
bind = "192.0.2.1:4789"
[underlay.b]
bind = "198.51.100.1:4789"
"#;

const STATIC_VON: &str = r#"
[[von]]
name = "grid"
rate = "20mbit"
static = { view = "/etc/von/grid.view.toml", member = "h1" }
"#;

const KEYMGR_CREDS: &str = r#"cert = "/c"
key = "/k"
ca = "/ca"
noise_key = "/n"
"#;

fn parse(text: &str) -> Result<AgentConfig, ConfigError> {
    AgentConfig::from_toml_str(text, "von.toml")
}

fn error(text: &str) -> String {
    parse(text).unwrap_err().to_string()
}

#[test]
fn defaults() {
    let c = parse(&format!("{BASE}{STATIC_VON}")).unwrap();
    assert_eq!(c.state_dir, Path::new("/var/lib/von"));
    assert_eq!(c.control_socket, Path::new("/run/von/control.sock"));
    assert_eq!(c.metrics, None);
    assert_eq!(c.log, "info");
    let v = &c.vons[0];
    assert_eq!(v.interface.as_str(), "von-grid");
    assert_eq!(v.dscp.value(), 46);
    assert_eq!(v.mtu.bytes(), 1432);
    // 10 ms at 20 Mbit/s is 25,000 bytes, above two MTUs (2,864).
    assert_eq!(v.burst.bytes(), 25_000);
    assert_eq!(v.ordering, None, "first copy at once unless asked");
    match &v.mode {
        VonMode::Static(s) => {
            assert_eq!(s.view, Path::new("/etc/von/grid.view.toml"));
            assert_eq!(s.member.as_str(), "h1");
        }
        VonMode::Keymgr(_) => panic!("expected static mode"),
    }
}

#[test]
fn ordering_takes_a_bound_up_to_a_second() {
    let with = |o: &str| {
        let text = STATIC_VON.replace(
            "name = \"grid\"",
            &format!("name = \"grid\"\nordering = \"{o}\""),
        );
        parse(&format!("{BASE}{text}")).map(|c| c.vons[0].ordering)
    };
    assert_eq!(
        with("20ms").unwrap(),
        Some(std::time::Duration::from_millis(20))
    );
    assert_eq!(with("1s").unwrap(), Some(std::time::Duration::from_secs(1)));
    assert!(with("1001ms").is_err());
}

#[test]
fn slow_rate_burst_is_two_mtus() {
    let text = format!("{BASE}{}", STATIC_VON.replace("20mbit", "500kbit"));
    // 10 ms at 500 kbit/s is 625 bytes, below two 1432-byte packets.
    assert_eq!(parse(&text).unwrap().vons[0].burst.bytes(), 2 * 1432);
}

#[test]
fn the_error_from_the_brief() {
    let text = BASE.replace("198.51.100.1:4789", "198.51.100.1:99999");
    assert_eq!(
        error(&format!("{text}{STATIC_VON}")),
        r#"von.toml: underlay.b.bind: "198.51.100.1:99999" is not IP:PORT (example: "198.51.100.1:4789")"#
    );
}

#[test]
fn field_errors_name_path_value_and_fix() {
    let cases = [
        (
            STATIC_VON.replace("20mbit", "20mbps"),
            r#"von.toml: von[0].rate: "20mbps" is not a rate: tc reads "bps" as bytes per second; write bits, e.g. "mbit" (units: bit, kbit, mbit, gbit; example: "20mbit")"#,
        ),
        (
            STATIC_VON.replace("name = \"grid\"", "name = \"grid\"\ndscp = 64"),
            "von.toml: von[0].dscp: 64 is not a DSCP value; use 0 to 63 (46 = EF, the default)",
        ),
        (
            STATIC_VON.replace("name = \"grid\"", "name = \"grid\"\ndscp = \"46\""),
            r#"von.toml: von[0].dscp: string "46" is the wrong type: write an integer without quotes"#,
        ),
        (
            STATIC_VON.replace("name = \"grid\"", "name = \"grid\"\nmtu = 100"),
            "von.toml: von[0].mtu: 100 is not a usable MTU; use 576 to 65467 (default 1432: 1500 less IPv4, UDP and the 40-byte frame)",
        ),
        (
            STATIC_VON.replace("name = \"grid\"", "name = \"power-grid-eu\""),
            r#"von.toml: von[0].name: "power-grid-eu" is not a VON name (use 1 to 11 of a-z, 0-9 and "-", not starting with "-"; example: "grid")"#,
        ),
        (
            STATIC_VON.replace(
                "name = \"grid\"",
                "name = \"grid\"\ninterface = \"von-grid-primary\"",
            ),
            r#"von.toml: von[0].interface: "von-grid-primary" is 16 bytes; an interface name has 1 to 15 (Linux's limit; example: "von-grid")"#,
        ),
        (
            STATIC_VON.replace("name = \"grid\"", "name = \"grid\"\nordering = \"2s\""),
            r#"von.toml: von[0].ordering: "2s" is longer than the largest ordering bound "1s" (it is the delay a held packet may get; use e.g. "20ms", a little above the underlays' delay difference, or omit it to deliver every packet at once)"#,
        ),
        (
            STATIC_VON.replace("name = \"grid\"", "name = \"grid\"\nordering = \"20\""),
            r#"von.toml: von[0].ordering: "20" is not a duration: it has no unit (units: ms, s, m, h; example: "30s")"#,
        ),
        (
            STATIC_VON.replace("name = \"grid\"", "name = \"grid\"\nburst = \"1kb\""),
            r#"von.toml: von[0].burst: "1kb" is smaller than one 1432-byte packet, which could never pass (raise it to at least "2864b", or omit it for the default)"#,
        ),
        (
            STATIC_VON.replace("member = \"h1\"", "member = \"-h1\""),
            r#"von.toml: von[0].static.member: "-h1" is not a member name (use 1 to 63 of A-Z, a-z, 0-9, "-", ".", "_", starting with a letter or digit; example: "h1")"#,
        ),
    ];
    for (von, expected) in cases {
        assert_eq!(error(&format!("{BASE}{von}")), expected);
    }
    assert_eq!(
        error(&format!("metrics = \"localhost:9469\"\n{BASE}{STATIC_VON}")),
        r#"von.toml: metrics: "localhost:9469" is not IP:PORT (example: "192.0.2.1:4789")"#
    );
}

#[test]
fn unknown_keys_are_refused_by_name() {
    let err = parse(&format!("loglevel = \"debug\"\n{BASE}{STATIC_VON}")).unwrap_err();
    assert_eq!(err.path(), Some("loglevel"));
    assert!(err.to_string().starts_with(
        r#"von.toml: loglevel: unknown key "loglevel" (remove it or fix the spelling; known keys: "#
    ));
    assert!(err.to_string().contains("log"), "{err}");

    let text = format!("{BASE}{}", STATIC_VON.replace("rate =", "rates ="));
    let err = parse(&text).unwrap_err();
    assert_eq!(err.path(), Some("von[0].rates"));
    assert!(err.to_string().contains(r#"unknown key "rates""#), "{err}");

    // Underlays are named by the operator: `c` is as good as `b`, and a
    // bad name is refused at its table.
    let text = format!(
        "{}{STATIC_VON}",
        BASE.replace("[underlay.b]", "[underlay.c]")
    );
    let names: Vec<String> = parse(&text)
        .unwrap()
        .underlays
        .values()
        .map(|u| u.name.to_string())
        .collect();
    assert_eq!(names, ["a", "c"]);
    let text = format!(
        "{}{STATIC_VON}",
        BASE.replace("[underlay.b]", "[underlay.B]")
    );
    let err = parse(&text).unwrap_err();
    assert!(err.to_string().contains("not an underlay name"), "{err}");
    let text = format!(
        "{}{STATIC_VON}",
        BASE.replace("[underlay.b]", "[underlay.b]\nport = 1")
    );
    let err = parse(&text).unwrap_err();
    assert_eq!(err.path(), Some("underlay.b.port"));

    let text = format!(
        "{BASE}{}",
        STATIC_VON.replace("member = \"h1\"", "member = \"h1\", id = 1")
    );
    assert_eq!(parse(&text).unwrap_err().path(), Some("von[0].static.id"));
}

#[test]
fn missing_keys_and_syntax() {
    assert_eq!(
        error(&format!(
            "{BASE}{}",
            STATIC_VON.replace("rate = \"20mbit\"\n", "")
        )),
        r#"von.toml: von[0].rate: missing key "rate" (add it; see packaging/examples/ for every file)"#
    );
    assert_eq!(
        error(STATIC_VON),
        r#"von.toml: underlay: missing key "underlay" (add it; see packaging/examples/ for every file)"#
    );
    let err = error(&format!("{BASE}{STATIC_VON}rate = \n"));
    assert!(err.starts_with("von.toml: line 11: "), "{err}");
    assert!(err.ends_with("(fix the TOML syntax)"), "{err}");
    assert!(error(BASE).starts_with("von.toml: von: no [[von]] table"));
}

#[test]
fn exactly_one_of_static_or_keymgr() {
    let both = STATIC_VON.replace("rate =", "keymgr = \"embedded\"\nrate =");
    assert!(
        error(&format!("{BASE}{both}")).starts_with("von.toml: von[0]: has both static and keymgr")
    );
    let neither = STATIC_VON.replace("static = {", "# static = {");
    assert!(
        error(&format!("{BASE}{neither}"))
            .starts_with("von.toml: von[0]: has neither static nor keymgr")
    );
    let stray = STATIC_VON.replace("rate =", "cert = \"/c\"\nrate =");
    assert_eq!(
        error(&format!("{BASE}{stray}")),
        "von.toml: von[0].cert: is only used with keymgr (remove it: static mode takes its key from the view file)"
    );
}

#[test]
fn keymgr_mode() {
    let remote = format!(
        "{BASE}[[von]]\nname = \"grid\"\nrate = \"1gbit\"\nkeymgr = \"192.0.2.10:4433\"\n{KEYMGR_CREDS}"
    );
    let c = parse(&remote).unwrap();
    let VonMode::Keymgr(k) = &c.vons[0].mode else {
        panic!("expected keymgr mode")
    };
    assert_eq!(
        k.endpoint,
        KeymgrEndpoint::Remote(vec!["192.0.2.10:4433".parse().unwrap()])
    );
    assert_eq!(k.noise_key, Path::new("/n"));
    assert!(k.embedded.is_none());

    assert_eq!(
        error(&remote.replace("ca = \"/ca\"\n", "")),
        "von.toml: von[0].ca: missing key \"ca\" (keymgr mode needs this member's cert, key, ca and noise_key; `von cert issue` writes them)"
    );
    assert_eq!(
        error(&remote.replace("192.0.2.10:4433", "keymgr.example:4433")),
        r#"von.toml: von[0].keymgr: "keymgr.example:4433" is neither "embedded" nor IP:PORT (example: "192.0.2.10:4433", or a list of replicas ["192.0.2.10:4433", "192.0.2.11:4433"])"#
    );
    // Replicas: a list, in order; each once, at least one.
    let replicas = remote.replace(
        "\"192.0.2.10:4433\"",
        "[\"192.0.2.10:4433\", \"192.0.2.11:4433\"]",
    );
    let c = parse(&replicas).unwrap();
    let VonMode::Keymgr(k) = &c.vons[0].mode else {
        panic!("expected keymgr mode")
    };
    assert_eq!(
        k.endpoint,
        KeymgrEndpoint::Remote(vec![
            "192.0.2.10:4433".parse().unwrap(),
            "192.0.2.11:4433".parse().unwrap()
        ])
    );
    assert_eq!(
        error(&remote.replace(
            "\"192.0.2.10:4433\"",
            "[\"192.0.2.10:4433\", \"192.0.2.10:4433\"]"
        )),
        r#"von.toml: von[0].keymgr: "192.0.2.10:4433" is listed twice (name each key manager replica once)"#
    );
    assert!(error(&remote.replace("\"192.0.2.10:4433\"", "[]")).contains("is an empty list"),);
    assert!(
        error(&remote.replace("\"192.0.2.10:4433\"", "[\"embedded\"]"))
            .contains("is neither \"embedded\" nor IP:PORT"),
    );
    let embedded = remote.replace("192.0.2.10:4433", "embedded");
    assert!(error(&embedded).starts_with("von.toml: von[0].embedded_keymgr: missing table"));

    let table = "[von.embedded_keymgr]\non_id = 9\nlisten = \"192.0.2.1:4433\"\ncert = \"/kc\"\nkey = \"/kk\"\nnoise_key = \"/kn\"\n";
    let c = parse(&format!("{embedded}{table}")).unwrap();
    let VonMode::Keymgr(k) = &c.vons[0].mode else {
        panic!("expected keymgr mode")
    };
    let e = k.embedded.as_ref().unwrap();
    assert_eq!((e.von.as_str(), e.on_id.value()), ("grid", 9));
    assert_eq!(e.ca, Path::new("/ca"));
    assert_eq!(e.state_dir, Path::new("/var/lib/von/keymgr/grid"));
    assert_eq!(e.timers.lease.duration().as_secs(), 30);

    assert!(
        error(&format!("{remote}{table}")).starts_with(
            "von.toml: von[0].embedded_keymgr: is only used with keymgr = \"embedded\""
        )
    );
    let on_underlay = table.replace("192.0.2.1:4433", "192.0.2.1:4789");
    assert!(error(&format!("{embedded}{on_underlay}")).starts_with(
        "von.toml: von[0].embedded_keymgr.listen: \"192.0.2.1:4789\" is an underlay's UDP address too"
    ));
    let bad_timer = format!("{embedded}{table}[von.embedded_keymgr.timers]\nrenew = \"1m\"\n");
    assert!(error(&bad_timer).starts_with("von.toml: von[0].embedded_keymgr.timers.renew: \"1m\" is not shorter than the lease \"30s\""));
    let bad_field = format!("{embedded}{}", table.replace("on_id = 9", "on_id = 0"));
    assert!(
        error(&bad_field).starts_with("von.toml: von[0].embedded_keymgr.on_id: 0 is not an ON id")
    );
}

#[test]
fn vons_are_unique() {
    let second = STATIC_VON.replace("view = \"/etc/von/grid", "view = \"/etc/von/other");
    assert_eq!(
        error(&format!("{BASE}{STATIC_VON}{second}")),
        r#"von.toml: von[1].name: "grid" is also von[0]'s name (each VON needs its own)"#
    );
    let second = STATIC_VON.replace("\"grid\"", "\"other\"\ninterface = \"von-grid\"");
    assert_eq!(
        error(&format!("{BASE}{STATIC_VON}{second}")),
        r#"von.toml: von[1].interface: "von-grid" is also von[0]'s interface (each VON needs its own)"#
    );
    let embedded = |name: &str, port: u16| {
        format!(
            "[[von]]\nname = \"{name}\"\nrate = \"1mbit\"\nkeymgr = \"embedded\"\n{KEYMGR_CREDS}[von.embedded_keymgr]\non_id = 5\nlisten = \"192.0.2.1:{port}\"\ncert = \"/kc\"\nkey = \"/kk\"\nnoise_key = \"/kn\"\n"
        )
    };
    assert_eq!(
        error(&format!(
            "{BASE}{}{}",
            embedded("a", 4433),
            embedded("b", 4434)
        )),
        r#"von.toml: von[1].embedded_keymgr.on_id: "5" is also von[0]'s embedded_keymgr.on_id (each VON needs its own)"#
    );
    assert_eq!(
        error(&BASE.replace("198.51.100.1:4789", "192.0.2.1:4789")),
        r#"von.toml: underlay.b.bind: "192.0.2.1:4789" is also underlay a's address (underlays must be independent networks: bind each to an address on its own network)"#
    );
}

#[test]
fn one_ip_on_two_underlays_is_refused_as_no_redundancy() {
    let err = error(&format!(
        "{}{STATIC_VON}",
        BASE.replace("198.51.100.1:4789", "192.0.2.1:4790")
    ));
    assert_eq!(
        err,
        r#"von.toml: underlay.b.bind: "192.0.2.1:4790" has the IP address of underlay a ("192.0.2.1:4789"): a second port on one address is the same network path, so it gives no redundancy (underlays must be independent networks: bind each to an address on its own network)"#
    );
    // Different addresses on one port are fine.
    parse(&format!("{BASE}{STATIC_VON}")).unwrap();
}

#[test]
fn a_missing_credential_file_names_the_field_the_von_and_the_fix() {
    let dir = std::env::temp_dir().join(format!("von-config-files-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let creds = ["c", "ca", "n"].map(|f| {
        let p = dir.join(f);
        std::fs::write(&p, "x").unwrap();
        p.display().to_string()
    });
    let text = format!(
        "{BASE}[[von]]\nname = \"grid\"\nrate = \"1mbit\"\nkeymgr = \"192.0.2.9:4433\"\ncert = \"{}\"\nkey = \"/nonexistent/h1.key\"\nca = \"{}\"\nnoise_key = \"{}\"\n",
        creds[0], creds[1], creds[2]
    );
    let config = parse(&text).unwrap();
    let err = config.check_files("/etc/von/von.toml").unwrap_err();
    assert_eq!(err.path(), Some("von[0].key"));
    let text = err.to_string();
    assert!(
        text.starts_with(
            r#"/etc/von/von.toml: von[0].key: "/nonexistent/h1.key" (VON "grid"): No such file or directory"#
        ),
        "{text}"
    );
    assert!(text.contains("von cert issue"), "{text}");
    // All present: no error.
    let ok = text_with_key(&config, &creds[0]);
    ok.check_files("von.toml").unwrap();
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn an_alarm_hook_others_may_write_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("von-config-hook-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let hook = dir.join("hook.sh");
    std::fs::write(&hook, "#!/bin/sh\n").unwrap();
    let config = parse(&format!(
        "alarm_hook = \"{}\"\n{BASE}{STATIC_VON}",
        hook.display()
    ))
    .unwrap();
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o777)).unwrap();
    let err = config.check_files("von.toml").unwrap_err();
    assert_eq!(err.path(), Some("alarm_hook"));
    assert!(err.to_string().contains("chmod go-w"), "{err}");
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    let checked = config.check_files("von.toml");
    assert!(
        checked.as_ref().err().and_then(|e| e.path()) != Some("alarm_hook"),
        "{checked:?}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

fn text_with_key(config: &AgentConfig, key: &str) -> AgentConfig {
    let mut c = config.clone();
    if let VonMode::Keymgr(k) = &mut c.vons[0].mode {
        k.key = key.into();
    }
    c
}

#[test]
fn load_names_the_file() {
    let err = AgentConfig::load("/nonexistent/von.toml")
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("/nonexistent/von.toml: cannot read: "),
        "{err}"
    );
    assert!(
        err.ends_with("(check the path and that von may read it)"),
        "{err}"
    );
}

#[test]
fn control_socket_alone_is_read_even_from_a_file_that_would_not_validate() {
    let dir = std::env::temp_dir().join(format!("von-config-sock-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let with = dir.join("with.toml");
    std::fs::write(
        &with,
        "control_socket = \"/run/x.sock\"\n[underlay.a]\nbogus = 1\n",
    )
    .unwrap();
    assert_eq!(
        AgentConfig::read_control_socket(&with).unwrap(),
        Path::new("/run/x.sock")
    );
    let without = dir.join("without.toml");
    std::fs::write(&without, BASE).unwrap();
    assert_eq!(
        AgentConfig::read_control_socket(&without).unwrap(),
        Path::new("/run/von/control.sock")
    );
    let err = AgentConfig::read_control_socket(dir.join("missing.toml"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("missing.toml: cannot read"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}
