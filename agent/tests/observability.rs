//! Status document and metrics from live pipelines (the in-memory twins):
//! the new fields (peers with per-underlay last-heard, underlay health,
//! lease), the Prometheus text carrying the same values with `von`,
//! `underlay` and `peer` labels, and no key material anywhere.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use von_agent::metrics::render;
use von_agent::status::{
    LinkState, StatusReport, StatusSource, UnderlayState, VonFacts, VonSource,
};
use von_crypto::freshness::MAX_KEEPALIVE_LEN;
use von_packet::SocketCounters;
use von_packet::twin::{self, TwinNet};

const FAST: u64 = 10_000_000_000;

/// Two twin hosts exchanging keepalives for `secs`, underlay A of host 0
/// cut after `cut_after` (if any). Returns the net and the last instant.
fn run(secs: u64, cut_after: Option<u64>) -> (TwinNet, Instant) {
    let mut net = TwinNet::new(2, FAST, 7);
    let t0 = Instant::now();
    let mut now = t0;
    let mut buf = vec![0u8; MAX_KEEPALIVE_LEN];
    while now < t0 + Duration::from_secs(secs) {
        let cut = cut_after.is_some_and(|c| now >= t0 + Duration::from_secs(c));
        for h in 0..2 {
            let mut out = Vec::new();
            while let Some(k) = net.hosts[h].pipeline.outbound.handle_timeout(now, &mut buf) {
                out.push((k.underlay, k.frame.to_vec()));
            }
            for (u, bytes) in out {
                if !(cut && h == 0 && u == twin::A) {
                    net.inject_raw(u, 1 - h, bytes);
                }
            }
        }
        net.step(now);
        for h in &mut net.hosts {
            h.pipeline.inbound.handle_timeout(now);
        }
        now += Duration::from_millis(100);
    }
    (net, now)
}

fn name(n: &str) -> von_packet::UnderlayName {
    n.parse().expect("a valid name")
}

fn source(net: &TwinNet, host: usize, lease: Option<std::time::SystemTime>) -> StatusSource {
    let h = &net.hosts[host];
    let addr: SocketAddr = "127.0.0.1:4789".parse().expect("address");
    StatusSource {
        vons: std::sync::Mutex::new(vec![VonSource {
            facts: VonFacts {
                name: "grid".into(),
                interface: "von-grid".into(),
                mode: "static",
                rate_bps: FAST,
                dscp: 46,
                mtu: 1432,
            },
            snapshot: h.snapshot.clone(),
            counters: h.counters.clone(),
            health: h.pipeline.inbound.health(),
            lease: Arc::new(ArcSwapOption::from_pointee(lease)),
            standing: Arc::default(),
            live: None,
            suspicious: Arc::default(),
        }]),
        underlays: twin::underlay_names(2)
            .map(|_, n| (*n, addr, Arc::new(SocketCounters::default()))),
        guard: Arc::default(),
        alarms: Arc::default(),
        alarm_hook_dropped: Arc::default(),
    }
}

/// The value of the sample `name{labels}` in OpenMetrics text.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().find_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        let (n, rest) = series.split_once('{').unwrap_or((series, "}"));
        let rest = rest.strip_suffix('}')?;
        let mut got: Vec<(&str, &str)> = rest
            .split(',')
            .filter(|p| !p.is_empty())
            .filter_map(|p| p.split_once('='))
            .map(|(k, v)| (k, v.trim_matches('"')))
            .collect();
        got.sort_unstable();
        let mut want = labels.to_vec();
        want.sort_unstable();
        (n == name && got == want).then(|| value.parse().ok())?
    })
}

#[test]
fn status_shows_each_link_and_each_underlay() {
    let (net, _) = run(6, Some(2));
    let report: StatusReport = source(&net, 1, None).report();
    let v = &report.vons[0];
    assert_eq!(v.lease, None, "static mode has no lease");
    assert_eq!(v.peers.len(), 1);
    let p = &v.peers[0];
    assert_eq!((p.name.as_str(), p.id), ("h1", 1));
    let (a, b) = (&p.underlay[&name("a")], &p.underlay[&name("b")]);
    assert_eq!(a.state, LinkState::Down, "{p:?}");
    assert_eq!(b.state, LinkState::Up, "{p:?}");
    assert_eq!(a.downs, 1);
    assert_eq!(a.endpoint, Some(twin::endpoint(0, twin::A)));
    assert_eq!(v.health.on("a").state, UnderlayState::Down);
    assert_eq!(v.health.on("b").state, UnderlayState::Up);
    let hb = v.health.on("b");
    assert_eq!((hb.peers_up, hb.peers_down), (1, 0));
    // The JSON names are the documented ones.
    let json = serde_json::to_value(&report).expect("serializes");
    let peer = &json["vons"][0]["peers"][0];
    assert_eq!(peer["underlay"]["a"]["state"], "down");
    assert_eq!(peer["underlay"]["b"]["state"], "up");
    assert!(peer["underlay"]["b"]["last_heard_ms"].is_u64(), "{peer}");
    assert_eq!(json["vons"][0]["health"]["a"]["state"], "down");
    assert!(json["vons"][0]["lease"].is_null());
    // Round trip: `von status` parses what the agent sends.
    let back: StatusReport = serde_json::from_value(json).expect("parses back");
    assert_eq!(back, report);
}

