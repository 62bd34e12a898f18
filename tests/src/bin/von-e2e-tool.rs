//! Helper the end-to-end tests run inside a namespace (`ip netns exec NS
//! von-e2e-tool ...`), for what no stock program does:
//!
//! - `stream-send` / `stream-recv`: a deterministic pseudo-random TCP stream,
//!   verified byte by byte on arrival (see `von_tests::stream`);
//! - `capture`: one UDP datagram as seen on the wire (AF_PACKET), printed as
//!   hex of the whole IPv4 packet;
//! - `send-raw`: that IPv4 packet sent again verbatim (raw socket), i.e. a
//!   replay by someone on the underlay path;
//! - `listen`: a UDP socket and a TCP listener on one address for a while,
//!   counting what reaches them (the target of an injection);
//! - `delay`: a delaying relay for one underlay: every IPv4/UDP packet from
//!   SRC to DPORT seen arriving (AF_PACKET, before netfilter, which the test
//!   tells to drop the original) is sent again verbatim after DELAY through
//!   a raw socket, so it reaches the local agent late, in order;
//! - `seq-send` / `seq-recv`: sequence-numbered UDP datagrams, and a count
//!   of those that arrive below the highest sequence seen (out of order).
//!
//! Each prints one JSON line on success and exits non-zero with a message
//! otherwise.

#![forbid(unsafe_code)]

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use von_tests::stream::{StreamGen, Verifier};

