//! Delays between reconnection attempts of a live source.

use std::time::Duration;

/// Capped exponential backoff between reconnection attempts.
///
/// The first retry waits `initial_delay`, each further one twice as long, up
/// to `max_delay`. A stream that delivered frames for at least
/// `healthy_after` before it failed starts again at `initial_delay`, so a
/// stream that fails right after connecting is not retried in a tight loop.
#[derive(Debug, Clone, PartialEq)]
pub struct ReconnectPolicy {
    /// Default 1 s.
    pub initial_delay: Duration,
    /// Default 30 s.
    pub max_delay: Duration,
    /// Default 30 s.
    pub healthy_after: Duration,
}

impl Default for ReconnectPolicy {
    fn default() -> Self {
        Self {
            initial_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(30),
            healthy_after: Duration::from_secs(30),
        }
    }
}

/// The backoff state of one source.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    policy: ReconnectPolicy,
    next_delay: Duration,
    /// Failed attempts since the last healthy stream.
    failures: u32,
}

impl Backoff {
    pub(crate) fn new(policy: ReconnectPolicy) -> Self {
        Self {
            next_delay: policy.initial_delay,
            policy,
            failures: 0,
        }
    }

    /// Records a failure after a stream that delivered frames for
    /// `streamed_for`, and returns the attempt number (from 1) and the delay
    /// before that attempt.
    pub(crate) fn record_failure(&mut self, streamed_for: Duration) -> (u32, Duration) {
        if streamed_for >= self.policy.healthy_after {
            self.next_delay = self.policy.initial_delay;
            self.failures = 0;
        }

        self.failures = self.failures.saturating_add(1);
        let delay = self.next_delay.min(self.policy.max_delay);
        self.next_delay = delay.saturating_mul(2).min(self.policy.max_delay);
        (self.failures, delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(seconds: u64) -> Duration {
        Duration::from_secs(seconds)
    }

    #[test]
    fn delays_double_up_to_cap() {
        let mut backoff = Backoff::new(ReconnectPolicy::default());

        let delays: Vec<_> = (0..8)
            .map(|_| backoff.record_failure(Duration::ZERO))
            .collect();

        assert_eq!(
            delays,
            vec![
                (1, secs(1)),
                (2, secs(2)),
                (3, secs(4)),
                (4, secs(8)),
                (5, secs(16)),
                (6, secs(30)),
                (7, secs(30)),
                (8, secs(30)),
            ]
        );
    }

    #[test]
    fn healthy_stream_resets_backoff() {
        let mut backoff = Backoff::new(ReconnectPolicy::default());
        for _ in 0..4 {
            backoff.record_failure(secs(2));
        }

        assert_eq!(backoff.record_failure(secs(31)), (1, secs(1)));
        assert_eq!(backoff.record_failure(secs(5)), (2, secs(2)));
    }
}
