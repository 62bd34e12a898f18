//! The UDP edge: one socket per underlay, shared by every VON on the host.
//!
//! Frames are demultiplexed by their ON id, not by port, so two sockets serve
//! any number of VONs. Each VON may ask for its own DSCP (the "ON bit" a router
//! can honour); one socket can carry only one `IP_TOS`, so every send passes
//! the VON's traffic class per packet as an `IP_TOS` / `IPV6_TCLASS` control
//! message (Linux ≥ 3.13 honours it on UDP). The control message is encoded
//! once per VON ([`TrafficClass`]), not per packet.
//!
//! Offloads, when the kernel has them: a run of equal-sized frames to one
//! endpoint leaves in one `sendmsg` with `UDP_SEGMENT` (GSO: the kernel cuts
//! it into datagrams, each with the VON's traffic class), and `UDP_GRO` lets
//! one receive return many datagrams of one sender, with their size in a
//! control message. Datagrams on the wire are the same as without them.
//!
//! Outer packets never fragment: `IP_PMTUDISC_DO` makes the kernel refuse a
//! datagram larger than the path MTU instead of splitting it, and the VON
//! interface's MTU leaves room for the outer headers so that the application
//! sees "message too long" from its own interface rather than a silent loss.
#![allow(unsafe_code)] // setsockopt calls and a recvmsg buffer; each block says why it is sound

use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};

use socket2::{
    Domain, MaybeUninitSlice, MsgHdr, MsgHdrMut, Protocol, SockAddr, SockRef, Socket, Type,
};
use tokio::io::Interest;
use tokio::net::UdpSocket;

use von_packet::{Underlay, UnderlayName};

/// Kernel send buffer asked for each socket: room for many 64 KB GSO runs.
const SEND_BUFFER: usize = 4 << 20;
/// Kernel receive buffer asked for each socket (the kernel doubles it for
/// its bookkeeping). With GSO and GRO the receiving agent is the slowest
/// stage, so a bulk TCP flow through the VON keeps this queue full, and its
/// size becomes the standing delay every other packet of the host waits
/// behind. Measured with bench/run.sh (docs/performance.md): 4 MB gave
/// 4.5 Gbit/s at 2.6 ms RTT under load, worse than boringtun's 1.5 ms;
/// 512 KB gives 2.2 Gbit/s at 0.7 ms, still 4x wireguard-go's goodput. A
/// VON carries latency-critical traffic: delay wins.
const RECV_BUFFER: usize = 512 << 10;
/// `UDP_SEGMENT` and `UDP_GRO` (linux/udp.h), at level `SOL_UDP`.
const UDP_SEGMENT: libc::c_int = 103;
const UDP_GRO: libc::c_int = 104;

mod batch;

use batch::{Entry, GSO_MAX_SEGMENTS, encode_cmsg_u16, gro_segment, run_end};
pub use batch::{Outgoing, Received, SendReport};
/// Room for the control messages of one receive (a `UDP_GRO` int).
const RECV_CONTROL: usize = 64;

/// Why an underlay socket could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum UnderlayError {
    /// Another process (or another von) holds the address.
    #[error(
        "underlay {underlay}: address {addr} is already in use; stop the process bound to it \
         (`ss -ulpn 'sport = :{port}'`) or set another port in [underlay.{underlay}] bind",
        port = addr.port()
    )]
    AddrInUse {
        underlay: UnderlayName,
        addr: SocketAddr,
    },
    /// The IP address is not configured on any interface of this host/namespace.
    #[error(
        "underlay {underlay}: address {addr} is not assigned to any interface here; \
         add it (`ip addr add ...`) or fix [underlay.{underlay}] bind"
    )]
    AddrNotAvailable {
        underlay: UnderlayName,
        addr: SocketAddr,
    },
    /// Any other failure, with the step that failed.
    #[error("underlay {underlay}: {step} for {addr} failed")]
    Io {
        underlay: UnderlayName,
        addr: SocketAddr,
        step: &'static str,
        source: io::Error,
    },
}

/// A VON's outer traffic class, encoded once as the control message that
/// carries it on every send.
#[derive(Debug, Clone)]
pub struct TrafficClass {
    dscp: u8,
    v4: Vec<u8>,
    v6: Vec<u8>,
}

