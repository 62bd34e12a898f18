//! The key manager: admits members by certificate, holds their leases and
//! rekeys the group whenever membership changes.
//!
//! A library so that one agent can embed it (`keymgr = "embedded"`) and the
//! standalone `von keymgr` can run the same code.
#![forbid(unsafe_code)]
