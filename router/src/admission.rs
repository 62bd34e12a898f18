//! Admission control: a router never books more for ONs on a link than the
//! share of that link its operator set aside for them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::OnClassSpec;

/// What an operator sets aside on one egress interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkBudget {
    /// The interface.
    pub dev: String,
    /// The link's rate: the HTB root, bits per second.
    pub capacity_bps: u64,
    /// How much of it ONs may book in total (at most `capacity_bps`).
    pub on_share_bps: u64,
}

/// Why a request does not fit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The link is not one this router shapes.
    #[error(
        "link {dev} is not configured on this router (it shapes: {known}); check the reservation's path"
    )]
    UnknownLink { dev: String, known: String },

    /// Booking it would exceed the ON share of the link.
    #[error(
        "link {dev} would be overbooked by {over} bit/s: {asked} bit/s asked, {booked} of {share} bit/s for ONs already booked or held; ask for less or release another ON"
    )]
    Overbooked {
        dev: String,
        asked: u64,
        booked: u64,
        share: u64,
        over: u64,
    },
}

/// Checks `asked` (one entry per link) against `budgets`, given what is
/// already `booked` per link (committed and held).
pub fn admit(
    budgets: &BTreeMap<String, LinkBudget>,
    booked: &BTreeMap<String, u64>,
    asked: &[OnClassSpec],
) -> Result<(), Refusal> {
    // The same link may appear twice in one request only if the caller did
    // not merge copies; add them up so the check is still right.
    let mut want: BTreeMap<&str, u64> = BTreeMap::new();
    for class in asked {
        *want.entry(class.dev.as_str()).or_default() += class.rate_bps;
    }
    for (dev, asked) in want {
        let budget = budgets.get(dev).ok_or_else(|| Refusal::UnknownLink {
            dev: dev.to_owned(),
            known: budgets.keys().cloned().collect::<Vec<_>>().join(", "),
        })?;
        let booked = booked.get(dev).copied().unwrap_or(0);
        let total = booked.saturating_add(asked);
        if total > budget.on_share_bps {
            return Err(Refusal::Overbooked {
                dev: dev.to_owned(),
                asked,
                booked,
                share: budget.on_share_bps,
                over: total - budget.on_share_bps,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budgets() -> BTreeMap<String, LinkBudget> {
        [
            ("sha", 100_000_000, 50_000_000),
            ("shb", 100_000_000, 100_000_000),
        ]
        .into_iter()
        .map(|(dev, capacity_bps, on_share_bps)| {
            (
                dev.to_owned(),
                LinkBudget {
                    dev: dev.to_owned(),
                    capacity_bps,
                    on_share_bps,
                },
            )
        })
        .collect()
    }

    fn ask(dev: &str, rate_bps: u64) -> OnClassSpec {
        OnClassSpec {
            dev: dev.to_owned(),
            on_id: 7,
            dscp: 46,
            port: 4789,
            rate_bps,
        }
    }

    #[test]
    fn fits_exactly_up_to_the_share() {
        let booked = [("sha".to_owned(), 30_000_000)].into();
        assert_eq!(
            admit(&budgets(), &booked, &[ask("sha", 20_000_000)]),
            Ok(())
        );
    }

    #[test]
    fn overbooking_names_the_link_and_the_excess() {
        let booked = [("sha".to_owned(), 30_000_000)].into();
        let err = admit(
            &budgets(),
            &booked,
            &[ask("shb", 1), ask("sha", 25_000_000)],
        )
        .expect_err("55 of 50 Mbit/s");
        assert_eq!(
            err,
            Refusal::Overbooked {
                dev: "sha".into(),
                asked: 25_000_000,
                booked: 30_000_000,
                share: 50_000_000,
                over: 5_000_000
            }
        );
        let text = err.to_string();
        assert!(
            text.contains("link sha") && text.contains("by 5000000 bit/s"),
            "{text}"
        );
    }

    #[test]
    fn two_copies_on_one_link_count_twice() {
        let booked = BTreeMap::new();
        let err = admit(
            &budgets(),
            &booked,
            &[ask("sha", 30_000_000), ask("sha", 30_000_000)],
        )
        .expect_err("60 of 50");
        assert!(
            matches!(
                err,
                Refusal::Overbooked {
                    over: 10_000_000,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn unknown_link_lists_the_known_ones() {
        let err = admit(&budgets(), &BTreeMap::new(), &[ask("eth9", 1)]).expect_err("unknown");
        assert!(err.to_string().contains("sha, shb"), "{err}");
    }
}
