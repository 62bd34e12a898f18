//! Rate-limited logging of a repeating event: the first occurrence of a key
//! is logged in full, the repeats are counted and summed up in at most one
//! line per [`WINDOW`] (a member retrying a refused join every few seconds,
//! or a duplicate member replacing its own connection, must not flood the
//! log). Pure: the caller passes `now`, so tests need no clock.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// At most one summary line per key in this long.
pub const WINDOW: Duration = Duration::from_secs(60);

/// Keys remembered at most; past this the oldest are forgotten (a key seen
/// again after that is logged in full once more).
const MAX_KEYS: usize = 4096;

/// What the caller should log for one occurrence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// First time (or first since [`Repeats::forget`]): log it in full.
    First,
    /// A repeat inside the window: log nothing.
    Quiet,
    /// A repeat after the window: log one summary line saying it happened
    /// `count` times (this one included) since the last line.
    Summary {
        /// Occurrences since the last line, this one included.
        count: u64,
    },
}

#[derive(Debug, Clone, Copy)]
struct Seen {
    /// When the last line (full or summary) was logged.
    logged: Instant,
    /// Occurrences since then.
    since: u64,
}

/// Per-key counters; see the module documentation.
#[derive(Debug, Clone)]
pub struct Repeats<K> {
    window: Duration,
    seen: HashMap<K, Seen>,
}

impl<K: Eq + Hash + Clone> Default for Repeats<K> {
    fn default() -> Self {
        Self::new(WINDOW)
    }
}

impl<K: Eq + Hash + Clone> Repeats<K> {
    /// Summaries at most once per `window` per key.
    pub fn new(window: Duration) -> Self {
        Self {
            window,
            seen: HashMap::new(),
        }
    }

    /// One occurrence of `key` at `now`.
    pub fn note(&mut self, key: &K, now: Instant) -> Verdict {
        if let Some(s) = self.seen.get_mut(key) {
            s.since += 1;
            if now.saturating_duration_since(s.logged) < self.window {
                return Verdict::Quiet;
            }
            let count = s.since;
            *s = Seen {
                logged: now,
                since: 0,
            };
            return Verdict::Summary { count };
        }
        if self.seen.len() >= MAX_KEYS {
            if let Some(oldest) = self
                .seen
                .iter()
                .min_by_key(|(_, s)| s.logged)
                .map(|(k, _)| k.clone())
            {
                self.seen.remove(&oldest);
            }
        }
        self.seen.insert(
            key.clone(),
            Seen {
                logged: now,
                since: 0,
            },
        );
        Verdict::First
    }

    /// Forget `key`: its next occurrence is logged in full again (after the
    /// condition cleared, e.g. the member was admitted).
    pub fn forget(&mut self, key: &K) {
        self.seen.remove(key);
    }

    /// Forget every key for which `f` holds.
    pub fn forget_if(&mut self, f: impl Fn(&K) -> bool) {
        self.seen.retain(|k, _| !f(k));
    }

    /// Forget every key.
    pub fn clear(&mut self) {
        self.seen.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_in_full_then_one_summary_per_window_with_the_count() {
        let t0 = Instant::now();
        let mut r = Repeats::new(WINDOW);
        let k = "h3".to_owned();
        assert_eq!(r.note(&k, t0), Verdict::First);
        // A retry every 1.4 s, as the issue saw (14 in 20 s): quiet.
        let mut quiet = 0;
        for i in 1..=42u32 {
            assert_eq!(
                r.note(&k, t0 + Duration::from_millis(1400) * i),
                Verdict::Quiet
            );
            quiet += 1;
        }
        assert_eq!(quiet, 42);
        // The first repeat past a minute sums up all of them, itself included.
        assert_eq!(
            r.note(&k, t0 + Duration::from_secs(61)),
            Verdict::Summary { count: 43 }
        );
        // The window restarts at the summary.
        assert_eq!(r.note(&k, t0 + Duration::from_secs(90)), Verdict::Quiet);
        assert_eq!(
            r.note(&k, t0 + Duration::from_secs(121)),
            Verdict::Summary { count: 2 }
        );
    }

    #[test]
    fn keys_are_counted_apart_and_forget_restarts_one() {
        let t0 = Instant::now();
        let mut r = Repeats::new(WINDOW);
        assert_eq!(r.note(&1u64, t0), Verdict::First);
        assert_eq!(r.note(&2u64, t0), Verdict::First);
        assert_eq!(r.note(&1u64, t0), Verdict::Quiet);
        r.forget(&1);
        assert_eq!(r.note(&1u64, t0), Verdict::First);
        assert_eq!(r.note(&2u64, t0), Verdict::Quiet);
        r.forget_if(|k| *k == 2);
        assert_eq!(r.note(&2u64, t0), Verdict::First);
        assert_eq!(r.note(&1u64, t0), Verdict::Quiet);
        r.clear();
        assert_eq!(r.note(&1u64, t0), Verdict::First);
    }

    #[test]
    fn a_clock_going_back_stays_quiet_and_the_key_table_is_bounded() {
        let t0 = Instant::now() + Duration::from_secs(10);
        let mut r = Repeats::new(WINDOW);
        assert_eq!(r.note(&0u64, t0), Verdict::First);
        assert_eq!(r.note(&0u64, t0 - Duration::from_secs(5)), Verdict::Quiet);
        for k in 1..=(MAX_KEYS as u64 + 10) {
            r.note(&k, t0 + Duration::from_millis(k));
        }
        assert!(r.seen.len() <= MAX_KEYS);
    }
}
