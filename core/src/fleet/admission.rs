//! Admission control: how many bots may be connecting or handshaking at once, and how
//! fast new connection attempts start.
//!
//! A handshake costs two 2048-bit modular exponentiations on each side, and Telegram
//! answers a burst of new connections from one address with `-429`. Ten thousand bots
//! that start (or lost their connections) at the same instant therefore queue here: at
//! most `max_in_flight` hold a permit at once, and permits are handed out at most
//! `per_second` a second (a token bucket with a small burst), in the order asked for.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The bounds of admission.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdmissionLimits {
    /// Connects and handshakes in flight at once.
    pub max_in_flight: usize,
    /// New connection attempts a second, on average.
    pub per_second: u32,
    /// Attempts that may start at once after a quiet spell.
    pub burst: u32,
}

impl Default for AdmissionLimits {
    fn default() -> Self {
        AdmissionLimits {
            max_in_flight: 64,
            per_second: 2000,
            burst: 100,
        }
    }
}

/// Permits for connection attempts, handed out in order.
#[derive(Debug)]
pub struct Admission<T> {
    limits: AdmissionLimits,
    in_flight: usize,
    waiting: VecDeque<T>,
    /// Tokens, in thousandths, and when they were last topped up.
    tokens_milli: u64,
    refilled: Option<Instant>,
}

impl<T: PartialEq> Admission<T> {
    pub fn new(limits: AdmissionLimits) -> Self {
        Admission {
            tokens_milli: u64::from(limits.burst) * 1000,
            limits,
            in_flight: 0,
            waiting: VecDeque::new(),
            refilled: None,
        }
    }

    /// Queues `who` for a permit.
    pub fn request(&mut self, who: T) {
        self.waiting.push_back(who);
    }

    /// Takes `who` out of the queue (it no longer wants a permit).
    pub fn cancel(&mut self, who: &T) {
        self.waiting.retain(|w| w != who);
    }

    /// A permit comes back.
    pub fn release(&mut self) {
        self.in_flight = self.in_flight.saturating_sub(1);
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// The next one to admit now, if a permit and a token are free; it holds a permit
    /// until [`Admission::release`].
    pub fn admit(&mut self, now: Instant) -> Option<T> {
        if self.waiting.is_empty() || self.in_flight >= self.limits.max_in_flight {
            return None;
        }
        self.refill(now);
        if self.tokens_milli < 1000 {
            return None;
        }
        self.tokens_milli -= 1000;
        self.in_flight += 1;
        self.waiting.pop_front()
    }

    /// When a token will be free for someone waiting (if only tokens hold them up).
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.waiting.is_empty()
            || self.in_flight >= self.limits.max_in_flight
            || self.tokens_milli >= 1000
        {
            return None;
        }
        let missing = 1000 - self.tokens_milli;
        let per_second = u64::from(self.limits.per_second.max(1));
        let wait = Duration::from_micros((missing * 1000).div_ceil(per_second));
        self.refilled.map(|at| at + wait)
    }

    fn refill(&mut self, now: Instant) {
        let last = *self.refilled.get_or_insert(now);
        let elapsed = now.saturating_duration_since(last).as_micros() as u64;
        let earned = elapsed * u64::from(self.limits.per_second) / 1000;
        let cap = u64::from(self.limits.burst.max(1)) * 1000;
        if earned > 0 {
            self.tokens_milli = (self.tokens_milli + earned).min(cap);
            self.refilled = Some(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_in_flight: usize, per_second: u32, burst: u32) -> AdmissionLimits {
        AdmissionLimits {
            max_in_flight,
            per_second,
            burst,
        }
    }

    #[test]
    fn no_more_than_the_bound_are_in_flight_and_order_is_kept() {
        let now = Instant::now();
        let mut admission = Admission::new(limits(2, 1000, 100));
        for i in 0..5 {
            admission.request(i);
        }
        assert_eq!(admission.admit(now), Some(0));
        assert_eq!(admission.admit(now), Some(1));
        assert_eq!(admission.admit(now), None, "bound reached");
        assert_eq!(
            admission.poll_timeout(),
            None,
            "waiting for a release, not a timer"
        );
        admission.release();
        admission.cancel(&2);
        assert_eq!(admission.admit(now), Some(3));
        assert_eq!((admission.in_flight(), admission.waiting()), (2, 1));
    }

    #[test]
    fn attempts_start_no_faster_than_the_rate_after_the_burst() {
        let start = Instant::now();
        let mut admission = Admission::new(limits(1000, 100, 10));
        for i in 0..100 {
            admission.request(i);
        }
        let mut admitted = 0;
        while admission.admit(start).is_some() {
            admitted += 1;
        }
        assert_eq!(admitted, 10, "the burst");
        let next = admission.poll_timeout().expect("a token comes later");
        assert_eq!(next, start + Duration::from_millis(10));
        assert_eq!(admission.admit(next - Duration::from_millis(1)), None);
        assert!(admission.admit(next).is_some());
        // A quiet second later: only the burst, however much time passed.
        let later = next + Duration::from_secs(1);
        let mut admitted = 0;
        while admission.admit(later).is_some() {
            admitted += 1;
        }
        assert_eq!(admitted, 10);
    }
}
