//! The sans-IO core of telegram-bots.
//!
//! Everything the service decides lives here, with no sockets, files, threads, sleeps,
//! clock reads or global state: time comes in as a parameter, bytes come in and go out
//! as values. The runtimes (`telegram-bots` on smol, `telegram-bots-blocking` on OS
//! threads) only move bytes and results between the world and these types.
//!
//! - [`config`]: the environment in, a typed configuration or one error line per variable out.
//! - [`seal`]: tokens and auth keys sealed at rest (XSalsa20-Poly1305), with key rotation.
//! - [`secret`]: wrappers that keep keys, tokens and passwords out of every printout.
//! - [`fleet`]: every bot of the process, driven as one state machine: the wanted set,
//!   admission control, deadlines, restarts, and the health surface's view of them.
//! - [`bot`]: one bot's life over its sessions, and the commits of what it received.
//! - [`record`]: what of a bot survives a restart, and the commits that change it.
//! - [`updates`]: messages and the pts rule.
//! - [`voice`]: a voice message's identity, its object key and its event.
//! - [`backoff`]: exponential backoff with full jitter.
//! - [`health`]: lifecycle, readiness, and the responses of the health surface.
//! - [`http`]: the health server's HTTP/1.x connection state machine.
//! - [`metrics`]: the Prometheus text of `/metrics`.
//! - [`rsa`], [`handshake`]: the servers' RSA keys and the client's auth-key handshake.
//! - [`session`]: one MTProto connection: handshake, encrypted session, requests, pings.
//! - [`rpc_error`]: Telegram's errors as code, name and value.
//! - [`random`]: how randomness comes in.
#![forbid(unsafe_code)]

pub mod backoff;
pub mod bot;
pub mod bots_file;
pub mod config;
pub mod fleet;
pub mod handshake;
pub mod health;
pub mod http;
pub mod metrics;
pub mod random;
pub mod record;
pub mod rpc_error;
pub mod rsa;
pub mod seal;
pub mod secret;
pub mod session;
pub mod state_file;
pub mod updates;
pub mod voice;
