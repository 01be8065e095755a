//! Exponential backoff with jitter: the one backoff of the adapter (SQS calls, process restarts).

use std::hash::{BuildHasher, RandomState};
use std::time::Duration;

/// Doubling delays from `base` up to `max`, each drawn uniformly from its upper half so that many
/// workers failing together do not retry together ("equal jitter").
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    base: Duration,
    max: Duration,
    attempt: u32,
    // Seeded per process by the standard library; hashing a counter gives cheap, good-enough
    // jitter without a random-number dependency.
    random: RandomState,
}

impl Backoff {
    /// A backoff that starts at `base` and never waits longer than `max`.
    pub(crate) fn new(base: Duration, max: Duration) -> Self {
        Self {
            base,
            max,
            attempt: 0,
            random: RandomState::new(),
        }
    }

    /// The delay before the next retry; each call doubles the ceiling.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let ceiling = self
            .base
            .saturating_mul(2u32.saturating_pow(self.attempt.min(30)))
            .min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        let half = ceiling / 2;
        let fraction = (self.random.hash_one(self.attempt) % 1_000) as u32;
        half + half.mul_f64(f64::from(fraction) / 1_000.0)
    }

    /// Back to the first delay, after a success.
    pub(crate) fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_stay_in_bounds_and_reset() {
        let base = Duration::from_millis(100);
        let max = Duration::from_secs(10);
        let mut backoff = Backoff::new(base, max);
        let mut ceiling = base;
        for _ in 0..20 {
            let delay = backoff.next_delay();
            assert!(
                delay >= ceiling / 2 && delay <= ceiling,
                "{delay:?} not in upper half of {ceiling:?}"
            );
            ceiling = (ceiling * 2).min(max);
        }
        backoff.reset();
        assert!(backoff.next_delay() <= base);
    }
}
