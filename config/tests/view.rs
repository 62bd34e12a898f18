//! Static view files: parsing, the uniqueness and prefix rules, and finding
//! this host's member across `von.toml` and its view files.

use std::path::PathBuf;

use von_config::{AgentConfig, Cipher, ConfigError, StaticView};

const KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

fn view(on_id: u32, members: &str) -> String {
    format!("on_id = {on_id}\nepoch = 1\nkey = \"{KEY}\"\nprefix = \"100.64.0.0/24\"\n{members}")
}

fn member(id: u32, name: &str, host: u8) -> String {
    format!(
        "[[member]]\nid = {id}\nname = \"{name}\"\naddress = \"100.64.0.{host}\"\nunderlay = {{ a = \"192.0.2.{host}:4789\", b = \"198.51.100.{host}:4789\" }}\n"
    )
}

fn two() -> String {
    view(7, &format!("{}{}", member(1, "h1", 1), member(2, "h2", 2)))
}

fn parse(text: &str) -> Result<StaticView, ConfigError> {
    StaticView::from_toml_str(text, "grid.view.toml")
}

fn error(text: &str) -> String {
    parse(text).unwrap_err().to_string()
}

#[test]
fn parses() {
    let v = parse(&two()).unwrap();
    assert_eq!(v.on_id.value(), 7);
    assert_eq!(v.epoch.value(), 1);
    assert_eq!(v.cipher, Cipher::Aes256Gcm);
    assert_eq!(v.key.expose()[31], 0x1f);
    assert_eq!(v.members.len(), 2);
    let h2 = v.member_named(&"h2".parse().unwrap()).unwrap();
    assert_eq!(h2.address.to_string(), "100.64.0.2");
    let b = h2.underlay.get(&"b".parse().unwrap()).unwrap();
    assert_eq!(b.to_string(), "198.51.100.2:4789");
    assert_eq!(v.member(h2.id).unwrap().name.as_str(), "h2");
    assert!(v.member_named(&"h3".parse().unwrap()).is_none());
    let chacha = two().replace("epoch = 1", "epoch = 1\ncipher = \"chacha20-poly1305\"");
    assert_eq!(parse(&chacha).unwrap().cipher, Cipher::ChaCha20Poly1305);
}

#[test]
fn field_errors() {
    assert_eq!(
        error(&two().replace(KEY, &KEY[..62])),
        "grid.view.toml: key: the key has 62 characters, not 64 hex digits (generate one with: openssl rand -hex 32)"
    );
    assert_eq!(
        error(&two().replace("100.64.0.0/24", "100.64.0.1/24")),
        r#"grid.view.toml: prefix: "100.64.0.1/24" has host bits set (did you mean "100.64.0.0/24"?)"#
    );
    assert_eq!(
        error(&two().replace("\"100.64.0.2\"", "\"100.64.0.x\"")),
        r#"grid.view.toml: member[1].address: "100.64.0.x" is not an IP address (example: "100.64.0.1" or "fd00:7::1")"#
    );
    assert_eq!(
        error(&two().replace("198.51.100.2:4789", "198.51.100.2")),
        r#"grid.view.toml: member[1].underlay.b: "198.51.100.2" is not IP:PORT (examples: "192.0.2.1:4789", "[2001:db8::1]:4789")"#
    );
    let err = parse(&two().replace("id = 2", "id = 2\nport = 4789")).unwrap_err();
    assert_eq!(err.path(), Some("member[1].port"));
    assert!(err.to_string().contains("unknown key \"port\""), "{err}");
}

