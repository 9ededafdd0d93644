//! An auth key's server salts. Telegram changes the salt every 30 minutes and accepts the
//! previous ones for a further 1800 seconds; `get_future_salts` hands out the coming ones.
//! Here periods are aligned to Unix time, each salt is derived from a per-key secret and
//! the period's number, and the salt the handshake agreed on is the salt of the period the
//! key was made in.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use grammers_tl_types::types;

use super::crypto::{random, sha256};

/// Unix time in milliseconds.
pub fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[derive(Clone, Debug)]
pub struct Salts {
    first: i64,
    created_ms: i64,
    secret: [u8; 16],
}

/// At most this many past periods are looked at (a grace far longer than the period).
const MAX_PERIODS_BACK: i64 = 64;

impl Salts {
    /// The salts of a key made (or registered) at `created_ms` with `first` as its salt.
    pub fn new(first: i64, created_ms: i64) -> Salts {
        Salts {
            first,
            created_ms,
            secret: random(),
        }
    }

    fn period_ms(period: Duration) -> i64 {
        (period.as_millis() as i64).max(1)
    }

    fn index(at_ms: i64, period: Duration) -> i64 {
        at_ms.div_euclid(Self::period_ms(period))
    }

    /// The salt of period `index`.
    fn salt(&self, index: i64, period: Duration) -> i64 {
        if index == Self::index(self.created_ms, period) {
            return self.first;
        }
        let hash = sha256(&[&self.secret, &index.to_le_bytes()]);
        i64::from_le_bytes(hash[..8].try_into().expect("8 bytes"))
    }

    /// The salt the server wants now.
    pub fn current(&self, now_ms: i64, period: Duration) -> i64 {
        self.salt(Self::index(now_ms, period), period)
    }

    /// Whether a message with `salt` is accepted now: the current salt, or one whose period
    /// ended less than `grace` ago.
    pub fn accepts(&self, salt: i64, now_ms: i64, period: Duration, grace: Duration) -> bool {
        let p = Self::period_ms(period);
        let now = Self::index(now_ms, period);
        (0..=MAX_PERIODS_BACK)
            .map(|back| now - back)
            .take_while(|&i| back_in_grace(i, p, now_ms, grace) || i == now)
            .any(|i| self.salt(i, period) == salt)
    }

    /// `num` salts from the current one on, with their validity (Unix seconds; each is
    /// valid through its grace time).
    pub fn future(
        &self,
        now_ms: i64,
        num: i32,
        period: Duration,
        grace: Duration,
    ) -> Vec<types::FutureSalt> {
        let p = Self::period_ms(period);
        let now = Self::index(now_ms, period);
        (0..i64::from(num.clamp(1, 64)))
            .map(|i| {
                let index = now + i;
                types::FutureSalt {
                    valid_since: ((index * p) / 1000) as i32,
                    valid_until: (((index + 1) * p + grace.as_millis() as i64) / 1000) as i32,
                    salt: self.salt(index, period),
                }
            })
            .collect()
    }
}

/// Period `index` (of `p` ms) ended less than `grace` before `now_ms`.
fn back_in_grace(index: i64, p: i64, now_ms: i64, grace: Duration) -> bool {
    (index + 1) * p + grace.as_millis() as i64 > now_ms
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn salts_rotate_and_old_ones_last_their_grace() {
        let period = Duration::from_secs(10);
        let grace = Duration::from_secs(5);
        let salts = Salts::new(42, 100_000);
        assert_eq!(
            salts.current(105_000, period),
            42,
            "the handshake's salt first"
        );
        let next = salts.current(110_000, period);
        assert_ne!(next, 42);
        assert!(
            salts.accepts(42, 112_000, period, grace),
            "within its grace"
        );
        assert!(
            !salts.accepts(42, 116_000, period, grace),
            "after its grace"
        );
        assert!(salts.accepts(next, 116_000, period, grace));
        assert!(!salts.accepts(1, 116_000, period, grace));
        let future = salts.future(105_000, 3, period, grace);
        assert_eq!(future.len(), 3);
        assert_eq!(future[0].salt, 42);
        assert_eq!(future[1].salt, next);
        assert_ne!(future[1].salt, future[2].salt);
        assert_eq!((future[1].valid_since, future[1].valid_until), (110, 125));
    }
}
