//! The health state shared between the bots and the health server, and the one function
//! both runtimes call to answer a health request.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use telegram_bots_core::health::{Health, METRICS_PATH};
use telegram_bots_core::http::{Request, Response};

use crate::process;

/// The process's [`Health`], shared by every thread or task that reports or reads it.
#[derive(Clone, Debug, Default)]
pub struct SharedHealth(Arc<Mutex<Health>>);

impl SharedHealth {
    pub fn new() -> Self {
        Self::default()
    }

    /// Locks the state. A panic elsewhere while holding the lock leaves the data as it
    /// was, which is still the best account of the fleet, so poisoning is ignored.
    pub fn lock(&self) -> MutexGuard<'_, Health> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A stop signal arrived: readiness turns 503 now, then the caller stops the bots.
    /// The log line comes after the switch, so whoever reads it may rely on the 503.
    pub fn begin_stop(&self) {
        self.lock().set_stopping();
        tracing::info!("stop signal received (SIGTERM/SIGINT), stopping bots...");
    }

    /// The response to a health request, with a fresh process sample for `/metrics`.
    pub fn respond(&self, request: &Request) -> Response {
        let sample = if request.path == METRICS_PATH {
            process::sample()
        } else {
            None
        };
        self.lock().respond(request, sample.as_ref())
    }
}
