//! The tc/HTB state of a router's egress link, computed, diffed and emitted
//! as `tc` command lines, without running anything (sans-IO).
//!
//! Layout on each configured interface (handle `1:` is ours):
//!
//! ```text
//! qdisc htb 1: default 2
//! └── class 1:1     rate = ceil = link capacity
//!     ├── class 1:2     default: rate = capacity - reserved, ceil = capacity
//!     ├── class 1:16    ON 7: rate = ceil = its reserved wire rate (no borrowing)
//!     └── class 1:17    ON 9: ...
//! filter parent 1: pref 16 protocol ip u32 (IPv4 without options, first
//!     fragment, UDP, dport, DSCP, ON id at payload offset 0) flowid 1:16
//! filter parent 1: pref 32784 protocol ipv6 u32 (IPv6 whose next header is
//!     UDP, i.e. no extension header; dport, DSCP, ON id) flowid 1:16
//! ```
//!
//! [`diff`] compares the desired [`LinkPlan`] with the [`Installed`] state
//! `tc` shows ([`parse`]) and returns only the commands that close the gap, so
//! adding or removing one ON never touches another ON's class or filter.

pub mod parse;

use std::collections::{BTreeMap, BTreeSet};

use crate::model::Family;
pub use parse::{ClassCounters, Installed, InstalledClass, InstalledFilter};

/// Our qdisc's major handle.
pub const MAJOR: u16 = 1;
/// The class holding the whole link.
pub const LINK_MINOR: u16 = 1;
/// The class for everything that is not a reserved ON.
pub const DEFAULT_MINOR: u16 = 2;
/// The first minor given to an ON class (also its filter's `pref`).
pub const FIRST_ON_MINOR: u16 = 0x10;
/// The highest minor given to an ON class: at most ~32 700 ONs per link,
/// so that every ON's IPv6 filter pref (`minor + IPV6_PREF`) is a u16.
pub const LAST_ON_MINOR: u16 = 0x7fff;
/// Added to an ON's minor to give its IPv6 filter's pref: tc keeps one
/// protocol per pref, so an ON's IPv4 and IPv6 filters need two.
pub const IPV6_PREF: u16 = 0x8000;
/// HTB's quantum for every class: one full-size Ethernet frame, so HTB does
/// not warn and rounds fairly between the default class's flows.
pub const QUANTUM: u32 = 1514;

/// One `tc` invocation: the arguments after `tc`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcCommand(pub Vec<String>);

impl TcCommand {
    fn new(args: &[&str]) -> Self {
        Self(args.iter().map(|a| (*a).to_owned()).collect())
    }
}

impl std::fmt::Display for TcCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "tc {}", self.0.join(" "))
    }
}

/// One reserved ON on a link, with the minor its class and filter use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedClass {
    pub minor: u16,
    pub on_id: u32,
    pub dscp: u8,
    pub port: u16,
    pub rate_bps: u64,
}

/// The desired state of one egress interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkPlan {
    pub dev: String,
    pub capacity_bps: u64,
    pub classes: Vec<PlannedClass>,
}

/// One 32-bit u32 key as the kernel keeps it: `value/mask at off`, with `off`
/// a multiple of 4 and keys at the same offset merged, exactly as
/// `tc filter show` prints them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct U32Key {
    pub off: u32,
    pub value: u32,
    pub mask: u32,
}

impl LinkPlan {
    /// Rate of the default class: what the ONs leave, but never below 1 % of
    /// the link so unreserved traffic (routing, management) always moves.
    pub fn default_rate(&self) -> u64 {
        let reserved: u64 = self.classes.iter().map(|c| c.rate_bps).sum();
        self.capacity_bps
            .saturating_sub(reserved)
            .max(self.capacity_bps / 100)
            .max(8_000)
    }
}

/// One u32 filter an ON needs on a link: one per family, both sending to
/// the ON's class (so its counters count both).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedFilter {
    pub pref: u16,
    pub family: Family,
    pub minor: u16,
    pub keys: BTreeSet<U32Key>,
}

/// tc's name for a family's EtherType (`protocol ip` / `protocol ipv6`).
pub fn protocol(family: Family) -> &'static str {
    match family {
        Family::Ipv4 => "ip",
        Family::Ipv6 => "ipv6",
    }
}

impl PlannedClass {
    /// The ON's filters: IPv4 at pref `minor`, IPv6 at `minor + IPV6_PREF`.
    pub fn filters(&self) -> [PlannedFilter; 2] {
        [
            PlannedFilter {
                pref: self.minor,
                family: Family::Ipv4,
                minor: self.minor,
                keys: self.keys(),
            },
            PlannedFilter {
                pref: self.minor.saturating_add(IPV6_PREF),
                family: Family::Ipv6,
                minor: self.minor,
                keys: self.keys6(),
            },
        ]
    }

