//! Reading `von status --json`: per-VON counters by their stable names
//! (docs/status.md), and differences between two readings so a test counts
//! only what it caused.

use serde_json::Value;

use crate::error::{Error, Result};
use crate::topology::Underlay;

/// One reading of an agent's status JSON.
#[derive(Debug, Clone)]
pub struct Status {
    json: Value,
}

impl Status {
    /// Parses the output of `von status --json`.
    pub fn parse(text: &str) -> Result<Self> {
        let json = serde_json::from_str(text).map_err(|e| Error::Parse {
            what: "von status --json",
            reason: e.to_string(),
            text: text.to_owned(),
        })?;
        Ok(Self { json })
    }

    /// The whole document, for checks this module has no helper for.
    pub fn json(&self) -> &Value {
        &self.json
    }

    /// VON `von`'s entry for peer `name` (`vons[name == von].peers[name ==
    /// name]`), if both are there.
    pub fn peer(&self, von: &str, name: &str) -> Option<&Value> {
        find_von(&self.json, von)?
            .get("peers")?
            .as_array()?
            .iter()
            .find(|p| p.get("name").and_then(Value::as_str) == Some(name))
    }

    /// The counters of VON `von` (`vons[name == von].counters`, as
    /// docs/status.md fixes).
    pub fn von(&self, von: &str) -> Result<VonCounters> {
        let entry = find_von(&self.json, von)
            .ok_or_else(|| self.parse_error(format!("no VON named {von:?}")))?;
        let counters = entry
            .get("counters")
            .filter(|c| c.get("delivered").and_then(Value::as_u64).is_some())
            .ok_or_else(|| self.parse_error(format!("VON {von:?} has no counters.delivered")))?
            .clone();
        Ok(VonCounters {
            von: von.to_owned(),
            json: counters,
        })
    }

    fn parse_error(&self, reason: String) -> Error {
        Error::Parse {
            what: "von status --json",
            reason,
            text: self.json.to_string(),
        }
    }
}

/// The counters of one VON at one moment.
#[derive(Debug, Clone)]
pub struct VonCounters {
    von: String,
    json: Value,
}

impl VonCounters {
    /// A VON-wide counter such as `delivered` or `rate_drops`.
    pub fn get(&self, name: &str) -> Result<u64> {
        self.json
            .get(name)
            .and_then(Value::as_u64)
            .ok_or_else(|| self.missing(name))
    }

    /// A per-underlay counter such as `tx_frames` on A.
    pub fn on(&self, underlay: Underlay, name: &str) -> Result<u64> {
        self.json
            .get("underlay")
            .and_then(|u| u.get(underlay.key()))
            .and_then(|u| u.get(name))
            .and_then(Value::as_u64)
            .ok_or_else(|| self.missing(&format!("underlay.{}.{name}", underlay.key())))
    }

    /// `later - self` for a counter (counters only grow).
    pub fn delta(&self, later: &VonCounters, name: &str) -> Result<u64> {
        Ok(later.get(name)?.saturating_sub(self.get(name)?))
    }

    /// `later - self` for a per-underlay counter.
    pub fn delta_on(&self, later: &VonCounters, underlay: Underlay, name: &str) -> Result<u64> {
        Ok(later
            .on(underlay, name)?
            .saturating_sub(self.on(underlay, name)?))
    }

    /// How many received data frames reached a verdict between `self` and
    /// `later`: the sum of the counters one of which every received frame
    /// ends in (docs/status.md). The pipeline bumps `rx_frames` on arrival
    /// and the verdict a moment later, so a test that saw `rx_frames` move
    /// waits for this too before it judges the verdict.
    pub fn judged(&self, later: &VonCounters) -> Result<u64> {
        VERDICTS.iter().map(|name| self.delta(later, name)).sum()
    }

    /// `later - self` of `rx_frames` summed over every underlay.
    pub fn received(&self, later: &VonCounters) -> Result<u64> {
        let sum = |c: &VonCounters| -> u64 {
            c.json
                .get("underlay")
                .and_then(Value::as_object)
                .map_or(0, |m| {
                    m.values()
                        .filter_map(|u| u.get("rx_frames").and_then(Value::as_u64))
                        .sum()
                })
        };
        Ok(sum(later).saturating_sub(sum(self)))
    }

    fn missing(&self, name: &str) -> Error {
        Error::Parse {
            what: "von status --json counters",
            reason: format!(
                "VON {:?} has no counter `{name}` (see docs/status.md)",
                self.von
            ),
            text: self.json.to_string(),
        }
    }
}