#[test]
fn one_to_four_named_underlays_and_the_first_release_form() {
    // Three underlays, one of them IPv6; a member may run fewer.
    let three = view(
        7,
        "[[member]]\nid = 1\nname = \"h1\"\naddress = \"100.64.0.1\"\n\
         underlay = { a = \"192.0.2.1:4789\", b = \"198.51.100.1:4789\", lan6 = \"[2001:db8::1]:4789\" }\n\
         [[member]]\nid = 2\nname = \"h2\"\naddress = \"100.64.0.2\"\nunderlay = { a = \"192.0.2.2:4789\" }\n",
    );
    let v = parse(&three).unwrap();
    assert_eq!(v.members[0].underlay.len(), 3);
    assert_eq!(v.members[1].underlay.len(), 1);
    // The first release wrote `a` and `b`: the same member, as names a and b.
    let old = view(
        7,
        "[[member]]\nid = 1\nname = \"h1\"\naddress = \"100.64.0.1\"\na = \"192.0.2.1:4789\"\nb = \"198.51.100.1:4789\"\n",
    );
    let new = view(7, &member(1, "h1", 1));
    assert_eq!(parse(&old).unwrap(), parse(&new).unwrap());
    let both = new.replace("underlay = {", "a = \"192.0.2.9:4789\"\nunderlay = {");
    assert!(
        error(&both).contains("has both underlay"),
        "{}",
        error(&both)
    );
    let five = new.replace(
        "b = \"198.51.100.1:4789\"",
        "b = \"198.51.100.1:4789\", c = \"203.0.113.1:1\", d = \"10.0.0.1:1\", e = \"10.0.0.2:1\"",
    );
    assert!(error(&five).contains("give 1 to 4"), "{}", error(&five));
    let upper = new.replace("a = \"192", "A = \"192");
    assert!(
        error(&upper).contains("not an underlay name"),
        "{}",
        error(&upper)
    );
}

#[test]
fn members_are_unique_and_inside_the_prefix() {
    let cases = [
        (
            view(7, &format!("{}{}", member(1, "h1", 1), member(1, "h2", 2))),
            r#"grid.view.toml: member[1].id: "1" is also member[0]'s id (each member needs its own)"#,
        ),
        (
            view(7, &format!("{}{}", member(1, "h1", 1), member(2, "h1", 2))),
            r#"grid.view.toml: member[1].name: "h1" is also member[0]'s name (each member needs its own)"#,
        ),
        (
            two().replace("100.64.0.2\"", "100.64.0.1\""),
            r#"grid.view.toml: member[1].address: "100.64.0.1" is also member[0]'s address (each member needs its own)"#,
        ),
        (
            two().replace("192.0.2.2:4789", "192.0.2.1:4789"),
            r#"grid.view.toml: member[1].underlay.a: "192.0.2.1:4789" is also member[0]'s endpoint on underlay a (each member needs its own address on each underlay)"#,
        ),
        (
            two().replace("100.64.0.2\"", "100.64.1.2\""),
            r#"grid.view.toml: member[1].address: "100.64.1.2" is outside the prefix "100.64.0.0/24" (pick an address inside it or widen the prefix)"#,
        ),
        (
            two().replace("100.64.0.2\"", "100.64.0.255\""),
            r#"grid.view.toml: member[1].address: "100.64.0.255" is the network or broadcast address of "100.64.0.0/24" (pick a host address)"#,
        ),
        (
            two().replace("192.0.2.2:4789", "0.0.0.0:4789"),
            r#"grid.view.toml: member[1].underlay.a: "0.0.0.0:4789" cannot be reached by peers (write the member's own IP:PORT on underlay a)"#,
        ),
        (
            two().replace("198.51.100.2:4789", "192.0.2.2:4789"),
            r#"grid.view.toml: member[1].underlay: "192.0.2.2:4789" is the endpoint on both "a" and "b" (underlays must be independent networks, each with its own address)"#,
        ),
        (
            view(7, ""),
            "grid.view.toml: member: the view has no members (add a [[member]] table per host; see packaging/examples/grid.view.toml)",
        ),
    ];
    for (text, expected) in cases {
        assert_eq!(error(&text), expected);
    }
}

/// A scratch directory under the system temp dir, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("von-config-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn agent(views: &[(&str, &PathBuf, &str)]) -> String {
    let mut text = String::from(
        "[underlay.a]\nbind = \"192.0.2.1:4789\"\n[underlay.b]\nbind = \"198.51.100.1:4789\"\n",
    );
    for (name, path, me) in views {
        text += &format!(
            "[[von]]\nname = \"{name}\"\nrate = \"1mbit\"\nstatic = {{ view = \"{}\", member = \"{me}\" }}\n",
            path.display()
        );
    }
    text
}

