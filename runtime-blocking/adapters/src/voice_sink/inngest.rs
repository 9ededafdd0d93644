//! The events to Inngest's event API through ureq: `POST {base}/e/{event key}` with the
//! event as its JSON body (`../shared/specs/inngest-event-api.md`).
//!
//! The event key is in the URL's path, so the URL is a secret: it is shown, logged and
//! put in errors as `{base}/e/***`, and any text that reaches a reason (a ureq error
//! names the URL it could not use) has the key replaced by `***`.

use std::fmt;
use std::time::{Duration, SystemTime};

use serde_json::Value;
use telegram_bots_core::secret::Secret;

use super::error::{excerpt, status_text};
use super::{EventSink, SinkError, event_bytes, http, retry_after};

/// A sender of events to one Inngest event endpoint.
pub struct InngestSink {
    agent: ureq::Agent,
    /// `{base}/e/{key}`.
    url: Secret<String>,
    key: Secret<String>,
    base_url: String,
}

impl fmt::Debug for InngestSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InngestSink")
            .field("url", &self.shown_url())
            .finish_non_exhaustive()
    }
}

impl InngestSink {
    /// For the whole of one request, connecting included.
    pub const TIMEOUT: Duration = Duration::from_secs(15);
    /// A sender to `base_url` (no trailing `/`: the configuration trims it) with
    /// `event_key`; nothing is sent yet. `timeout` bounds each request.
    pub fn new(base_url: &str, event_key: &Secret<String>, timeout: Duration) -> InngestSink {
        InngestSink {
            agent: http::agent(timeout),
            url: Secret::new(format!("{base_url}/e/{}", path_segment(event_key.expose()))),
            key: event_key.clone(),
            base_url: base_url.to_owned(),
        }
    }

    fn shown_url(&self) -> String {
        format!("{}/e/***", self.base_url)
    }

    /// `text` with the event key (as given, and as it is in the URL) replaced by `***`.
    fn redact(&self, text: &str) -> String {
        let key = self.key.expose();
        if key.is_empty() {
            return text.to_owned();
        }
        text.replace(key, "***").replace(&path_segment(key), "***")
    }

    /// The error for an answer that is not a success.
    fn refused(&self, mut response: ureq::http::Response<ureq::Body>) -> SinkError {
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| retry_after::parse(v, SystemTime::now()));
        let body = http::drain(&mut response, 16 * 1024);
        let reason = match status {
            401 | 403 => format!("Inngest: {status} event key refused"),
            413 => "Inngest: 413 event too large".to_owned(),
            _ => {
                // Inngest explains a refusal in the body's `error`.
                let error = serde_json::from_str::<Value>(&body)
                    .ok()
                    .and_then(|v| v.get("error")?.as_str().map(str::to_owned));
                match error {
                    Some(error) => {
                        format!("Inngest: {}: {}", status_text(status), excerpt(&error, 300))
                    }
                    None => format!("Inngest: {}", status_text(status)),
                }
            }
        };
        SinkError::from_status(status, retry_after, self.redact(&reason))
    }
}

impl EventSink for InngestSink {
    fn send(&self, event: &Value) -> Result<(), SinkError> {
        let result = self
            .agent
            .post(self.url.expose())
            .header("content-type", "application/json")
            .send(&event_bytes(event)[..]);
        match result {
            Ok(mut response) if response.status().is_success() => {
                http::drain(&mut response, 64 * 1024);
                Ok(())
            }
            Ok(response) => Err(self.refused(response)),
            Err(error) => {
                let reason = self.redact(&format!("Inngest: {error}"));
                Err(http::transport_error(&error, reason))
            }
        }
    }

    fn describe(&self) -> String {
        format!("Inngest at {}", self.shown_url())
    }
}

/// `text` as one URL path segment: unreserved characters as they are, the rest
/// percent-encoded.
fn path_segment(text: &str) -> String {
    http::percent_encode(text, |b| {
        b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_never_shown() {
        let sink = InngestSink::new(
            "https://inn.gs",
            &Secret::new("k3y/with space".into()),
            InngestSink::TIMEOUT,
        );
        assert_eq!(sink.url.expose(), "https://inn.gs/e/k3y%2Fwith%20space");
        assert_eq!(sink.describe(), "Inngest at https://inn.gs/e/***");
        assert!(!format!("{sink:?}").contains("k3y"));
        assert_eq!(
            sink.redact("bad uri: https://inn.gs/e/k3y%2Fwith%20space (k3y/with space)"),
            "bad uri: https://inn.gs/e/*** (***)"
        );
    }
}