    /// The IPv6 filter's keys in the kernel's merged form. The UDP header is
    /// at 40 only when the fixed header's next header is UDP: a packet with
    /// any extension header (hop-by-hop, routing, fragment, destination
    /// options, ESP/AH) fails the next-header key and goes to the default
    /// class (docs/isolation.md, "IPv6 underlays").
    pub fn keys6(&self) -> BTreeSet<U32Key> {
        let tclass = u32::from(self.dscp & 0x3f) << 2;
        merge(&[
            // Version 6...
            U32Key {
                off: 0,
                value: 0x6000_0000,
                mask: 0xf000_0000,
            },
            // ...the VON's DSCP: the traffic class's top 6 bits (bits
            // 27..22 of the first word, right after the version)...
            U32Key {
                off: 0,
                value: tclass << 20,
                mask: 0x0fc0_0000,
            },
            // ...next header UDP, straight after the fixed header...
            U32Key {
                off: 4,
                value: 0x0000_1100,
                mask: 0x0000_ff00,
            },
            // ...to the VON's port...
            U32Key {
                off: 40,
                value: u32::from(self.port),
                mask: 0x0000_ffff,
            },
            // ...and the ON id, the first 4 bytes of the UDP payload.
            U32Key {
                off: 48,
                value: self.on_id,
                mask: 0xffff_ffff,
            },
        ])
    }

    /// The IPv6 `tc filter add` arguments after `u32` (raw keys: tc's
    /// `ip6` shorthands have no DSCP form).
    fn selector6(&self) -> Vec<String> {
        let tclass = u32::from(self.dscp & 0x3f) << 2;
        [
            "match u8 0x60 0xf0 at 0".to_owned(),
            format!("match u32 {:#010x} 0x0fc00000 at 0", tclass << 20),
            "match u8 0x11 0xff at 6".to_owned(),
            format!("match u16 {} 0xffff at 42", self.port),
            format!("match u32 {:#010x} 0xffffffff at 48", self.on_id),
        ]
        .iter()
        .flat_map(|m| m.split(' ').map(str::to_owned).collect::<Vec<_>>())
        .collect()
    }

    /// The IPv4 filter's keys in the kernel's merged form (see [`U32Key`]).
    pub fn keys(&self) -> BTreeSet<U32Key> {
        let tos = u32::from(self.dscp & 0x3f) << 2;
        merge(&[
            // IPv4 header length 5 words (no options: payload at 28)...
            U32Key {
                off: 0,
                value: 0x0500_0000,
                mask: 0x0f00_0000,
            },
            // ...the VON's DSCP...
            U32Key {
                off: 0,
                value: tos << 16,
                mask: 0x00fc_0000,
            },
            // ...first fragment only (fragment offset 0)...
            U32Key {
                off: 4,
                value: 0,
                mask: 0x0000_1fff,
            },
            // ...UDP...
            U32Key {
                off: 8,
                value: 0x0011_0000,
                mask: 0x00ff_0000,
            },
            // ...to the VON's port...
            U32Key {
                off: 20,
                value: u32::from(self.port),
                mask: 0x0000_ffff,
            },
            // ...and the ON id, the first 4 bytes of the UDP payload.
            U32Key {
                off: 28,
                value: self.on_id,
                mask: 0xffff_ffff,
            },
        ])
    }

    /// The `tc filter add` arguments after `u32`, in tc's own words.
    fn selector(&self) -> Vec<String> {
        let tos = u32::from(self.dscp & 0x3f) << 2;
        [
            "match ip protocol 17 0xff".to_owned(),
            format!("match ip dport {} 0xffff", self.port),
            format!("match ip dsfield {tos:#04x} 0xfc"),
            "match u8 0x05 0x0f at 0".to_owned(),
            "match u16 0x0 0x1fff at 6".to_owned(),
            format!("match u32 {:#010x} 0xffffffff at 28", self.on_id),
        ]
        .iter()
        .flat_map(|m| m.split(' ').map(str::to_owned).collect::<Vec<_>>())
        .collect()
    }
}

fn merge(keys: &[U32Key]) -> BTreeSet<U32Key> {
    let mut by_off: BTreeMap<u32, (u32, u32)> = BTreeMap::new();
    for k in keys {
        let e = by_off.entry(k.off).or_default();
        e.0 |= k.value & k.mask;
        e.1 |= k.mask;
    }
    by_off
        .into_iter()
        .map(|(off, (value, mask))| U32Key { off, value, mask })
        .collect()
}

fn classid(minor: u16) -> String {
    format!("{MAJOR}:{minor:x}")
}

