//! What a sink reports when it could not do its job: worth trying again or not, and why,
//! in words for the operator.

use std::fmt;
use std::time::Duration;

use telegram_bots_core::voice::Failure;

/// A failed attempt to store an object or deliver an event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SinkError {
    /// Trying again later may succeed: the server is down, slow, overloaded (5xx, 429,
    /// 408) or unreachable. `retry_after` is the server's own `Retry-After`, if it sent
    /// one.
    Transient {
        retry_after: Option<Duration>,
        reason: String,
    },
    /// Trying again cannot succeed until someone changes something: a refused key, a
    /// malformed or oversized request, a missing bucket.
    Permanent { reason: String },
}

impl SinkError {
    pub fn transient(reason: impl Into<String>) -> SinkError {
        SinkError::Transient {
            retry_after: None,
            reason: reason.into(),
        }
    }

    pub fn permanent(reason: impl Into<String>) -> SinkError {
        SinkError::Permanent {
            reason: reason.into(),
        }
    }

    /// The error an HTTP status that is not a success means: 5xx, 429 (Too Many
    /// Requests) and 408 (Request Timeout) are transient, with the server's `Retry-After`;
    /// every other status is permanent. `reason` already names the status.
    pub(crate) fn from_status(
        status: u16,
        retry_after: Option<Duration>,
        reason: String,
    ) -> SinkError {
        if status >= 500 || status == 429 || status == 408 {
            SinkError::Transient {
                retry_after,
                reason,
            }
        } else {
            SinkError::Permanent { reason }
        }
    }

    pub fn is_transient(&self) -> bool {
        matches!(self, SinkError::Transient { .. })
    }

    /// How long the server asked to wait before the next attempt.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            SinkError::Transient { retry_after, .. } => *retry_after,
            SinkError::Permanent { .. } => None,
        }
    }

    pub fn reason(&self) -> &str {
        match self {
            SinkError::Transient { reason, .. } | SinkError::Permanent { reason } => reason,
        }
    }
}

impl fmt::Display for SinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())?;
        if let Some(wait) = self.retry_after() {
            write!(f, " (retry after {} s)", wait.as_secs())?;
        }
        Ok(())
    }
}

impl std::error::Error for SinkError {}

/// What the core's pipeline makes of it: retried (after the server's `Retry-After`, if
/// any) or failed.
impl From<SinkError> for Failure {
    fn from(error: SinkError) -> Failure {
        match error {
            SinkError::Transient {
                retry_after,
                reason,
            } => Failure {
                permanent: false,
                retry_after,
                reason,
            },
            SinkError::Permanent { reason } => Failure::permanent(reason),
        }
    }
}

/// `503 Service Unavailable`: a status with its standard phrase, for reasons.
pub(crate) fn status_text(status: u16) -> String {
    let phrase = ureq::http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason());
    match phrase {
        Some(phrase) => format!("{status} {phrase}"),
        None => status.to_string(),
    }
}

/// At most `max` characters of a server's text, on one line.
pub(crate) fn excerpt(text: &str, max: usize) -> String {
    let one_line: String = text
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(max + 1)
        .collect();
    if one_line.chars().count() > max {
        format!("{}...", one_line.chars().take(max).collect::<String>())
    } else {
        one_line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overload_and_server_errors_are_transient_the_rest_permanent() {
        for status in [500, 502, 503, 504, 429, 408] {
            let e = SinkError::from_status(status, Some(Duration::from_secs(3)), "x".into());
            assert!(e.is_transient(), "{status}");
            assert_eq!(e.retry_after(), Some(Duration::from_secs(3)));
        }
        for status in [400, 401, 403, 404, 413, 301] {
            let e = SinkError::from_status(status, Some(Duration::from_secs(3)), "x".into());
            assert!(!e.is_transient(), "{status}");
            assert_eq!(e.retry_after(), None);
        }
    }

    #[test]
    fn reasons_read_well() {
        assert_eq!(status_text(503), "503 Service Unavailable");
        assert_eq!(status_text(429), "429 Too Many Requests");
        assert_eq!(status_text(599), "599");
        let e = SinkError::Transient {
            retry_after: Some(Duration::from_secs(7)),
            reason: "Inngest: 429 Too Many Requests".into(),
        };
        assert_eq!(
            e.to_string(),
            "Inngest: 429 Too Many Requests (retry after 7 s)"
        );
        assert_eq!(excerpt("a\n  b c", 10), "a b c");
        assert_eq!(excerpt("abcdefghijkl", 5), "abcde...");
    }
}
