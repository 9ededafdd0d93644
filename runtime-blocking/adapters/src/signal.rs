//! SIGTERM, SIGINT and SIGHUP, through ctrlc.

use std::sync::atomic::{AtomicBool, Ordering};

/// Calls `on_stop` on the first stop signal. A second signal means the operator wants out
/// now: the process exits at once with 130.
pub fn on_stop(on_stop: impl Fn() + Send + 'static) -> Result<(), ctrlc::Error> {
    let seen = AtomicBool::new(false);
    ctrlc::set_handler(move || {
        if seen.swap(true, Ordering::SeqCst) {
            tracing::warn!("second stop signal: exiting without a clean stop");
            std::process::exit(130);
        }
        on_stop();
    })
}
