//! The standalone key manager's Prometheus endpoint (`metrics` in
//! keymgr.toml): every scrape asks the key manager's own control socket for
//! the status `von keymgr status --json` prints and renders it, so the two
//! never disagree. Served by [`crate::metrics::serve_with`].
//!
//! Gauges, each labelled `von` (and `replica` for a replica on etcd):
//! - `von_keymgr_up`: the control socket answered (0: the scrape shows only this);
//! - `von_keymgr_epoch`, `von_keymgr_members`, `von_keymgr_connected`;
//! - `von_keymgr_replica_leader`: 1 while this replica leads, 0 standing by,
//!   starting or cut off from etcd;
//! - `von_keymgr_replica_role{role}`: 1 for the current role of `leader`,
//!   `standby`, `unavailable`, `starting`; 0 for the others;
//! - `von_keymgr_etcd_endpoint_healthy{endpoint}`: the member answered and
//!   knows a raft leader;
//! - `von_keymgr_etcd_reachable`: at least one endpoint is healthy, i.e. the
//!   replica reaches a quorum (0 with no quorum or cut off).
//!
//! A key manager on its own redb store has no replica or etcd gauges.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use von_keymgr::server::ControlReply;

type Labels = Vec<(&'static str, String)>;

/// The roles `von_keymgr_replica_role` lists.
pub const ROLES: [&str; 4] = ["leader", "standby", "unavailable", "starting"];

/// The key manager of `von`'s status (or why its socket did not answer) as
/// OpenMetrics text.
pub fn render(von: &str, status: Option<&ControlReply>) -> String {
    let mut r = Registry::with_prefix("von_keymgr");
    let gauge = |r: &mut Registry, name: &str, help: &str| {
        let f = Family::<Labels, Gauge>::default();
        r.register(name, help, f.clone());
        f
    };
    let set = |f: &Family<Labels, Gauge>, labels: Labels, v: i64| {
        f.get_or_create(&labels).set(v);
    };
    let base: Labels = vec![("von", von.to_owned())];
    let up = gauge(&mut r, "up", "The key manager's control socket answered");
    set(&up, base.clone(), i64::from(status.is_some()));
    if let Some(s) = status {
        let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        let epoch = gauge(&mut r, "epoch", "The committed epoch");
        set(&epoch, base.clone(), i64::from(s.epoch));
        let members = gauge(&mut r, "members", "Members in the committed view");
        set(&members, base.clone(), count(s.members.len()));
        let connected = gauge(&mut r, "connected", "Members connected now");
        set(&connected, base.clone(), count(s.connected.len()));
        if let Some(rep) = &s.replica {
            let mut labels = base.clone();
            labels.push(("replica", rep.name.clone()));
            let leader = gauge(
                &mut r,
                "replica_leader",
                "1 while this replica leads the VON's key managers, 0 otherwise",
            );
            set(&leader, labels.clone(), i64::from(rep.role == "leader"));
            let role = gauge(
                &mut r,
                "replica_role",
                "1 for this replica's current role (leader, standby, unavailable, starting)",
            );
            for name in ROLES {
                let mut l = labels.clone();
                l.push(("role", name.to_owned()));
                set(&role, l, i64::from(rep.role == name));
            }
            let healthy = gauge(
                &mut r,
                "etcd_endpoint_healthy",
                "1 if the etcd endpoint answered and knows a raft leader",
            );
            for e in &rep.etcd {
                let mut l = labels.clone();
                l.push(("endpoint", e.endpoint.clone()));
                set(&healthy, l, i64::from(e.healthy));
            }
            let reachable = gauge(
                &mut r,
                "etcd_reachable",
                "1 if at least one etcd endpoint is healthy (a quorum is reachable)",
            );
            set(
                &reachable,
                labels,
                i64::from(rep.etcd.iter().any(|e| e.healthy)),
            );
        }
    }
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = encode(&mut out, &r);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(role: &str, healthy: [bool; 3]) -> ControlReply {
        let json = serde_json::json!({
            "replica": {
                "name": "km4", "role": role, "leader": null, "held": 0,
                "replicas": [],
                "etcd": healthy.iter().enumerate().map(|(i, h)| serde_json::json!({
                    "endpoint": format!("192.0.2.{}:2379", i + 4), "healthy": h, "detail": ""
                })).collect::<Vec<_>>(),
            },
            "epoch": 12, "pending": null, "members": ["h1", "h2"], "connected": ["h1"],
        });
        serde_json::from_value(json).expect("a control reply")
    }

    #[test]
    fn role_and_etcd_health_become_gauges() {
        let text = render("grid", Some(&reply("leader", [true, false, true])));
        for line in [
            "von_keymgr_up{von=\"grid\"} 1",
            "von_keymgr_epoch{von=\"grid\"} 12",
            "von_keymgr_replica_leader{von=\"grid\",replica=\"km4\"} 1",
            "von_keymgr_replica_role{von=\"grid\",replica=\"km4\",role=\"leader\"} 1",
            "von_keymgr_replica_role{von=\"grid\",replica=\"km4\",role=\"standby\"} 0",
            "von_keymgr_etcd_endpoint_healthy{von=\"grid\",replica=\"km4\",endpoint=\"192.0.2.5:2379\"} 0",
            "von_keymgr_etcd_reachable{von=\"grid\",replica=\"km4\"} 1",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
        let text = render("grid", Some(&reply("unavailable", [false; 3])));
        assert!(text.contains("von_keymgr_replica_leader{von=\"grid\",replica=\"km4\"} 0"));
        assert!(text.contains("von_keymgr_etcd_reachable{von=\"grid\",replica=\"km4\"} 0"));
        let text = render("grid", None);
        assert!(text.contains("von_keymgr_up{von=\"grid\"} 0"), "{text}");
        assert!(!text.contains("replica_leader"), "{text}");
    }
}
