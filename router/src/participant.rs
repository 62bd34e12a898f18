//! The router's side of a reservation: two-phase commit and leases, sans-IO
//! (every call is given `now`).
//!
//! `prepare` checks admission against what is committed *and* held, and
//! holds the share for [`HOLD`]; `commit` turns the hold into a reservation
//! with a lease; a lease that is not renewed lapses and the reservation goes
//! (the daemon then removes its class). The desired tc state is
//! [`RouterCore::plans`].

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::admission::{LinkBudget, admit};
use crate::model::OnClassSpec;
use crate::proto::{ClassStatus, LinkStatus, Request, ReservationStatus, Response, RouterStatus};
use crate::tc::{self, ClassCounters, FIRST_ON_MINOR, LAST_ON_MINOR, LinkPlan, PlannedClass};

/// How long a prepared transaction holds its share without a commit.
pub const HOLD: Duration = Duration::from_secs(10);
/// Shortest and longest lease a router grants.
pub const LEASE_MIN: Duration = Duration::from_millis(500);
pub const LEASE_MAX: Duration = Duration::from_secs(3600);

#[derive(Debug, Clone)]
struct Hold {
    name: String,
    on_id: u32,
    classes: Vec<OnClassSpec>,
    lease: Duration,
    expires: Instant,
}

#[derive(Debug, Clone)]
struct Reservation {
    name: String,
    tx: u64,
    /// Each class with the minor it got on its link.
    classes: Vec<(OnClassSpec, u16)>,
    lease: Duration,
    expires: Instant,
}

/// One router's reservations, holds and links.
#[derive(Debug)]
pub struct RouterCore {
    name: String,
    links: BTreeMap<String, LinkBudget>,
    holds: BTreeMap<u64, Hold>,
    reservations: BTreeMap<u32, Reservation>,
}

impl RouterCore {
    /// A router named `name` shaping `links`.
    pub fn new(name: &str, links: Vec<LinkBudget>) -> Self {
        Self {
            name: name.to_owned(),
            links: links.into_iter().map(|l| (l.dev.clone(), l)).collect(),
            holds: BTreeMap::new(),
            reservations: BTreeMap::new(),
        }
    }

    /// Answers one request at `now`.
    pub fn handle(&mut self, now: Instant, req: Request) -> Response {
        self.expire(now);
        let result = match req {
            Request::Prepare {
                tx,
                name,
                on_id,
                classes,
                lease_ms,
            } => self.prepare(now, tx, name, on_id, classes, lease_ms),
            Request::Commit { tx } => self.commit(now, tx),
            Request::Abort { tx } => {
                self.holds.remove(&tx);
                Ok(())
            }
            Request::Renew { on_id, lease_ms } => self.renew(now, on_id, lease_ms),
            Request::Release { on_id } => {
                self.reservations.remove(&on_id);
                self.holds.retain(|_, h| h.on_id != on_id);
                Ok(())
            }
            Request::Status => return Response::Status(self.status(now, &BTreeMap::new())),
        };
        match result {
            Ok(()) => Response::Ok,
            Err(reason) => Response::Refused { reason },
        }
    }

