//! Reading what `tc` shows: `tc -s class show dev D`, `tc filter show dev D`
//! and `tc -j qdisc show dev D`.
//!
//! iproute2 6.1 prints HTB classes as text even with `-j`, and prints a u32
//! filter's keys in JSON as repeated `"match"` members (which a JSON map
//! cannot hold), so classes and filters are read from the text form; the
//! root qdisc from JSON.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::{MAJOR, U32Key};
use crate::error::{Error, Result};

/// What is installed on one interface, as far as our qdisc is concerned.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Installed {
    /// The root qdisc is HTB with handle `1:` (ours, or ours from an earlier
    /// run: adopted, and the diff removes what is not wanted).
    pub root_ours: bool,
    /// Classes of qdisc `1:` by minor.
    pub classes: BTreeMap<u16, InstalledClass>,
    /// u32 filters at parent `1:` by pref.
    pub filters: BTreeMap<u16, InstalledFilter>,
}

/// One HTB class.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstalledClass {
    pub rate_bps: u64,
    pub ceil_bps: u64,
    pub counters: ClassCounters,
}

/// A class's counters (`tc -s`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ClassCounters {
    pub bytes: u64,
    pub packets: u64,
    pub drops: u64,
}

/// One u32 filter (all its nodes at one pref).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstalledFilter {
    /// The minor of the class it sends to, if it is in our qdisc.
    pub flowid: Option<u16>,
    /// tc's `protocol` (`ip`, `ipv6`, ...).
    pub protocol: Option<String>,
    pub keys: BTreeSet<U32Key>,
}

impl Installed {
    /// Reads the three outputs of one interface.
    pub fn parse(qdisc_json: &str, classes: &str, filters: &str) -> Result<Self> {
        Ok(Self {
            root_ours: root_is_ours(qdisc_json)?,
            classes: parse_classes(classes)?,
            filters: parse_filters(filters)?,
        })
    }
}

/// Whether `tc -j qdisc show dev D` has an HTB root with handle `1:`.
pub fn root_is_ours(json: &str) -> Result<bool> {
    let v: Value = serde_json::from_str(json.trim()).map_err(|e| Error::TcParse {
        reason: format!("qdisc JSON: {e}"),
        line: json.chars().take(200).collect(),
    })?;
    Ok(v.as_array().is_some_and(|qs| {
        qs.iter()
            .any(|q| q["root"] == true && q["kind"] == "htb" && q["handle"] == format!("{MAJOR}:"))
    }))
}

/// Parses `tc [-s] class show dev D`, keeping the HTB classes of `1:`.
pub fn parse_classes(text: &str) -> Result<BTreeMap<u16, InstalledClass>> {
    let mut out = BTreeMap::new();
    let mut current: Option<u16> = None;
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.first() == Some(&"class") {
            current = None;
            if words.get(1) != Some(&"htb") {
                continue;
            }
            let Some(minor) = words.get(2).and_then(|h| minor_of(h)) else {
                continue;
            };
            let rate = value_after(&words, "rate", line)?;
            let ceil = value_after(&words, "ceil", line)?;
            out.insert(
                minor,
                InstalledClass {
                    rate_bps: parse_rate(rate, line)?,
                    ceil_bps: parse_rate(ceil, line)?,
                    counters: ClassCounters::default(),
                },
            );
            current = Some(minor);
        } else if words.first() == Some(&"Sent") {
            // " Sent 123 bytes 4 pkt (dropped 0, overlimits 0 requeues 0)"
            let Some(class) = current.and_then(|m| out.get_mut(&m)) else {
                continue;
            };
            let num = |i: usize| -> Result<u64> {
                let w = words.get(i).map(|w| w.trim_end_matches(','));
                w.and_then(|w| w.parse().ok())
                    .ok_or_else(|| Error::TcParse {
                        reason: "counter is not a number".into(),
                        line: line.to_owned(),
                    })
            };
            class.counters = ClassCounters {
                bytes: num(1)?,
                packets: num(3)?,
                drops: num(6)?,
            };
        }
    }
    Ok(out)
}

