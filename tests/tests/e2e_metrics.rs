//! Issue 6: the Prometheus endpoint. h1's agent runs with
//! `metrics = "127.0.0.1:9469"`; after a ping through the VON and a cut of
//! underlay A, a plain TCP client in h1's namespace scrapes `/metrics` and
//! finds the counters with their `von`, `underlay` and `peer` labels, equal
//! to what `von status --json` says.
//!
//! ```text
//!  ┌───────── h1 ──────────────────┐          ┌───────── h2 ─────────┐
//!  │ bash /dev/tcp ─► 127.0.0.1:9469│          │ [von up]             │
//!  │ [von up, metrics]  ping ──────┼── VON ──►│ von-grid 100.64.1.2  │
//!  │ ua 192.0.2.1    ✂ ────────────┼─ veth A ─┼── ua 192.0.2.2       │
//!  │ ub 198.51.100.1 ──────────────┼─ veth B ─┼── ub 198.51.100.2    │
//!  └───────────────────────────────┘          └──────────────────────┘
//! ```

use std::time::Duration;

use von_tests::observe::{MetricsAgent, link_up, sample};
use von_tests::{Ping, Result, Topology, Underlay, VonSpec};

const PORT: u16 = 9469;

#[test]
fn metrics_show_the_status_counters_with_labels() -> Result<()> {
    if !von_tests::e2e_enabled("e2e metrics")? {
        return Ok(());
    }
    let mut topo = Topology::new(2)?;
    let grid = VonSpec::new("grid", 7, 1, &[1, 2]);
    topo.start(std::slice::from_ref(&grid))?;
    let h1 = MetricsAgent::restart(&mut topo, 1, PORT)?;

    let r = Ping::new(grid.address(2), 20)
        .interval(Duration::from_millis(20))
        .run(topo.host(1).ns())?;
    assert_eq!(r.lost(), 0, "{}", r.output);

    topo.host(1).cut(Underlay::A)?;
    let status = von_tests::wait_for("A down in h1's status", Duration::from_secs(10), || {
        let s = h1.status()?;
        Ok(if link_up(&s, "grid", "h2", Underlay::A)? {
            Err("A still up".to_owned())
        } else {
            Ok(s)
        })
    })?;
    let text = h1.scrape()?;
    // Read status again: keepalive counters move between the two reads,
    // data counters of an idle VON do not.
    let after = h1.status()?;
    eprintln!(
        "scraped {} bytes, {} samples",
        text.len(),
        text.lines().filter(|l| !l.starts_with('#')).count()
    );

    let c = status.von("grid")?;
    let von = [("von", "grid")];
    for (metric, counter) in [
        ("von_packets_sent_total", "tx_packets"),
        ("von_packets_delivered_total", "delivered"),
        ("von_duplicates_discarded_total", "duplicates"),
        ("von_aead_opens_total", "aead_opens"),
    ] {
        let want = c.get(counter)?;
        assert_eq!(
            after.von("grid")?.get(counter)?,
            want,
            "{counter} moved while idle"
        );
        assert_eq!(
            sample(&text, metric, &von),
            Some(want as f64),
            "{metric} vs {counter}"
        );
    }
    assert!(c.get("tx_packets")? >= 20, "the ping was counted");
    for u in Underlay::BOTH {
        let labels = [("von", "grid"), ("underlay", u.key())];
        for (metric, counter) in [
            ("von_frames_sent_total", "tx_frames"),
            ("von_frames_received_total", "rx_frames"),
        ] {
            let want = c.on(u, counter)?;
            assert_eq!(
                sample(&text, metric, &labels),
                Some(want as f64),
                "{metric} on {u}"
            );
        }
        let k = sample(&text, "von_keepalives_received_total", &labels).expect("keepalives metric");
        let (lo, hi) = (
            c.on(u, "rx_keepalives")?,
            after.von("grid")?.on(u, "rx_keepalives")?,
        );
        assert!(
            (lo as f64..=hi as f64).contains(&k),
            "keepalives on {u}: {lo} <= {k} <= {hi}"
        );
    }
    for reason in ["replays", "auth_failures", "policy_drops", "rate_drops"] {
        let labels = [("von", "grid"), ("reason", reason)];
        assert_eq!(
            sample(&text, "von_dropped_total", &labels),
            Some(c.get(reason)? as f64),
            "{reason}"
        );
    }
    let link = |u: Underlay| {
        sample(
            &text,
            "von_link_up",
            &[("von", "grid"), ("peer", "h2"), ("underlay", u.key())],
        )
    };
    assert_eq!(
        (link(Underlay::A), link(Underlay::B)),
        (Some(0.0), Some(1.0))
    );
    assert_eq!(
        sample(
            &text,
            "von_underlay_peers_down",
            &[("von", "grid"), ("underlay", "a")]
        ),
        Some(1.0)
    );
    assert_eq!(sample(&text, "von_epoch", &von), Some(1.0));
    assert!(
        sample(
            &text,
            "von_socket_datagrams_received_total",
            &[("underlay", "b")]
        )
        .is_some_and(|v| v > 0.0)
    );
    topo.host(1).restore(Underlay::A)?;
    Ok(())
}
