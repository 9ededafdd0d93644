//! The debugging runtime of telegram-bots: the fleet on OS threads (a thread per bot's
//! connection, one for the fleet's deadlines), plain blocking code that a debugger reads
//! easily. Production runs on smol (`telegram-bots-smol`); both drive the same core and
//! share the blocking adapters of `telegram-bots-adapters`.
//!
//! - [`runner`]: the fleet behind a mutex, its effects carried out on threads.
//! - [`server`]: `/healthz`, `/readyz` and `/metrics` on threads.

pub mod runner;
pub mod server;
