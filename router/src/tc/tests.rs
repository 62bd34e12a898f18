//! The tc state machine without root: plans, diffs against parsed `tc`
//! output (captured from iproute2 6.1), and the exact command lines.

use super::*;

const QDISC_OURS: &str =
    r#"[{"kind":"htb","handle":"1:","root":true,"refcnt":3,"options":{"r2q":10,"default":"0x2"}}]"#;
const QDISC_OTHER: &str =
    r#"[{"kind":"noqueue","handle":"0:","root":true,"refcnt":2,"options":{}}]"#;

const CLASSES: &str = "class htb 1:10 parent 1:1 prio 0 rate 42304Kbit ceil 42304Kbit burst 1591b cburst 1591b \n Sent 6120 bytes 4 pkt (dropped 2, overlimits 0 requeues 0) \n backlog 0b 0p requeues 0\n lended: 0 borrowed: 0 giants: 0\n tokens: 9515 ctokens: 9515\n\nclass htb 1:1 root rate 100Mbit ceil 100Mbit burst 1600b cburst 1600b \n Sent 426 bytes 5 pkt (dropped 0, overlimits 0 requeues 0) \nclass htb 1:2 parent 1:1 prio 0 rate 57696Kbit ceil 100Mbit burst 1586b cburst 1600b \n Sent 426 bytes 5 pkt (dropped 0, overlimits 0 requeues 0) \n";

const FILTERS: &str = "filter parent 1: protocol ip pref 16 u32 chain 0 \nfilter parent 1: protocol ip pref 16 u32 chain 0 fh 800: ht divisor 1 \nfilter parent 1: protocol ip pref 16 u32 chain 0 fh 800::800 order 2048 key ht 800 bkt 0 *flowid 1:10 not_in_hw \n  match 00110000/00ff0000 at 8\n  match 000012b5/0000ffff at 20\n  match 05b80000/0ffc0000 at 0\n  match 00000000/00001fff at 4\n  match 00000007/ffffffff at 28\nfilter parent 1: protocol ipv6 pref 32784 u32 chain 0 \nfilter parent 1: protocol ipv6 pref 32784 u32 chain 0 fh 801: ht divisor 1 \nfilter parent 1: protocol ipv6 pref 32784 u32 chain 0 fh 801::800 order 2048 key ht 801 bkt 0 *flowid 1:10 not_in_hw \n  match 6b800000/ffc00000 at 0\n  match 00001100/0000ff00 at 4\n  match 000012b5/0000ffff at 40\n  match 00000007/ffffffff at 48\n";

/// What iproute2 6.1 showed for the IPv4 filter alone (a router from before
/// IPv6 filters): the IPv6 one is added, nothing else touched.
const FILTERS_V4_ONLY: &str = "filter parent 1: protocol ip pref 16 u32 chain 0 \nfilter parent 1: protocol ip pref 16 u32 chain 0 fh 800: ht divisor 1 \nfilter parent 1: protocol ip pref 16 u32 chain 0 fh 800::800 order 2048 key ht 800 bkt 0 *flowid 1:10 not_in_hw \n  match 00110000/00ff0000 at 8\n  match 000012b5/0000ffff at 20\n  match 05b80000/0ffc0000 at 0\n  match 00000000/00001fff at 4\n  match 00000007/ffffffff at 28\n";

fn grid(minor: u16) -> PlannedClass {
    PlannedClass {
        minor,
        on_id: 7,
        dscp: 46,
        port: 4789,
        rate_bps: 42_304_000,
    }
}

fn plan(classes: Vec<PlannedClass>) -> LinkPlan {
    LinkPlan {
        dev: "sha".into(),
        capacity_bps: 100_000_000,
        classes,
    }
}

fn shown(cmds: &[TcCommand]) -> Vec<String> {
    cmds.iter().map(ToString::to_string).collect()
}

