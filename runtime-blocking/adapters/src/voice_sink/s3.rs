//! The audio in S3, or any S3-compatible store (`S3_ENDPOINT`), through rust-s3.

use std::fmt;
use std::time::{Duration, SystemTime};

use s3::creds::Credentials;
use s3::error::S3Error;
use s3::{Bucket, Region};
use telegram_bots_core::secret::Secret;
use telegram_bots_core::voice::VoiceJob;
use ureq::http::{HeaderMap, HeaderName, HeaderValue};

use super::error::{excerpt, status_text};
use super::{ObjectLocation, ObjectStore, SinkError, retry_after, tls};

/// What [`S3Store`] needs, from the configuration's S3 variables.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Settings {
    pub bucket: String,
    pub region: String,
    /// An S3-compatible server's URL; `None`: AWS.
    pub endpoint: Option<String>,
    pub access_key_id: String,
    pub secret_access_key: Secret<String>,
    /// For the whole of one request, connecting included.
    pub timeout: Duration,
}

impl S3Settings {
    /// Long enough for a voice message of several MB on a slow link.
    pub const TIMEOUT: Duration = Duration::from_secs(60);
}

/// A bucket to put voice messages in.
pub struct S3Store {
    bucket: Box<Bucket>,
    shown: String,
}

impl fmt::Debug for S3Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Store")
            .field("at", &self.shown)
            .finish_non_exhaustive()
    }
}

impl S3Store {
    /// A client for the bucket; nothing is sent yet. A custom endpoint is addressed
    /// path-style (`{endpoint}/{bucket}/{key}`: what S3-compatible servers expect, with no
    /// DNS name per bucket); AWS virtual-host style (`{bucket}.s3.{region}.amazonaws.com`).
    pub fn new(settings: &S3Settings) -> Result<S3Store, String> {
        tls::provider();
        let credentials = Credentials::new(
            Some(&settings.access_key_id),
            Some(settings.secret_access_key.expose()),
            None,
            None,
            None,
        )
        .map_err(|e| format!("S3 credentials: {e}"))?;
        let region = match &settings.endpoint {
            Some(endpoint) => Region::Custom {
                region: settings.region.clone(),
                endpoint: endpoint.clone(),
            },
            None => aws_region(&settings.region),
        };
        let bucket = Bucket::new(&settings.bucket, region, credentials)
            .and_then(|b| b.with_request_timeout(settings.timeout))
            .map_err(|e| format!("S3 bucket {}: {e}", settings.bucket))?;
        let (bucket, shown) = match &settings.endpoint {
            Some(endpoint) => (
                bucket.with_path_style(),
                format!(
                    "S3 bucket {} at {endpoint} (region {}, path-style)",
                    settings.bucket, settings.region
                ),
            ),
            None => (
                bucket,
                format!(
                    "S3 bucket {} in AWS region {}",
                    settings.bucket, settings.region
                ),
            ),
        };
        Ok(S3Store { bucket, shown })
    }
}

/// An AWS region by name; one that rust-s3 does not know yet by AWS's own endpoint
/// pattern rather than as a host name.
fn aws_region(name: &str) -> Region {
    match name.parse::<Region>() {
        Ok(Region::Custom { .. }) | Err(_) => Region::Custom {
            region: name.to_owned(),
            endpoint: format!("https://s3.{name}.amazonaws.com"),
        },
        Ok(known) => known,
    }
}

impl ObjectStore for S3Store {
    fn put(&self, job: &VoiceJob, bytes: &[u8]) -> Result<ObjectLocation, SinkError> {
        let key = job.object_key();
        let what = format!("S3 put {key}");
        let mut headers = HeaderMap::new();
        for (name, value) in job.object_metadata() {
            let name = HeaderName::try_from(format!("x-amz-meta-{name}"))
                .map_err(|e| SinkError::permanent(format!("{what}: metadata {name}: {e}")))?;
            let value = HeaderValue::try_from(metadata_value(&value))
                .map_err(|e| SinkError::permanent(format!("{what}: metadata value: {e}")))?;
            headers.insert(name, value);
        }
        // The body is borrowed here; rust-s3 copies it once into its request.
        let response = self
            .bucket
            .put_object_with_content_type_and_headers(
                &key,
                bytes,
                content_type(&job.file.mime_type),
                Some(headers),
            )
            .map_err(|e| transport_error(&what, e))?;
        let status = response.status_code();
        if (200..300).contains(&status) {
            return Ok(ObjectLocation {
                bucket: self.bucket.name(),
                key,
            });
        }
        let retry_after = response
            .headers()
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case("retry-after"))
            .and_then(|(_, value)| retry_after::parse(value, SystemTime::now()));
        // rust-s3 keeps no body of a PUT's answer (S3's error code is lost): the status
        // says enough to decide.
        let reason = format!("{what}: {}", status_text(status));
        Err(SinkError::from_status(status, retry_after, reason))
    }

    fn describe(&self) -> String {
        self.shown.clone()
    }
}

/// A failure before any status: the network (refused, reset, timed out, TLS) is worth
/// another try; anything else (a header rust-s3 cannot build) is not.
fn transport_error(what: &str, error: S3Error) -> SinkError {
    let reason = format!("{what}: {}", excerpt(&error.to_string(), 300));
    match error {
        S3Error::Atto(_) | S3Error::Io(_) => SinkError::transient(reason),
        _ => SinkError::permanent(reason),
    }
}

/// Telegram's MIME type, unless it cannot be a header value.
fn content_type(mime_type: &str) -> &str {
    let fine = !mime_type.is_empty() && mime_type.bytes().all(|b| b.is_ascii_graphic());
    if fine {
        mime_type
    } else {
        "application/octet-stream"
    }
}

/// S3 metadata is US-ASCII: anything else (a workspace id in another script) is sent
/// percent-encoded as UTF-8, and so is `%` itself.
fn metadata_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if (0x20..0x7f).contains(&byte) && byte != b'%' {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_values_stay_ascii() {
        assert_eq!(metadata_value("ws_123"), "ws_123");
        assert_eq!(metadata_value("équipe 5%"), "%C3%A9quipe 5%25");
        assert_eq!(content_type("audio/ogg"), "audio/ogg");
        assert_eq!(content_type("audio/ögg"), "application/octet-stream");
        assert_eq!(content_type(""), "application/octet-stream");
    }

    #[test]
    fn regions_have_their_endpoint_and_the_secret_stays_hidden() {
        assert_eq!(aws_region("eu-west-1"), Region::EuWest1);
        assert_eq!(
            aws_region("xx-new-9").endpoint(),
            "https://s3.xx-new-9.amazonaws.com"
        );
        let store = S3Store::new(&S3Settings {
            bucket: "voice".into(),
            region: "eu-west-1".into(),
            endpoint: None,
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: Secret::new("wJalrXUtnFEMI-secret".into()),
            timeout: S3Settings::TIMEOUT,
        })
        .unwrap();
        assert_eq!(store.describe(), "S3 bucket voice in AWS region eu-west-1");
        assert!(!format!("{store:?}").contains("wJalrXUtnFEMI"));
    }
}
