//! The whole inbound half of a real pipeline, fed arbitrary datagrams.
//!
//! Each input is a little program run against a fresh three-member twin VON
//! (real group key, positions proven, see `von_packet::twin`). Host 0 is the
//! receiver under test; its inbound half sees, in the fuzzer's order:
//!
//! - raw bytes, on any of three underlays (the attacker's view: anything at all);
//! - genuine frames host 1 or 2 sealed for it, as the sender's outbound half
//!   made them;
//! - a genuine frame with one byte flipped (header or ciphertext);
//! - an earlier genuine frame again (a duplicate on another underlay, or a
//!   replay on the same);
//! - time passing (liveness timers fire).
//!
//! Properties: nothing panics; `Deliver` happens only for a byte-exact
//! genuine frame, at most once per frame, and hands out exactly the inner
//! packet its sender sealed. So a flipped byte, a replay and a duplicate are
//! never delivered, and no fuzzed bytes ever authenticate.
#![no_main]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use von_packet::twin::{self, TwinNet, address, ipv4_packet};
use von_packet::{Action, OVERHEAD, PACKET_OFFSET};

/// Underlays of the twin VON: more than two, so "another underlay" is not
/// just "the other one".
const UNDERLAYS: usize = 3;

/// Largest inner payload a genuine frame carries here.
const MAX_PAYLOAD: usize = 255;

/// The fuzzer's bytes, read front to back; 0 once they run out.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        let (&b, rest) = self.0.split_first().unwrap_or((&0, &[]));
        self.0 = rest;
        b
    }

    fn bytes(&mut self, n: usize) -> &[u8] {
        let (taken, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        taken
    }
}

/// One genuine frame: its bytes and the inner packet sealed in it.
struct Genuine {
    frame: Vec<u8>,
    inner: Vec<u8>,
    delivered: bool,
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let mut net = TwinNet::with_underlays(3, UNDERLAYS, 1_000_000_000, 1);
    let mut now = Instant::now();
    let mut genuine: Vec<Genuine> = Vec::new();
    // Frame bytes → index in `genuine`.
    let mut by_bytes: HashMap<Vec<u8>, usize> = HashMap::new();
    let mut out = vec![0u8; PACKET_OFFSET + 20 + MAX_PAYLOAD + OVERHEAD];

    while !input.0.is_empty() {
        let op = input.byte();
        let underlay = twin::underlay(usize::from(op >> 6) % UNDERLAYS);
        let mut datagram = match op % 5 {
            0 => {
                let len = usize::from(input.byte()) * 8 + usize::from(input.byte() % 8);
                input.bytes(len).to_vec()
            }
            1 => {
                let from = 1 + usize::from(input.byte() % 2);
                let len = usize::from(input.byte());
                let fill = input.byte();
                let inner = ipv4_packet(address(from), address(0), len, fill);
                out[PACKET_OFFSET..PACKET_OFFSET + inner.len()].copy_from_slice(&inner);
                let action = net.hosts[from]
                    .pipeline
                    .handle_outbound(now, &mut out, inner.len());
                let Action::Send { frame, .. } = action else {
                    continue;
                };
                let frame = frame.to_vec();
                by_bytes.insert(frame.clone(), genuine.len());
                genuine.push(Genuine {
                    frame: frame.clone(),
                    inner,
                    delivered: false,
                });
                frame
            }
            2 if !genuine.is_empty() => {
                let g = &genuine[usize::from(input.byte()) % genuine.len()];
                let mut frame = g.frame.clone();
                let at = usize::from(input.byte()) % frame.len();
                frame[at] ^= input.byte().max(1);
                frame
            }
            3 if !genuine.is_empty() => genuine[usize::from(input.byte()) % genuine.len()]
                .frame
                .clone(),
            4 => {
                now += Duration::from_millis(u64::from(input.byte()) * 100);
                let inbound = &mut net.hosts[0].pipeline.inbound;
                inbound.handle_timeout(now);
                // The poll contract: once handled, the timer is not due again
                // at the same instant.
                assert!(inbound.poll_timeout().is_none_or(|t| t > now));
                while inbound.poll_event().is_some() {}
                continue;
            }
            _ => continue,
        };
        let sent = datagram.clone();
        let action = net.hosts[0]
            .pipeline
            .handle_inbound(now, underlay, &mut datagram);
        if let Action::Deliver { packet } = action {
            let Some(&i) = by_bytes.get(&sent) else {
                panic!("delivered a frame no member sealed: {sent:02x?}");
            };
            let g = &mut genuine[i];
            assert!(!g.delivered, "genuine frame {i} delivered twice");
            g.delivered = true;
            assert_eq!(
                datagram.get(packet),
                Some(&g.inner[..]),
                "the delivered bytes are the inner packet sealed"
            );
        }
    }
});
