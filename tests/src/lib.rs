//! Test support for telegram-bots: every test talks to real parts.
//!
//! - [`postgres`]: a real PostgreSQL (`DATABASE_URL`, or a private throwaway cluster),
//!   one fresh database per test.
//! - [`store`]: the two store back ends (SQLite, PostgreSQL) for the shared store suite.
//! - [`s3`]: a real S3-compatible server (`s3s-fs`) per test, with its own bucket.
//! - [`inngest`]: an in-process Inngest event receiver that follows the documented API,
//!   records what it accepts and can be told to fail.
//! - [`service`]: a service binary started as a real process, signalled and waited for.
//! - [`http`]: a raw HTTP client that can also send what a well-behaved client would not.
//! - [`conformance`]: the health-surface suite that both runtimes must pass unchanged.
//! - [`demo`]: `demo` as a newcomer runs it, as a process.
//! - [`readme`]: every command of README.md, run as a reader would.

pub mod bench;
pub mod chaos;
pub mod conformance;
pub mod demo;
pub mod e2e;
pub mod e2e_store;
pub use telegram_bots_fake_telegram as fake_dc;
pub mod fleet_bench;
pub mod fleet_sim;
pub mod http;
pub mod inngest;
pub use telegram_bots_fake_telegram::json_server;
pub mod memory_net;
pub mod net;
pub mod postgres;
pub mod process;
pub mod readme;
pub mod s3;
pub mod service;
pub mod store;
pub mod voice_bench;