/// Test helper run inside a von test namespace.
#[derive(Debug, Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Accept one TCP connection and verify the stream for SEED.
    StreamRecv {
        #[arg(long)]
        listen: SocketAddr,
        #[arg(long)]
        seed: u64,
    },
    /// Connect and send BYTES of the stream for SEED, then wait for the
    /// receiver to close.
    StreamSend {
        #[arg(long)]
        connect: SocketAddr,
        #[arg(long)]
        seed: u64,
        #[arg(long)]
        bytes: u64,
    },
    /// Print the first IPv4/UDP packet from SRC to destination port DPORT
    /// whose UDP payload is at least MIN_LEN bytes.
    Capture {
        #[arg(long)]
        src: Ipv4Addr,
        #[arg(long)]
        dport: u16,
        #[arg(long, default_value_t = 0)]
        min_len: usize,
        #[arg(long, default_value_t = 20)]
        timeout_secs: u64,
    },
    /// Record every IPv4/UDP packet to destination port DPORT whose UDP
    /// payload is at least MIN_LEN bytes, from SRC (any source if not
    /// given), until COUNT were seen or SECONDS passed; each is written as a
    /// hex line to OUT as it arrives, and the count printed at the end.
    Record {
        #[arg(long)]
        src: Option<Ipv4Addr>,
        #[arg(long)]
        dport: u16,
        #[arg(long, default_value_t = 0)]
        min_len: usize,
        #[arg(long, default_value_t = u64::MAX)]
        count: u64,
        #[arg(long)]
        seconds: u64,
        #[arg(long)]
        out: std::path::PathBuf,
    },
    /// Send a whole IPv4 packet (hex) as is, through a raw socket.
    SendRaw {
        #[arg(long)]
        hex: String,
    },
    /// Send every packet of a file of hex lines (as `record` writes, after
    /// any rewriting by the test), in order, through a raw socket.
    SendRawFile {
        #[arg(long)]
        file: std::path::PathBuf,
    },
    /// Bind UDP on BIND (joining the IPv6 group JOIN on INTERFACE if given),
    /// create the file READY, then receive datagrams of the pattern
    /// `udp-send` sends until COUNT arrived or SECS passed; prints how many
    /// arrived intact, how many were damaged, and their sources.
    UdpRecv {
        #[arg(long)]
        bind: SocketAddr,
        #[arg(long)]
        join: Option<Ipv6Addr>,
        #[arg(long)]
        interface: Option<String>,
        #[arg(long)]
        count: u64,
        #[arg(long)]
        secs: u64,
        #[arg(long)]
        ready: std::path::PathBuf,
    },
    /// Send COUNT UDP datagrams of SIZE bytes (numbered, patterned) to TO,
    /// out of INTERFACE for an IPv6 multicast group, GAP_MS apart.
    UdpSend {
        #[arg(long)]
        to: SocketAddr,
        #[arg(long)]
        interface: Option<String>,
        #[arg(long)]
        count: u64,
        #[arg(long, default_value_t = 200)]
        size: usize,
        #[arg(long, default_value_t = 5)]
        gap_ms: u64,
    },
    /// Resend every IPv4/UDP packet from SRC to DPORT after DELAY_MS
    /// (raw socket, TTL 1 to tell the resent copy apart, UDP checksum
    /// zeroed: offload leaves it unfinished), for SECS seconds.
    Delay {
        #[arg(long)]
        src: Ipv4Addr,
        #[arg(long)]
        dport: u16,
        #[arg(long)]
        delay_ms: u64,
        #[arg(long)]
        secs: u64,
    },
    /// Send COUNT UDP datagrams of SIZE bytes to CONNECT, one every
    /// INTERVAL_US microseconds, each starting with its sequence (u32, big
    /// endian) and the run id.
    SeqSend {
        #[arg(long)]
        connect: SocketAddr,
        #[arg(long)]
        count: u32,
        #[arg(long, default_value_t = 1000)]
        interval_us: u64,
        #[arg(long, default_value_t = 64)]
        size: usize,
        #[arg(long)]
        run: u32,
    },
    /// Receive the datagrams of `seq-send` run RUN on LISTEN until COUNT
    /// arrived or SECS passed; create READY once bound. Prints how many
    /// arrived, how many below the highest sequence so far, and duplicates.
    SeqRecv {
        #[arg(long)]
        listen: SocketAddr,
        #[arg(long)]
        count: u32,
        #[arg(long)]
        run: u32,
        #[arg(long)]
        secs: u64,
        #[arg(long)]
        ready: std::path::PathBuf,
    },
    /// Bind UDP and TCP on ADDR, create the file READY, then count UDP
    /// datagrams and accepted TCP connections until SECS have passed.
    Listen {
        #[arg(long)]
        addr: SocketAddr,
        #[arg(long)]
        ready: std::path::PathBuf,
        #[arg(long)]
        secs: u64,
    },
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::StreamRecv { listen, seed } => stream_recv(listen, seed),
        Command::StreamSend {
            connect,
            seed,
            bytes,
        } => stream_send(connect, seed, bytes),
        Command::Capture {
            src,
            dport,
            min_len,
            timeout_secs,
        } => capture(src, dport, min_len, Duration::from_secs(timeout_secs)),
        Command::Record {
            src,
            dport,
            min_len,
            count,
            seconds,
            out,
        } => record(
            src,
            dport,
            min_len,
            count,
            Duration::from_secs(seconds),
            &out,
        ),
        Command::SendRaw { hex } => send_raw(&hex),
        Command::SendRawFile { file } => send_raw_file(&file),
        Command::Listen { addr, ready, secs } => listen(addr, &ready, Duration::from_secs(secs)),
        Command::UdpRecv {
            bind,
            join,
            interface,
            count,
            secs,
            ready,
        } => udp_recv(
            bind,
            join,
            interface.as_deref(),
            count,
            Duration::from_secs(secs),
            &ready,
        ),
        Command::UdpSend {
            to,
            interface,
            count,
            size,
            gap_ms,
        } => udp_send(
            to,
            interface.as_deref(),
            count,
            size,
            Duration::from_millis(gap_ms),
        ),
        Command::Delay {
            src,
            dport,
            delay_ms,
            secs,
        } => delay(
            src,
            dport,
            Duration::from_millis(delay_ms),
            Duration::from_secs(secs),
        ),
        Command::SeqSend {
            connect,
            count,
            interval_us,
            size,
            run,
        } => seq_send(
            connect,
            count,
            Duration::from_micros(interval_us),
            size,
            run,
        ),
        Command::SeqRecv {
            listen,
            count,
            run,
            secs,
            ready,
        } => seq_recv(listen, count, run, Duration::from_secs(secs), &ready),
    };
    match result {
        Ok(line) => println!("{line}"),
        Err(e) => {
            eprintln!("von-e2e-tool: {e}");
            std::process::exit(1);
        }
    }
}

type Result<T> = std::result::Result<T, String>;

