//! Routes that conflict with a VON prefix, found in the kernel's tables as
//! `ip -j -4 route show table all` and `ip -j -4 addr show` print them.
//!
//! The filter (`ruleset.rs`) is what keeps VON traffic in the VON; this is
//! the diagnosis an operator needs when it has to act: which route sends VON
//! traffic elsewhere. A conflict is one of:
//!
//! - `route`: a route inside the VON prefix (as specific or more) through a
//!   device other than the VON's TUN, in any table; the kernel prefers it,
//!   and the guard drops what it carries;
//! - `underlay`: the prefix overlaps an underlay: a network on an underlay
//!   interface, or an underlay endpoint (this host's or a member's) inside
//!   the prefix, where frames to it would be routed into the TUN;
//! - `missing`: the TUN's own route for the prefix is gone from the main
//!   table, so VON traffic follows whatever else matches.
//!
//! Routes without a device (blackhole, unreachable, prohibit, throw) carry
//! nothing out and are not conflicts. Policy rules (`ip rule`) are not read:
//! a rule that sends VON traffic to another table shows as a `route`
//! conflict only if that table holds a route inside the prefix; the filter
//! drops the traffic in every case.

use std::net::{Ipv4Addr, SocketAddr};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use von_packet::Ipv4Prefix;

/// What kind of conflict (the status document's `kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConflictKind {
    /// A route inside the prefix through another device.
    Route,
    /// The prefix overlaps an underlay network or endpoint.
    Underlay,
    /// The TUN's route for the prefix is missing.
    Missing,
}

impl ConflictKind {
    /// The name the status document and the log use.
    pub fn name(self) -> &'static str {
        match self {
            ConflictKind::Route => "route",
            ConflictKind::Underlay => "underlay",
            ConflictKind::Missing => "missing",
        }
    }
}

/// One conflict, as `von status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RouteConflict {
    /// `route`, `underlay` or `missing`.
    pub kind: ConflictKind,
    /// The route's destination (or the endpoint's address) as `a.b.c.d/len`.
    pub dst: String,
    /// The device it goes through, if any.
    pub dev: Option<String>,
    /// The routing table (`main`, `local`, a number), if it is a route.
    pub table: Option<String>,
    /// What it does and what to do, for a person.
    pub reason: String,
}

/// One route, reduced to what the check needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Destination; `default` is 0.0.0.0/0.
    pub dst: Ipv4Prefix,
    /// Its devices (several for a multipath route; none for a blackhole).
    pub devs: Vec<String>,
    /// The table's name as `ip` prints it (`main` when absent).
    pub table: String,
}

/// An IPv4 address configured on an interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    /// The interface.
    pub dev: String,
    /// The address.
    pub addr: Ipv4Addr,
}

/// One VON as the check needs it.
#[derive(Debug, Clone)]
pub struct VonRoutes<'a> {
    /// The VON's TUN interface.
    pub interface: &'a str,
    /// Its prefix.
    pub prefix: Ipv4Prefix,
    /// Underlay endpoints that must lie outside the prefix: this host's
    /// binds and every member's, each with a label for the message.
    pub endpoints: Vec<(String, SocketAddr)>,
}

/// Parses `ip -j -4 route show table all`.
pub fn parse_routes(json: &str) -> Result<Vec<Route>, String> {
    let items: Vec<Value> = serde_json::from_str(json).map_err(|e| format!("ip -j route: {e}"))?;
    Ok(items
        .iter()
        .filter_map(|r| {
            let dst = prefix(r["dst"].as_str()?)?;
            let mut devs: Vec<String> = r["dev"].as_str().map(str::to_owned).into_iter().collect();
            if let Some(hops) = r["nexthops"].as_array() {
                devs.extend(
                    hops.iter()
                        .filter_map(|h| h["dev"].as_str().map(str::to_owned)),
                );
            }
            let table = r["table"].as_str().unwrap_or("main").to_owned();
            Some(Route { dst, devs, table })
        })
        .collect())
}

/// Parses `ip -j -4 addr show`.
pub fn parse_addresses(json: &str) -> Result<Vec<Address>, String> {
    let links: Vec<Value> = serde_json::from_str(json).map_err(|e| format!("ip -j addr: {e}"))?;
    Ok(links
        .iter()
        .flat_map(|l| {
            let dev = l["ifname"].as_str().unwrap_or_default().to_owned();
            l["addr_info"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|a| a["family"] == "inet")
                .filter_map(move |a| {
                    Some(Address {
                        dev: dev.clone(),
                        addr: a["local"].as_str()?.parse().ok()?,
                    })
                })
        })
        .collect())
}

/// `a.b.c.d`, `a.b.c.d/len` or `default` as a prefix.
fn prefix(text: &str) -> Option<Ipv4Prefix> {
    if text == "default" {
        return Ipv4Prefix::new(Ipv4Addr::UNSPECIFIED, 0);
    }
    let (addr, len) = text.split_once('/').unwrap_or((text, "32"));
    Ipv4Prefix::new(addr.parse().ok()?, len.parse().ok()?)
}

