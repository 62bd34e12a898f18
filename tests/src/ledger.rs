//! Where a VON's datagrams were lost, place by place, from the counters each
//! place keeps: the sender's TUN queue, the sender agent's shaper, each
//! router link's ON class and default class, the receiver's UDP sockets and
//! the receiver's TUN. The isolation proof prints it next to iperf3's
//! end-to-end loss, so a loss is never just a percentage (issue 18).

use std::fmt;

use crate::{Netns, Result, Status, Underlay};

/// The counters of every place on the path, read at one moment.
#[derive(Debug, Clone, Default)]
pub struct PathCounters {
    /// Sender host: its VON interface's `tx_dropped` (the TUN queue towards
    /// the agent was full), the agent's sealed packets and shaper drops,
    /// frames sent and send errors per underlay.
    pub sender_tun_dropped: u64,
    pub sealed: u64,
    pub rate_drops: u64,
    pub tx_frames: [u64; 2],
    pub tx_errors: [u64; 2],
    /// Router, per shared link: the ON class's packets and drops, the
    /// default class's drops.
    pub on_class_sent: [u64; 2],
    pub on_class_dropped: [u64; 2],
    pub default_dropped: [u64; 2],
    /// Receiver host: frames received per underlay, packets delivered to its
    /// TUN, write errors there, and the namespace's UDP receive-buffer drops
    /// (agent's underlay sockets and the application's alike).
    pub rx_frames: [u64; 2],
    pub delivered: u64,
    pub receiver_tun_errors: u64,
    pub receiver_rcvbuf_errors: u64,
}

/// Which namespaces, interfaces and router links make up the path.
#[derive(Debug, Clone, Copy)]
pub struct Path<'a> {
    pub von: &'a str,
    pub interface: &'a str,
    pub sender: &'a Netns,
    pub receiver: &'a Netns,
    pub router: &'a Netns,
    /// The router's link carrying underlay A's copy, then B's.
    pub links: [&'a str; 2],
    /// The ON class's id as `tc` prints it (`1:10`).
    pub on_class: &'a str,
}

impl Path<'_> {
    /// Reads every counter; `sender_status`/`receiver_status` are the two
    /// agents' `von status --json`.
    pub fn read(&self, sender_status: &Status, receiver_status: &Status) -> Result<PathCounters> {
        let s = sender_status.von(self.von)?;
        let r = receiver_status.von(self.von)?;
        let mut c = PathCounters {
            sender_tun_dropped: interface_stat(self.sender, self.interface, "tx_dropped")?,
            sealed: s.get("tx_packets")?,
            rate_drops: s.get("rate_drops")?,
            delivered: r.get("delivered")?,
            receiver_tun_errors: r.get("tun_errors")?,
            receiver_rcvbuf_errors: snmp_udp(self.receiver, "RcvbufErrors")?,
            ..PathCounters::default()
        };
        for (i, u) in [Underlay::A, Underlay::B].into_iter().enumerate() {
            c.tx_frames[i] = s.on(u, "tx_frames")?;
            c.tx_errors[i] = s.on(u, "tx_errors")?;
            c.rx_frames[i] = r.on(u, "rx_frames")?;
            let classes = tc_classes(self.router, self.links[i])?;
            let on = classes.get(self.on_class).copied().unwrap_or_default();
            c.on_class_sent[i] = on.packets;
            c.on_class_dropped[i] = on.dropped;
            c.default_dropped[i] = classes.get("1:2").map_or(0, |d| d.dropped);
        }
        Ok(c)
    }
}

impl PathCounters {
    /// `later - self`, counter by counter.
    pub fn until(&self, later: &Self) -> Self {
        let d = |a: u64, b: u64| b.saturating_sub(a);
        let d2 = |a: [u64; 2], b: [u64; 2]| [d(a[0], b[0]), d(a[1], b[1])];
        Self {
            sender_tun_dropped: d(self.sender_tun_dropped, later.sender_tun_dropped),
            sealed: d(self.sealed, later.sealed),
            rate_drops: d(self.rate_drops, later.rate_drops),
            tx_frames: d2(self.tx_frames, later.tx_frames),
            tx_errors: d2(self.tx_errors, later.tx_errors),
            on_class_sent: d2(self.on_class_sent, later.on_class_sent),
            on_class_dropped: d2(self.on_class_dropped, later.on_class_dropped),
            default_dropped: d2(self.default_dropped, later.default_dropped),
            rx_frames: d2(self.rx_frames, later.rx_frames),
            delivered: d(self.delivered, later.delivered),
            receiver_tun_errors: d(self.receiver_tun_errors, later.receiver_tun_errors),
            receiver_rcvbuf_errors: d(self.receiver_rcvbuf_errors, later.receiver_rcvbuf_errors),
        }
    }

