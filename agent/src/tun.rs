//! The TUN edge: one layer-3 interface per VON, carrying bare IP packets.
//!
//! The interface gets the member's VON address inside the VON's prefix, so the
//! kernel routes the whole VON subnet to it, and an MTU that leaves room for
//! the outer headers and the frame: the kernel itself then answers a too-large
//! send with "message too long", so nothing is lost silently. The interface
//! is not persistent: it vanishes when the device is dropped or the process
//! dies.
//!
//! IPv6 is turned on only for a VON that carries it, and then set up for an
//! L3 link with no routers and no neighbours (docs/dataplane.md, "IPv6
//! inside a VON"): no link-local address is generated (`addr_gen_mode` 1),
//! so the VON address is the only source the kernel picks, also for
//! `ff02::/16` groups; router advertisements are ignored and no router
//! solicitation is sent (`accept_ra` 0, `router_solicitations` 0); segment
//! routing headers are not processed (`seg6_enabled` 0). A TUN has no link
//! layer (`IFF_NOARP`), so the kernel sends no neighbour solicitation and
//! runs no duplicate address detection on it. What it still emits itself
//! (MLD reports from `::`) the pipeline drops at the edge as `link_local`.
//! On a VON without IPv6 the interface has IPv6 off, as before.
//!
//! Offloads (`IFF_VNET_HDR` with TSO/USO): one read hands over a TCP or UDP
//! super-packet of up to 64 KB that [`ReadBatch`] splits into MTU-sized
//! packets, and [`WriteBatch`] coalesces the packets of one TCP flow into one
//! write, as wireguard-go does. Fewer syscalls per byte, the same packets:
//! the pipeline still sees (and counts) every MSS-sized segment. Every read
//! and write carries the 10-byte virtio header, so the device is only ever
//! used through these two batches.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr};

use tun_rs::{AsyncDevice, DeviceBuilder, GROTable, VIRTIO_NET_HDR_LEN};

/// Linux interface names are at most 15 bytes (IFNAMSIZ - 1).
pub const MAX_NAME: usize = 15;

/// Why a VON interface could not be created.
#[derive(Debug, thiserror::Error)]
pub enum TunError {
    /// Creating interfaces needs CAP_NET_ADMIN.
    #[error(
        "creating interface {name} needs CAP_NET_ADMIN: run `von up` as root, or grant it with \
         `setcap cap_net_admin+ep $(command -v von)`"
    )]
    Permission { name: String, source: io::Error },
    /// `/dev/net/tun` is missing (container without the device, module not loaded).
    #[error(
        "creating interface {name}: /dev/net/tun is missing; load the module (`modprobe tun`) \
         or pass the device into the container"
    )]
    NoDevice { name: String, source: io::Error },
    /// Another process holds an interface of that name.
    #[error(
        "interface {name} exists and is in use (another von running?); stop it or set \
         `interface` in the [[von]] table to another name"
    )]
    Busy { name: String, source: io::Error },
    /// A link of that name exists and is no TUN device (a veth, a bridge...).
    #[error(
        "interface {name} already exists and is not a TUN device (`ip link show {name}`); \
         remove it or set `interface` in the [[von]] table to another name"
    )]
    NotTun { name: String, source: io::Error },
    /// The host has no IPv6 (booted with `ipv6.disable=1`), and the VON
    /// carries IPv6.
    #[error(
        "interface {name}: the VON has an IPv6 prefix, but this host has no IPv6 \
         (/proc/sys/net/ipv6 is missing: booted with ipv6.disable=1?); enable IPv6 in the \
         kernel or drop the VON's IPv6 prefix"
    )]
    NoIpv6 { name: String, source: io::Error },
    /// Any other failure.
    #[error("creating interface {name} with {addrs} mtu {mtu} failed")]
    Other {
        name: String,
        addrs: TunAddrs,
        mtu: u16,
        source: io::Error,
    },
}

/// The addresses of a VON interface, each with its prefix length: IPv4,
/// IPv6 or both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TunAddrs {
    /// The member's IPv4 address and the VON's IPv4 prefix length.
    pub v4: Option<(Ipv4Addr, u8)>,
    /// The member's IPv6 address and the VON's IPv6 prefix length.
    pub v6: Option<(Ipv6Addr, u8)>,
}

impl std::fmt::Display for TunAddrs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut sep = "";
        if let Some((a, l)) = self.v4 {
            write!(f, "{a}/{l}")?;
            sep = " and ";
        }
        if let Some((a, l)) = self.v6 {
            write!(f, "{sep}{a}/{l}")?;
        }
        Ok(())
    }
}