fn class_cmd(verb: &str, dev: &str, parent: &str, minor: u16, rate: u64, ceil: u64) -> TcCommand {
    let (rate, ceil, quantum) = (
        format!("{rate}bit"),
        format!("{ceil}bit"),
        QUANTUM.to_string(),
    );
    let id = classid(minor);
    TcCommand::new(&[
        "class", verb, "dev", dev, "parent", parent, "classid", &id, "htb", "rate", &rate, "ceil",
        &ceil, "quantum", &quantum,
    ])
}

fn filter_add(dev: &str, class: &PlannedClass, filter: &PlannedFilter) -> TcCommand {
    let pref = filter.pref.to_string();
    let proto = protocol(filter.family);
    let mut args: Vec<String> = [
        "filter", "add", "dev", dev, "parent", "1:", "pref", &pref, "protocol", proto, "u32",
    ]
    .iter()
    .map(|a| (*a).to_owned())
    .collect();
    args.extend(match filter.family {
        Family::Ipv4 => class.selector(),
        Family::Ipv6 => class.selector6(),
    });
    args.extend(["flowid".to_owned(), classid(class.minor)]);
    TcCommand(args)
}

/// Rates within 0.5 % are the same rate: the kernel stores bytes per second
/// and `tc` prints rounded units.
fn same_rate(a: u64, b: u64) -> bool {
    a.abs_diff(b) <= a.max(b) / 200
}

/// The commands that turn `installed` into `plan`, in an order that never
/// leaves a filter pointing at a missing class.
pub fn diff(plan: &LinkPlan, installed: &Installed) -> Vec<TcCommand> {
    let dev = plan.dev.as_str();
    let mut out = Vec::new();
    let empty = Installed::default();
    let installed = if installed.root_ours {
        installed
    } else {
        out.push(TcCommand::new(&[
            "qdisc", "replace", "dev", dev, "root", "handle", "1:", "htb", "default", "2",
        ]));
        &empty
    };
    let wanted: BTreeMap<u16, &PlannedClass> = plan.classes.iter().map(|c| (c.minor, c)).collect();
    let filters: BTreeMap<u16, (&PlannedClass, PlannedFilter)> = plan
        .classes
        .iter()
        .flat_map(|c| c.filters().map(|f| (f.pref, (c, f))))
        .collect();

    // 1. Filters that are not wanted, or not as wanted.
    let mut readd = BTreeSet::new();
    for (&pref, f) in &installed.filters {
        let ok = filters.get(&pref).is_some_and(|(_, w)| {
            f.flowid == Some(w.minor)
                && f.keys == w.keys
                && f.protocol.as_deref() == Some(protocol(w.family))
        });
        if !ok {
            let text = pref.to_string();
            out.push(TcCommand::new(&[
                "filter", "del", "dev", dev, "parent", "1:", "pref", &text,
            ]));
            readd.insert(pref);
        }
    }
    // 2. Classes of ONs no longer reserved (leaves first: highest minor).
    for minor in installed.classes.keys().rev() {
        if *minor != LINK_MINOR && *minor != DEFAULT_MINOR && !wanted.contains_key(minor) {
            let id = classid(*minor);
            out.push(TcCommand::new(&[
                "class", "del", "dev", dev, "classid", &id,
            ]));
        }
    }
    // 3. The link and default classes.
    let mut ensure =
        |minor: u16, parent: &str, rate: u64, ceil: u64| match installed.classes.get(&minor) {
            None => out.push(class_cmd("add", dev, parent, minor, rate, ceil)),
            Some(c) if !same_rate(c.rate_bps, rate) || !same_rate(c.ceil_bps, ceil) => {
                out.push(class_cmd("change", dev, parent, minor, rate, ceil));
            }
            Some(_) => {}
        };
    ensure(LINK_MINOR, "1:", plan.capacity_bps, plan.capacity_bps);
    ensure(DEFAULT_MINOR, "1:1", plan.default_rate(), plan.capacity_bps);
    // 4. ON classes: rate = ceil, so an ON never borrows, even on an idle link.
    for c in &plan.classes {
        ensure(c.minor, "1:1", c.rate_bps, c.rate_bps);
    }
    // 5. Filters that are missing (or were just deleted).
    for (pref, (c, f)) in &filters {
        if !installed.filters.contains_key(pref) || readd.contains(pref) {
            out.push(filter_add(dev, c, f));
        }
    }
    out
}

/// The command that removes everything this crate installed on `dev`.
pub fn teardown(dev: &str) -> TcCommand {
    TcCommand::new(&["qdisc", "del", "dev", dev, "root"])
}

#[cfg(test)]
mod tests;
