//! What both runtimes' health servers call to answer a request.

use telegram_bots_core::health::METRICS_PATH;
use telegram_bots_core::http::{Request, Response};
use telegram_bots_core::metrics::ProcessSample;

use crate::process;

/// Answers health requests (the core's `Health::respond` behind whatever lock or cell the
/// runtime keeps its fleet in).
pub trait Responder {
    fn respond(&self, request: &Request) -> Response;
}

/// Process statistics for the request, read only for `/metrics` (and before any lock is
/// taken: counting ten thousand open descriptors takes a moment).
pub fn process_sample(request: &Request) -> Option<ProcessSample> {
    if request.path == METRICS_PATH {
        process::sample()
    } else {
        None
    }
}
