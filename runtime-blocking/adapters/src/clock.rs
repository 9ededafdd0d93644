//! The clocks and the randomness the core is given: read here, at the edge, once per
//! event, never inside the core.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use telegram_bots_core::random::Random;
use telegram_bots_core::session::Now;

/// The operating system's randomness.
#[derive(Clone, Copy, Debug, Default)]
pub struct OsRandom;

impl Random for OsRandom {
    fn fill(&mut self, buf: &mut [u8]) {
        getrandom::fill(buf).expect("the operating system provides randomness");
    }
}

/// Both clocks, read once.
pub fn now() -> Now {
    let unix_secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    Now {
        instant: Instant::now(),
        unix_secs,
    }
}
