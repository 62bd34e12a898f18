//! The key manager: admits members by certificate, holds their leases and
//! rekeys the group whenever membership changes.
//!
//! A library so that one agent can embed it (`keymgr = "embedded"`) and the
//! standalone `von keymgr` can run the same code. The protocol cores —
//! [`KeyManager`] for the server, [`MemberKeys`] for a member — are sans-IO:
//! events in, messages out, time passed in. The store ([`Store`]), key
//! wrapping ([`wrap::KeyWrapper`]) and transport ([`server`], [`client`]) are
//! behind small seams so each can be tested or replaced on its own.
#![forbid(unsafe_code)]

pub mod client;
pub mod files;
mod ids;
pub mod manager;
pub mod member;
pub mod proto;
pub mod repeats;
pub mod replica;
pub mod server;
pub mod store;
pub mod tls;
pub mod view;
pub mod wire;
pub mod wrap;

pub use ids::{Cipher, Epoch, GroupKey, MemberId};
pub use manager::{Departure, Identity, JoinError, KeyManager, Output, Settings};
pub use member::{KeySet, MemberError, MemberKeys, Reaction};
pub use store::{MemStore, RedbStore, Store, StoreError};
pub use view::{Member, View};
