//! The key manager: admits members by certificate, holds their leases and
//! rekeys the group whenever membership changes.
//!
//! A library so that one agent can embed it (`keymgr = "embedded"`) and the
//! standalone `von keymgr` can run the same code. The protocol core
//! ([`KeyManager`] for the server side) is sans-IO: events in, messages out,
//! time passed in; the store, the key wrapping and the transport are behind
//! small seams so each can be tested or replaced on its own.
#![forbid(unsafe_code)]

pub mod ids;
pub mod manager;
pub mod member;
pub mod proto;
pub mod store;
pub mod view;
pub mod wrap;

pub use manager::{Departure, Identity, JoinError, KeyManager, Output, Settings};
pub use member::{KeySet, MemberError, MemberKeys, Reaction};
pub use store::{MemStore, RedbStore, Store, StoreError};
pub use view::{Member, View};
