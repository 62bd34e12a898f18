//! Host-level demultiplexing: which VON a datagram on an underlay belongs to.
//!
//! Both underlay sockets are shared by every VON on the host; the ON id in the
//! first four bytes of the frame names the VON (the paper's "first 4 bytes of
//! the payload", so a router can classify too). This is the only step before a
//! VON's own pipeline, and it costs one table look-up with no crypto. What it
//! refuses is counted per socket, since no VON owns it.

use std::collections::HashMap;

use von_crypto::OnId;
use von_crypto::frame::field;

use crate::{SocketCounters, counters_bump};

/// Maps ON ids to the index of the VON serving them on this host.
#[derive(Debug, Default, Clone)]
pub struct Demux {
    by_on_id: HashMap<OnId, usize>,
}

/// Why a datagram reached no VON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unrouted {
    /// Too short to hold an ON id.
    Malformed,
    /// No VON on this host has that ON id.
    UnknownOnId(OnId),
}

impl Demux {
    /// A table routing each ON id to its position in `on_ids`; `None` if two
    /// VONs share one (the config refuses that before we get here).
    pub fn new(on_ids: impl IntoIterator<Item = OnId>) -> Option<Self> {
        let mut by_on_id = HashMap::new();
        for (i, id) in on_ids.into_iter().enumerate() {
            if by_on_id.insert(id, i).is_some() {
                return None;
            }
        }
        Some(Demux { by_on_id })
    }

    /// The VON index for `datagram`, counting refusals into `counters`.
    pub fn route(&self, datagram: &[u8], counters: &SocketCounters) -> Result<usize, Unrouted> {
        counters_bump(&counters.rx_datagrams);
        let Some(b) = datagram.get(field::ON_ID) else {
            counters_bump(&counters.malformed);
            return Err(Unrouted::Malformed);
        };
        let on_id = OnId(u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
        self.by_on_id.get(&on_id).copied().ok_or_else(|| {
            counters_bump(&counters.unknown_on_id);
            Unrouted::UnknownOnId(on_id)
        })
    }
}

/// The datagrams of one receive of `len` bytes: `segment`-byte pieces when
/// the kernel coalesced several (GRO), else the whole. A receive of 0 bytes
/// is one zero-length datagram, not none, so [`Demux::route`] counts it as
/// malformed instead of letting it pass unseen.
pub fn datagrams(received: &mut [u8], segment: usize) -> impl Iterator<Item = &mut [u8]> {
    let empty = received.is_empty();
    received
        .chunks_mut(segment.max(1))
        .chain(empty.then(<&mut [u8]>::default))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering::Relaxed;

    #[test]
    fn routes_by_the_first_four_bytes() {
        let d = Demux::new([OnId(7), OnId(0x0102_0304)]).unwrap();
        let c = SocketCounters::default();
        assert_eq!(d.route(&[0, 0, 0, 7, 0xff], &c), Ok(0));
        assert_eq!(d.route(&[1, 2, 3, 4], &c), Ok(1));
        assert_eq!(
            d.route(&[0, 0, 0, 8], &c),
            Err(Unrouted::UnknownOnId(OnId(8)))
        );
        assert_eq!(d.route(&[0, 0, 7], &c), Err(Unrouted::Malformed));
        assert_eq!(d.route(&[], &c), Err(Unrouted::Malformed));
        let s = c.snapshot();
        assert_eq!((s.rx_datagrams, s.unknown_on_id, s.malformed), (5, 1, 2));
        assert_eq!(c.rx_errors.load(Relaxed), 0);
    }

    #[test]
    fn a_zero_length_datagram_is_counted_as_malformed() {
        let d = Demux::new([OnId(7)]).unwrap();
        let c = SocketCounters::default();
        let mut empty = [0u8; 0];
        let routed: Vec<_> = datagrams(&mut empty, 0)
            .map(|dgram| d.route(dgram, &c))
            .collect();
        assert_eq!(routed, vec![Err(Unrouted::Malformed)]);
        let s = c.snapshot();
        assert_eq!((s.rx_datagrams, s.malformed), (1, 1));
    }

    #[test]
    fn a_coalesced_receive_splits_into_its_segments() {
        let mut buf = [0u8; 10];
        let lens: Vec<usize> = datagrams(&mut buf, 4).map(|d| d.len()).collect();
        assert_eq!(lens, vec![4, 4, 2]);
        let lens: Vec<usize> = datagrams(&mut buf, 0).map(|d| d.len()).collect();
        assert_eq!(
            lens,
            vec![1; 10],
            "segment 0 never happens: the kernel gives len"
        );
    }

    #[test]
    fn two_vons_cannot_share_an_on_id() {
        assert!(Demux::new([OnId(7), OnId(7)]).is_none());
    }
}
