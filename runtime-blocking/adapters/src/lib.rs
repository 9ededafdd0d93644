//! The blocking adapters both runtimes of telegram-bots share: what is IO but decides
//! nothing. The production runtime (`telegram-bots`, on smol) calls them from a small,
//! fixed set of threads; the debugging runtime (`telegram-bots-blocking`) from its own.
//!
//! - [`startup`]: the command line, the configuration, logging.
//! - [`admin`]: `migrate` and `integrations ...`, so that an operator never writes SQL.
//! - [`declare`]: a bots file as the declaration of the integrations.
//! - [`demo`]: the service against a fake Telegram in the process, nothing to set up.
//! - [`store_watch`]: the thread that keeps the fleet's wanted set equal to the store.
//! - [`plan`]: the trusted RSA keys, the DC addresses, the API credentials, the store.
//! - [`store`]: integrations, sessions and update state in PostgreSQL or SQLite.
//! - [`state_writer`]: one writer thread per process that writes the fleet's commits to
//!   the store in batches.
//! - [`signal`]: SIGTERM, SIGINT and SIGHUP.
//! - [`process`]: process statistics for `/metrics`.
//! - [`clock`]: both clocks and the operating system's randomness, read once per event.
//! - [`health`]: what the health servers call.
//! - [`log`]: the fleet's events as log lines.
//! - [`net`]: sockets to Telegram, from a chosen local address if one is set.
//! - [`voice_sink`]: where voice messages go: S3 or a local directory, Inngest or a
//!   local events file, from a few worker threads.
//!
//! Everything the service decides lives in `telegram-bots-core`.

pub mod admin;
pub mod clock;
pub mod declare;
pub mod demo;
pub mod health;
pub mod log;
pub mod net;
pub mod plan;
pub mod process;
pub mod signal;
pub mod startup;
pub mod state_writer;
pub mod store;
pub mod store_watch;
pub mod voice_sink;

pub use startup::{Prepared, prepare};
