//! Two-phase commit across the routers of a VON's paths.
//!
//! Phase 1 sends *prepare* to every router; each checks admission and holds
//! the share. One refusal, or one router that cannot be reached, aborts the
//! transaction on every router (including the one that did not answer: its
//! answer may have been lost after it prepared) and nothing is installed.
//! Phase 2 sends *commit*; only then does a router install the class.
//!
//! The routers are reached through [`Transport`], so the protocol is tested
//! with in-memory routers and driven over TCP by [`crate::net`].

use std::time::Duration;

use crate::error::{Error, Result};
use crate::model::ReservationSpec;
use crate::proto::{Request, Response};

/// Sends one request to one router by name and returns its answer.
pub trait Transport {
    fn call(&mut self, router: &str, req: &Request) -> Result<Response>;
}

/// Reserves `spec` on every router of its path under transaction `tx`, all
/// or nothing.
pub fn reserve(
    t: &mut dyn Transport,
    tx: u64,
    spec: &ReservationSpec,
    lease: Duration,
) -> Result<()> {
    spec.validate()?;
    let lease_ms = u64::try_from(lease.as_millis()).unwrap_or(u64::MAX);
    let per_router = spec.per_router();
    let mut asked: Vec<&str> = Vec::new();
    for (router, classes) in &per_router {
        asked.push(router);
        let req = Request::Prepare {
            tx,
            name: spec.name.clone(),
            on_id: spec.on_id,
            classes: classes.clone(),
            lease_ms,
        };
        if let Err(e) = expect_ok(t, router, &req) {
            abort(t, tx, &asked);
            return Err(e);
        }
    }
    let mut committed: Vec<&str> = Vec::new();
    for router in per_router.keys() {
        if let Err(e) = expect_ok(t, router, &Request::Commit { tx }) {
            // A router that prepared and then failed before committing: undo
            // the ones that committed, abort the rest; leases cover the case
            // where even that cannot reach a router.
            for r in &committed {
                let _ = t.call(r, &Request::Release { on_id: spec.on_id });
            }
            abort(t, tx, &asked);
            return Err(e);
        }
        committed.push(router);
    }
    Ok(())
}

/// Renews `spec`'s lease on every router of its path; returns the routers
/// that refused or could not be reached, with why.
pub fn renew(t: &mut dyn Transport, spec: &ReservationSpec, lease: Duration) -> Vec<Error> {
    let lease_ms = u64::try_from(lease.as_millis()).unwrap_or(u64::MAX);
    spec.per_router()
        .keys()
        .filter_map(|r| {
            expect_ok(
                t,
                r,
                &Request::Renew {
                    on_id: spec.on_id,
                    lease_ms,
                },
            )
            .err()
        })
        .collect()
}

/// Releases `spec` on every router of its path; returns the failures.
pub fn release(t: &mut dyn Transport, spec: &ReservationSpec) -> Vec<Error> {
    spec.per_router()
        .keys()
        .filter_map(|r| expect_ok(t, r, &Request::Release { on_id: spec.on_id }).err())
        .collect()
}

fn abort(t: &mut dyn Transport, tx: u64, routers: &[&str]) {
    for r in routers {
        // Best effort: a hold that cannot be aborted lapses after HOLD.
        let _ = t.call(r, &Request::Abort { tx });
    }
}

fn expect_ok(t: &mut dyn Transport, router: &str, req: &Request) -> Result<()> {
    match t.call(router, req)? {
        Response::Ok => Ok(()),
        Response::Refused { reason } => Err(Error::Refused {
            router: router.to_owned(),
            reason,
        }),
        Response::Status(_) => Err(Error::Protocol(format!(
            "router {router} answered a status to {req:?}"
        ))),
    }
}
