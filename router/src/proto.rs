//! Messages between the reservation service and a router, and how each is
//! authenticated.
//!
//! One request per TCP connection, JSON lines:
//!
//! ```text
//! router  → service  {"challenge":"<32 random bytes, hex>"}
//! service → router   {"body":"<request JSON>","mac":"<HMAC-SHA256(key, REQ_LABEL ‖ challenge ‖ body)>"}
//! router  → service  {"body":"<response JSON>","mac":"<HMAC-SHA256(key, RESP_LABEL ‖ challenge ‖ body)>"}
//! ```
//!
//! The fresh challenge makes a recorded request useless later; the response
//! MAC binds the answer to this request, so nobody without the key can
//! reserve, release, or fake a router's "prepared". There is no encryption:
//! nothing here is secret. See docs/isolation.md for why this is not (yet)
//! QUIC with mutual TLS.

use ring::hmac;
use serde::{Deserialize, Serialize};

use crate::admission::LinkBudget;
use crate::error::{Error, Result};
use crate::model::OnClassSpec;
use crate::tc::ClassCounters;

const REQ_LABEL: &[u8] = b"von-router request v1\0";
const RESP_LABEL: &[u8] = b"von-router response v1\0";
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

#[derive(Serialize, Deserialize)]
struct Hello {
    challenge: String,
}

#[derive(Serialize, Deserialize)]
struct Sealed {
    body: String,
    mac: String,
}

/// The pre-shared key of a router and the services that may use it.
#[derive(Clone)]
pub struct AuthKey(hmac::Key);

impl std::fmt::Debug for AuthKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuthKey(..)")
    }
}

impl AuthKey {
    /// Reads a key from hex text (at least 32 bytes), as
    /// `openssl rand -hex 32` writes it.
    pub fn from_hex(text: &str, origin: &str) -> Result<Self> {
        let bytes = hex::decode(text.trim()).map_err(|e| {
            Error::invalid(
                format!("key {origin}"),
                format!("not hex ({e}); create one with `openssl rand -hex 32 > FILE`"),
            )
        })?;
        if bytes.len() < 32 {
            return Err(Error::invalid(
                format!("key {origin}"),
                format!(
                    "{} bytes, at least 32 needed; create one with `openssl rand -hex 32 > FILE`",
                    bytes.len()
                ),
            ));
        }
        Ok(Self(hmac::Key::new(hmac::HMAC_SHA256, &bytes)))
    }

    /// Reads [`AuthKey::from_hex`] from a file.
    pub fn load(path: &std::path::Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::io("read key", path.display().to_string(), e))?;
        Self::from_hex(&text, &path.display().to_string())
    }

    fn tag(&self, label: &[u8], challenge: &[u8], body: &str) -> hmac::Tag {
        let mut ctx = hmac::Context::with_key(&self.0);
        ctx.update(label);
        ctx.update(challenge);
        ctx.update(body.as_bytes());
        ctx.sign()
    }

    fn verify(&self, label: &[u8], challenge: &[u8], body: &str, mac_hex: &str) -> Result<()> {
        let mac = hex::decode(mac_hex).map_err(|_| Error::Protocol("MAC is not hex".into()))?;
        let mut msg = Vec::with_capacity(label.len() + challenge.len() + body.len());
        msg.extend_from_slice(label);
        msg.extend_from_slice(challenge);
        msg.extend_from_slice(body.as_bytes());
        hmac::verify(&self.0, &msg, &mac).map_err(|_| {
            Error::Protocol(
                "bad MAC: the peer does not hold this router's key (check both key files)".into(),
            )
        })
    }
}

/// The router's first line: a fresh challenge.
pub fn hello(challenge: &[u8]) -> String {
    line(&Hello {
        challenge: hex::encode(challenge),
    })
}