/// The per-interface IPv6 settings of a VON that carries IPv6, in the order
/// written (IPv6 on last, so nothing is generated before the rest is set),
/// and whether the interface may go up without it (`seg6_enabled` exists
/// only in kernels built with segment routing, and is 0 by default).
const IPV6_SYSCTLS: [(&str, &str, bool); 5] = [
    ("addr_gen_mode", "1", true),
    ("accept_ra", "0", true),
    ("router_solicitations", "0", true),
    ("seg6_enabled", "0", false),
    ("disable_ipv6", "0", true),
];

/// One VON's interface.
pub struct Tun {
    name: String,
    device: AsyncDevice,
}

impl std::fmt::Debug for Tun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tun")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Tun {
    /// Creates interface `name`, up, with `addrs` and `mtu`. Must run
    /// inside a tokio runtime.
    pub fn open(name: &str, addrs: TunAddrs, mtu: u16) -> Result<Tun, TunError> {
        let other = |source: io::Error| TunError::Other {
            name: name.to_owned(),
            addrs,
            mtu,
            source,
        };
        let mut builder = DeviceBuilder::new();
        builder = builder.name(name);
        if let Some((addr, prefix_len)) = addrs.v4 {
            builder = builder.ipv4(addr, prefix_len, None);
        }
        let device = builder
            .mtu(mtu)
            .offload(true)
            .enable(false)
            .build_async()
            .map_err(|source| {
                let name = name.to_owned();
                match source.raw_os_error() {
                    Some(libc::EPERM) | Some(libc::EACCES) => TunError::Permission { name, source },
                    Some(libc::ENOENT) | Some(libc::ENODEV) => TunError::NoDevice { name, source },
                    Some(libc::EBUSY) | Some(libc::EEXIST) => TunError::Busy { name, source },
                    // TUNSETIFF on a name another kind of link holds.
                    Some(libc::EINVAL)
                        if std::path::Path::new("/sys/class/net").join(&name).exists() =>
                    {
                        TunError::NotTun { name, source }
                    }
                    _ => other(source),
                }
            })?;
        match addrs.v6 {
            Some((addr, prefix_len)) => {
                // Before the interface is up, so no link-local address is
                // ever generated and no router solicitation leaves.
                let conf = format!("/proc/sys/net/ipv6/conf/{name}");
                for (key, value, required) in IPV6_SYSCTLS {
                    let written = std::fs::write(format!("{conf}/{key}"), value);
                    if !required {
                        continue;
                    }
                    written.map_err(|source| {
                        if std::path::Path::new("/proc/sys/net/ipv6").exists() {
                            other(source)
                        } else {
                            TunError::NoIpv6 {
                                name: name.to_owned(),
                                source,
                            }
                        }
                    })?;
                }
                device.add_address_v6(addr, prefix_len).map_err(other)?;
            }
            None => {
                // Best effort: without IPv6 on the host there is nothing
                // to turn off.
                let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{name}/disable_ipv6"), "1");
            }
        }
        // The directed broadcast must be local on every member, or the kernel
        // would not take a VON broadcast delivered by the pipeline.
        if let Some((addr, prefix_len)) = addrs.v4
            && prefix_len < 31
        {
            let mask = u32::MAX >> prefix_len;
            let broadcast = Ipv4Addr::from(u32::from(addr) | mask);
            device.set_broadcast(broadcast.into()).map_err(other)?;
        }
        device.enabled(true).map_err(other)?;
        Ok(Tun {
            name: name.to_owned(),
            device,
        })
    }

    /// The interface name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Sets the interface's MTU (a reload): packets read from now on are at
    /// most `mtu` bytes, and the kernel fragments or refuses larger ones.
    pub fn set_mtu(&self, mtu: u16) -> io::Result<()> {
        self.device.set_mtu(mtu)
    }

    /// Reads once (one packet or one super-packet) and splits it into
    /// `batch`; returns how many packets it holds.
    pub async fn recv_batch(&self, batch: &mut ReadBatch) -> io::Result<usize> {
        let n = self
            .device
            .recv_multiple(
                &mut batch.original,
                &mut batch.bufs,
                &mut batch.sizes,
                batch.offset,
            )
            .await?;
        batch.len = n;
        Ok(n)
    }

    /// Writes every packet of `batch`, coalescing TCP flows, and empties it.
    /// The batch is emptied even when a write fails.
    pub async fn send_batch(&self, batch: &mut WriteBatch) -> io::Result<()> {
        if batch.len == 0 {
            return Ok(());
        }
        let result = self
            .device
            .send_multiple(&mut batch.gro, &mut batch.bufs[..batch.len], WRITE_OFFSET)
            .await;
        batch.len = 0;
        result.map(drop)
    }
}

