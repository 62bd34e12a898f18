//! The batch side of the underlay edge: which frames leave together, how a
//! GSO run is cut, and the control messages that carry the segment size
//! (`UDP_SEGMENT` on send, `UDP_GRO` on receive). Pure bookkeeping and byte
//! layout, so it is tested without a socket.
#![forbid(unsafe_code)]

use std::io;
use std::net::SocketAddr;

use super::UDP_GRO;
use von_packet::{Endpoints, MAX_UNDERLAYS, Underlay};

/// Most datagrams the kernel cuts one GSO send into (`UDP_MAX_SEGMENTS`).
pub(super) const GSO_MAX_SEGMENTS: usize = 64;
/// Most payload one GSO send may carry: an IPv4 datagram's limit less the
/// IPv4 and UDP headers.
pub(super) const GSO_MAX_BYTES: usize = 65_535 - 20 - 8;

/// What one receive gave: `len` bytes made of datagrams of `segment` bytes
/// each (the last may be shorter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    /// Bytes received.
    pub len: usize,
    /// Size of each datagram in them; equal to `len` for a single one.
    pub segment: usize,
    /// Where they came from (the outer source), when the kernel said.
    pub source: Option<std::net::SocketAddr>,
}

/// The frames of one outbound batch, per underlay: which buffer holds each,
/// its length, and the endpoint it goes to on that underlay (one entry per
/// destination). The lists keep their room between batches, so a batch
/// allocates nothing once the agent has warmed up.
#[derive(Debug, Default)]
pub struct Outgoing {
    entries: [Vec<Entry>; MAX_UNDERLAYS],
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Entry {
    pub(super) buf: usize,
    pub(super) len: usize,
    pub(super) to: SocketAddr,
}

impl Outgoing {
    /// Room for `capacity` frames per underlay before the first reallocation.
    pub fn with_capacity(capacity: usize) -> Self {
        Outgoing {
            entries: std::array::from_fn(|_| Vec::with_capacity(capacity)),
        }
    }

    /// Adds the frame `buf[..len]` of buffer `buf`, for the member at `to`:
    /// one entry on each underlay it runs.
    pub fn push(&mut self, buf: usize, len: usize, to: &Endpoints) {
        for (u, addr) in to.iter() {
            if let (Some(to), Some(list)) = (*addr, self.entries.get_mut(u.index())) {
                list.push(Entry { buf, len, to });
            }
        }
    }

    /// The frames to send on `underlay`, in order.
    pub(super) fn on(&self, underlay: Underlay) -> &[Entry] {
        self.entries
            .get(underlay.index())
            .map_or(&[], Vec::as_slice)
    }

    /// Forgets every frame (keeps the room).
    pub fn clear(&mut self) {
        self.entries.iter_mut().for_each(Vec::clear);
    }