    /// Drops lapsed leases and stale holds; returns the ON ids whose lease
    /// lapsed.
    pub fn expire(&mut self, now: Instant) -> Vec<u32> {
        self.holds.retain(|_, h| h.expires > now);
        let lapsed: Vec<u32> = self
            .reservations
            .iter()
            .filter(|(_, r)| r.expires <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in &lapsed {
            self.reservations.remove(id);
        }
        lapsed
    }

    /// The desired tc state of every link.
    pub fn plans(&self) -> Vec<LinkPlan> {
        self.links
            .values()
            .map(|l| LinkPlan {
                dev: l.dev.clone(),
                capacity_bps: l.capacity_bps,
                classes: self
                    .reservations
                    .values()
                    .flat_map(|r| r.classes.iter())
                    .filter(|(c, _)| c.dev == l.dev)
                    .map(|(c, minor)| PlannedClass {
                        minor: *minor,
                        on_id: c.on_id,
                        dscp: c.dscp,
                        port: c.port,
                        rate_bps: c.rate_bps,
                    })
                    .collect(),
            })
            .collect()
    }

    /// The links this router shapes.
    pub fn links(&self) -> impl Iterator<Item = &LinkBudget> {
        self.links.values()
    }

    /// What this router holds, with `counters[dev][minor]` read from tc.
    pub fn status(
        &self,
        now: Instant,
        counters: &BTreeMap<String, BTreeMap<u16, ClassCounters>>,
    ) -> RouterStatus {
        let count = |dev: &str, minor: u16| {
            counters
                .get(dev)
                .and_then(|m| m.get(&minor))
                .copied()
                .unwrap_or_default()
        };
        RouterStatus {
            router: self.name.clone(),
            links: self
                .links
                .values()
                .map(|l| LinkStatus {
                    budget: l.clone(),
                    booked_bps: self.booked(false).get(&l.dev).copied().unwrap_or(0),
                    default: count(&l.dev, tc::DEFAULT_MINOR),
                })
                .collect(),
            reservations: self
                .reservations
                .iter()
                .map(|(on_id, r)| ReservationStatus {
                    on_id: *on_id,
                    name: r.name.clone(),
                    lease_left_ms: millis(r.expires.saturating_duration_since(now)),
                    classes: r
                        .classes
                        .iter()
                        .map(|(c, minor)| ClassStatus {
                            dev: c.dev.clone(),
                            classid: format!("{}:{minor:x}", tc::MAJOR),
                            rate_bps: c.rate_bps,
                            counters: count(&c.dev, *minor),
                        })
                        .collect(),
                })
                .collect(),
            holds: self.holds.len(),
        }
    }

    fn prepare(
        &mut self,
        now: Instant,
        tx: u64,
        name: String,
        on_id: u32,
        classes: Vec<OnClassSpec>,
        lease_ms: u64,
    ) -> Result<(), String> {
        if let Some(r) = self.reservations.get(&on_id) {
            return Err(format!(
                "ON id {on_id} is already reserved on router {} (by {:?}); release it first",
                self.name, r.name
            ));
        }
        if let Some((other, _)) = self
            .holds
            .iter()
            .find(|(t, h)| h.on_id == on_id && **t != tx)
        {
            return Err(format!(
                "ON id {on_id} is being reserved by transaction {other}; try again in {} s",
                HOLD.as_secs()
            ));
        }
        if classes
            .iter()
            .any(|c| c.on_id != on_id || c.dscp > 63 || c.rate_bps == 0)
        {
            return Err(format!(
                "a class of the request does not match ON id {on_id}, has a DSCP above 63 or a zero rate"
            ));
        }
        let lease = lease(lease_ms)?;
        let mut booked = self.booked(true);
        if let Some(h) = self.holds.get(&tx) {
            // A repeated prepare of the same transaction replaces its hold.
            for c in &h.classes {
                if let Some(b) = booked.get_mut(&c.dev) {
                    *b -= c.rate_bps;
                }
            }
        }
        admit(&self.links, &booked, &classes).map_err(|e| e.to_string())?;
        self.holds.insert(
            tx,
            Hold {
                name,
                on_id,
                classes,
                lease,
                expires: now + HOLD,
            },
        );
        Ok(())
    }

    fn commit(&mut self, now: Instant, tx: u64) -> Result<(), String> {
        let Some(hold) = self.holds.remove(&tx) else {
            if self.reservations.values().any(|r| r.tx == tx) {
                return Ok(()); // a repeated commit
            }
            return Err(format!(
                "no prepared transaction {tx} (never prepared, aborted, or its {} s hold lapsed)",
                HOLD.as_secs()
            ));
        };
        let mut classes = Vec::new();
        for c in hold.classes {
            let Some(minor) = self.free_minor(&c.dev, &classes) else {
                return Err(format!("link {} has no free class id left", c.dev));
            };
            classes.push((c, minor));
        }
        self.reservations.insert(
            hold.on_id,
            Reservation {
                name: hold.name,
                tx,
                classes,
                lease: hold.lease,
                expires: now + hold.lease,
            },
        );
        Ok(())
    }

    fn renew(&mut self, now: Instant, on_id: u32, lease_ms: u64) -> Result<(), String> {
        let lease = lease(lease_ms)?;
        let r = self.reservations.get_mut(&on_id).ok_or_else(|| {
            format!(
                "ON id {on_id} is not reserved on router {} (its lease lapsed?); reserve it again",
                self.name
            )
        })?;
        r.lease = lease;
        r.expires = now + r.lease;
        Ok(())
    }

    /// Rate booked per link: committed, plus held if `with_holds`.
    fn booked(&self, with_holds: bool) -> BTreeMap<String, u64> {
        let mut out: BTreeMap<String, u64> = BTreeMap::new();
        let committed = self
            .reservations
            .values()
            .flat_map(|r| r.classes.iter().map(|(c, _)| c));
        let held = self.holds.values().flat_map(|h| h.classes.iter());
        for c in committed.chain(held.filter(|_| with_holds)) {
            *out.entry(c.dev.clone()).or_default() += c.rate_bps;
        }
        out
    }

    fn free_minor(&self, dev: &str, pending: &[(OnClassSpec, u16)]) -> Option<u16> {
        let used: std::collections::BTreeSet<u16> = self
            .reservations
            .values()
            .flat_map(|r| r.classes.iter())
            .chain(pending.iter())
            .filter(|(c, _)| c.dev == dev)
            .map(|(_, m)| *m)
            .collect();
        (FIRST_ON_MINOR..=LAST_ON_MINOR).find(|m| !used.contains(m))
    }
}

fn lease(lease_ms: u64) -> Result<Duration, String> {
    let lease = Duration::from_millis(lease_ms);
    if !(LEASE_MIN..=LEASE_MAX).contains(&lease) {
        return Err(format!(
            "lease {lease:?} is outside {LEASE_MIN:?}..={LEASE_MAX:?}"
        ));
    }
    Ok(lease)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests;