fn stream_recv(listen: SocketAddr, seed: u64) -> Result<String> {
    let listener = TcpListener::bind(listen).map_err(|e| format!("bind {listen}: {e}"))?;
    let (mut conn, peer) = listener.accept().map_err(|e| format!("accept: {e}"))?;
    let started = Instant::now();
    let mut verifier = Verifier::new(seed);
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = conn
            .read(&mut buf)
            .map_err(|e| format!("read from {peer}: {e}"))?;
        if n == 0 {
            break;
        }
        verifier.update(&buf[..n]);
    }
    let seconds = started.elapsed().as_secs_f64();
    let v = verifier.finish();
    Ok(serde_json::json!({
        "received": v.received,
        "first_mismatch": v.first_mismatch,
        "sha256": v.sha256,
        "seconds": seconds,
    })
    .to_string())
}

fn stream_send(connect: SocketAddr, seed: u64, bytes: u64) -> Result<String> {
    // The receiver may not be listening yet: retry for a while.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut conn = loop {
        match TcpStream::connect_timeout(&connect, Duration::from_secs(5)) {
            Ok(c) => break c,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => return Err(format!("connect {connect}: {e}")),
        }
    };
    let started = Instant::now();
    let mut generator = StreamGen::new(seed);
    let mut buf = vec![0u8; 1 << 16];
    let mut left = bytes;
    while left > 0 {
        let n = usize::try_from(left.min(buf.len() as u64)).map_err(|e| e.to_string())?;
        generator.fill(&mut buf[..n]);
        conn.write_all(&buf[..n])
            .map_err(|e| format!("write to {connect} after {} bytes: {e}", bytes - left))?;
        left -= n as u64;
    }
    conn.shutdown(std::net::Shutdown::Write)
        .map_err(|e| format!("shutdown: {e}"))?;
    // Wait for the receiver to close: then every byte has been read.
    let mut rest = Vec::new();
    conn.read_to_end(&mut rest)
        .map_err(|e| format!("waiting for close: {e}"))?;
    Ok(
        serde_json::json!({ "sent": bytes, "seconds": started.elapsed().as_secs_f64() })
            .to_string(),
    )
}

fn capture(src: Ipv4Addr, dport: u16, min_len: usize, timeout: Duration) -> Result<String> {
    const ETH_P_IP: u16 = 0x0800;
    let proto = Protocol::from(i32::from(ETH_P_IP.to_be()));
    let sock = Socket::new(Domain::PACKET, Type::DGRAM, Some(proto))
        .map_err(|e| format!("AF_PACKET socket: {e}"))?;
    let deadline = Instant::now() + timeout;
    let mut buf = vec![0u8; 65_536];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!(
                "no UDP datagram from {src} to port {dport} of at least {min_len} bytes in {timeout:?}"
            ));
        }
        sock.set_read_timeout(Some(left))
            .map_err(|e| e.to_string())?;
        let n = match (&sock).read(&mut buf) {
            Ok(n) => n,
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                continue;
            }
            Err(e) => return Err(format!("read AF_PACKET: {e}")),
        };
        if let Some(payload_len) = udp_match(&buf[..n], src, dport) {
            if payload_len >= min_len {
                return Ok(serde_json::json!({ "packet": hex::encode(&buf[..n]) }).to_string());
            }
        }
    }
}

fn record(
    src: Option<Ipv4Addr>,
    dport: u16,
    min_len: usize,
    count: u64,
    span: Duration,
    out: &std::path::Path,
) -> Result<String> {
    const ETH_P_IP: u16 = 0x0800;
    let proto = Protocol::from(i32::from(ETH_P_IP.to_be()));
    let sock = Socket::new(Domain::PACKET, Type::DGRAM, Some(proto))
        .map_err(|e| format!("AF_PACKET socket: {e}"))?;
    let mut file = std::fs::File::create(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let deadline = Instant::now() + span;
    let mut buf = vec![0u8; 65_536];
    let mut seen = 0u64;
    while seen < count {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        sock.set_read_timeout(Some(left.min(Duration::from_millis(200))))
            .map_err(|e| e.to_string())?;
        let n = match (&sock).read(&mut buf) {
            Ok(n) => n,
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                continue;
            }
            Err(e) => return Err(format!("read AF_PACKET: {e}")),
        };
        let from = buf
            .get(12..16)
            .map(|s| Ipv4Addr::new(s[0], s[1], s[2], s[3]));
        let Some(from) = from else { continue };
        if let Some(payload_len) = udp_match(&buf[..n], src.unwrap_or(from), dport) {
            if payload_len >= min_len {
                writeln!(file, "{}", hex::encode(&buf[..n])).map_err(|e| e.to_string())?;
                file.flush().map_err(|e| e.to_string())?;
                seen += 1;
            }
        }
    }
    Ok(serde_json::json!({ "recorded": seen }).to_string())
}

