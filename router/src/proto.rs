//! Messages between the reservation service and a router.
//!
//! One request per mutual-TLS connection ([`crate::net`], [`crate::auth`]),
//! JSON lines:
//!
//! ```text
//! service → router   {"op":"prepare",...}      (a Request)
//! router  → service  {"result":"ok"}           (a Response)
//! ```
//!
//! TLS 1.3 authenticates both ends (a `reserve` certificate to the router,
//! the named `router` certificate to the service), keeps the exchange
//! confidential and intact, and its fresh handshake keys make a recorded
//! connection useless later. Before, a shared HMAC key did the
//! authentication (docs/isolation.md, "Router control").

use serde::{Deserialize, Serialize};

use crate::admission::LinkBudget;
use crate::error::{Error, Result};
use crate::model::OnClassSpec;
use crate::tc::ClassCounters;

/// Longest line either side accepts.
pub const MAX_LINE: usize = 1 << 20;

/// What the service asks a router.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Phase 1: check and hold `classes` for `on_id` under transaction `tx`.
    Prepare {
        tx: u64,
        name: String,
        on_id: u32,
        classes: Vec<OnClassSpec>,
        lease_ms: u64,
    },
    /// Phase 2: install what `tx` holds.
    Commit { tx: u64 },
    /// Drop what `tx` holds.
    Abort { tx: u64 },
    /// Extend `on_id`'s lease.
    Renew { on_id: u32, lease_ms: u64 },
    /// Remove `on_id`'s reservation now.
    Release { on_id: u32 },
    /// What the router holds and its per-class counters.
    Status,
}

/// A router's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Response {
    Ok,
    Refused { reason: String },
    Status(RouterStatus),
}

/// What `von router status` and `von reserve list` show of one router.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouterStatus {
    pub router: String,
    pub links: Vec<LinkStatus>,
    pub reservations: Vec<ReservationStatus>,
    /// Transactions prepared and not yet committed or aborted.
    pub holds: usize,
}

/// One shaped interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkStatus {
    pub budget: LinkBudget,
    /// Committed ON rates on this link.
    pub booked_bps: u64,
    /// The default class's counters (all unreserved traffic).
    pub default: ClassCounters,
}

/// One reserved ON on this router.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReservationStatus {
    pub on_id: u32,
    pub name: String,
    /// Time left on the lease.
    pub lease_left_ms: u64,
    pub classes: Vec<ClassStatus>,
}

/// One ON class on one link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassStatus {
    pub dev: String,
    pub classid: String,
    pub rate_bps: u64,
    pub counters: ClassCounters,
}

/// Service side: the request line.
pub fn request_line(req: &Request) -> String {
    line(req)
}

/// Router side: decodes a request line.
pub fn read_request(line: &str) -> Result<Request> {
    serde_json::from_str(line).map_err(|e| Error::Protocol(format!("bad request: {e}")))
}

/// Router side: the response line.
pub fn response_line(resp: &Response) -> String {
    line(resp)
}

/// Service side: decodes the response line.
pub fn read_response(line: &str) -> Result<Response> {
    serde_json::from_str(line).map_err(|e| Error::Protocol(format!("bad response: {e}")))
}

fn line<T: Serialize>(msg: &T) -> String {
    // Our message types serialize infallibly (no maps with non-string keys).
    let mut s = serde_json::to_string(msg).expect("messages serialize");
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip_and_garbage_is_an_error() {
        let req = Request::Release { on_id: 7 };
        assert_eq!(read_request(request_line(&req).trim()).unwrap(), req);
        let resp = Response::Refused {
            reason: "no".into(),
        };
        assert_eq!(read_response(&response_line(&resp)).unwrap(), resp);
        assert!(read_request("{\"op\":\"explode\"}").is_err());
        assert!(read_response("not json").is_err());
    }
}
