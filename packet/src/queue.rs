//! The shaper's queue: packets that wait for tokens, first in first out, in
//! one byte ring allocated when the pipeline is built.
//!
//! A dedicated link has a transmit queue: a sender briefly above the rate
//! waits, and only a sender persistently above it loses packets. Without a
//! queue a TUN hands TCP's whole window to the bucket at once, the tail is
//! dropped every round trip, and TCP collapses far below the rate (measured:
//! 1.1 Mbit/s on a 20 Mbit/s VON). With a few tens of milliseconds of queue
//! TCP settles near the rate, while traffic above the rate still ends in
//! `rate_drops` once the queue is full: nothing is ever borrowed.

use std::collections::VecDeque;

/// A FIFO of byte strings with a byte limit, never allocating after `new`.
#[derive(Debug)]
pub struct PacketQueue {
    ring: Box<[u8]>,
    /// (start in `ring`, length) of each queued packet, oldest first.
    entries: VecDeque<(usize, usize)>,
    /// Where the next packet is written.
    tail: usize,
    /// Bytes queued (not counting space lost to wrapping).
    bytes: usize,
    limit: usize,
}

impl PacketQueue {
    /// A queue holding at most `limit` bytes of packets, each at most
    /// `max_packet` bytes.
    pub fn new(limit: usize, max_packet: usize) -> Self {
        // Twice the limit plus one packet: wrapping can waste at most one
        // packet's room at the end of the ring, so `limit` is always reachable.
        let capacity = limit.saturating_mul(2).saturating_add(max_packet);
        PacketQueue {
            ring: vec![0; capacity].into_boxed_slice(),
            entries: VecDeque::with_capacity(limit / 20 + 1),
            tail: 0,
            bytes: 0,
            limit,
        }
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Length of the oldest packet.
    pub fn front_len(&self) -> Option<usize> {
        self.entries.front().map(|&(_, len)| len)
    }

    /// Appends `packet`, or refuses it (`false`) when the limit would be
    /// passed or the entry table is full.
    pub fn push(&mut self, packet: &[u8]) -> bool {
        let len = packet.len();
        if self.bytes + len > self.limit || self.entries.len() == self.entries.capacity() {
            return false;
        }
        let start = match self.entries.front() {
            None => 0,
            Some(&(head, _)) => {
                if self.tail >= head {
                    // Free: [tail, end) and [0, head).
                    if self.ring.len() - self.tail >= len {
                        self.tail
                    } else if head > len {
                        0
                    } else {
                        return false;
                    }
                } else if head - self.tail > len {
                    // Free: [tail, head).
                    self.tail
                } else {
                    return false;
                }
            }
        };
        self.ring[start..start + len].copy_from_slice(packet);
        self.entries.push_back((start, len));
        self.tail = start + len;
        self.bytes += len;
        true
    }

    /// Moves the oldest packet into the front of `out` and returns its
    /// length; `None` if empty or `out` is too short (then nothing moves).
    pub fn pop_into(&mut self, out: &mut [u8]) -> Option<usize> {
        let &(start, len) = self.entries.front()?;
        out.get_mut(..len)?
            .copy_from_slice(&self.ring[start..start + len]);
        self.entries.pop_front();
        self.bytes -= len;
        if self.entries.is_empty() {
            self.tail = 0;
        }
        Some(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_in_first_out_within_the_limit() {
        let mut q = PacketQueue::new(100, 60);
        assert!(q.push(&[1; 40]));
        assert!(q.push(&[2; 50]));
        assert!(!q.push(&[3; 11]), "over the byte limit");
        assert!(q.push(&[3; 10]));
        let mut out = [0u8; 64];
        for (fill, len) in [(1, 40), (2, 50), (3, 10)] {
            assert_eq!(q.front_len(), Some(len));
            assert_eq!(q.pop_into(&mut out), Some(len));
            assert!(out[..len].iter().all(|&b| b == fill));
        }
        assert!(q.is_empty());
        assert_eq!(q.pop_into(&mut out), None);
    }

    #[test]
    fn wraps_around_the_ring_and_keeps_order() {
        let mut q = PacketQueue::new(100, 60);
        let mut out = [0u8; 64];
        let mut next_in = 0u8;
        let mut next_out = 0u8;
        // Many rounds of push two / pop one / pop one, sizes varying.
        for round in 0..1_000usize {
            for k in 0..2 {
                let len = 20 + (round * 7 + k * 13) % 30;
                let p = vec![next_in; len];
                assert!(q.push(&p), "round {round}");
                next_in = next_in.wrapping_add(1);
            }
            for _ in 0..2 {
                let len = q.pop_into(&mut out).unwrap();
                assert!(out[..len].iter().all(|&b| b == next_out), "round {round}");
                next_out = next_out.wrapping_add(1);
            }
        }
    }

    #[test]
    fn a_short_output_buffer_moves_nothing() {
        let mut q = PacketQueue::new(100, 60);
        assert!(q.push(&[7; 30]));
        assert_eq!(q.pop_into(&mut [0u8; 10]), None);
        assert_eq!(q.front_len(), Some(30));
    }
}