fn send_raw_file(path: &std::path::Path) -> Result<String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let sock = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(255)))
        .map_err(|e| format!("raw socket: {e}"))?;
    let mut sent = 0u64;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let pkt = hex::decode(line.trim()).map_err(|e| format!("{}: {e}", path.display()))?;
        let dst: [u8; 4] = pkt
            .get(16..20)
            .and_then(|d| d.try_into().ok())
            .ok_or("a line shorter than an IPv4 header")?;
        let dst = Ipv4Addr::from(dst);
        sock.send_to(&pkt, &SockAddr::from(SocketAddrV4::new(dst, 0)))
            .map_err(|e| format!("send to {dst}: {e}"))?;
        sent += 1;
        // Paced a little, so the receiver's socket buffer never overflows.
        if sent % 50 == 0 {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    Ok(serde_json::json!({ "sent": sent }).to_string())
}

/// The UDP payload length if `pkt` is IPv4/UDP from `src` to port `dport`.
fn udp_match(pkt: &[u8], src: Ipv4Addr, dport: u16) -> Option<usize> {
    let ihl = usize::from(pkt.first()? & 0x0f) * 4;
    if pkt.first()? >> 4 != 4 || ihl < 20 || *pkt.get(9)? != 17 {
        return None;
    }
    let s: [u8; 4] = pkt.get(12..16)?.try_into().ok()?;
    let udp = pkt.get(ihl..ihl + 8)?;
    let total = usize::from(u16::from_be_bytes(pkt.get(2..4)?.try_into().ok()?));
    let port = u16::from_be_bytes([udp[2], udp[3]]);
    (Ipv4Addr::from(s) == src && port == dport && total <= pkt.len())
        .then(|| total.saturating_sub(ihl + 8))
}

fn send_raw(text: &str) -> Result<String> {
    let pkt = hex::decode(text.trim()).map_err(|e| format!("--hex: {e}"))?;
    let dst: [u8; 4] = pkt
        .get(16..20)
        .and_then(|d| d.try_into().ok())
        .ok_or("--hex: shorter than an IPv4 header")?;
    let dst = Ipv4Addr::from(dst);
    // IPPROTO_RAW implies IP_HDRINCL: the packet goes out as given.
    let sock = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(255)))
        .map_err(|e| format!("raw socket: {e}"))?;
    let sent = sock
        .send_to(&pkt, &SockAddr::from(SocketAddrV4::new(dst, 0)))
        .map_err(|e| format!("send to {dst}: {e}"))?;
    Ok(serde_json::json!({ "sent": sent, "dst": dst.to_string() }).to_string())
}

