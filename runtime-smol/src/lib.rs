//! The production runtime of telegram-bots on smol: one executor thread runs the fleet
//! (a task per open connection, one driver task) and the health server; the state is
//! written by one writer thread. The process has a handful of threads whatever the
//! number of bots.
//!
//! - [`driver`]: the fleet in a cell, its effects carried out, its deadlines and the
//!   store's answers fed back.
//! - [`conn`]: one task per connection to Telegram.
//! - [`server`]: `/healthz`, `/readyz` and `/metrics`.

pub mod conn;
pub mod driver;
pub mod server;

use std::time::Instant;

use telegram_bots_adapters::health::{Responder, process_sample};
use telegram_bots_core::http::{Request, Response};

impl Responder for driver::Runtime {
    fn respond(&self, request: &Request) -> Response {
        let sample = process_sample(request);
        self.fleet
            .borrow()
            .health()
            .respond(request, Instant::now(), sample.as_ref())
    }
}