#[test]
fn a_fresh_link_gets_root_link_default_class_and_filter() {
    let installed = Installed::parse(QDISC_OTHER, "", "").expect("parses");
    let cmds = shown(&diff(&plan(vec![grid(0x10)]), &installed));
    assert_eq!(
        cmds,
        [
            "tc qdisc replace dev sha root handle 1: htb default 2",
            "tc class add dev sha parent 1: classid 1:1 htb rate 100000000bit ceil 100000000bit quantum 1514",
            "tc class add dev sha parent 1:1 classid 1:2 htb rate 57696000bit ceil 100000000bit quantum 1514",
            "tc class add dev sha parent 1:1 classid 1:10 htb rate 42304000bit ceil 42304000bit quantum 1514",
            "tc filter add dev sha parent 1: pref 16 protocol ip u32 match ip protocol 17 0xff match ip dport 4789 0xffff \
             match ip dsfield 0xb8 0xfc match u8 0x05 0x0f at 0 match u16 0x0 0x1fff at 6 \
             match u32 0x00000007 0xffffffff at 28 flowid 1:10",
            "tc filter add dev sha parent 1: pref 32784 protocol ipv6 u32 match u8 0x60 0xf0 at 0 \
             match u32 0x0b800000 0x0fc00000 at 0 match u8 0x11 0xff at 6 match u16 4789 0xffff at 42 \
             match u32 0x00000007 0xffffffff at 48 flowid 1:10",
        ]
    );
}

#[test]
fn a_router_with_ipv4_filters_only_gains_the_ipv6_one() {
    let installed = Installed::parse(QDISC_OURS, CLASSES, FILTERS_V4_ONLY).expect("parses");
    let cmds = shown(&diff(&plan(vec![grid(0x10)]), &installed));
    assert_eq!(cmds.len(), 1, "{cmds:#?}");
    assert!(
        cmds[0].starts_with("tc filter add dev sha parent 1: pref 32784 protocol ipv6 u32")
            && cmds[0].ends_with("flowid 1:10"),
        "{cmds:#?}"
    );
}

#[test]
fn a_filter_of_the_wrong_protocol_at_a_pref_is_replaced() {
    // Someone put an IPv4 filter at the IPv6 pref (same keys otherwise).
    let text = FILTERS.replace("protocol ipv6", "protocol ip");
    let installed = Installed::parse(QDISC_OURS, CLASSES, &text).expect("parses");
    assert_eq!(installed.filters[&0x8010].protocol.as_deref(), Some("ip"));
    let cmds = shown(&diff(&plan(vec![grid(0x10)]), &installed));
    assert_eq!(cmds[0], "tc filter del dev sha parent 1: pref 32784");
    assert!(
        cmds[1].contains("pref 32784 protocol ipv6 u32"),
        "{cmds:#?}"
    );
    assert_eq!(cmds.len(), 2);
}

#[test]
fn ipv6_keys_need_udp_straight_after_the_fixed_header() {
    let keys: Vec<U32Key> = grid(0x10).keys6().into_iter().collect();
    assert_eq!(
        keys,
        [
            // Version 6, DSCP 46 (traffic class 0xb8).
            U32Key {
                off: 0,
                value: 0x6b80_0000,
                mask: 0xffc0_0000
            },
            // Next header 17: a hop-by-hop header (0), a fragment header
            // (44) or any other extension header does not match.
            U32Key {
                off: 4,
                value: 0x1100,
                mask: 0xff00
            },
            U32Key {
                off: 40,
                value: 4789,
                mask: 0xffff
            },
            U32Key {
                off: 48,
                value: 7,
                mask: 0xffff_ffff
            },
        ]
    );
    let [v4, v6] = grid(0x10).filters();
    assert_eq!((v4.pref, v6.pref), (0x10, 0x8010));
    assert_eq!((v4.minor, v6.minor), (0x10, 0x10), "one class counts both");
    assert_eq!(grid(LAST_ON_MINOR).filters()[1].pref, u16::MAX);
}

#[test]
fn what_tc_shows_after_applying_needs_nothing_more() {
    let installed = Installed::parse(QDISC_OURS, CLASSES, FILTERS).expect("parses");
    assert_eq!(
        installed.classes[&0x10].counters,
        ClassCounters {
            bytes: 6120,
            packets: 4,
            drops: 2
        }
    );
    assert_eq!(installed.filters[&16].flowid, Some(0x10));
    assert_eq!(installed.filters[&16].keys, grid(0x10).keys());
    assert_eq!(diff(&plan(vec![grid(0x10)]), &installed), vec![]);
}

