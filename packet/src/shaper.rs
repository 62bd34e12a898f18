//! The contracted rate: a token bucket that drops, never borrows.
//!
//! A VON imitates a dedicated link, limits included: traffic above the
//! contracted rate is dropped at the edge and counted, so one VON can never
//! take capacity another VON paid for. Time is passed in; the bucket never
//! reads a clock. Tokens are kept in bit-nanoseconds (bytes × 8 × 10⁹) so a
//! refill is one exact integer multiply, whatever the rate.

use std::time::Instant;

const NANOS_PER_SEC: u128 = 1_000_000_000;

/// A token bucket over inner-packet bytes.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate_bps: u64,
    capacity: u128,
    tokens: u128,
    last: Option<Instant>,
}

impl TokenBucket {
    /// A full bucket refilling at `rate_bps` bits per second, holding at most
    /// `burst_bytes`.
    pub fn new(rate_bps: u64, burst_bytes: u64) -> Self {
        let capacity = u128::from(burst_bytes) * 8 * NANOS_PER_SEC;
        TokenBucket {
            rate_bps,
            capacity,
            tokens: capacity,
            last: None,
        }
    }

    /// A new contract from `now` on (a config reload): the credit earned so
    /// far is kept at the old rate, then the bucket refills at `rate_bps` and
    /// holds at most `burst_bytes`. Nothing is reset: a reload neither grants
    /// a fresh burst nor takes back what was earned.
    pub fn set_rate(&mut self, now: Instant, rate_bps: u64, burst_bytes: u64) {
        self.take(now, 0);
        self.rate_bps = rate_bps;
        self.capacity = u128::from(burst_bytes) * 8 * NANOS_PER_SEC;
        self.tokens = self.tokens.min(self.capacity);
    }

    /// Whether a packet of `bytes` can ever pass (it is not larger than the burst).
    pub fn can_ever_pass(&self, bytes: usize) -> bool {
        cost_of(bytes) <= self.capacity
    }

    /// The earliest time at which [`TokenBucket::take`] of `bytes` succeeds,
    /// if nothing else is taken meanwhile (`now` if the bucket was never
    /// used); `None` if it never can.
    pub fn ready_at(&self, now: Instant, bytes: usize) -> Option<Instant> {
        let cost = cost_of(bytes);
        if cost > self.capacity || self.rate_bps == 0 {
            return None;
        }
        let Some(last) = self.last else {
            // A bucket never used is full.
            return Some(now);
        };
        let deficit = cost.saturating_sub(self.tokens);
        let nanos = deficit.div_ceil(u128::from(self.rate_bps));
        Some(last + std::time::Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX)))
    }

    /// Takes `bytes` from the bucket at time `now`; `false` means drop.
    ///
    /// A packet larger than what is left is refused whole: partial credit is
    /// never lent against the future.
    pub fn take(&mut self, now: Instant, bytes: usize) -> bool {
        if let Some(last) = self.last {
            // `now` earlier than `last` (callers on other threads) adds nothing.
            let elapsed = now.saturating_duration_since(last).as_nanos();
            self.tokens = self
                .tokens
                .saturating_add(elapsed.saturating_mul(u128::from(self.rate_bps)))
                .min(self.capacity);
        }
        if self.last.is_none_or(|last| now > last) {
            self.last = Some(now);
        }
        let cost = cost_of(bytes);
        if cost <= self.tokens {
            self.tokens -= cost;
            true
        } else {
            false
        }
    }
}

/// Tokens (bit-nanoseconds) a packet of `bytes` costs.
fn cost_of(bytes: usize) -> u128 {
    (bytes as u128) * 8 * NANOS_PER_SEC
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn burst_then_exact_rate() {
        // 8 kbit/s = 1000 bytes/s, burst 2000 bytes.
        let mut b = TokenBucket::new(8_000, 2_000);
        let t0 = Instant::now();
        assert!(b.take(t0, 1_000));
        assert!(b.take(t0, 1_000));
        assert!(!b.take(t0, 1), "burst spent, nothing is borrowed");
        assert!(!b.take(t0 + Duration::from_millis(499), 500));
        assert!(b.take(t0 + Duration::from_millis(500), 500));
        assert!(!b.take(t0 + Duration::from_millis(500), 1));
    }

    #[test]
    fn a_new_rate_applies_from_now_and_keeps_the_credit() {
        // 8 kbit/s, burst 2000 bytes; spent at t0, half refilled at t0 + 1 s.
        let mut b = TokenBucket::new(8_000, 2_000);
        let t0 = Instant::now();
        assert!(b.take(t0, 2_000));
        let t1 = t0 + Duration::from_secs(1);
        b.set_rate(t1, 16_000, 1_500);
        // 1000 bytes earned at the old rate, capped by nothing (< 1500).
        assert!(b.take(t1, 1_000));
        assert!(!b.take(t1, 1));
        // Then 2000 bytes/s: 1000 bytes in 0.5 s, the burst now 1500.
        assert!(b.take(t1 + Duration::from_millis(500), 1_000));
        assert!(!b.take(t1 + Duration::from_secs(3_600), 1_501));
    }

    #[test]
    fn idle_time_refills_only_up_to_the_burst() {
        let mut b = TokenBucket::new(8_000, 2_000);
        let t0 = Instant::now();
        assert!(b.take(t0, 2_000));
        let later = t0 + Duration::from_secs(3_600);
        assert!(b.take(later, 2_000));
        assert!(!b.take(later, 1));
    }

    #[test]
    fn a_packet_larger_than_the_burst_never_passes() {
        let mut b = TokenBucket::new(1_000_000_000, 1_500);
        let t0 = Instant::now();
        assert!(!b.take(t0 + Duration::from_secs(10), 1_501));
        assert!(b.take(t0 + Duration::from_secs(10), 1_500));
    }

    #[test]
    fn sustained_offered_load_passes_at_the_contracted_rate() {
        // Offer 2x the rate for 10 s in 1000-byte packets; expect rate * 10 s + burst.
        let rate_bps = 800_000; // 100_000 bytes/s
        let mut b = TokenBucket::new(rate_bps, 10_000);
        let t0 = Instant::now();
        let mut passed = 0u64;
        for i in 0..2_000u64 {
            let now = t0 + Duration::from_micros(i * 5_000);
            if b.take(now, 1_000) {
                passed += 1_000;
            }
        }
        let expected = 100_000 * 10 + 10_000;
        assert!(passed <= expected, "passed {passed} > {expected}");
        assert!(
            passed >= expected - 1_000,
            "passed {passed} < {expected} - 1000"
        );
    }

    #[test]
    fn ready_at_is_exactly_when_take_succeeds() {
        let mut b = TokenBucket::new(8_000, 1_000); // 1000 bytes/s
        let t0 = Instant::now();
        assert!(b.take(t0, 1_000));
        let at = b.ready_at(t0, 250).unwrap();
        assert_eq!(at, t0 + Duration::from_millis(250));
        assert!(!b.take(at - Duration::from_nanos(1), 250));
        assert!(b.take(at, 250));
        assert_eq!(b.ready_at(t0, 1_001), None, "larger than the burst");
        assert!(!b.can_ever_pass(1_001));
    }

    #[test]
    fn time_going_backwards_adds_nothing() {
        let mut b = TokenBucket::new(8_000, 1_000);
        let t0 = Instant::now() + Duration::from_secs(1);
        assert!(b.take(t0, 1_000));
        assert!(!b.take(t0 - Duration::from_millis(500), 1));
    }
}
