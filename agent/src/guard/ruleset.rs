//! The nftables table `inet von` as text for `nft -f`, and its counters read
//! back from `nft -j`.
//!
//! Two base chains at the raw priority (-300), as wg-quick's `preraw`:
//!
//! - `egress` (postrouting: local and forwarded packets, after the final
//!   routing decision, before any SNAT could hide a VON source): a packet to
//!   or from a VON prefix whose output interface is not that VON's TUN is
//!   dropped and counted in `leaks_<von>`;
//! - `ingress` (prerouting, before routing and conntrack): a packet to or
//!   from a VON prefix that arrived on any interface but that VON's TUN is
//!   dropped and counted in `injections_<von>`; so is a packet that arrived
//!   on the TUN for an address outside the VON (a member reaching the host's
//!   underlay or another VON's address), multicast and limited broadcast
//!   apart, which the VON carries.
//!
//! A dual-stack VON gets both sets of rules, `ip` for its IPv4 prefix and
//! `ip6` for its IPv6 prefix (IPv6 multicast, `ff00::/8`, being what the
//! VON carries to every member); an IPv6-only VON gets the `ip6` set alone.
//!
//! Loopback is exempt both ways (a host talking to its own VON address never
//! leaves it), and so is the agent's own underlay traffic, matched by its
//! socket addresses (source address and port out, destination in), so even a
//! VON prefix overlapping an underlay cannot cut the agent off. No fwmark:
//! von never takes over a default route, so it needs no policy routing, and a
//! mark could collide with another program's mark-based rules.
//!
//! The script replaces the table in one transaction: `table` creates it if
//! absent, `delete` empties the name, the full definition follows. A table
//! left by a killed agent is so replaced, and nothing else in the ruleset is
//! touched.

use std::fmt::Write as _;
use std::net::SocketAddr;

use serde_json::Value;

use von_packet::Prefixes;

/// The table's family and name, as `nft` writes them.
pub const TABLE: &str = "inet von";

/// IPv4 multicast, which a VON carries to all its members.
const MULTICAST: &str = "224.0.0.0/4";
/// IPv6 multicast, which a VON carries to all its members.
const MULTICAST6: &str = "ff00::/8";

/// The base chains' priority: nftables' `raw`, before conntrack and NAT.
const PRIORITY: i32 = -300;

/// One VON as the guard sees it: its prefix may appear on its TUN only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardedVon {
    /// The VON's name (counter names are derived from it).
    pub name: String,
    /// Its TUN interface.
    pub interface: String,
    /// Its address ranges (IPv4, IPv6 or both).
    pub prefixes: Prefixes,
}

impl GuardedVon {
    /// The counter of packets that tried to leave around the TUN.
    pub fn leak_counter(&self) -> String {
        format!("leaks_{}", self.name)
    }

    /// The counter of packets that tried to enter around the TUN.
    pub fn injection_counter(&self) -> String {
        format!("injections_{}", self.name)
    }
}

/// Packets one VON's rules dropped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Drops {
    /// Leaving by another interface than the TUN.
    pub leaks: u64,
    /// Arriving by another interface than the TUN.
    pub injections: u64,
}

impl Drops {
    /// Both counts added up (a removed table's and the present one's).
    pub fn plus(self, other: Drops) -> Drops {
        Drops {
            leaks: self.leaks + other.leaks,
            injections: self.injections + other.injections,
        }
    }
}