fn listen(addr: SocketAddr, ready: &std::path::Path, for_how_long: Duration) -> Result<String> {
    let udp = std::net::UdpSocket::bind(addr).map_err(|e| format!("bind UDP {addr}: {e}"))?;
    let tcp = TcpListener::bind(addr).map_err(|e| format!("bind TCP {addr}: {e}"))?;
    udp.set_nonblocking(true).map_err(|e| e.to_string())?;
    tcp.set_nonblocking(true).map_err(|e| e.to_string())?;
    std::fs::write(ready, b"listening\n").map_err(|e| format!("{}: {e}", ready.display()))?;
    let deadline = Instant::now() + for_how_long;
    let (mut datagrams, mut connections) = (0u64, 0u64);
    let mut buf = [0u8; 2048];
    while Instant::now() < deadline {
        let mut idle = true;
        if udp.recv_from(&mut buf).is_ok() {
            datagrams += 1;
            idle = false;
        }
        if tcp.accept().is_ok() {
            connections += 1;
            idle = false;
        }
        if idle {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    Ok(serde_json::json!({ "udp": datagrams, "tcp": connections }).to_string())
}

/// The interface index of `name` in this namespace (`ip netns exec`
/// mounts the namespace's own /sys).
fn ifindex(name: &str) -> Result<u32> {
    let path = format!("/sys/class/net/{name}/ifindex");
    std::fs::read_to_string(&path)
        .map_err(|e| format!("{path}: {e}"))?
        .trim()
        .parse()
        .map_err(|e| format!("{path}: {e}"))
}

/// Datagram `n` of `size` bytes: its number, then a pattern derived from it.
fn datagram(n: u64, size: usize) -> Vec<u8> {
    let mut d: Vec<u8> = (0..size.max(8))
        .map(|i| (n as usize).wrapping_mul(31).wrapping_add(i) as u8)
        .collect();
    d[..8].copy_from_slice(&n.to_be_bytes());
    d
}

fn udp_send(
    to: SocketAddr,
    interface: Option<&str>,
    count: u64,
    size: usize,
    gap: Duration,
) -> Result<String> {
    let mut to = to;
    let any: SocketAddr = if to.is_ipv4() {
        "0.0.0.0:0".parse().unwrap_or_else(|_| unreachable!())
    } else {
        "[::]:0".parse().unwrap_or_else(|_| unreachable!())
    };
    let sock = UdpSocket::bind(any).map_err(|e| format!("bind: {e}"))?;
    if let (Some(name), SocketAddr::V6(v6)) = (interface, &mut to) {
        let index = ifindex(name)?;
        v6.set_scope_id(index);
        socket2::SockRef::from(&sock)
            .set_multicast_if_v6(index)
            .map_err(|e| format!("IPV6_MULTICAST_IF {name}: {e}"))?;
    }
    for n in 0..count {
        sock.send_to(&datagram(n, size), to)
            .map_err(|e| format!("send to {to}: {e}"))?;
        std::thread::sleep(gap);
    }
    Ok(serde_json::json!({ "sent": count, "to": to.to_string() }).to_string())
}

fn udp_recv(
    bind: SocketAddr,
    join: Option<Ipv6Addr>,
    interface: Option<&str>,
    count: u64,
    for_how_long: Duration,
    ready: &std::path::Path,
) -> Result<String> {
    let sock = UdpSocket::bind(bind).map_err(|e| format!("bind UDP {bind}: {e}"))?;
    if let Some(group) = join {
        let index = interface.map(ifindex).transpose()?.unwrap_or(0);
        sock.join_multicast_v6(&group, index)
            .map_err(|e| format!("join {group} on {interface:?}: {e}"))?;
    }
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .map_err(|e| e.to_string())?;
    std::fs::write(ready, b"listening\n").map_err(|e| format!("{}: {e}", ready.display()))?;
    let deadline = Instant::now() + for_how_long;
    let (mut intact, mut damaged, mut duplicates) = (0u64, 0u64, 0u64);
    let mut seen = std::collections::BTreeSet::new();
    let mut sources = std::collections::BTreeSet::new();
    let mut buf = vec![0u8; 65_536];
    while intact < count && Instant::now() < deadline {
        let Ok((len, from)) = sock.recv_from(&mut buf) else {
            continue;
        };
        sources.insert(from.ip().to_string());
        let got = &buf[..len];
        let n = got
            .get(..8)
            .map(|b| u64::from_be_bytes(b.try_into().unwrap_or_default()));
        match n {
            Some(n) if got == datagram(n, len).as_slice() => {
                if seen.insert(n) {
                    intact += 1;
                } else {
                    duplicates += 1;
                }
            }
            _ => damaged += 1,
        }
    }
    Ok(serde_json::json!({
        "received": intact,
        "damaged": damaged,
        "duplicates": duplicates,
        "sources": sources.into_iter().collect::<Vec<_>>(),
    })
    .to_string())
}

/// TTL of the copies `delay` resends: the originals have the sender's (64).
const RESENT_TTL: u8 = 1;

fn delay(src: Ipv4Addr, dport: u16, delay: Duration, span: Duration) -> Result<String> {
    const ETH_P_IP: u16 = 0x0800;
    let proto = Protocol::from(i32::from(ETH_P_IP.to_be()));
    let tap = Socket::new(Domain::PACKET, Type::DGRAM, Some(proto))
        .map_err(|e| format!("AF_PACKET socket: {e}"))?;
    let raw = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(255)))
        .map_err(|e| format!("raw socket: {e}"))?;
    let deadline = Instant::now() + span;
    let mut queue: std::collections::VecDeque<(Instant, Vec<u8>)> = Default::default();
    let mut buf = vec![0u8; 65_536];
    let (mut relayed, mut errors) = (0u64, 0u64);
    while Instant::now() < deadline {
        // Send what is due, in arrival order.
        while queue.front().is_some_and(|(due, _)| *due <= Instant::now()) {
            let Some((_, pkt)) = queue.pop_front() else {
                break;
            };
            let dst = Ipv4Addr::new(pkt[16], pkt[17], pkt[18], pkt[19]);
            match raw.send_to(&pkt, &SockAddr::from(SocketAddrV4::new(dst, 0))) {
                Ok(_) => relayed += 1,
                Err(_) => errors += 1,
            }
        }
        let wait = queue.front().map_or(Duration::from_millis(50), |(due, _)| {
            due.saturating_duration_since(Instant::now())
        });
        tap.set_read_timeout(Some(wait.max(Duration::from_micros(100))))
            .map_err(|e| e.to_string())?;
        let n = match (&tap).read(&mut buf) {
            Ok(n) => n,
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                continue;
            }
            Err(e) => return Err(format!("read AF_PACKET: {e}")),
        };
        let pkt = &buf[..n];
        if pkt.get(8) == Some(&RESENT_TTL) || udp_match(pkt, src, dport).is_none() {
            continue;
        }
        let mut copy = pkt.to_vec();
        copy[8] = RESENT_TTL;
        let ihl = usize::from(copy[0] & 0x0f) * 4;
        copy[ihl + 6] = 0;
        copy[ihl + 7] = 0;
        queue.push_back((Instant::now() + delay, copy));
    }
    Ok(serde_json::json!({ "relayed": relayed, "errors": errors }).to_string())
}