/// The counters every received data frame ends in exactly one of
/// (docs/status.md, "Per-VON counters").
const VERDICTS: [&str; 12] = [
    "delivered",
    "duplicates",
    "replays",
    "too_old",
    "auth_failures",
    "malformed",
    "unknown_sender",
    "unknown_epoch",
    "inner_source_rejected",
    "from_self",
    "unproven",
    "stale",
];

/// The entry of VON `name` in the document's `vons` array.
fn find_von<'a>(v: &'a Value, name: &str) -> Option<&'a Value> {
    v.get("vons")?
        .as_array()?
        .iter()
        .find(|entry| entry.get("name").and_then(Value::as_str) == Some(name))
}

/// Polls `read` (the sender's counters, then the receiver's) for up to 10 s
/// until the receiver has delivered every packet the sender sealed since
/// `before`, and returns that reading; on a timeout, one last reading, for
/// the caller's assertion to report. The last packets of a flow are sealed
/// and delivered one after the other, and the sender is read first, so one
/// reading taken at once can disagree either way.
pub fn until_delivered(
    before: &[VonCounters; 2],
    mut read: impl FnMut() -> Result<[VonCounters; 2]>,
) -> Result<[VonCounters; 2]> {
    crate::wait_for(
        "the receiver to deliver every packet the sender sealed",
        std::time::Duration::from_secs(10),
        || {
            let now = read()?;
            let sealed = before[0].delta(&now[0], "tx_packets")?;
            let delivered = before[1].delta(&now[1], "delivered")?;
            Ok(if delivered == sealed {
                Ok(now)
            } else {
                Err(format!(
                    "sender sealed {sealed}, receiver delivered {delivered}"
                ))
            })
        },
    )
    .or_else(|_| read())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"{
        "vons": [
            {"name": "grid", "interface": "von-grid",
             "counters": {"underlay": {
                            "a": {"tx_frames": 10, "tx_errors": 0, "rx_frames": 9},
                            "b": {"tx_frames": 10, "tx_errors": 1, "rx_frames": 8}},
                          "tx_packets": 10, "delivered": 9, "duplicates": 8}},
            {"name": "med", "counters": {"underlay": {"a": {"tx_frames": 0}}, "delivered": 0}}
        ]
    }"#;

    #[test]
    fn reads_counters_by_von() {
        let s = Status::parse(SAMPLE).expect("valid JSON");
        let grid = s.von("grid").expect("grid is there");
        assert_eq!(grid.get("delivered").expect("counter"), 9);
        assert_eq!(grid.on(Underlay::B, "tx_errors").expect("counter"), 1);
        assert_eq!(
            s.von("med")
                .expect("med")
                .get("delivered")
                .expect("counter"),
            0
        );
    }

    #[test]
    fn missing_von_or_counter_is_an_error_naming_it() {
        let s = Status::parse(SAMPLE).expect("valid JSON");
        let err = s.von("nope").expect_err("no such VON");
        assert!(err.to_string().contains("nope"), "{err}");
        let err = s
            .von("grid")
            .expect("grid")
            .get("replays")
            .expect_err("absent");
        assert!(err.to_string().contains("replays"), "{err}");
    }

    #[test]
    fn deltas() {
        let before = Status::parse(SAMPLE)
            .expect("json")
            .von("grid")
            .expect("grid");
        let later = Status::parse(&SAMPLE.replace("\"delivered\": 9", "\"delivered\": 19"))
            .expect("json")
            .von("grid")
            .expect("grid");
        assert_eq!(before.delta(&later, "delivered").expect("counter"), 10);
        assert_eq!(
            before
                .delta_on(&later, Underlay::A, "rx_frames")
                .expect("counter"),
            0
        );
    }

    #[test]
    fn judged_sums_the_verdicts_and_received_both_underlays() {
        let counters = |delivered: u64, replays: u64, rx_a: u64| {
            let mut c =
                serde_json::json!({"underlay": {"a": {"rx_frames": rx_a}, "b": {"rx_frames": 1}}});
            for name in VERDICTS {
                c[name] = 0.into();
            }
            c["delivered"] = delivered.into();
            c["replays"] = replays.into();
            let text = serde_json::json!({"vons": [{"name": "grid", "counters": c}]});
            Status::parse(&text.to_string())
                .expect("json")
                .von("grid")
                .expect("grid")
        };
        let (before, later) = (counters(5, 0, 2), counters(7, 1, 6));
        assert_eq!(before.judged(&later).expect("counters"), 3);
        assert_eq!(before.received(&later).expect("counters"), 4);
        // A reading without the verdict counters names the missing one.
        let bare = Status::parse(SAMPLE)
            .expect("json")
            .von("grid")
            .expect("grid");
        assert!(bare.judged(&later).is_err());
    }

    #[test]
    fn garbage_is_a_parse_error() {
        assert!(Status::parse("not json").is_err());
    }
}