/// Whether `name` can stand in a quoted nft string as itself: nft has no
/// escapes, and `*` would turn the match into a wildcard.
pub fn plain_interface_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// The `nft -f` script that installs (or replaces) the table.
pub fn install_script(vons: &[GuardedVon], underlays: &[SocketAddr]) -> String {
    let mut s = format!("table {TABLE}\ndelete table {TABLE}\ntable {TABLE} {{\n");
    s.push_str("  comment \"von agent: VON addresses only through their TUN (docs/leaks.md)\"\n");
    for von in vons {
        let _ = writeln!(s, "  counter {} {{ }}", von.leak_counter());
        let _ = writeln!(s, "  counter {} {{ }}", von.injection_counter());
    }
    for (chain, hook, dir, iface, own) in [
        ("egress", "postrouting", "oifname", "saddr", "sport"),
        ("ingress", "prerouting", "iifname", "daddr", "dport"),
    ] {
        let _ = writeln!(
            s,
            "  chain {chain} {{\n    type filter hook {hook} priority {PRIORITY}; policy accept;\n    \
             {dir} \"lo\" accept"
        );
        for u in underlays {
            let family = if u.is_ipv4() { "ip" } else { "ip6" };
            let addr = if u.ip().is_unspecified() {
                String::new()
            } else {
                format!("{family} {iface} {} ", u.ip())
            };
            let _ = writeln!(s, "    {addr}udp {own} {} accept", u.port());
        }
        for von in vons {
            let counter = if chain == "egress" {
                von.leak_counter()
            } else {
                von.injection_counter()
            };
            let v4 = von.prefixes.v4.map(|p| {
                (
                    "ip",
                    format!("{}/{}", p.network(), p.prefix_len()),
                    format!("{MULTICAST}, 255.255.255.255"),
                )
            });
            let v6 = von.prefixes.v6.map(|p| {
                (
                    "ip6",
                    format!("{}/{}", p.network(), p.prefix_len()),
                    MULTICAST6.to_owned(),
                )
            });
            for (family, prefix, groups) in v4.into_iter().chain(v6) {
                for field in ["daddr", "saddr"] {
                    let _ = writeln!(
                        s,
                        "    {dir} != \"{}\" {family} {field} {prefix} counter name \"{counter}\" drop",
                        von.interface
                    );
                }
                if chain == "ingress" {
                    let _ = writeln!(
                        s,
                        "    iifname \"{}\" {family} daddr != {{ {prefix}, {groups} }} \
                         counter name \"{counter}\" drop",
                        von.interface
                    );
                }
            }
        }
        s.push_str("  }\n");
    }
    s.push_str("}\n");
    s
}

/// The `nft -f` script that removes the table, and nothing else.
pub fn remove_script() -> String {
    format!("delete table {TABLE}\n")
}

