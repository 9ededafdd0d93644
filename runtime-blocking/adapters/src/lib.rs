//! The blocking adapters both runtimes of telegram-bots share: what is IO but decides
//! nothing. The production runtime (`telegram-bots`, on smol) calls them from a small,
//! fixed set of threads; the debugging runtime (`telegram-bots-blocking`) from its own.
//!
//! - [`startup`]: the command line, the configuration, logging.
//! - [`plan`]: the bots file, the state file and the trusted RSA keys, read into the
//!   fleet's wanted set.
//! - [`store`]: integrations, sessions and update state in PostgreSQL or SQLite.
//! - [`state_writer`]: one writer thread per process that writes the fleet's commits to
//!   the state file in batches.
//! - [`signal`]: SIGTERM, SIGINT and SIGHUP.
//! - [`process`]: process statistics for `/metrics`.
//! - [`clock`]: both clocks and the operating system's randomness, read once per event.
//! - [`health`]: what the health servers call.
//! - [`log`]: the fleet's events as log lines.
//! - [`net`]: sockets to Telegram, from a chosen local address if one is set.
//!
//! Everything the service decides lives in `telegram-bots-core`.

pub mod clock;
pub mod health;
pub mod log;
pub mod net;
pub mod plan;
pub mod process;
pub mod signal;
pub mod startup;
pub mod state_writer;
pub mod store;

pub use startup::{prepare, start, start_with};