#[test]
fn adding_an_on_leaves_the_others_alone() {
    let installed = Installed::parse(QDISC_OURS, CLASSES, FILTERS).expect("parses");
    let med = PlannedClass {
        minor: 0x11,
        on_id: 8,
        dscp: 34,
        port: 4789,
        rate_bps: 8_000_000,
    };
    let cmds = shown(&diff(&plan(vec![grid(0x10), med]), &installed));
    assert_eq!(cmds.len(), 4, "{cmds:#?}");
    assert!(
        cmds[0].starts_with("tc class change dev sha parent 1:1 classid 1:2 htb rate 49696000bit")
    );
    assert!(cmds[1].starts_with(
        "tc class add dev sha parent 1:1 classid 1:11 htb rate 8000000bit ceil 8000000bit"
    ));
    assert!(
        cmds[2].contains("pref 17")
            && cmds[2].contains("dsfield 0x88")
            && cmds[2].ends_with("flowid 1:11")
    );
    assert!(
        cmds[3].contains("pref 32785 protocol ipv6")
            && cmds[3].contains("0x08800000 0x0fc00000")
            && cmds[3].ends_with("flowid 1:11")
    );
    assert!(
        !cmds
            .iter()
            .any(|c| c.contains("1:10") || c.contains("pref 16"))
    );
}

#[test]
fn a_released_on_loses_filter_then_class() {
    let installed = Installed::parse(QDISC_OURS, CLASSES, FILTERS).expect("parses");
    let cmds = shown(&diff(&plan(vec![]), &installed));
    assert_eq!(
        cmds,
        [
            "tc filter del dev sha parent 1: pref 16",
            "tc filter del dev sha parent 1: pref 32784",
            "tc class del dev sha classid 1:10",
            "tc class change dev sha parent 1:1 classid 1:2 htb rate 100000000bit ceil 100000000bit quantum 1514",
        ]
    );
}

#[test]
fn a_changed_filter_is_replaced() {
    let installed = Installed::parse(QDISC_OURS, CLASSES, FILTERS).expect("parses");
    let mut moved = grid(0x10);
    moved.port = 4790;
    let cmds = shown(&diff(&plan(vec![moved]), &installed));
    assert_eq!(cmds[0], "tc filter del dev sha parent 1: pref 16");
    assert_eq!(cmds[1], "tc filter del dev sha parent 1: pref 32784");
    assert!(cmds[2].contains("match ip dport 4790 0xffff"), "{cmds:#?}");
    assert!(cmds[3].contains("match u16 4790 0xffff at 42"), "{cmds:#?}");
    assert_eq!(cmds.len(), 4);
}

#[test]
fn the_default_class_keeps_one_percent() {
    let full = PlannedClass {
        rate_bps: 100_000_000,
        ..grid(0x10)
    };
    assert_eq!(plan(vec![full]).default_rate(), 1_000_000);
}

#[test]
fn keys_guard_options_fragments_and_match_the_on_id() {
    let keys: Vec<U32Key> = grid(0x10).keys().into_iter().collect();
    assert_eq!(
        keys,
        [
            U32Key {
                off: 0,
                value: 0x05b8_0000,
                mask: 0x0ffc_0000
            },
            U32Key {
                off: 4,
                value: 0,
                mask: 0x1fff
            },
            U32Key {
                off: 8,
                value: 0x0011_0000,
                mask: 0x00ff_0000
            },
            U32Key {
                off: 20,
                value: 4789,
                mask: 0xffff
            },
            U32Key {
                off: 28,
                value: 7,
                mask: 0xffff_ffff
            },
        ]
    );
}

#[test]
fn garbage_is_a_parse_error_not_a_panic() {
    assert!(Installed::parse("not json", "", "").is_err());
    assert!(parse::parse_classes("class htb 1:10 parent 1:1 rate lots ceil 1bit").is_err());
    assert!(
        parse::parse_filters("filter parent 1: protocol ip pref 16 u32\n  match zz at 0").is_err()
    );
    assert_eq!(
        parse::parse_rate("1.5Gbit", "").expect("rate"),
        1_500_000_000
    );
    assert!(parse::parse_rate("12", "").is_err());
}