/// Largest IP packet (and super-packet) the device hands over or takes.
const MAX_SUPER_PACKET: usize = 65_535;
/// Where a packet starts in a [`WriteBatch`] buffer: the virtio header in front.
const WRITE_OFFSET: usize = VIRTIO_NET_HDR_LEN;

/// Buffers for one TUN read: the raw super-packet and the packets it splits
/// into, each at `offset` with `tail` spare bytes after it (room for the
/// frame header and tag, so the pipeline seals in place).
pub struct ReadBatch {
    original: Vec<u8>,
    bufs: Vec<Vec<u8>>,
    sizes: Vec<usize>,
    offset: usize,
    len: usize,
}

impl ReadBatch {
    /// Buffers for an interface of MTU `mtu`, packets at `offset`, `tail`
    /// bytes of room after each; enough buffers for a 64 KB super-packet cut
    /// into the smallest segments the MTU allows.
    pub fn new(mtu: u16, offset: usize, tail: usize) -> Self {
        // A TCP segment carries at least MTU - 60 (IPv6 + TCP headers) bytes.
        let segments = MAX_SUPER_PACKET / usize::from(mtu).saturating_sub(60).max(1) + 1;
        let count = segments.clamp(tun_rs::IDEAL_BATCH_SIZE, usize::from(u16::MAX));
        ReadBatch {
            original: vec![0; VIRTIO_NET_HDR_LEN + MAX_SUPER_PACKET],
            bufs: vec![vec![0; offset + usize::from(mtu) + tail]; count],
            sizes: vec![0; count],
            offset,
            len: 0,
        }
    }

    /// How many packets the last read gave.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the last read gave no packet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Packet `i` of the last read: its whole buffer (the packet at the
    /// batch's offset) and its length.
    pub fn packet_mut(&mut self, i: usize) -> (&mut [u8], usize) {
        (&mut self.bufs[i], self.sizes[i])
    }

    /// The buffer of packet `i`, read-only (to send what was sealed in it).
    pub fn buf(&self, i: usize) -> &[u8] {
        &self.bufs[i]
    }
}

impl std::fmt::Debug for ReadBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadBatch")
            .field("capacity", &self.bufs.len())
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

/// Packets waiting to be written to one TUN in one batch. Buffers keep their
/// capacity (a full super-packet, so coalescing never reallocates) from one
/// batch to the next.
pub struct WriteBatch {
    bufs: Vec<Vec<u8>>,
    gro: GROTable,
    len: usize,
}

impl WriteBatch {
    /// Room for `capacity` packets before the driver must write.
    pub fn new(capacity: usize) -> Self {
        WriteBatch {
            bufs: (0..capacity)
                .map(|_| Vec::with_capacity(WRITE_OFFSET + MAX_SUPER_PACKET))
                .collect(),
            gro: GROTable::default(),
            len: 0,
        }
    }

    /// Adds a copy of `packet`; returns false (and adds nothing) when full.
    pub fn push(&mut self, packet: &[u8]) -> bool {
        let Some(buf) = self.bufs.get_mut(self.len) else {
            return false;
        };
        buf.clear();
        buf.resize(WRITE_OFFSET, 0);
        buf.extend_from_slice(packet);
        self.len += 1;
        true
    }

    /// Whether no packet waits.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether the next push would fail.
    pub fn is_full(&self) -> bool {
        self.len == self.bufs.len()
    }
}

impl std::fmt::Debug for WriteBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteBatch")
            .field("capacity", &self.bufs.len())
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_batch_has_room_for_the_smallest_segments_of_a_super_packet() {
        let small = ReadBatch::new(576, 24, 16);
        assert!(small.bufs.len() * (576 - 60) >= MAX_SUPER_PACKET);
        assert_eq!(small.bufs[0].len(), 24 + 576 + 16);
        let usual = ReadBatch::new(1400, 24, 16);
        assert_eq!(usual.bufs.len(), tun_rs::IDEAL_BATCH_SIZE);
    }

    #[test]
    fn write_batch_fills_up_and_keeps_packets_behind_the_virtio_header() {
        let mut batch = WriteBatch::new(2);
        assert!(batch.is_empty());
        assert!(batch.push(&[0x45, 1, 2]));
        assert!(batch.push(&[0x45, 3]));
        assert!(batch.is_full());
        assert!(!batch.push(&[0x45]));
        assert_eq!(&batch.bufs[0][WRITE_OFFSET..], &[0x45, 1, 2]);
        assert_eq!(&batch.bufs[1][WRITE_OFFSET..], &[0x45, 3]);
    }
}
