//! The router's Prometheus endpoint (`metrics` in router.toml): per ON class
//! and for the default class, bytes, packets and drops as `tc -s class show`
//! counts them, and the rate reserved on each link.
//!
//! Every scrape renders the same [`RouterStatus`] that `von router status`
//! prints (the agent's `metrics.rs` does the same with its status report), so
//! the two never disagree. Labels: `router`, `link` (the egress interface)
//! and `on_id` (`default` for the class of everything unreserved).
//!
//! Just enough HTTP/1.1 for a scraper: one `GET /metrics` per connection,
//! then close. Read-only numbers without authentication: keep it on loopback
//! or a management address.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::error::{Error, Result};
use crate::proto::RouterStatus;
use crate::tc::ClassCounters;

/// How long a scraper may take to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest request head read; a scraper's is a few hundred bytes.
const MAX_REQUEST: usize = 8 * 1024;
/// The OpenMetrics text content type, as `prometheus-client` encodes.
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

type Labels = Vec<(&'static str, String)>;

/// The status as OpenMetrics text, metric names prefixed `von_router_`.
pub fn render(status: &RouterStatus) -> String {
    let mut r = Registry::with_prefix("von_router");
    let counter = |r: &mut Registry, name: &str, help: &str| {
        let f = Family::<Labels, Counter>::default();
        r.register(name, help, f.clone());
        f
    };
    let bytes = counter(&mut r, "bytes", "Bytes sent by the class (tc -s)");
    let packets = counter(&mut r, "packets", "Packets sent by the class (tc -s)");
    let drops = counter(&mut r, "drops", "Packets the class dropped (tc -s)");
    let rate = Family::<Labels, Gauge>::default();
    r.register(
        "reserved_rate_bits_per_second",
        "Wire rate reserved for the ON on the link (rate = ceil)",
        rate.clone(),
    );
    let booked = Family::<Labels, Gauge>::default();
    r.register(
        "booked_bits_per_second",
        "Sum of the ON rates committed on the link",
        booked.clone(),
    );
    let capacity = Family::<Labels, Gauge>::default();
    r.register(
        "capacity_bits_per_second",
        "The link's configured capacity",
        capacity.clone(),
    );

    let labels = |link: &str, on_id: String| -> Labels {
        vec![
            ("router", status.router.clone()),
            ("link", link.to_owned()),
            ("on_id", on_id),
        ]
    };
    let count = |l: &Labels, c: &ClassCounters| {
        bytes.get_or_create(l).inc_by(c.bytes);
        packets.get_or_create(l).inc_by(c.packets);
        drops.get_or_create(l).inc_by(c.drops);
    };
    let gauge = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    for link in &status.links {
        let dev = &link.budget.dev;
        count(&labels(dev, "default".into()), &link.default);
        let per_link: Labels = vec![("router", status.router.clone()), ("link", dev.clone())];
        booked.get_or_create(&per_link).set(gauge(link.booked_bps));
        capacity
            .get_or_create(&per_link)
            .set(gauge(link.budget.capacity_bps));
    }
    for res in &status.reservations {
        for class in &res.classes {
            let l = labels(&class.dev, res.on_id.to_string());
            count(&l, &class.counters);
            rate.get_or_create(&l).set(gauge(class.rate_bps));
        }
    }
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = encode(&mut out, &r);
    out
}

/// Binds the endpoint, warning when `addr` is reachable from other hosts.
pub fn bind(addr: SocketAddr) -> Result<TcpListener> {
    if !addr.ip().is_loopback() {
        tracing::warn!(
            %addr,
            "router metrics endpoint is not on loopback: anyone who can reach it reads \
             every counter without authentication"
        );
    }
    let l = TcpListener::bind(addr).map_err(|e| {
        Error::io(
            "metrics endpoint (free the port, set another `metrics` or remove it)",
            addr.to_string(),
            e,
        )
    })?;
    // Non-blocking accept so the loop sees `stop`.
    l.set_nonblocking(true)
        .map_err(|e| Error::io("metrics endpoint", addr.to_string(), e))?;
    Ok(l)
}

/// Answers scrapes until `stop`, rendering `status()` for each.
pub fn serve(
    listener: TcpListener,
    stop: Arc<AtomicBool>,
    status: impl Fn() -> RouterStatus + Send + Sync + 'static,
) {
    let status = Arc::new(status);
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                let status = Arc::clone(&status);
                std::thread::spawn(move || {
                    let _ = answer(stream, &*status);
                });
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

fn answer(mut stream: TcpStream, status: &dyn Fn() -> RouterStatus) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(REQUEST_TIMEOUT))?;
    let head = read_head(&mut stream)?;
    let mut words = head.split_whitespace();
    let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let (code, content_type, body) = match (method, path) {
        ("GET", "/metrics") => ("200 OK", CONTENT_TYPE, render(&status())),
        ("GET", _) => (
            "404 Not Found",
            "text/plain",
            "von router serves its metrics at /metrics\n".to_owned(),
        ),
        _ => (
            "405 Method Not Allowed",
            "text/plain",
            "only GET is served\n".to_owned(),
        ),
    };
    let reply = format!(
        "HTTP/1.1 {code}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(reply.as_bytes())?;
    stream.shutdown(std::net::Shutdown::Write)
}

/// Reads up to the blank line ending the request head.
fn read_head(stream: &mut TcpStream) -> io::Result<String> {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 512];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && !buf.windows(2).any(|w| w == b"\n\n") {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > MAX_REQUEST {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "request too long",
            ));
        }
    }
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admission::LinkBudget;
    use crate::proto::{ClassStatus, LinkStatus, ReservationStatus};

    fn status() -> RouterStatus {
        let c = |bytes, packets, drops| ClassCounters {
            bytes,
            packets,
            drops,
        };
        RouterStatus {
            router: "r1".into(),
            links: vec![LinkStatus {
                budget: LinkBudget {
                    dev: "sha".into(),
                    capacity_bps: 100_000_000,
                    on_share_bps: 80_000_000,
                },
                booked_bps: 21_152_000,
                default: c(9_000, 6, 3),
            }],
            reservations: vec![ReservationStatus {
                on_id: 7,
                name: "grid".into(),
                lease_left_ms: 1_000,
                classes: vec![ClassStatus {
                    dev: "sha".into(),
                    classid: "1:a".into(),
                    rate_bps: 21_152_000,
                    counters: c(151_400, 100, 2),
                }],
            }],
            holds: 0,
        }
    }

    #[test]
    fn every_class_is_labelled_by_router_link_and_on_id() {
        let text = render(&status());
        for line in [
            r#"von_router_bytes_total{router="r1",link="sha",on_id="7"} 151400"#,
            r#"von_router_packets_total{router="r1",link="sha",on_id="7"} 100"#,
            r#"von_router_drops_total{router="r1",link="sha",on_id="7"} 2"#,
            r#"von_router_bytes_total{router="r1",link="sha",on_id="default"} 9000"#,
            r#"von_router_drops_total{router="r1",link="sha",on_id="default"} 3"#,
            r#"von_router_reserved_rate_bits_per_second{router="r1",link="sha",on_id="7"} 21152000"#,
            r#"von_router_booked_bits_per_second{router="r1",link="sha"} 21152000"#,
            r#"von_router_capacity_bits_per_second{router="r1",link="sha"} 100000000"#,
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn a_scrape_over_tcp_gets_the_text_and_other_paths_404() {
        let listener = bind("127.0.0.1:0".parse().expect("addr")).expect("bind");
        let addr = listener.local_addr().expect("addr");
        let stop = Arc::new(AtomicBool::new(false));
        let server = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || serve(listener, stop, status))
        };
        let get = |path: &str| {
            let mut s = TcpStream::connect(addr).expect("connect");
            write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").expect("send");
            let mut out = String::new();
            s.read_to_string(&mut out).expect("read");
            out
        };
        let ok = get("/metrics");
        assert!(ok.starts_with("HTTP/1.1 200 OK"), "{ok}");
        assert!(ok.contains(r#"on_id="7"} 151400"#), "{ok}");
        assert!(get("/").starts_with("HTTP/1.1 404"));
        stop.store(true, Ordering::Relaxed);
        server.join().expect("server thread");
    }
}
