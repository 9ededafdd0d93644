//! Admission control: how many bots may be connecting or handshaking at once, and how
//! fast new connection attempts start.
//!
//! A handshake costs two 2048-bit modular exponentiations on each side (milliseconds of
//! CPU on the one executor thread that also answers `/healthz`), and Telegram answers a
//! burst of new connections from one address with `-429`. Ten thousand bots that start
//! (or lost their connections) at the same instant therefore queue here: at most
//! `max_in_flight` hold a permit at once, of which at most `max_handshakes` for a
//! connection that starts with a handshake, and permits are handed out at most
//! `per_second` a second (a token bucket with a small burst), in the order asked for
//! within each kind; a bot with a stored key goes first (it is cheap and quick).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The bounds of admission.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdmissionLimits {
    /// Connects and handshakes in flight at once.
    pub max_in_flight: usize,
    /// Of those, connections that start with a handshake. Each handshake's CPU work
    /// queues on the executor: this bound keeps the queue to tens of milliseconds.
    pub max_handshakes: usize,
    /// New connection attempts a second, on average.
    pub per_second: u32,
    /// Attempts that may start at once after a quiet spell.
    pub burst: u32,
}

impl Default for AdmissionLimits {
    fn default() -> Self {
        AdmissionLimits {
            max_in_flight: 64,
            max_handshakes: 8,
            per_second: 2000,
            burst: 100,
        }
    }
}

/// What a connection attempt will cost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// With a stored key: a connect and a few requests.
    Resume,
    /// Without one: a connect and a handshake.
    Handshake,
}

/// Permits for connection attempts, handed out in order within each kind.
#[derive(Debug)]
pub struct Admission<T> {
    limits: AdmissionLimits,
    in_flight: usize,
    handshakes: usize,
    resuming: VecDeque<T>,
    handshaking: VecDeque<T>,
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
            handshakes: 0,
            resuming: VecDeque::new(),
            handshaking: VecDeque::new(),
            refilled: None,
        }
    }

    /// Queues `who` for a permit of `kind`.
    pub fn request(&mut self, who: T, kind: Kind) {
        match kind {
            Kind::Resume => self.resuming.push_back(who),
            Kind::Handshake => self.handshaking.push_back(who),
        }
    }

    /// Takes `who` out of the queues (it no longer wants a permit).
    pub fn cancel(&mut self, who: &T) {
        self.resuming.retain(|w| w != who);
        self.handshaking.retain(|w| w != who);
    }

    /// A permit of `kind` comes back.
    pub fn release(&mut self, kind: Kind) {
        self.in_flight = self.in_flight.saturating_sub(1);
        if kind == Kind::Handshake {
            self.handshakes = self.handshakes.saturating_sub(1);
        }
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Permits held for connections that start with a handshake.
    pub fn handshakes(&self) -> usize {
        self.handshakes
    }

    pub fn waiting(&self) -> usize {
        self.resuming.len() + self.handshaking.len()
    }

    /// The kind of the next one that could be admitted, tokens aside.
    fn next_kind(&self) -> Option<Kind> {
        if self.in_flight >= self.limits.max_in_flight {
            None
        } else if !self.resuming.is_empty() {
            Some(Kind::Resume)
        } else if !self.handshaking.is_empty() && self.handshakes < self.limits.max_handshakes {
            Some(Kind::Handshake)
        } else {
            None
        }
    }

    /// The next one to admit now, if a permit and a token are free; it holds a permit
    /// of the kind returned until [`Admission::release`].
    pub fn admit(&mut self, now: Instant) -> Option<(T, Kind)> {
        let kind = self.next_kind()?;
        self.refill(now);
        if self.tokens_milli < 1000 {
            return None;
        }
        self.tokens_milli -= 1000;
        self.in_flight += 1;
        let who = match kind {
            Kind::Resume => self.resuming.pop_front(),
            Kind::Handshake => {
                self.handshakes += 1;
                self.handshaking.pop_front()
            }
        };
        who.map(|w| (w, kind))
    }

    /// When a token will be free for someone waiting (if only tokens hold them up).
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.next_kind().is_none() || self.tokens_milli >= 1000 {
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
            max_handshakes: max_in_flight,
            per_second,
            burst,
        }
    }

    #[test]
    fn no_more_than_the_bound_are_in_flight_and_order_is_kept() {
        let now = Instant::now();
        let mut admission = Admission::new(limits(2, 1000, 100));
        for i in 0..5 {
            admission.request(i, Kind::Resume);
        }
        assert_eq!(admission.admit(now), Some((0, Kind::Resume)));
        assert_eq!(admission.admit(now), Some((1, Kind::Resume)));
        assert_eq!(admission.admit(now), None, "bound reached");
        assert_eq!(
            admission.poll_timeout(),
            None,
            "waiting for a release, not a timer"
        );
        admission.release(Kind::Resume);
        admission.cancel(&2);
        assert_eq!(admission.admit(now), Some((3, Kind::Resume)));
        assert_eq!((admission.in_flight(), admission.waiting()), (2, 1));
    }

    #[test]
    fn handshakes_have_their_own_smaller_bound_and_stored_keys_go_first() {
        let now = Instant::now();
        let mut admission = Admission::new(AdmissionLimits {
            max_in_flight: 10,
            max_handshakes: 2,
            per_second: 1000,
            burst: 100,
        });
        for i in 0..4 {
            admission.request(i, Kind::Handshake);
        }
        admission.request(100, Kind::Resume);
        let admitted: Vec<_> = std::iter::from_fn(|| admission.admit(now)).collect();
        assert_eq!(
            admitted,
            [
                (100, Kind::Resume),
                (0, Kind::Handshake),
                (1, Kind::Handshake)
            ]
        );
        assert_eq!(admission.handshakes(), 2);
        admission.release(Kind::Handshake);
        assert_eq!(admission.admit(now), Some((2, Kind::Handshake)));
    }

    #[test]
    fn attempts_start_no_faster_than_the_rate_after_the_burst() {
        let start = Instant::now();
        let mut admission = Admission::new(limits(1000, 100, 10));
        for i in 0..100 {
            admission.request(i, Kind::Resume);
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
