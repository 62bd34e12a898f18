//! Isolation on routers: an Overlay Network is a share of every router on its
//! paths, set aside for it alone.
//!
//! Its own crate because it is neither the data plane (agent) nor key
//! management (keymgr): it configures *routers* that are not VON members,
//! and its core (tc state, admission, two-phase commit, leases) is sans-IO so
//! that the key manager can host the reservation service and unit tests need
//! no root. The OS edge is [`daemon`] (runs `tc`) and [`net`] (TCP with mutual TLS, [`auth`]).
//!
//! Flow of a reservation:
//! 1. `von reserve add` asks the [`service`] for ON id 7 at 20 Mbit/s over
//!    the links `r1:sha`, `r1:shb`;
//! 2. the service checks its ON-id registry, then runs [`coordinator`]'s
//!    two-phase commit: *prepare* on every router ([`participant`] checks
//!    [`admission`] and holds the share), then *commit* (or *abort* on one
//!    refusal);
//! 3. each router's [`daemon`] turns its committed reservations into the
//!    desired [`tc`] state, diffs it against what `tc` shows and runs only the
//!    commands that close the gap;
//! 4. the service renews every lease; a router whose lease lapses drops the
//!    reservation and its class at the next reconciliation.

#![forbid(unsafe_code)]

pub mod admission;
pub mod auth;
pub mod config;
pub mod coordinator;
pub mod daemon;
pub mod error;
pub mod metrics;
pub mod model;
pub mod net;
pub mod participant;
pub mod proto;
pub mod replica;
pub mod service;
pub mod store;
pub mod tc;

pub use error::{Error, Result};
pub use model::{
    Copies, Family, LinkId, OnClassSpec, ReservationSpec, WIRE_OVERHEAD, WIRE_OVERHEAD_IPV6,
    wire_rate, wire_rate_over,
};
