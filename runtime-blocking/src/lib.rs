//! The blocking runtime of telegram-bots (one OS thread per bot, for local debugging), and
//! the blocking pieces both runtimes share: start-up (command line, configuration,
//! logging), signals, process statistics and the health state they serve.
//!
//! The production runtime (`telegram-bots`, on smol) depends on this crate for those
//! shared pieces only; everything the service decides lives in `telegram-bots-core`.

pub mod bot_thread;
pub mod fleet;
pub mod process;
pub mod server;
pub mod shared;
pub mod signal;
pub mod startup;

pub use startup::{prepare, start, start_with};
