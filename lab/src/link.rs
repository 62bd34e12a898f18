//! What `ip -j addr show dev IF` says about one interface.

use std::net::{Ipv4Addr, Ipv6Addr};

use serde_json::Value;

use crate::error::{Error, Result};
use crate::netns::Netns;

/// State of one interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// Administratively up (`UP` among its flags).
    pub up: bool,
    /// Its MTU.
    pub mtu: u32,
    /// Its IPv4 addresses.
    pub addresses: Vec<Ipv4Addr>,
    /// Its IPv6 addresses (link-local ones too).
    pub addresses6: Vec<Ipv6Addr>,
}

/// Reads interface `ifname` in `ns`.
pub fn link(ns: &Netns, ifname: &str) -> Result<Link> {
    let out = ns.ip(&["-j", "addr", "show", "dev", ifname])?;
    parse_link(&out.stdout)
}

/// Parses `ip -j addr show dev IF` output.
pub fn parse_link(text: &str) -> Result<Link> {
    let err = |reason: &str| Error::Parse {
        what: "ip -j addr show",
        reason: reason.to_owned(),
        text: text.to_owned(),
    };
    let json: Value = serde_json::from_str(text).map_err(|e| err(&e.to_string()))?;
    let entry = json
        .get(0)
        .ok_or_else(|| err("no interface in the output"))?;
    let up = entry["flags"]
        .as_array()
        .is_some_and(|flags| flags.iter().any(|f| f == "UP"));
    let mtu = entry["mtu"]
        .as_u64()
        .and_then(|m| u32::try_from(m).ok())
        .ok_or_else(|| err("no mtu"))?;
    let of = |family: &str| -> Vec<String> {
        entry["addr_info"]
            .as_array()
            .map(|infos| {
                infos
                    .iter()
                    .filter(|i| i["family"] == family)
                    .filter_map(|i| Some(i["local"].as_str()?.to_owned()))
                    .collect()
            })
            .unwrap_or_default()
    };
    let addresses = of("inet").iter().filter_map(|a| a.parse().ok()).collect();
    let addresses6 = of("inet6").iter().filter_map(|a| a.parse().ok()).collect();
    Ok(Link {
        up,
        mtu,
        addresses,
        addresses6,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_tun_interface() {
        let text = r#"[{"ifindex":5,"ifname":"von-grid","flags":["POINTOPOINT","NOARP","UP","LOWER_UP"],
            "mtu":1432,"qdisc":"fq_codel","operstate":"UNKNOWN","group":"default","txqlen":500,
            "link_type":"none","addr_info":[{"family":"inet","local":"100.64.1.1","prefixlen":24,
            "scope":"global","label":"von-grid","valid_life_time":4294967295,"preferred_life_time":4294967295}]}]"#;
        let link = parse_link(text).expect("valid");
        assert!(link.up);
        assert_eq!(link.mtu, 1432);
        assert_eq!(link.addresses, vec![Ipv4Addr::new(100, 64, 1, 1)]);
    }

    #[test]
    fn down_without_addresses() {
        let text =
            r#"[{"ifname":"ua","flags":["BROADCAST","MULTICAST"],"mtu":1500,"addr_info":[]}]"#;
        let link = parse_link(text).expect("valid");
        assert!(!link.up);
        assert!(link.addresses.is_empty());
    }

    #[test]
    fn empty_output_is_an_error() {
        assert!(parse_link("[]").is_err());
        assert!(parse_link("garbage").is_err());
    }
}
