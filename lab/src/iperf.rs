//! iperf3 between two namespaces, read from its `--json` report (the
//! client's, with the server's own report inside via `--get-server-output`).

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::error::{Error, Result};
use crate::netns::Netns;
use crate::process::{self, Background};

/// The iperf3 control port inside the test namespaces.
pub const PORT: u16 = 5201;

/// What one iperf3 run measured, receiver side unless named otherwise.
#[derive(Debug, Clone)]
pub struct IperfReport {
    /// Bytes the client wrote.
    pub sent_bytes: u64,
    /// Bytes the server received.
    pub received_bytes: u64,
    /// Seconds the receiver measured over.
    pub seconds: f64,
    /// Datagrams sent (UDP only).
    pub packets: Option<u64>,
    /// Datagrams the server never saw (UDP only).
    pub lost_packets: Option<u64>,
    /// Receiver bits per second in each interval (`-O` intervals excluded).
    pub server_intervals_bps: Vec<f64>,
}

impl IperfReport {
    /// Receiver-side goodput in bits per second.
    pub fn received_bps(&self) -> f64 {
        self.received_bytes as f64 * 8.0 / self.seconds
    }

    /// Parses the client's `--json --get-server-output` report.
    pub fn parse(text: &str) -> Result<Self> {
        let err = |reason: String| Error::Parse {
            what: "iperf3 --json",
            reason,
            text: text.chars().take(4000).collect(),
        };
        let json: Value = serde_json::from_str(text).map_err(|e| err(e.to_string()))?;
        if let Some(e) = json.get("error").and_then(Value::as_str) {
            return Err(err(format!("iperf3 reported: {e}")));
        }
        let end = &json["end"];
        let num = |v: &Value, what: &str| v.as_u64().ok_or_else(|| err(format!("no {what}")));
        let sent_bytes = num(&end["sum_sent"]["bytes"], "end.sum_sent.bytes")?;
        let received = &end["sum_received"];
        let seconds = received["seconds"]
            .as_f64()
            .filter(|s| *s > 0.0)
            .ok_or_else(|| err("no end.sum_received.seconds".into()))?;
        let udp = json["start"]["test_start"]["protocol"] == "UDP";
        let (received_bytes, packets, lost_packets) = if udp {
            // For UDP the receiver's byte count is derived from what arrived.
            let packets = num(&received["packets"], "end.sum_received.packets")?;
            let lost = num(&received["lost_packets"], "end.sum_received.lost_packets")?;
            let len = num(
                &json["start"]["test_start"]["blksize"],
                "start.test_start.blksize",
            )?;
            (
                packets.saturating_sub(lost) * len,
                Some(packets),
                Some(lost),
            )
        } else {
            (
                num(&received["bytes"], "end.sum_received.bytes")?,
                None,
                None,
            )
        };
        let server_intervals_bps = json["server_output_json"]["intervals"]
            .as_array()
            .map(|iv| {
                iv.iter()
                    .filter(|i| i["sum"]["omitted"] != true)
                    .filter_map(|i| i["sum"]["bits_per_second"].as_f64())
                    .collect()
            })
            .unwrap_or_default();
        Ok(Self {
            sent_bytes,
            received_bytes,
            seconds,
            packets,
            lost_packets,
            server_intervals_bps,
        })
    }
}

/// Runs an iperf3 server on `server_addr` in `server` and a client in
/// `client` with `args` (e.g. `["-u", "-b", "60M", "-t", "5"]`); returns the
/// parsed report. The server serves exactly one test.
pub fn iperf3(
    server: &Netns,
    server_addr: Ipv4Addr,
    client: &Netns,
    args: &[&str],
    run_for: Duration,
) -> Result<IperfReport> {
    iperf3_on_port(server, server_addr, PORT, client, args, run_for)
}

/// [`iperf3`] with another port for both the control connection and the
/// data (e.g. the underlay port, to exercise rules that match it).
pub fn iperf3_on_port(
    server: &Netns,
    server_addr: Ipv4Addr,
    port: u16,
    client: &Netns,
    args: &[&str],
    run_for: Duration,
) -> Result<IperfReport> {
    let port = port.to_string();
    let addr = server_addr.to_string();
    let mut srv = server.command("iperf3");
    // `--json` on the server too, or its report comes back as text.
    srv.args(["-s", "-1", "--json", "-B", &addr, "-p", &port]);
    let srv = Background::spawn(&mut srv)?;
    let timeout = run_for * 3 + Duration::from_secs(60);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut cli = client.command("iperf3");
        cli.args(["-c", &addr, "-p", &port, "--json", "--get-server-output"])
            .args(args);
        let out = process::run(&mut cli, timeout)?;
        let refused =
            out.stdout.contains("unable to connect") || out.stdout.contains("Connection refused");
        if refused && Instant::now() < deadline {
            // The server is not listening yet.
            std::thread::sleep(Duration::from_millis(200));
            continue;
        }
        drop(srv);
        return IperfReport::parse(&out.stdout);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_udp() {
        let text = r#"{"start":{"test_start":{"protocol":"UDP","blksize":1200}},
            "intervals":[],
            "end":{"sum_sent":{"bytes":12000000,"seconds":5.0},
                   "sum_received":{"bytes":12000000,"seconds":5.01,"packets":10000,"lost_packets":6600}},
            "server_output_json":{"intervals":[
                {"sum":{"bits_per_second":6.5e6,"omitted":false}},
                {"sum":{"bits_per_second":6.4e6,"omitted":false}}]}}"#;
        let r = IperfReport::parse(text).expect("valid");
        assert_eq!(r.sent_bytes, 12_000_000);
        assert_eq!(r.received_bytes, 3400 * 1200);
        assert_eq!(r.lost_packets, Some(6600));
        assert!((r.received_bps() - 3400.0 * 1200.0 * 8.0 / 5.01).abs() < 1.0);
        assert_eq!(r.server_intervals_bps, vec![6.5e6, 6.4e6]);
    }

    #[test]
    fn parses_tcp_and_skips_omitted() {
        let text = r#"{"start":{"test_start":{"protocol":"TCP","blksize":131072}},
            "end":{"sum_sent":{"bytes":25000000},"sum_received":{"bytes":24900000,"seconds":10.0}},
            "server_output_json":{"intervals":[
                {"sum":{"bits_per_second":1.0,"omitted":true}},
                {"sum":{"bits_per_second":2.0e7,"omitted":false}}]}}"#;
        let r = IperfReport::parse(text).expect("valid");
        assert_eq!(r.received_bytes, 24_900_000);
        assert_eq!(r.packets, None);
        assert_eq!(r.server_intervals_bps, vec![2.0e7]);
    }

    #[test]
    fn reported_error_is_an_error() {
        let err =
            IperfReport::parse(r#"{"start":{},"end":{},"error":"unable to connect to server"}"#)
                .expect_err("error report");
        assert!(err.to_string().contains("unable to connect"), "{err}");
    }
}