fn show(p: Ipv4Prefix) -> String {
    format!("{}/{}", p.network(), p.prefix_len())
}

/// Whether `inner` lies inside `outer` (equal counts).
fn within(inner: Ipv4Prefix, outer: Ipv4Prefix) -> bool {
    inner.prefix_len() >= outer.prefix_len() && outer.contains(inner.network())
}

/// The conflicts of one VON, given every route, every address, and the
/// underlay bind addresses (which tell the underlay interfaces).
pub fn conflicts(
    von: &VonRoutes<'_>,
    routes: &[Route],
    addresses: &[Address],
    underlay_binds: &[SocketAddr],
) -> Vec<RouteConflict> {
    let p = von.prefix;
    let tun = von.interface;
    let underlay_devs: Vec<&str> = addresses
        .iter()
        .filter(|a| underlay_binds.iter().any(|b| b.ip() == a.addr))
        .map(|a| a.dev.as_str())
        .collect();
    let mut found = Vec::new();
    let mut push = |c: RouteConflict| {
        if !found.contains(&c) {
            found.push(c);
        }
    };
    for r in routes {
        for dev in r.devs.iter().filter(|d| d.as_str() != tun) {
            let conflict = |kind, reason: String| RouteConflict {
                kind,
                dst: show(r.dst),
                dev: Some(dev.clone()),
                table: Some(r.table.clone()),
                reason,
            };
            if within(r.dst, p) {
                push(conflict(
                    ConflictKind::Route,
                    format!(
                        "{} via {dev} (table {}) lies inside the VON prefix {}: the kernel prefers it \
                         to {tun}, so the leak guard drops what it carries; delete it, or route it via {tun}",
                        show(r.dst),
                        r.table,
                        show(p)
                    ),
                ));
            } else if r.dst.prefix_len() > 0
                && within(p, r.dst)
                && underlay_devs.contains(&dev.as_str())
            {
                push(conflict(
                    ConflictKind::Underlay,
                    format!(
                        "underlay network {} on {dev} (table {}) overlaps the VON prefix {}: \
                         its hosts in the prefix are unreachable on the underlay; renumber the VON \
                         or the underlay",
                        show(r.dst),
                        r.table,
                        show(p)
                    ),
                ));
            }
        }
    }
    for (label, ep) in &von.endpoints {
        let SocketAddr::V4(v4) = ep else { continue };
        if p.contains(*v4.ip()) {
            push(RouteConflict {
                kind: ConflictKind::Underlay,
                dst: format!("{}/32", v4.ip()),
                dev: None,
                table: None,
                reason: format!(
                    "{label} {ep} lies inside the VON prefix {}: frames to it would be routed into \
                     {tun}; give the underlay addresses outside the VON prefix",
                    show(p)
                ),
            });
        }
    }
    let own = routes
        .iter()
        .any(|r| r.table == "main" && r.dst == p && r.devs.iter().any(|d| d == tun));
    if !own {
        push(RouteConflict {
            kind: ConflictKind::Missing,
            dst: show(p),
            dev: Some(tun.to_owned()),
            table: Some("main".to_owned()),
            reason: format!(
                "no route for {} via {tun} in the main table: VON traffic follows other routes and \
                 the leak guard drops it; restart the agent to restore it",
                show(p)
            ),
        });
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `ip -j -4 route show table all` printed in a netns with a VON up
    /// on von-grid, underlay ua, and the routes the tests below add.
    const ROUTES: &str = r#"[
        {"dst":"100.64.0.0/10","gateway":"192.0.2.2","dev":"ua","table":"55","flags":[]},
        {"dst":"default","gateway":"192.0.2.254","dev":"ua","flags":[]},
        {"dst":"100.64.1.2","gateway":"192.0.2.2","dev":"ua","flags":[]},
        {"type":"blackhole","dst":"100.64.1.9","flags":[]},
        {"dst":"100.64.1.0/24","dev":"von-grid","protocol":"kernel","scope":"link","prefsrc":"100.64.1.1","flags":[]},
        {"dst":"192.0.2.0/24","dev":"ua","protocol":"kernel","scope":"link","prefsrc":"192.0.2.1","flags":[]},
        {"dst":"100.64.1.128/25","flags":[],"nexthops":[{"gateway":"192.0.2.2","dev":"ua"},{"gateway":"198.51.100.2","dev":"ub"}]},
        {"type":"local","dst":"100.64.1.1","dev":"von-grid","table":"local","protocol":"kernel","scope":"host","prefsrc":"100.64.1.1","flags":[]},
        {"type":"broadcast","dst":"100.64.1.255","dev":"von-grid","table":"local","protocol":"kernel","scope":"link","prefsrc":"100.64.1.1","flags":[]},
        {"type":"local","dst":"192.0.2.1","dev":"ua","table":"local","protocol":"kernel","scope":"host","prefsrc":"192.0.2.1","flags":[]}
    ]"#;
    const ADDRS: &str = r#"[
        {"ifindex":1,"ifname":"lo","addr_info":[{"family":"inet","local":"127.0.0.1","prefixlen":8}]},
        {"ifindex":3,"ifname":"ua","addr_info":[{"family":"inet","local":"192.0.2.1","prefixlen":24}]},
        {"ifindex":4,"ifname":"von-grid","addr_info":[{"family":"inet","local":"100.64.1.1","prefixlen":24}]}
    ]"#;

    fn grid(endpoints: Vec<(String, SocketAddr)>) -> VonRoutes<'static> {
        VonRoutes {
            interface: "von-grid",
            prefix: prefix("100.64.1.0/24").unwrap(),
            endpoints,
        }
    }

    fn binds() -> Vec<SocketAddr> {
        vec![
            "192.0.2.1:4789".parse().unwrap(),
            "198.51.100.1:4789".parse().unwrap(),
        ]
    }

    #[test]
    fn more_specific_routes_via_other_devices_conflict_and_the_rest_do_not() {
        let routes = parse_routes(ROUTES).unwrap();
        let addrs = parse_addresses(ADDRS).unwrap();
        let found = conflicts(&grid(vec![]), &routes, &addrs, &binds());
        let shown: Vec<(ConflictKind, &str, Option<&str>, Option<&str>)> = found
            .iter()
            .map(|c| (c.kind, c.dst.as_str(), c.dev.as_deref(), c.table.as_deref()))
            .collect();
        assert_eq!(
            shown,
            vec![
                // A covering route on an underlay, even in another table.
                (
                    ConflictKind::Underlay,
                    "100.64.0.0/10",
                    Some("ua"),
                    Some("55")
                ),
                (
                    ConflictKind::Route,
                    "100.64.1.2/32",
                    Some("ua"),
                    Some("main")
                ),
                (
                    ConflictKind::Route,
                    "100.64.1.128/25",
                    Some("ua"),
                    Some("main")
                ),
                (
                    ConflictKind::Route,
                    "100.64.1.128/25",
                    Some("ub"),
                    Some("main")
                ),
            ],
            "{found:#?}"
        );
        assert!(found[1].reason.contains("delete it"), "{}", found[1].reason);
    }

    #[test]
    fn a_clean_table_has_no_conflict() {
        let routes: Vec<Route> = parse_routes(ROUTES)
            .unwrap()
            .into_iter()
            .filter(|r| {
                r.devs.iter().all(|d| d == "von-grid") || !within(r.dst, grid(vec![]).prefix)
            })
            .filter(|r| r.table != "55")
            .collect();
        let addrs = parse_addresses(ADDRS).unwrap();
        assert_eq!(conflicts(&grid(vec![]), &routes, &addrs, &binds()), vec![]);
    }

    #[test]
    fn the_tun_route_gone_is_a_missing_conflict() {
        let routes: Vec<Route> = parse_routes(ROUTES)
            .unwrap()
            .into_iter()
            .filter(|r| r.table == "local")
            .collect();
        let found = conflicts(&grid(vec![]), &routes, &[], &binds());
        assert_eq!(found.len(), 1, "{found:#?}");
        assert_eq!(found[0].kind, ConflictKind::Missing);
        assert_eq!(found[0].dst, "100.64.1.0/24");
    }

    #[test]
    fn an_underlay_endpoint_inside_the_prefix_conflicts() {
        let routes = parse_routes(
            r#"[{"dst":"100.64.1.0/24","dev":"von-grid","protocol":"kernel","flags":[]}]"#,
        )
        .unwrap();
        let eps = vec![
            (
                "member h2's underlay A endpoint".to_owned(),
                "100.64.1.20:4789".parse().unwrap(),
            ),
            (
                "member h2's underlay B endpoint".to_owned(),
                "198.51.100.2:4789".parse().unwrap(),
            ),
        ];
        let found = conflicts(&grid(eps), &routes, &[], &binds());
        assert_eq!(found.len(), 1, "{found:#?}");
        assert_eq!(found[0].kind, ConflictKind::Underlay);
        assert_eq!(found[0].dst, "100.64.1.20/32");
        assert!(
            found[0].reason.contains("h2's underlay A"),
            "{}",
            found[0].reason
        );
    }

    #[test]
    fn prefixes_parse_as_ip_prints_them() {
        assert_eq!(show(prefix("default").unwrap()), "0.0.0.0/0");
        assert_eq!(show(prefix("100.64.1.2").unwrap()), "100.64.1.2/32");
        assert_eq!(show(prefix("100.64.1.7/24").unwrap()), "100.64.1.0/24");
        assert_eq!(prefix("fe80::/64"), None);
        assert_eq!(prefix("1.2.3.4/33"), None);
    }
}
