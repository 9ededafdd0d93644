//! Exponential backoff with full jitter: the delay before attempt `n + 1` is uniform in
//! `[MIN_DELAY, min(cap, base * 2^n)]`, so that thousands of bots that lost their
//! connections at the same instant do not come back at the same instant.

use std::time::Duration;

use crate::random::Random;

/// No retry comes sooner than this, so that a peer that fails at once cannot make a
/// client spin.
pub const MIN_DELAY: Duration = Duration::from_millis(100);

/// The delay after `failures` failures in a row (0 for the first failure).
pub fn full_jitter(
    base: Duration,
    cap: Duration,
    failures: u32,
    random: &mut impl Random,
) -> Duration {
    let ceiling = base
        .checked_mul(1u32 << failures.min(20))
        .unwrap_or(cap)
        .min(cap)
        .max(MIN_DELAY);
    let millis = ceiling.as_millis() as u64;
    Duration::from_millis(random.below(millis + 1)).max(MIN_DELAY)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random::Seeded;

    #[test]
    fn delays_spread_over_the_whole_range_and_respect_the_cap() {
        let mut random = Seeded::new(3);
        let base = Duration::from_secs(1);
        let cap = Duration::from_secs(300);
        for failures in [0, 1, 4, 8, 30] {
            let ceiling = (base * (1 << failures.min(20))).min(cap);
            let delays: Vec<Duration> = (0..400)
                .map(|_| full_jitter(base, cap, failures, &mut random))
                .collect();
            assert!(delays.iter().all(|d| *d >= MIN_DELAY && *d <= ceiling));
            // Full jitter: both halves of the range are used.
            assert!(delays.iter().any(|d| *d < ceiling / 4), "{failures}");
            assert!(delays.iter().any(|d| *d > ceiling * 3 / 4), "{failures}");
        }
    }
}