/// Each VON's drops from `nft -j list counters table inet von`; `None` if a
/// counter is missing (the table was changed under the agent).
pub fn parse_counters(json: &str, vons: &[GuardedVon]) -> Result<Option<Vec<Drops>>, String> {
    let doc: Value = serde_json::from_str(json).map_err(|e| format!("nft -j: {e}"))?;
    let items = doc["nftables"]
        .as_array()
        .ok_or("nft -j: no \"nftables\" array")?;
    let packets = |name: &str| {
        items.iter().find_map(|item| {
            let c = item.get("counter")?;
            (c["family"] == "inet" && c["table"] == "von" && c["name"] == name)
                .then(|| c["packets"].as_u64())?
        })
    };
    Ok(vons
        .iter()
        .map(|v| {
            Some(Drops {
                leaks: packets(&v.leak_counter())?,
                injections: packets(&v.injection_counter())?,
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};
    use von_packet::{Ipv4Prefix, Ipv6Prefix};

    fn grid() -> GuardedVon {
        GuardedVon {
            name: "grid".into(),
            interface: "von-grid".into(),
            prefixes: Ipv4Prefix::new(Ipv4Addr::new(100, 64, 1, 0), 24)
                .unwrap()
                .into(),
        }
    }

    #[test]
    fn a_dual_stack_von_is_guarded_in_both_families_and_ipv6_underlays_are_spared() {
        let mut von = grid();
        von.prefixes.v6 = Ipv6Prefix::new(Ipv6Addr::new(0xfd00, 7, 0, 0, 0, 0, 0, 0), 64);
        let underlays = [
            "[2001:db8::1]:4789".parse().unwrap(),
            "[::]:4790".parse().unwrap(),
        ];
        let s = install_script(&[von], &underlays);
        for line in [
            "ip6 saddr 2001:db8::1 udp sport 4789 accept",
            "ip6 daddr 2001:db8::1 udp dport 4789 accept",
            "    udp dport 4790 accept",
            "oifname != \"von-grid\" ip daddr 100.64.1.0/24 counter name \"leaks_grid\" drop",
            "oifname != \"von-grid\" ip6 daddr fd00:7::/64 counter name \"leaks_grid\" drop",
            "oifname != \"von-grid\" ip6 saddr fd00:7::/64 counter name \"leaks_grid\" drop",
            "iifname != \"von-grid\" ip6 daddr fd00:7::/64 counter name \"injections_grid\" drop",
            "iifname != \"von-grid\" ip6 saddr fd00:7::/64 counter name \"injections_grid\" drop",
            "iifname \"von-grid\" ip6 daddr != { fd00:7::/64, ff00::/8 } \
             counter name \"injections_grid\" drop",
        ] {
            assert!(s.contains(line), "missing {line:?} in\n{s}");
        }
        let v6_only = GuardedVon {
            prefixes: Ipv6Prefix::new(Ipv6Addr::new(0xfd00, 7, 0, 0, 0, 0, 0, 0), 64)
                .unwrap()
                .into(),
            ..grid()
        };
        let s = install_script(&[v6_only], &underlays);
        assert!(
            !s.contains(" ip daddr"),
            "no IPv4 rules for an IPv6-only VON:\n{s}"
        );
        assert!(s.contains("ip6 saddr fd00:7::/64"), "{s}");
    }

    #[test]
    fn the_script_guards_each_prefix_and_spares_loopback_and_the_underlays() {
        let underlays = [
            "192.0.2.1:4789".parse().unwrap(),
            "0.0.0.0:4790".parse().unwrap(),
        ];
        let s = install_script(&[grid()], &underlays);
        assert!(
            s.starts_with("table inet von\ndelete table inet von\n"),
            "{s}"
        );
        for line in [
            "counter leaks_grid { }",
            "counter injections_grid { }",
            "type filter hook postrouting priority -300; policy accept;",
            "type filter hook prerouting priority -300; policy accept;",
            "oifname \"lo\" accept",
            "iifname \"lo\" accept",
            "ip saddr 192.0.2.1 udp sport 4789 accept",
            "ip daddr 192.0.2.1 udp dport 4789 accept",
            "    udp sport 4790 accept",
            "    udp dport 4790 accept",
            "oifname != \"von-grid\" ip daddr 100.64.1.0/24 counter name \"leaks_grid\" drop",
            "oifname != \"von-grid\" ip saddr 100.64.1.0/24 counter name \"leaks_grid\" drop",
            "iifname != \"von-grid\" ip daddr 100.64.1.0/24 counter name \"injections_grid\" drop",
            "iifname != \"von-grid\" ip saddr 100.64.1.0/24 counter name \"injections_grid\" drop",
            "iifname \"von-grid\" ip daddr != { 100.64.1.0/24, 224.0.0.0/4, 255.255.255.255 } \
             counter name \"injections_grid\" drop",
        ] {
            assert!(s.contains(line), "missing {line:?} in\n{s}");
        }
        // The exemptions come before the drops in each chain.
        let egress = &s[s.find("chain egress").unwrap()..s.find("chain ingress").unwrap()];
        assert!(egress.find("udp sport 4789").unwrap() < egress.find("drop").unwrap());
        assert_eq!(remove_script(), "delete table inet von\n");
    }

    #[test]
    fn interface_names_that_nft_would_misread_are_refused() {
        assert!(plain_interface_name("von-grid"));
        assert!(plain_interface_name("v_1.x"));
        for bad in ["", "von*", "a\"b", "a b", "a\\b"] {
            assert!(!plain_interface_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn counters_are_read_by_name_and_a_missing_one_is_none() {
        let json = r#"{"nftables": [{"metainfo": {"version": "1.0.6"}},
            {"counter": {"family": "inet", "name": "leaks_grid", "table": "von", "handle": 3, "packets": 7, "bytes": 588}},
            {"counter": {"family": "inet", "name": "injections_grid", "table": "von", "handle": 4, "packets": 2, "bytes": 56}},
            {"counter": {"family": "ip", "name": "leaks_grid", "table": "von", "handle": 1, "packets": 99, "bytes": 1}}]}"#;
        let got = parse_counters(json, &[grid()]).unwrap();
        assert_eq!(
            got,
            Some(vec![Drops {
                leaks: 7,
                injections: 2
            }])
        );
        let other = GuardedVon {
            name: "plant".into(),
            ..grid()
        };
        assert_eq!(parse_counters(json, &[grid(), other]).unwrap(), None);
        assert!(parse_counters("not json", &[grid()]).is_err());
    }
}
