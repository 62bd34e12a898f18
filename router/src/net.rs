//! Sockets: the router's mutual-TLS endpoint, the service's TLS client of
//! routers, and the service's local Unix socket for `von reserve`.
//! Blocking std I/O with a thread per connection: a few requests a minute.
//!
//! Router control is one request per TLS 1.3 connection, a JSON line each
//! way; who may connect is [`crate::auth`]'s business (certificates, roles,
//! names, revocation).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rustls::pki_types::ServerName;

use crate::coordinator::Transport;
use crate::error::{Error, Result};
use crate::proto::{self, MAX_LINE, Request, Response};
use crate::service::{ServiceRequest, ServiceResponse};

/// How long one exchange with a router may take.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(3);
/// How often accept loops look at their stop flag.
const POLL: Duration = Duration::from_millis(50);

/// The service's view of its routers: name → address and the TLS client
/// config that accepts only that router's certificate.
#[derive(Debug)]
pub struct TcpTransport {
    routers: BTreeMap<String, (SocketAddr, Arc<rustls::ClientConfig>)>,
}

impl TcpTransport {
    pub fn new(routers: BTreeMap<String, (SocketAddr, Arc<rustls::ClientConfig>)>) -> Self {
        Self { routers }
    }
}

impl Transport for TcpTransport {
    fn call(&mut self, router: &str, req: &Request) -> Result<Response> {
        let (addr, tls) = self.routers.get(router).ok_or_else(|| Error::Refused {
            router: router.to_owned(),
            reason: format!(
                "no such router in the service's configuration (it knows: {})",
                self.routers.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        })?;
        call(router, *addr, tls, req)
    }
}

/// One request over mutual TLS to the router at `addr`.
pub fn call(
    router: &str,
    addr: SocketAddr,
    tls: &Arc<rustls::ClientConfig>,
    req: &Request,
) -> Result<Response> {
    let fail = |reason: String| Error::Unreachable {
        router: router.to_owned(),
        addr: addr.to_string(),
        reason,
    };
    let stream =
        TcpStream::connect_timeout(&addr, CALL_TIMEOUT).map_err(|e| fail(e.to_string()))?;
    stream
        .set_read_timeout(Some(CALL_TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(CALL_TIMEOUT)))
        .map_err(|e| fail(e.to_string()))?;
    // The name only fills SNI; the verifier checks role and router name.
    let sni = ServerName::try_from("router.von").expect("a valid DNS name");
    let conn = rustls::ClientConnection::new(Arc::clone(tls), sni)
        .map_err(|e| fail(format!("TLS: {e}")))?;
    let mut tls = rustls::StreamOwned::new(conn, stream);
    tls.write_all(proto::request_line(req).as_bytes())
        .and_then(|()| tls.flush())
        .map_err(|e| fail(format!("TLS: {e}")))?;
    let mut reader = BufReader::new(tls);
    let line = read_line(&mut reader).map_err(|e| fail(format!("TLS: {e}")))?;
    proto::read_response(&line).map_err(|e| fail(e.to_string()))
}

/// Serves routers' requests on `listener` until `stop`: each connection's
/// TLS handshake is checked by `tls` (a `reserve` certificate), its request
/// answered by `handle`.
pub fn serve_router(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    stop: Arc<AtomicBool>,
    handle: Arc<dyn Fn(Request) -> Response + Send + Sync>,
) -> Result<()> {
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    listener
        .set_nonblocking(true)
        .map_err(|e| Error::io("set non-blocking", addr.clone(), e))?;
    while !stop.load(Ordering::Relaxed) {
        let (stream, peer) = match listener.accept() {
            Ok(s) => s,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(POLL);
                continue;
            }
            Err(e) => return Err(Error::io("accept on", addr, e)),
        };
        let (tls, handle) = (Arc::clone(&tls), Arc::clone(&handle));
        std::thread::spawn(move || {
            if let Err(e) = exchange(stream, tls, handle.as_ref()) {
                tracing::warn!(%peer, error = %e, "control request refused");
            }
        });
    }
    Ok(())
}