    /// Frames lost between the sender's socket and the receiver's agent on
    /// underlay `i` (router, wire, receiver's socket).
    pub fn lost_on(&self, i: usize) -> u64 {
        self.tx_frames[i].saturating_sub(self.rx_frames[i])
    }

    /// Packets the sender's agent sealed that the receiver's never delivered:
    /// both copies were lost.
    pub fn lost_in_von(&self) -> u64 {
        self.sealed.saturating_sub(self.delivered)
    }
}

impl fmt::Display for PathCounters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "  sender TUN queue dropped {}; shaper dropped {}; sealed {}",
            self.sender_tun_dropped, self.rate_drops, self.sealed
        )?;
        for (i, name) in ["A", "B"].into_iter().enumerate() {
            writeln!(
                f,
                "  underlay {name}: sent {} (errors {}), router ON class sent {} dropped {}, default class dropped {}, received {} (lost {})",
                self.tx_frames[i],
                self.tx_errors[i],
                self.on_class_sent[i],
                self.on_class_dropped[i],
                self.default_dropped[i],
                self.rx_frames[i],
                self.lost_on(i)
            )?;
        }
        write!(
            f,
            "  receiver: delivered {} (lost in the VON {}), TUN write errors {}, UDP receive-buffer drops {}",
            self.delivered,
            self.lost_in_von(),
            self.receiver_tun_errors,
            self.receiver_rcvbuf_errors
        )
    }
}

/// One class's counters from `tc -s class show`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClassCounters {
    pub packets: u64,
    pub dropped: u64,
}

/// `tc -s class show dev DEV` in `ns`, by class id (`1:10`).
pub fn tc_classes(
    ns: &Netns,
    dev: &str,
) -> Result<std::collections::BTreeMap<String, ClassCounters>> {
    let out = ns
        .exec_ok(["tc", "-s", "class", "show", "dev", dev])?
        .stdout;
    Ok(parse_tc_classes(&out))
}

/// Parses `tc -s class show` text: a `class htb ID ...` line, then
/// ` Sent B bytes P pkt (dropped D, ...)`.
pub fn parse_tc_classes(text: &str) -> std::collections::BTreeMap<String, ClassCounters> {
    let mut out = std::collections::BTreeMap::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["class", _kind, id, ..] => current = Some((*id).to_owned()),
            ["Sent", _, "bytes", packets, "pkt", "(dropped", dropped, ..] => {
                if let Some(id) = current.take() {
                    out.insert(
                        id,
                        ClassCounters {
                            packets: packets.parse().unwrap_or(0),
                            dropped: dropped.trim_end_matches(',').parse().unwrap_or(0),
                        },
                    );
                }
            }
            _ => {}
        }
    }
    out
}

/// `/sys/class/net/DEV/statistics/NAME` in `ns`.
pub fn interface_stat(ns: &Netns, dev: &str, name: &str) -> Result<u64> {
    let path = format!("/sys/class/net/{dev}/statistics/{name}");
    let out = ns.exec_ok(["cat", &path])?;
    Ok(out.stdout.trim().parse().unwrap_or(0))
}

/// A `Udp:` field of `/proc/net/snmp` in `ns`.
pub fn snmp_udp(ns: &Netns, field: &str) -> Result<u64> {
    let out = ns.exec_ok(["cat", "/proc/net/snmp"])?;
    let udp: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| l.starts_with("Udp:"))
        .collect();
    let [names, values] = udp[..] else {
        return Ok(0);
    };
    Ok(names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(k, _)| *k == field)
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tc_class_counters() {
        let text = "class htb 1:1 root rate 100Mbit ceil 100Mbit burst 1600b cburst 1600b \n \
                    Sent 1000 bytes 10 pkt (dropped 0, overlimits 0 requeues 0) \n \
                    backlog 0b 0p requeues 0\n\
                    class htb 1:10 parent 1:1 prio 0 rate 21152Kbit ceil 21152Kbit burst 1599b cburst 1599b \n \
                    Sent 151400 bytes 100 pkt (dropped 7, overlimits 3 requeues 0) \n \
                    backlog 0b 0p requeues 0\n";
        let c = parse_tc_classes(text);
        assert_eq!(
            c["1:1"],
            ClassCounters {
                packets: 10,
                dropped: 0
            }
        );
        assert_eq!(
            c["1:10"],
            ClassCounters {
                packets: 100,
                dropped: 7
            }
        );
    }
}