#[test]
fn a_lease_is_reported_when_the_control_client_sets_one() {
    let (net, _) = run(1, None);
    let expires = std::time::SystemTime::now() + Duration::from_secs(30);
    let report = source(&net, 1, Some(expires)).report();
    let lease = report.vons[0].lease.expect("a lease");
    assert!(
        (28_000..=30_000).contains(&lease.expires_in_ms),
        "{lease:?}"
    );
    let text = render(&report);
    let at = sample(
        &text,
        "von_lease_expiry_timestamp_seconds",
        &[("von", "grid")],
    );
    assert_eq!(at, Some((lease.expires_unix_ms / 1000) as f64));
}

#[test]
fn metrics_carry_the_status_values_with_labels() {
    let (mut net, now) = run(6, Some(2));
    // A is still cut: data arriving on A would (rightly) bring its link up.
    net.faults[twin::A].down = true;
    for i in 0..5 {
        let p = twin::ipv4_packet(twin::address(0), twin::address(1), 40, i);
        net.send(now, 0, &p).expect("sent");
    }
    net.step(now);
    let report = source(&net, 1, None).report();
    let text = render(&report);
    assert!(text.ends_with("# EOF\n"), "OpenMetrics text");
    let c = &report.vons[0].counters;
    let von = [("von", "grid")];
    assert_eq!(
        sample(&text, "von_packets_delivered_total", &von),
        Some(5.0)
    );
    assert_eq!(
        sample(&text, "von_duplicates_discarded_total", &von),
        Some(c.duplicates as f64)
    );
    for (u, uc) in &c.underlay {
        let labels = [("von", "grid"), ("underlay", u.as_str())];
        assert_eq!(
            sample(&text, "von_frames_received_total", &labels),
            Some(uc.rx_frames as f64),
            "{u}"
        );
        assert_eq!(
            sample(&text, "von_keepalives_received_total", &labels),
            Some(uc.rx_keepalives as f64),
            "{u}"
        );
    }
    let drop = |reason| {
        sample(
            &text,
            "von_dropped_total",
            &[("von", "grid"), ("reason", reason)],
        )
    };
    assert_eq!(drop("replays"), Some(0.0));
    assert_eq!(drop("auth_failures"), Some(0.0));
    let link = |u| {
        sample(
            &text,
            "von_link_up",
            &[("von", "grid"), ("peer", "h1"), ("underlay", u)],
        )
    };
    assert_eq!((link("a"), link("b")), (Some(0.0), Some(1.0)));
    assert_eq!(
        sample(
            &text,
            "von_link_downs_total",
            &[("von", "grid"), ("peer", "h1"), ("underlay", "a")]
        ),
        Some(1.0)
    );
    assert_eq!(sample(&text, "von_epoch", &von), Some(1.0));
    assert_eq!(
        sample(
            &text,
            "von_underlay_peers_down",
            &[("von", "grid"), ("underlay", "a")]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            "von_socket_datagrams_received_total",
            &[("underlay", "a")]
        ),
        Some(0.0)
    );
}

#[test]
fn no_key_material_in_status_metrics_or_debug_output() {
    let (net, _) = run(1, None);
    let src = source(&net, 1, None);
    let key_hex = hex_lower(&twin::KEY);
    let report = src.report();
    let outputs = [
        serde_json::to_string(&report).expect("json"),
        render(&report),
        format!("{:?}", net.hosts[1].pipeline),
        format!("{:?}", src),
    ];
    for out in outputs {
        assert!(!out.contains(&key_hex), "key hex leaked");
        assert!(!out.contains("66, 66, 66, 66"), "key bytes leaked: {out}");
    }
}

fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