fn exchange(
    stream: TcpStream,
    tls: Arc<rustls::ServerConfig>,
    handle: &(dyn Fn(Request) -> Response + Send + Sync),
) -> Result<()> {
    let io = |e: std::io::Error| Error::Protocol(format!("TLS: {e}"));
    stream.set_nonblocking(false).map_err(io)?;
    stream.set_read_timeout(Some(CALL_TIMEOUT)).map_err(io)?;
    stream.set_write_timeout(Some(CALL_TIMEOUT)).map_err(io)?;
    let conn = rustls::ServerConnection::new(tls).map_err(|e| Error::Protocol(e.to_string()))?;
    let mut reader = BufReader::new(rustls::StreamOwned::new(conn, stream));
    // The handshake (and the client's certificate check) runs in this read.
    let req = proto::read_request(&read_line(&mut reader).map_err(io)?)?;
    let resp = handle(req);
    let tls = reader.get_mut();
    tls.write_all(proto::response_line(&resp).as_bytes())
        .and_then(|()| tls.flush())
        .map_err(io)?;
    tls.conn.send_close_notify();
    let _ = tls.flush();
    Ok(())
}

/// Asks the service listening on `socket`.
pub fn service_call(socket: &Path, req: &ServiceRequest) -> Result<ServiceResponse> {
    let shown = socket.display().to_string();
    let stream = UnixStream::connect(socket).map_err(|e| {
        Error::io(
            "connect to the reservation service at (is `von reserve serve` running?)",
            shown.clone(),
            e,
        )
    })?;
    // Reserving waits for every router of the path, each up to CALL_TIMEOUT.
    stream
        .set_read_timeout(Some(CALL_TIMEOUT * 40))
        .map_err(|e| Error::io("configure", shown.clone(), e))?;
    let mut reader = BufReader::new(
        stream
            .try_clone()
            .map_err(|e| Error::io("use", shown.clone(), e))?,
    );
    let mut writer = stream;
    let mut line = serde_json::to_string(req).map_err(|e| Error::Protocol(e.to_string()))?;
    line.push('\n');
    writer
        .write_all(line.as_bytes())
        .map_err(|e| Error::io("write to", shown.clone(), e))?;
    let answer = read_line(&mut reader).map_err(|e| Error::io("read from", shown, e))?;
    serde_json::from_str(&answer).map_err(|e| Error::Protocol(format!("service answered: {e}")))
}

/// Serves `von reserve` clients on `listener` until `stop`.
pub fn serve_service(
    listener: UnixListener,
    stop: Arc<AtomicBool>,
    handle: Arc<dyn Fn(ServiceRequest) -> ServiceResponse + Send + Sync>,
) -> Result<()> {
    listener
        .set_nonblocking(true)
        .map_err(|e| Error::io("set non-blocking", "service socket", e))?;
    while !stop.load(Ordering::Relaxed) {
        let stream = match listener.accept() {
            Ok((s, _)) => s,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(POLL);
                continue;
            }
            Err(e) => return Err(Error::io("accept on", "service socket", e)),
        };
        let handle = Arc::clone(&handle);
        std::thread::spawn(move || {
            let answer = (|| -> std::io::Result<()> {
                stream.set_nonblocking(false)?;
                let mut reader = BufReader::new(stream.try_clone()?);
                let mut writer = stream;
                let line = read_line(&mut reader)?;
                let resp = match serde_json::from_str::<ServiceRequest>(&line) {
                    Ok(req) => handle(req),
                    Err(e) => ServiceResponse::Error {
                        message: format!("bad request: {e}"),
                    },
                };
                // Our response types always serialize.
                let mut out = serde_json::to_string(&resp).expect("responses serialize");
                out.push('\n');
                writer.write_all(out.as_bytes())
            })();
            if let Err(e) = answer {
                tracing::warn!(error = %e, "reserve client");
            }
        });
    }
    Ok(())
}

fn read_line<R: Read>(reader: &mut BufReader<R>) -> std::io::Result<String> {
    let mut line = String::new();
    let n = reader.by_ref().take(MAX_LINE as u64).read_line(&mut line)?;
    if n == 0 || !line.ends_with('\n') {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the peer closed the connection before a whole line",
        ));
    }
    Ok(line)
}