#[test]
fn load_views_finds_this_host_and_refuses_shared_on_ids() {
    let dir = Scratch::new("views");
    let grid = dir.write("grid.view.toml", &two());
    let icu = dir.write("icu.view.toml", &view(8, &member(5, "h9", 9)));
    let same = dir.write("same.view.toml", &view(7, &member(5, "h9", 9)));

    let config = AgentConfig::from_toml_str(
        &agent(&[("grid", &grid, "h2"), ("icu", &icu, "h9")]),
        "von.toml",
    )
    .unwrap();
    let views = config.load_views().unwrap();
    assert_eq!(views.len(), 2);
    assert_eq!((views[0].von.as_str(), views[0].me.id.value()), ("grid", 2));
    assert_eq!(
        (views[1].view.on_id.value(), views[1].me.name.as_str()),
        (8, "h9")
    );

    let config = AgentConfig::from_toml_str(&agent(&[("grid", &grid, "h3")]), "von.toml").unwrap();
    assert_eq!(
        config.load_views().unwrap_err().to_string(),
        format!(
            "{}: member: no member is named \"h3\", which the agent's static.member names (members: h1, h2; add a [[member]] or fix static.member)",
            grid.display()
        )
    );

    let config = AgentConfig::from_toml_str(
        &agent(&[("grid", &grid, "h1"), ("same", &same, "h9")]),
        "von.toml",
    )
    .unwrap();
    assert_eq!(
        config.load_views().unwrap_err().to_string(),
        format!(
            "{}: on_id: 7 is also the ON id of VON \"grid\" on this host (every VON needs its own ON id)",
            same.display()
        )
    );

    let missing = dir.0.join("missing.view.toml");
    let config =
        AgentConfig::from_toml_str(&agent(&[("grid", &missing, "h1")]), "von.toml").unwrap();
    assert!(
        config
            .load_views()
            .unwrap_err()
            .to_string()
            .starts_with(&format!("{}: cannot read", missing.display()))
    );
}

/// A two-member view with `prefix` and each member's `address` as written.
fn view_with(prefix: &str, addresses: [&str; 2]) -> String {
    let mut text = format!("on_id = 7\nepoch = 1\nkey = \"{KEY}\"\nprefix = {prefix}\n");
    for (i, address) in addresses.iter().enumerate() {
        let host = i + 1;
        text += &format!(
            "[[member]]\nid = {host}\nname = \"h{host}\"\naddress = {address}\nunderlay = {{ a = \"192.0.2.{host}:4789\", b = \"198.51.100.{host}:4789\" }}\n"
        );
    }
    text
}

