//! Encoding a step's messages once for all the connections they go to.
//!
//! A rekey of n members sends n `Prepare`s and n `Commit`s that carry one of
//! a few shared view updates (a delta for the members holding the committed
//! view, the whole view, ~92 bytes a member, for new joiners). Encoded per
//! connection, a whole view sent to k joiners is k serialisations of O(n)
//! bytes, and quinn holds a private copy of each until the member
//! acknowledges it. Here each view update is serialised once per step, and the frames are handed to quinn as
//! [`Bytes`] chunks that share it: a `Commit` is one shared frame, a
//! `Prepare` is a small head, the shared view and a small tail (the
//! member's wrapped key). The bytes on the wire are exactly those of
//! [`crate::proto::encode`] (tested below).

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;

use crate::proto::{ServerMsg, encode};
use crate::view::ViewUpdate;

/// One length-prefixed message as chunks to write in order.
pub(super) type Frame = Vec<Bytes>;

/// Encodes the messages of one step, sharing each view's JSON.
#[derive(Default)]
pub(super) struct Encoder {
    /// By the address of the view's `Arc` (kept alive here, so the address
    /// is not reused while the entry exists): the view's JSON.
    views: HashMap<usize, (Arc<ViewUpdate>, Bytes)>,
    /// Whole `Commit` frames by (view address, grace).
    commits: HashMap<(usize, u64), Bytes>,
}

impl Encoder {
    pub(super) fn frame(&mut self, msg: ServerMsg) -> Frame {
        match msg {
            ServerMsg::Prepare {
                view,
                cipher,
                wrapped_key,
            } => {
                let view_json = self.view_json(&view);
                let head = br#"{"type":"prepare","view":"#;
                let tail = format!(
                    r#","cipher":{},"wrapped_key":{}}}"#,
                    json_str(&cipher),
                    json_str(&wrapped_key)
                );
                let len = head.len() + view_json.len() + tail.len();
                let mut first = Vec::with_capacity(4 + head.len());
                first.extend_from_slice(&prefix(len));
                first.extend_from_slice(head);
                vec![Bytes::from(first), view_json, Bytes::from(tail)]
            }
            ServerMsg::Commit { view, grace_ms } => {
                let key = (Arc::as_ptr(&view) as usize, grace_ms);
                if let Some(f) = self.commits.get(&key) {
                    return vec![f.clone()];
                }
                let view_json = self.view_json(&view);
                let head = br#"{"type":"commit","view":"#;
                let tail = format!(r#","grace_ms":{grace_ms}}}"#);
                let len = head.len() + view_json.len() + tail.len();
                let mut f = Vec::with_capacity(4 + len);
                f.extend_from_slice(&prefix(len));
                f.extend_from_slice(head);
                f.extend_from_slice(&view_json);
                f.extend_from_slice(tail.as_bytes());
                let f = Bytes::from(f);
                self.commits.insert(key, f.clone());
                vec![f]
            }
            other @ (ServerMsg::Joined { .. } | ServerMsg::Refused { .. }) => {
                vec![Bytes::from(encode(&other))]
            }
        }
    }

    fn view_json(&mut self, view: &Arc<ViewUpdate>) -> Bytes {
        let key = Arc::as_ptr(view) as usize;
        self.views
            .entry(key)
            .or_insert_with(|| {
                // A view of plain integers, strings and addresses always
                // serializes.
                let json = serde_json::to_vec(&**view).expect("views always serialize");
                (view.clone(), Bytes::from(json))
            })
            .1
            .clone()
    }
}

/// A single message, encoded on its own.
pub(super) fn frame(msg: ServerMsg) -> Frame {
    Encoder::default().frame(msg)
}

fn prefix(len: usize) -> [u8; 4] {
    // Views are bounded far below 4 GiB (MAX_MESSAGE is 4 MiB).
    u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes()
}

fn json_str(s: &str) -> String {
    serde_json::to_string(s).expect("strings always serialize")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::Refusal;
    use crate::view::WireMember;

    fn view(n: u32) -> Arc<ViewUpdate> {
        Arc::new(ViewUpdate {
            on_id: 7,
            epoch: 9,
            base: None,
            removed: Vec::new(),
            digest: "00".repeat(32),
            members: (1..=n)
                .map(|i| WireMember {
                    id: i,
                    name: format!("h\"{i}"),
                    address: std::net::Ipv4Addr::from(0x6440_0000 + i),
                    underlay: von_config::UnderlayEndpoints::from_names([
                        ("a", ([192, 0, 2, i as u8], 4789).into()),
                        ("b", ([198, 51, 100, i as u8], 4789).into()),
                    ])
                    .unwrap(),
                })
                .collect(),
        })
    }

    fn joined(f: &Frame) -> Vec<u8> {
        f.iter().flat_map(|b| b.iter().copied()).collect()
    }

    #[test]
    fn frames_are_the_bytes_proto_encode_writes() {
        let v = view(5);
        let msgs = [
            ServerMsg::Prepare {
                view: v.clone(),
                cipher: "aes-256-gcm".into(),
                wrapped_key: "00ff".into(),
            },
            ServerMsg::Prepare {
                view: v.clone(),
                cipher: "aes-256-gcm".into(),
                wrapped_key: "abcd".into(),
            },
            ServerMsg::Commit {
                view: v.clone(),
                grace_ms: 1000,
            },
            ServerMsg::Commit {
                view: v,
                grace_ms: 1000,
            },
            ServerMsg::Joined {
                member_id: 3,
                renew_ms: 1,
                lease_ms: 2,
            },
            ServerMsg::Refused {
                code: Refusal::Dropped,
                reason: "why \"quoted\"".into(),
            },
        ];
        let mut enc = Encoder::default();
        for m in msgs {
            assert_eq!(joined(&enc.frame(m.clone())), encode(&m), "{m:?}");
        }
        assert_eq!(enc.views.len(), 1, "one view, serialised once");
    }

    #[test]
    fn prepares_of_one_view_share_its_bytes() {
        let v = view(100);
        let mut enc = Encoder::default();
        let mut frame = |k: &str| {
            enc.frame(ServerMsg::Prepare {
                view: v.clone(),
                cipher: "aes-256-gcm".into(),
                wrapped_key: k.into(),
            })
        };
        let (a, b) = (frame("01"), frame("02"));
        assert_eq!(a[1].as_ptr(), b[1].as_ptr(), "the view chunk is shared");
        assert!(a[1].len() > 100 * 50);
    }
}
