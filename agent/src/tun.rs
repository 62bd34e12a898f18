//! The TUN edge: one layer-3 interface per VON, carrying bare IP packets.
//!
//! The interface gets the member's VON address inside the VON's prefix, so the
//! kernel routes the whole VON subnet to it, and an MTU that leaves room for
//! the outer headers and the frame: the kernel itself then answers a too-large
//! send with "message too long", so nothing is lost silently. IPv6 is turned
//! off on the interface: VON addresses are IPv4, and router solicitations would
//! only show up as policy drops. The interface is not persistent: it vanishes
//! when the device is dropped or the process dies.

use std::io;
use std::net::Ipv4Addr;

use tun_rs::{AsyncDevice, DeviceBuilder};

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
    /// Any other failure.
    #[error("creating interface {name} with {addr}/{prefix_len} mtu {mtu} failed")]
    Other {
        name: String,
        addr: Ipv4Addr,
        prefix_len: u8,
        mtu: u16,
        source: io::Error,
    },
}

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
    /// Creates interface `name`, up, with `addr/prefix_len` and `mtu`. Must
    /// run inside a tokio runtime.
    pub fn open(name: &str, addr: Ipv4Addr, prefix_len: u8, mtu: u16) -> Result<Tun, TunError> {
        let other = |source: io::Error| TunError::Other {
            name: name.to_owned(),
            addr,
            prefix_len,
            mtu,
            source,
        };
        let device = DeviceBuilder::new()
            .name(name)
            .ipv4(addr, prefix_len, None)
            .mtu(mtu)
            .enable(false)
            .build_async()
            .map_err(|source| {
                let name = name.to_owned();
                match source.raw_os_error() {
                    Some(libc::EPERM) | Some(libc::EACCES) => TunError::Permission { name, source },
                    Some(libc::ENOENT) | Some(libc::ENODEV) => TunError::NoDevice { name, source },
                    Some(libc::EBUSY) | Some(libc::EEXIST) => TunError::Busy { name, source },
                    _ => other(source),
                }
            })?;
        // Best effort, before the interface is up: without IPv6 on the host
        // there is nothing to turn off.
        let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{name}/disable_ipv6"), "1");
        // The directed broadcast must be local on every member, or the kernel
        // would not take a VON broadcast delivered by the pipeline.
        if prefix_len < 31 {
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

    /// Reads one IP packet into `buf`.
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.device.recv(buf).await
    }

    /// Writes one IP packet.
    pub async fn send(&self, packet: &[u8]) -> io::Result<usize> {
        self.device.send(packet).await
    }
}