#[test]
fn dual_stack_and_ipv6_only_views_parse() {
    let dual = parse(&view_with(
        r#"["100.64.0.0/24", "fd00:7::/64"]"#,
        [
            r#"["100.64.0.1", "fd00:7::1"]"#,
            r#"["fd00:7::2", "100.64.0.2"]"#,
        ],
    ))
    .unwrap();
    assert!(dual.prefix.dual_stack());
    let h2 = dual.member_named(&"h2".parse().unwrap()).unwrap();
    assert_eq!(h2.address.v4().unwrap().to_string(), "100.64.0.2");
    assert_eq!(h2.address.v6().unwrap().to_string(), "fd00:7::2");
    assert_eq!(h2.address.to_string(), r#"["100.64.0.2", "fd00:7::2"]"#);

    let v6 = parse(&view_with(
        r#""fd00:7::/64""#,
        [r#""fd00:7::1""#, r#"["fd00:7::2"]"#],
    ))
    .unwrap();
    assert_eq!(
        (v6.prefix.v4(), v6.prefix.v6().unwrap().to_string()),
        (None, "fd00:7::/64".into())
    );
    assert_eq!(v6.members[1].address.v4(), None);
}

#[test]
fn ipv6_members_follow_the_same_rules() {
    let dual = r#"["100.64.0.0/24", "fd00:7::/64"]"#;
    let cases = [
        (
            view_with(dual, [r#"["100.64.0.1", "fd00:7::1"]"#, r#""100.64.0.2""#]),
            r#"grid.view.toml: member[1].address: the member has no address in "fd00:7::/64"; in a VON with prefix = ["100.64.0.0/24", "fd00:7::/64"] every member has one address per prefix (example: address = ["100.64.0.1", "fd00:7::1"])"#,
        ),
        (
            view_with(
                dual,
                [
                    r#"["100.64.0.1", "fd00:7::1"]"#,
                    r#"["100.64.0.2", "fd00:7::1"]"#,
                ],
            ),
            r#"grid.view.toml: member[1].address: "fd00:7::1" is also member[0]'s address (each member needs its own)"#,
        ),
        (
            view_with(
                dual,
                [
                    r#"["100.64.0.1", "fd00:7::1"]"#,
                    r#"["100.64.0.2", "fd00:8::2"]"#,
                ],
            ),
            r#"grid.view.toml: member[1].address: "fd00:8::2" is outside the prefix "fd00:7::/64" (pick an address inside it or widen the prefix)"#,
        ),
        (
            view_with(
                dual,
                [
                    r#"["100.64.0.1", "fd00:7::1"]"#,
                    r#"["100.64.0.2", "fd00:7::"]"#,
                ],
            ),
            r#"grid.view.toml: member[1].address: "fd00:7::" is the network or broadcast address of "fd00:7::/64" (pick a host address)"#,
        ),
        (
            view_with(
                r#""100.64.0.0/24""#,
                [r#""100.64.0.1""#, r#"["100.64.0.2", "fd00:7::2"]"#],
            ),
            r#"grid.view.toml: member[1].address: "fd00:7::2" is of a family the VON has no prefix for (prefix = 100.64.0.0/24; add a prefix of that family to the list, or drop the address)"#,
        ),
        (
            view_with(
                r#"["fd00:7::/64", "fd00:8::/64"]"#,
                [r#""fd00:7::1""#, r#""fd00:7::2""#],
            ),
            r#"grid.view.toml: prefix: "fd00:7::/64" and "fd00:8::/64" are of one family; a VON has at most one IPv4 and one IPv6 prefix (example: ["100.64.0.0/24", "fd00:7::/64"])"#,
        ),
        (
            view_with(r#""fe80::/64""#, [r#""fe80::1""#, r#""fe80::2""#]),
            r#"grid.view.toml: prefix: "fe80::/64" overlaps fe80::/10, which no VON may use (pick a unique local prefix, e.g. "fd00:7::/64")"#,
        ),
    ];
    for (text, expected) in cases {
        assert_eq!(error(&text), expected);
    }
}

#[test]
fn an_ipv6_von_needs_an_mtu_of_1280() {
    let dir = Scratch::new("mtu6");
    let v6 = dir.write(
        "grid.view.toml",
        &view_with(r#""fd00:7::/64""#, [r#""fd00:7::1""#, r#""fd00:7::2""#]),
    );
    let text = agent(&[("grid", &v6, "h1")]);
    let low = text.replace("rate = \"1mbit\"", "rate = \"1mbit\"\nmtu = 1000");
    let config = AgentConfig::from_toml_str(&low, "von.toml").unwrap();
    assert_eq!(
        config.load_views().unwrap_err().to_string(),
        format!(
            "{}: prefix: \"fd00:7::/64\" makes VON \"grid\" carry IPv6, which needs an inner MTU of at least 1280 (RFC 8200), but its mtu is 1000 (raise mtu in its [[von]] table, or drop the IPv6 prefix)",
            v6.display()
        )
    );
    let config = AgentConfig::from_toml_str(&text, "von.toml").unwrap();
    assert_eq!(
        config.load_views().unwrap()[0]
            .me
            .address
            .v6()
            .unwrap()
            .to_string(),
        "fd00:7::1"
    );
}