    /// Whether no frame waits.
    pub fn is_empty(&self) -> bool {
        self.entries.iter().all(Vec::is_empty)
    }
}

/// How a [`UnderlaySocket::send_all`] went, in datagrams.
#[derive(Debug, Default)]
pub struct SendReport {
    /// Datagrams handed to the kernel.
    pub sent: u64,
    /// Bytes of the datagrams handed to the kernel (UDP payload).
    pub sent_bytes: u64,
    /// Datagrams that could not be.
    pub failed: u64,
    /// The last failure and where it was going.
    pub last_error: Option<(SocketAddr, io::Error)>,
}

/// Where the GSO run starting at `start` ends: same endpoint, every frame as
/// long as the first but the last, within the kernel's limits.
pub(super) fn run_end(entries: &[Entry], start: usize) -> usize {
    let dst = entries[start].to;
    let segment = entries[start].len;
    let mut total = segment;
    let mut end = start + 1;
    while end < entries.len() && end - start < GSO_MAX_SEGMENTS {
        let next = &entries[end];
        if next.to != dst || next.len > segment || total + next.len > GSO_MAX_BYTES {
            break;
        }
        total += next.len;
        end += 1;
        if next.len < segment {
            break;
        }
    }
    end
}

/// The datagram size a `UDP_GRO` control message names, if any, walking the
/// `cmsghdr`s as the kernel lays them out.
pub(super) fn gro_segment(control: &[u8]) -> Option<usize> {
    let align = |n: usize| n.div_ceil(size_of::<usize>()) * size_of::<usize>();
    let header = align(size_of::<libc::cmsghdr>());
    let int = size_of::<libc::c_int>();
    let mut at = 0;
    while at + header <= control.len() {
        let word = |from: usize, n: usize| control.get(at + from..at + from + n);
        let len = usize::from_ne_bytes(word(0, size_of::<usize>())?.try_into().ok()?);
        let level = libc::c_int::from_ne_bytes(word(size_of::<usize>(), int)?.try_into().ok()?);
        let kind =
            libc::c_int::from_ne_bytes(word(size_of::<usize>() + int, int)?.try_into().ok()?);
        if len < header {
            return None;
        }
        if level == libc::SOL_UDP && kind == UDP_GRO {
            let value = libc::c_int::from_ne_bytes(word(header, int)?.try_into().ok()?);
            return usize::try_from(value).ok();
        }
        at += align(len);
    }
    None
}

/// Encodes one `cmsghdr` carrying a `u16` (`UDP_SEGMENT`'s size), laid out
/// as `CMSG_SPACE(sizeof(u16))`.
pub(super) fn encode_cmsg_u16(level: libc::c_int, kind: libc::c_int, value: u16) -> [u8; 24] {
    const HEADER: usize = 16;
    let mut buf = [0u8; 24];
    let len = HEADER + size_of::<u16>();
    buf[..8].copy_from_slice(&(len as u64).to_ne_bytes());
    buf[8..12].copy_from_slice(&level.to_ne_bytes());
    buf[12..16].copy_from_slice(&kind.to_ne_bytes());
    buf[HEADER..HEADER + 2].copy_from_slice(&value.to_ne_bytes());
    buf
}

#[cfg(test)]
mod tests {
    use super::super::encode_cmsg;
    use super::*;

    fn endpoints(port: u16) -> Endpoints {
        let at = [[127, 0, 0, 1], [127, 0, 0, 2]];
        Endpoints::from_fn(2, |u| Some(SocketAddr::from((at[u.index()], port))))
    }

    #[test]
    fn runs_end_at_a_new_endpoint_a_longer_frame_or_after_a_shorter_one() {
        let mut out = Outgoing::with_capacity(8);
        for (buf, len, port) in [
            (0, 100, 1),
            (1, 100, 1),
            (2, 60, 1),
            (3, 100, 1),
            (4, 100, 2),
        ] {
            out.push(buf, len, &endpoints(port));
        }
        let first = Underlay::FIRST;
        let e = out.on(first);
        assert_eq!(run_end(e, 0), 3, "the shorter frame closes the run");
        assert_eq!(run_end(e, 3), 4, "another endpoint starts a new run");
        let second = Underlay::at(1).unwrap();
        assert_eq!(out.on(second).len(), 5, "every frame on each underlay");
        assert_eq!(run_end(out.on(second), 4), 5);
        let mut long = Outgoing::with_capacity(100);
        (0..100).for_each(|i| long.push(i, 1440, &endpoints(1)));
        let end = run_end(long.on(first), 0);
        assert_eq!(
            end,
            GSO_MAX_BYTES / 1440,
            "no more bytes than one datagram may carry"
        );
    }

    #[test]
    fn gro_size_is_found_behind_another_control_message() {
        let tos = encode_cmsg(libc::IPPROTO_IP, libc::IP_TOS, 0xb8);
        let gro = encode_cmsg(libc::SOL_UDP, UDP_GRO, 1440);
        assert_eq!(gro_segment(&[tos.clone(), gro].concat()), Some(1440));
        assert_eq!(gro_segment(&tos), None);
        assert_eq!(gro_segment(&[0u8; 7]), None);
        assert_eq!(
            gro_segment(&[0u8; 32]),
            None,
            "a zero cmsg_len stops the walk"
        );
    }
}