impl TrafficClass {
    /// The class for DSCP `dscp` (0..=63; the two ECN bits stay zero).
    pub fn new(dscp: u8) -> Self {
        let tos = libc::c_int::from(dscp & 0x3f) << 2;
        TrafficClass {
            dscp,
            v4: encode_cmsg(libc::IPPROTO_IP, libc::IP_TOS, tos),
            v6: encode_cmsg(libc::IPPROTO_IPV6, libc::IPV6_TCLASS, tos),
        }
    }

    /// The DSCP this class carries.
    pub fn dscp(&self) -> u8 {
        self.dscp
    }
}

/// One underlay's UDP socket.
#[derive(Debug)]
pub struct UnderlaySocket {
    underlay: Underlay,
    name: UnderlayName,
    local: SocketAddr,
    socket: UdpSocket,
    /// Whether sends may use `UDP_SEGMENT`; cleared for good when the
    /// kernel refuses it at send time (`EIO`: no checksum offload on the way).
    gso: AtomicBool,
    /// Whether receives may return coalesced datagrams.
    gro: bool,
}

impl UnderlaySocket {
    /// Binds `addr` for the underlay at position `underlay`, called `name`,
    /// with don't-fragment set. Must run inside a tokio runtime.
    pub fn bind(
        underlay: Underlay,
        name: UnderlayName,
        addr: SocketAddr,
    ) -> Result<Self, UnderlayError> {
        let io_err = |step: &'static str| {
            move |source: io::Error| UnderlayError::Io {
                underlay: name,
                addr,
                step,
                source,
            }
        };
        let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))
            .map_err(io_err("socket()"))?;
        socket.set_nonblocking(true).map_err(io_err("O_NONBLOCK"))?;
        set_dont_fragment(&socket, addr).map_err(io_err("IP_MTU_DISCOVER"))?;
        // Best effort: the kernel caps these at net.core.[rw]mem_max.
        let _ = socket.set_recv_buffer_size(RECV_BUFFER);
        let _ = socket.set_send_buffer_size(SEND_BUFFER);
        // Offloads are optional: a kernel without them sends and receives
        // one datagram per call, as before.
        let gso = set_int_option(&socket, libc::SOL_UDP, UDP_SEGMENT, 0).is_ok();
        let gro = set_int_option(&socket, libc::SOL_UDP, UDP_GRO, 1).is_ok();
        socket
            .bind(&addr.into())
            .map_err(|source| match source.kind() {
                io::ErrorKind::AddrInUse => UnderlayError::AddrInUse {
                    underlay: name,
                    addr,
                },
                io::ErrorKind::AddrNotAvailable => UnderlayError::AddrNotAvailable {
                    underlay: name,
                    addr,
                },
                _ => io_err("bind()")(source),
            })?;
        let local = socket
            .local_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .unwrap_or(addr);
        let socket = UdpSocket::from_std(socket.into()).map_err(io_err("register with tokio"))?;
        Ok(UnderlaySocket {
            underlay,
            name,
            local,
            socket,
            gso: AtomicBool::new(gso),
            gro,
        })
    }

    /// Which underlay this socket serves.
    pub fn underlay(&self) -> Underlay {
        self.underlay
    }

    /// That underlay's name, for logs.
    pub fn name(&self) -> UnderlayName {
        self.name
    }

    /// The bound address (with the port the kernel chose if 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Receives one datagram into `buf`.
    pub async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.socket.recv_from(buf).await
    }

    /// Waits until a datagram may be ready for [`UnderlaySocket::try_recv`].
    pub async fn readable(&self) -> io::Result<()> {
        self.socket.readable().await
    }

    /// [`UnderlaySocket::readable`] as a poll, to wait on several sockets.
    pub fn poll_recv_ready(
        &self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        self.socket.poll_recv_ready(cx)
    }

    /// Receives what is queued without waiting: the bytes and the size of
    /// each datagram in them (`WouldBlock` when nothing is).
    pub fn try_recv(&self, buf: &mut [u8]) -> io::Result<Received> {
        if !self.gro {
            let (len, from) = self.socket.try_recv_from(buf)?;
            return Ok(Received {
                len,
                segment: len,
                source: Some(from),
            });
        }
        let mut control = [0u8; RECV_CONTROL];
        // Room for either family; the kernel writes the source's.
        let mut from = socket2::SockAddr::from(std::net::SocketAddr::from((
            std::net::Ipv6Addr::UNSPECIFIED,
            0,
        )));
        let (len, control_len) = self.socket.try_io(Interest::READABLE, || {
            let mut bufs = [MaybeUninitSlice::new(as_uninit(buf))];
            let mut msg = MsgHdrMut::new()
                .with_addr(&mut from)
                .with_buffers(&mut bufs)
                .with_control(as_uninit(&mut control));
            let len = SockRef::from(&self.socket).recvmsg(&mut msg, 0)?;
            Ok((len, msg.control_len()))
        })?;
        let control = &control[..control_len.min(RECV_CONTROL)];
        let segment = gro_segment(control).filter(|&s| s > 0).unwrap_or(len);
        Ok(Received {
            len,
            segment,
            source: from.as_socket(),
        })
    }

    /// Sends every frame of `out` on this underlay, reading frame `i` from
    /// `frame(i)`; the counts say how many datagrams left and how many failed.
    /// Runs of frames to one endpoint, all of one size but the last (which
    /// may be shorter), leave in one GSO send.
    pub async fn send_all<'f>(
        &self,
        out: &Outgoing,
        frame: impl Fn(usize) -> &'f [u8],
        class: &TrafficClass,
    ) -> SendReport {
        let mut report = SendReport::default();
        let entries = out.on(self.underlay);
        let mut i = 0;
        while i < entries.len() {
            let dst = entries[i].to;
            let segment = entries[i].len;
            let end = if self.gso.load(Ordering::Relaxed) {
                run_end(entries, i)
            } else {
                i + 1
            };
            let run = &entries[i..end];
            let result = if run.len() == 1 {
                self.send_to(&frame(run[0].buf)[..run[0].len], dst, class)
                    .await
                    .map(drop)
            } else {
                self.send_segments(run, &frame, segment, dst, class).await
            };
            match result {
                Ok(()) => {
                    report.sent += run.len() as u64;
                    report.sent_bytes += run.iter().map(|e| e.len as u64).sum::<u64>();
                    i = end;
                }
                // GSO refused: EIO means the path cannot offload checksums
                // (never again on this socket); EINVAL a segment larger
                // than the path allows (send one by one for the exact error).
                Err(e)
                    if run.len() > 1
                        && matches!(e.raw_os_error(), Some(libc::EIO | libc::EINVAL)) =>
                {
                    if e.raw_os_error() == Some(libc::EIO) {
                        self.gso.store(false, Ordering::Relaxed);
                    }
                    for entry in run {
                        match self
                            .send_to(&frame(entry.buf)[..entry.len], dst, class)
                            .await
                        {
                            Ok(_) => {
                                report.sent += 1;
                                report.sent_bytes += entry.len as u64;
                            }
                            Err(e) => {
                                report.failed += 1;
                                report.last_error = Some((dst, e));
                            }
                        }
                    }
                    i = end;
                }
                Err(e) => {
                    report.failed += run.len() as u64;
                    report.last_error = Some((dst, e));
                    i = end;
                }
            }
        }
        report
    }

    /// One GSO send: the frames of `run` back to back, cut by the kernel into
    /// datagrams of `segment` bytes, each with the VON's traffic class.
    async fn send_segments<'f>(
        &self,
        run: &[Entry],
        frame: &impl Fn(usize) -> &'f [u8],
        segment: usize,
        dst: SocketAddr,
        class: &TrafficClass,
    ) -> io::Result<()> {
        let tos = if self.local.is_ipv4() {
            &class.v4
        } else {
            &class.v6
        };
        let gso = encode_cmsg_u16(libc::SOL_UDP, UDP_SEGMENT, segment as u16);
        let mut control = [0u8; 64];
        let control_len = tos.len() + gso.len();
        control[..tos.len()].copy_from_slice(tos);
        control[tos.len()..control_len].copy_from_slice(&gso);
        let dst = SockAddr::from(dst);
        // MsgHdr holds raw pointers (not Send): build it inside the closure.
        self.socket
            .async_io(Interest::WRITABLE, || {
                let mut bufs = [IoSlice::new(&[]); GSO_MAX_SEGMENTS];
                for (slot, entry) in bufs.iter_mut().zip(run) {
                    *slot = IoSlice::new(&frame(entry.buf)[..entry.len]);
                }
                let msg = MsgHdr::new()
                    .with_addr(&dst)
                    .with_buffers(&bufs[..run.len()])
                    .with_control(&control[..control_len]);
                SockRef::from(&self.socket).sendmsg(&msg, 0)
            })
            .await
            .map(drop)
    }

    /// Sends `frame` to `dst` with the VON's traffic class.
    pub async fn send_to(
        &self,
        frame: &[u8],
        dst: SocketAddr,
        class: &TrafficClass,
    ) -> io::Result<usize> {
        let control = if self.local.is_ipv4() {
            &class.v4
        } else {
            &class.v6
        };
        let dst = SockAddr::from(dst);
        // MsgHdr holds raw pointers (not Send): build it inside the closure.
        self.socket
            .async_io(Interest::WRITABLE, || {
                let bufs = [IoSlice::new(frame)];
                let msg = MsgHdr::new()
                    .with_addr(&dst)
                    .with_buffers(&bufs)
                    .with_control(control);
                SockRef::from(&self.socket).sendmsg(&msg, 0)
            })
            .await
    }
}

