//! Path health probes: the timing a keepalive carries (flag `timing` of
//! `von_crypto::freshness::KeepaliveBody`) and the RTT it yields.
//!
//! Like VeloCloud's DMPO, which times its own probes per path, von times the
//! keepalives it already sends every [`super::KEEPALIVE_INTERVAL`] on every
//! (peer, underlay): no extra packet. Each keepalive carries
//!
//! - `stamp_us`, the sender's clock (microseconds since its first stamp);
//! - `echo_us`, the latest stamp it heard from the recipient on this same
//!   underlay, with `hold_us`, how long it held that stamp before this send;
//! - `round`, a per-(recipient, underlay) count of keepalives sent.
//!
//! The originator of an echoed stamp computes
//! `RTT = now − sent_at(echo_us) − hold_us` (as NTP and TCP timestamps do):
//! both terms are read on one clock each, so no clock sync is needed. An
//! echo is used only if it is one of the last [`RECENT`] stamps this start
//! sent on that link, so an echo of a previous start's stamp (or a made-up
//! one) yields no sample. Gaps in `round` are keepalives lost on the way in
//! (`Liveness::probed`). Touched once per keepalive, never per data packet:
//! a mutex is fine.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use von_crypto::MemberId;
use von_crypto::freshness::Timing;

use super::action::Underlay;

/// Stamps remembered per link, to recognise a genuine echo.
const RECENT: usize = 8;

#[derive(Debug, Default)]
struct ProbeLink {
    /// Keepalives sent to this peer on this underlay in this start.
    sent: u32,
    /// The latest stamps sent, a ring.
    recent: [u64; RECENT],
    /// The peer's latest stamp heard here, and when.
    heard: Option<(u64, Instant)>,
}

#[derive(Debug, Default)]
struct State {
    /// The instant stamp 1 stands for; set at the first stamp.
    base: Option<Instant>,
    links: HashMap<(MemberId, Underlay), ProbeLink>,
}

/// The probe state both halves of a pipeline share.
#[derive(Debug, Default)]
pub struct Probes {
    state: Mutex<State>,
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

impl Probes {
    /// The timing for a keepalive sent to `peer` on `underlay` at `now`.
    pub fn stamp_out(&self, peer: MemberId, underlay: Underlay, now: Instant) -> Timing {
        let mut state = self.lock();
        let base = *state.base.get_or_insert(now);
        let stamp_us = micros(now.saturating_duration_since(base)).saturating_add(1);
        let link = state.links.entry((peer, underlay)).or_default();
        link.sent = link.sent.wrapping_add(1).max(1);
        link.recent[link.sent as usize % RECENT] = stamp_us;
        let (echo_us, hold_us) = match link.heard {
            Some((stamp, at)) => (
                stamp,
                u32::try_from(micros(now.saturating_duration_since(at))).unwrap_or(u32::MAX),
            ),
            None => (0, 0),
        };
        Timing {
            round: link.sent,
            hold_us,
            stamp_us,
            echo_us,
        }
    }

    /// An authenticated keepalive of `peer` on `underlay` carried `timing`
    /// at `now`: remembers its stamp to echo, and returns the round trip
    /// its echo proves, if it echoes a recent stamp of ours.
    pub fn stamp_in(
        &self,
        peer: MemberId,
        underlay: Underlay,
        now: Instant,
        timing: &Timing,
    ) -> Option<Duration> {
        let mut state = self.lock();
        let base = state.base;
        let link = state.links.entry((peer, underlay)).or_default();
        if timing.stamp_us != 0 {
            link.heard = Some((timing.stamp_us, now));
        }
        if timing.echo_us == 0 || !link.recent.contains(&timing.echo_us) {
            return None;
        }
        let sent_at = base? + Duration::from_micros(timing.echo_us - 1);
        now.saturating_duration_since(sent_at)
            .checked_sub(Duration::from_micros(u64::from(timing.hold_us)))
    }

    /// Forgets the links of members no longer in `keep`.
    pub fn retain(&self, keep: impl Fn(MemberId) -> bool) {
        self.lock().links.retain(|(m, _), _| keep(*m));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Every update is a few plain stores: nothing is left half-written.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_echo_gives_the_round_trip_minus_the_hold() {
        let (a, b) = (Probes::default(), Probes::default());
        let t0 = Instant::now();
        let (pa, pb, u) = (MemberId(1), MemberId(2), Underlay::FIRST);
        let out = a.stamp_out(pb, u, t0);
        assert_eq!(out.echo_us, 0);
        // 20 ms one way to b, which holds it 300 ms, then 20 ms back.
        assert_eq!(
            b.stamp_in(pa, u, t0 + Duration::from_millis(20), &out),
            None
        );
        let back = b.stamp_out(pa, u, t0 + Duration::from_millis(320));
        assert_eq!(back.hold_us, 300_000);
        let rtt = a.stamp_in(pb, u, t0 + Duration::from_millis(340), &back);
        assert_eq!(rtt, Some(Duration::from_millis(40)));
    }

    #[test]
    fn an_unknown_or_old_echo_gives_nothing() {
        let a = Probes::default();
        let t0 = Instant::now();
        let (pb, u) = (MemberId(2), Underlay::FIRST);
        let first = a.stamp_out(pb, u, t0);
        for i in 1..=RECENT as u64 {
            a.stamp_out(pb, u, t0 + Duration::from_secs(i));
        }
        let forged = Timing {
            round: 1,
            hold_us: 0,
            stamp_us: 5,
            echo_us: 12_345,
        };
        assert_eq!(
            a.stamp_in(pb, u, t0 + Duration::from_secs(10), &forged),
            None
        );
        let stale = Timing {
            echo_us: first.stamp_us,
            ..forged
        };
        assert_eq!(
            a.stamp_in(pb, u, t0 + Duration::from_secs(10), &stale),
            None
        );
    }
}