fn seq_send(
    connect: SocketAddr,
    count: u32,
    interval: Duration,
    size: usize,
    run: u32,
) -> Result<String> {
    let sock = std::net::UdpSocket::bind("0.0.0.0:0").map_err(|e| format!("bind: {e}"))?;
    let mut buf = vec![0u8; size.max(8)];
    buf[4..8].copy_from_slice(&run.to_be_bytes());
    let started = Instant::now();
    let mut errors = 0u64;
    for i in 0..count {
        // Paced against the start, so a late wake-up does not slow the run.
        let due = started + interval * i;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        buf[..4].copy_from_slice(&i.to_be_bytes());
        if sock.send_to(&buf, connect).is_err() {
            errors += 1;
        }
    }
    Ok(serde_json::json!({
        "sent": count, "errors": errors, "seconds": started.elapsed().as_secs_f64()
    })
    .to_string())
}

fn seq_recv(
    listen: SocketAddr,
    count: u32,
    run: u32,
    span: Duration,
    ready: &std::path::Path,
) -> Result<String> {
    let sock = std::net::UdpSocket::bind(listen).map_err(|e| format!("bind {listen}: {e}"))?;
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .map_err(|e| e.to_string())?;
    std::fs::write(ready, b"listening\n").map_err(|e| format!("{}: {e}", ready.display()))?;
    let deadline = Instant::now() + span;
    let mut seen = vec![false; count as usize];
    let (mut received, mut out_of_order, mut duplicates) = (0u64, 0u64, 0u64);
    let mut high: Option<u32> = None;
    let mut buf = [0u8; 65_536];
    while received < u64::from(count) && Instant::now() < deadline {
        let Ok(n) = sock.recv(&mut buf) else { continue };
        if n < 8 || buf[4..8] != run.to_be_bytes() {
            continue;
        }
        let i = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
        let Some(slot) = seen.get_mut(i as usize) else {
            continue;
        };
        if std::mem::replace(slot, true) {
            duplicates += 1;
            continue;
        }
        received += 1;
        if high.is_some_and(|h| i < h) {
            out_of_order += 1;
        }
        high = high.max(Some(i));
    }
    Ok(serde_json::json!({
        "received": received, "out_of_order": out_of_order, "duplicates": duplicates
    })
    .to_string())
}
