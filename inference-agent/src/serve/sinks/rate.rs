//! The token bucket behind `messagesPerMinute`.

use std::time::Instant;

/// Admits at most `per_minute` messages per minute, evenly spaced.
///
/// The bucket contains at most one token and refills at `per_minute / 60` tokens per
/// second, so no burst follows a quiet spell: any window of `t` seconds
/// admits at most `1 + t * per_minute / 60` messages.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    tokens: f64,
    per_second: f64,
    updated: Instant,
}

/// Tokens the bucket holds when full.
const CAPACITY: f64 = 1.0;

impl TokenBucket {
    /// Creates a full bucket for `per_minute` messages per minute, at least 1.
    pub fn new(per_minute: u32, now: Instant) -> Self {
        Self {
            tokens: CAPACITY,
            per_second: f64::from(per_minute.max(1)) / 60.0,
            updated: now,
        }
    }

    /// Takes a token when one is available at `now`.
    pub fn try_take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_second).min(CAPACITY);
        self.updated = now;

        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn admits_one_then_waits_for_refill() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(60, start);

        assert!(bucket.try_take(start));
        assert!(!bucket.try_take(start + Duration::from_millis(500)));
        assert!(bucket.try_take(start + Duration::from_millis(1000)));
    }

    #[test]
    fn quiet_spell_allows_no_burst() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(60, start);
        let later = start + Duration::from_secs(600);

        assert!(bucket.try_take(later));
        assert!(!bucket.try_take(later));
    }

    #[test]
    fn minute_window_admits_cap_plus_one() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(30, start);

        let admitted = (0..=6000)
            .map(|step| start + Duration::from_millis(step * 10))
            .filter(|&now| bucket.try_take(now))
            .count();

        assert_eq!(admitted, 31);
    }
}