/// Parses `tc filter show dev D`, keeping the u32 filters at parent `1:`.
pub fn parse_filters(text: &str) -> Result<BTreeMap<u16, InstalledFilter>> {
    let mut out: BTreeMap<u16, InstalledFilter> = BTreeMap::new();
    let mut current: Option<u16> = None;
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.first() {
            Some(&"filter") => {
                current = None;
                let ours = value_after(&words, "parent", line).ok() == Some("1:")
                    && words.contains(&"u32");
                if !ours {
                    continue;
                }
                let pref: u16 =
                    value_after(&words, "pref", line)?
                        .parse()
                        .map_err(|_| Error::TcParse {
                            reason: "pref is not a number".into(),
                            line: line.to_owned(),
                        })?;
                let entry = out.entry(pref).or_default();
                if let Ok(p) = value_after(&words, "protocol", line) {
                    entry.protocol = Some(p.to_owned());
                }
                let flowid = words
                    .iter()
                    .position(|w| *w == "flowid" || *w == "*flowid")
                    .and_then(|i| words.get(i + 1))
                    .and_then(|h| minor_of(h));
                if flowid.is_some() {
                    entry.flowid = flowid;
                }
                current = Some(pref);
            }
            Some(&"match") => {
                let Some(pref) = current else { continue };
                // "match 05b80000/0ffc0000 at 0"
                let key = parse_key(&words).ok_or_else(|| Error::TcParse {
                    reason: "expected `match VALUE/MASK at OFF`".into(),
                    line: line.to_owned(),
                })?;
                out.entry(pref).or_default().keys.insert(key);
            }
            _ => {}
        }
    }
    Ok(out)
}

fn parse_key(words: &[&str]) -> Option<U32Key> {
    let (value, mask) = words.get(1)?.split_once('/')?;
    if words.get(2) != Some(&"at") {
        return None;
    }
    Some(U32Key {
        off: words.get(3)?.parse().ok()?,
        value: u32::from_str_radix(value, 16).ok()?,
        mask: u32::from_str_radix(mask, 16).ok()?,
    })
}

/// `1:10` → `Some(0x10)` when the major is ours.
fn minor_of(handle: &str) -> Option<u16> {
    let (major, minor) = handle.split_once(':')?;
    if u16::from_str_radix(major, 16).ok()? != MAJOR {
        return None;
    }
    u16::from_str_radix(minor, 16).ok()
}

fn value_after<'a>(words: &[&'a str], key: &str, line: &str) -> Result<&'a str> {
    words
        .iter()
        .position(|w| *w == key)
        .and_then(|i| words.get(i + 1).copied())
        .ok_or_else(|| Error::TcParse {
            reason: format!("no `{key}`"),
            line: line.to_owned(),
        })
}

/// `21Mbit`, `21152Kbit`, `999bit`, `1.5Gbit` → bits per second (tc's bit
/// units are decimal).
pub fn parse_rate(text: &str, line: &str) -> Result<u64> {
    let lower = text.to_ascii_lowercase();
    let (number, scale) = [
        ("tbit", 1e12),
        ("gbit", 1e9),
        ("mbit", 1e6),
        ("kbit", 1e3),
        ("bit", 1.0),
    ]
    .iter()
    .find_map(|(unit, scale)| lower.strip_suffix(unit).map(|n| (n.to_owned(), *scale)))
    .ok_or_else(|| Error::TcParse {
        reason: format!("rate {text:?} has no bit unit"),
        line: line.to_owned(),
    })?;
    let n: f64 = number.parse().map_err(|_| Error::TcParse {
        reason: format!("rate {text:?} is not a number"),
        line: line.to_owned(),
    })?;
    // Rates are far below 2^53; rounding to whole bits is exact enough.
    Ok((n * scale).round() as u64)
}