/// Service side: reads the challenge out of the router's first line.
pub fn read_hello(line: &str) -> Result<Vec<u8>> {
    let h: Hello = serde_json::from_str(line)
        .map_err(|e| Error::Protocol(format!("expected the router's challenge: {e}")))?;
    let c =
        hex::decode(&h.challenge).map_err(|_| Error::Protocol("challenge is not hex".into()))?;
    if c.len() != 32 {
        return Err(Error::Protocol(format!(
            "challenge of {} bytes, not 32",
            c.len()
        )));
    }
    Ok(c)
}

/// Service side: the authenticated request line.
pub fn seal_request(key: &AuthKey, challenge: &[u8], req: &Request) -> String {
    seal(key, REQ_LABEL, challenge, req)
}

/// Router side: checks and decodes a request line.
pub fn open_request(key: &AuthKey, challenge: &[u8], line: &str) -> Result<Request> {
    open(key, REQ_LABEL, challenge, line)
}

/// Router side: the authenticated response line.
pub fn seal_response(key: &AuthKey, challenge: &[u8], resp: &Response) -> String {
    seal(key, RESP_LABEL, challenge, resp)
}

/// Service side: checks and decodes the response line.
pub fn open_response(key: &AuthKey, challenge: &[u8], line: &str) -> Result<Response> {
    open(key, RESP_LABEL, challenge, line)
}

fn seal<T: Serialize>(key: &AuthKey, label: &[u8], challenge: &[u8], msg: &T) -> String {
    // Our message types serialize infallibly (no maps with non-string keys).
    let body = serde_json::to_string(msg).expect("messages serialize");
    let mac = hex::encode(key.tag(label, challenge, &body).as_ref());
    line(&Sealed { body, mac })
}

fn open<T: for<'de> Deserialize<'de>>(
    key: &AuthKey,
    label: &[u8],
    challenge: &[u8],
    line: &str,
) -> Result<T> {
    let s: Sealed = serde_json::from_str(line)
        .map_err(|e| Error::Protocol(format!("expected {{body, mac}}: {e}")))?;
    key.verify(label, challenge, &s.body, &s.mac)?;
    serde_json::from_str(&s.body).map_err(|e| Error::Protocol(format!("bad message: {e}")))
}

fn line<T: Serialize>(msg: &T) -> String {
    // As in `seal`: plain structs of strings serialize infallibly.
    let mut s = serde_json::to_string(msg).expect("messages serialize");
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> AuthKey {
        AuthKey::from_hex(&hex::encode([byte; 32]), "test").expect("valid key")
    }

    #[test]
    fn round_trip_under_one_key() {
        let c = [9u8; 32];
        let req = Request::Release { on_id: 7 };
        let line = seal_request(&key(1), &c, &req);
        assert_eq!(
            open_request(&key(1), &c, line.trim()).expect("authentic"),
            req
        );
        let resp = Response::Refused {
            reason: "no".into(),
        };
        let line = seal_response(&key(1), &c, &resp);
        assert_eq!(
            open_response(&key(1), &c, line.trim()).expect("authentic"),
            resp
        );
    }

    #[test]
    fn wrong_key_replay_or_direction_is_refused() {
        let c = [9u8; 32];
        let line = seal_request(&key(1), &c, &Request::Status);
        assert!(open_request(&key(2), &c, &line).is_err(), "wrong key");
        assert!(
            open_request(&key(1), &[8u8; 32], &line).is_err(),
            "replayed under a new challenge"
        );
        assert!(
            open_response(&key(1), &c, &line).is_err(),
            "a request is not a response"
        );
        let tampered = line.replace("status", "commit");
        assert!(
            open_request(&key(1), &c, &tampered).is_err(),
            "tampered body"
        );
    }

    #[test]
    fn short_or_non_hex_keys_are_refused() {
        assert!(
            AuthKey::from_hex("abcd", "k")
                .unwrap_err()
                .to_string()
                .contains("at least 32")
        );
        assert!(
            AuthKey::from_hex("zz", "k")
                .unwrap_err()
                .to_string()
                .contains("not hex")
        );
    }
}
