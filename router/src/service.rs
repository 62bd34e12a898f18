//! The reservation service: the ON-id registry and the reservations it keeps
//! alive by renewing their leases. The key manager can host it (it is a
//! plain value driven by its caller); `von reserve serve` runs it alone.
//!
//! With a [`Registry`] (the redb file, or etcd for replicas) the registry
//! survives a crash: a reservation is stored only once every router
//! committed it, and removed before it is released, so a restarted service (within the lease) resumes renewing
//! exactly what the routers hold, and ON-id uniqueness still holds.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::coordinator::{self, Transport};
use crate::error::{Error, Result};
use crate::model::ReservationSpec;
use crate::store::Registry;

/// The registry: one reservation per ON id, one ON id per name.
#[derive(Debug)]
pub struct Service {
    lease: Duration,
    next_tx: u64,
    reservations: BTreeMap<u32, ReservationSpec>,
    store: Option<Box<dyn Registry>>,
}

/// What `von reserve` asks the service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ServiceRequest {
    Add { spec: ReservationSpec },
    List,
    Release { on_id: u32 },
}

/// The service's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum ServiceResponse {
    Ok,
    Error {
        message: String,
    },
    List {
        reservations: Vec<ReservationSpec>,
    },
    /// A replica that does not lead (reserve.toml `[etcd]`): ask another.
    Standby {
        /// This replica's name.
        replica: String,
        /// The leader's name, when etcd names one.
        leader: Option<String>,
    },
}

impl Service {
    /// A service granting leases of `lease`; `first_tx` should differ
    /// between runs (e.g. the start time) so a router never confuses two.
    pub fn new(lease: Duration, first_tx: u64) -> Self {
        Self {
            lease,
            next_tx: first_tx,
            reservations: BTreeMap::new(),
            store: None,
        }
    }

    /// A service whose registry lives in `store`: reloads what it holds, so
    /// the caller should [`Service::renew_all`] at once to resume the leases.
    pub fn with_store(
        lease: Duration,
        first_tx: u64,
        store: impl Registry + 'static,
    ) -> Result<Self> {
        Ok(Self {
            lease,
            next_tx: first_tx,
            reservations: store.load()?,
            store: Some(Box::new(store)),
        })
    }

    /// The reservations it holds, by ON id.
    pub fn reservations(&self) -> impl Iterator<Item = &ReservationSpec> {
        self.reservations.values()
    }

    /// The lease it grants.
    pub fn lease(&self) -> Duration {
        self.lease
    }

    /// Answers one request, calling routers through `t`.
    pub fn handle(&mut self, t: &mut dyn Transport, req: ServiceRequest) -> ServiceResponse {
        let result = match req {
            ServiceRequest::Add { spec } => self.add(t, spec),
            ServiceRequest::Release { on_id } => self.release(t, on_id),
            ServiceRequest::List => {
                return ServiceResponse::List {
                    reservations: self.reservations.values().cloned().collect(),
                };
            }
        };
        match result {
            Ok(()) => ServiceResponse::Ok,
            Err(e) => ServiceResponse::Error {
                message: e.to_string(),
            },
        }
    }

    /// Registers and reserves `spec` on every router of its path.
    pub fn add(&mut self, t: &mut dyn Transport, spec: ReservationSpec) -> Result<()> {
        spec.validate()?;
        if let Some(other) = self.reservations.get(&spec.on_id) {
            return Err(Error::invalid(
                format!("ON id {}", spec.on_id),
                format!(
                    "already registered for VON {:?}; ON ids are unique, release it first",
                    other.name
                ),
            ));
        }
        if let Some(other) = self.reservations.values().find(|r| r.name == spec.name) {
            return Err(Error::invalid(
                format!("VON {:?}", spec.name),
                format!("already holds ON id {}", other.on_id),
            ));
        }
        let tx = self.next_tx;
        self.next_tx = self.next_tx.wrapping_add(1);
        coordinator::reserve(t, tx, &spec, self.lease)?;
        if let Some(store) = &self.store {
            if let Err(e) = store.put(&spec) {
                // Not recorded, so a restart would forget it: undo it now
                // rather than hold a share nobody renews after a crash.
                let _ = coordinator::release(t, &spec);
                return Err(e);
            }
        }
        self.reservations.insert(spec.on_id, spec);
        Ok(())
    }

    /// Releases `on_id` on its routers and forgets it.
    pub fn release(&mut self, t: &mut dyn Transport, on_id: u32) -> Result<()> {
        let Some(spec) = self.reservations.get(&on_id).cloned() else {
            return Err(Error::invalid(
                format!("ON id {on_id}"),
                "not reserved through this service",
            ));
        };
        // Forget it on disk first: a crash after this leaves the routers'
        // classes to their leases, never a stored ON the routers dropped.
        if let Some(store) = &self.store {
            store.remove(on_id)?;
        }
        self.reservations.remove(&on_id);
        match coordinator::release(t, &spec).into_iter().next() {
            // Unreachable routers drop it when its lease lapses.
            Some(e) => Err(Error::invalid(
                format!("release of ON id {on_id}"),
                format!("{e}; that router removes the class when the lease lapses"),
            )),
            None => Ok(()),
        }
    }

    /// Renews every lease; returns what failed (to log).
    pub fn renew_all(&mut self, t: &mut dyn Transport) -> Vec<Error> {
        let lease = self.lease;
        self.reservations
            .values()
            .flat_map(|spec| coordinator::renew(t, spec, lease))
            .collect()
    }

    /// Releases everything (clean shutdown).
    pub fn release_all(&mut self, t: &mut dyn Transport) -> Vec<Error> {
        let all: Vec<u32> = self.reservations.keys().copied().collect();
        all.into_iter()
            .filter_map(|id| self.release(t, id).err())
            .collect()
    }
}

#[cfg(test)]
mod tests;