/// Views initialised bytes as possibly-uninitialised ones, the type recvmsg
/// takes.
fn as_uninit(buf: &mut [u8]) -> &mut [MaybeUninit<u8>] {
    // SAFETY: MaybeUninit<u8> has the layout of u8; recvmsg only ever writes
    // initialised bytes into it, so `buf` stays initialised.
    unsafe { &mut *(std::ptr::from_mut::<[u8]>(buf) as *mut [MaybeUninit<u8>]) }
}

/// Sets an `int` socket option.
fn set_int_option(
    socket: &Socket,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: the fd is a live socket owned by `socket` for the whole call;
    // the value points to a c_int on this stack frame and its size is passed.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (&raw const value).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Encodes one `cmsghdr` carrying an `int`, laid out as the kernel's
/// `CMSG_SPACE(sizeof(int))`: header, data, padding to `size_t` alignment.
fn encode_cmsg(level: libc::c_int, kind: libc::c_int, value: libc::c_int) -> Vec<u8> {
    let align = |n: usize| n.div_ceil(size_of::<usize>()) * size_of::<usize>();
    let header = align(size_of::<libc::cmsghdr>());
    let data = size_of::<libc::c_int>();
    let mut buf = vec![0u8; header + align(data)];
    // cmsghdr on Linux: { size_t cmsg_len; int cmsg_level; int cmsg_type; }.
    let len = header + data;
    let mut at = 0;
    buf[at..at + size_of::<usize>()].copy_from_slice(&len.to_ne_bytes());
    at += size_of::<usize>();
    buf[at..at + data].copy_from_slice(&level.to_ne_bytes());
    at += data;
    buf[at..at + data].copy_from_slice(&kind.to_ne_bytes());
    buf[header..header + data].copy_from_slice(&value.to_ne_bytes());
    buf
}

/// Sets `IP_PMTUDISC_DO` (or the IPv6 equivalent): never fragment locally,
/// refuse what exceeds the path MTU with `EMSGSIZE`.
fn set_dont_fragment(socket: &Socket, addr: SocketAddr) -> io::Result<()> {
    let (level, name, value) = if addr.is_ipv4() {
        (
            libc::IPPROTO_IP,
            libc::IP_MTU_DISCOVER,
            libc::IP_PMTUDISC_DO,
        )
    } else {
        (
            libc::IPPROTO_IPV6,
            libc::IPV6_MTU_DISCOVER,
            libc::IPV6_PMTUDISC_DO,
        )
    };
    // SAFETY: the fd is a live socket owned by `socket` for the whole call; the
    // option value points to a c_int on this stack frame and its exact size is
    // passed, which is what both options expect.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (&raw const value).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use von_packet::Endpoints;

    fn bind(i: usize, addr: &str) -> UnderlaySocket {
        let name = ["a", "b"][i].parse().unwrap();
        UnderlaySocket::bind(Underlay::at(i).unwrap(), name, addr.parse().unwrap()).unwrap()
    }

    #[test]
    fn control_message_layout_matches_the_kernel_macros() {
        let class = TrafficClass::new(46);
        // SAFETY: CMSG_SPACE/CMSG_LEN are pure arithmetic on their argument.
        let (space, len) = unsafe {
            (
                libc::CMSG_SPACE(size_of::<libc::c_int>() as u32) as usize,
                libc::CMSG_LEN(size_of::<libc::c_int>() as u32) as usize,
            )
        };
        assert_eq!(class.v4.len(), space);
        assert_eq!(
            usize::from_ne_bytes(class.v4[..size_of::<usize>()].try_into().unwrap()),
            len
        );
        let data_at = len - size_of::<libc::c_int>();
        let tos = libc::c_int::from_ne_bytes(class.v4[data_at..len].try_into().unwrap());
        assert_eq!(tos, 46 << 2);
    }

    #[tokio::test]
    async fn loopback_send_and_receive_with_a_traffic_class() {
        let a = bind(0, "127.0.0.1:0");
        let b = bind(1, "127.0.0.1:0");
        let class = TrafficClass::new(46);
        let sent = a.send_to(b"frame", b.local_addr(), &class).await.unwrap();
        assert_eq!(sent, 5);
        let mut buf = [0u8; 64];
        let (n, from) = b.recv_from(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"frame");
        assert_eq!(from, a.local_addr());
    }

    #[tokio::test]
    async fn a_batch_arrives_as_the_same_datagrams_with_or_without_offloads() {
        let a = bind(0, "127.0.0.1:0");
        let b = bind(0, "127.0.0.1:0");
        let frames: Vec<Vec<u8>> = [1000usize, 1000, 1000, 400]
            .iter()
            .enumerate()
            .map(|(i, &n)| vec![i as u8 + 1; n])
            .collect();
        let mut out = Outgoing::with_capacity(4);
        let to = Endpoints::from_fn(1, |_| Some(b.local_addr()));
        (0..frames.len()).for_each(|i| out.push(i, frames[i].len(), &to));
        let report = a
            .send_all(&out, |i| &frames[i], &TrafficClass::new(46))
            .await;
        assert_eq!(
            (report.sent, report.failed),
            (4, 0),
            "{:?}",
            report.last_error
        );
        let mut got = Vec::new();
        let mut buf = vec![0u8; 65_535];
        while got.len() < frames.len() {
            b.readable().await.unwrap();
            match b.try_recv(&mut buf) {
                Ok(r) => got.extend(buf[..r.len].chunks(r.segment).map(<[u8]>::to_vec)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => panic!("receive: {e}"),
            }
        }
        assert_eq!(got, frames);
    }

    #[tokio::test]
    async fn address_in_use_names_the_address() {
        let a = bind(0, "127.0.0.1:0");
        let name = "b".parse().unwrap();
        let err = UnderlaySocket::bind(Underlay::at(1).unwrap(), name, a.local_addr()).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, UnderlayError::AddrInUse { .. }), "{text}");
        assert!(text.contains(&a.local_addr().to_string()), "{text}");
    }

    #[tokio::test]
    async fn the_receive_buffer_is_sized_for_delay() {
        let a = bind(0, "127.0.0.1:0");
        let limit = |name: &str| -> usize {
            let path = format!("/proc/sys/net/core/{name}");
            // Linux always has these sysctls; the agent is Linux-only.
            std::fs::read_to_string(&path)
                .unwrap()
                .trim()
                .parse()
                .unwrap()
        };
        // The kernel caps what is asked at the sysctl and doubles it.
        let socket = SockRef::from(&a.socket);
        assert_eq!(
            socket.recv_buffer_size().unwrap(),
            2 * RECV_BUFFER.min(limit("rmem_max"))
        );
        assert_eq!(
            socket.send_buffer_size().unwrap(),
            2 * SEND_BUFFER.min(limit("wmem_max"))
        );
    }

    #[tokio::test]
    async fn sockets_never_fragment() {
        let a = bind(0, "127.0.0.1:0");
        let mut value: libc::c_int = -1;
        let mut len = size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: the fd is live for the call; value/len point to locals of the
        // sizes the kernel is told.
        let rc = unsafe {
            libc::getsockopt(
                a.socket.as_raw_fd(),
                libc::IPPROTO_IP,
                libc::IP_MTU_DISCOVER,
                (&raw mut value).cast(),
                &raw mut len,
            )
        };
        assert_eq!(rc, 0);
        assert_eq!(value, libc::IP_PMTUDISC_DO);
    }
}
