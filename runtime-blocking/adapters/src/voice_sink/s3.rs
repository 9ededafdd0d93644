//! The audio in S3, or any S3-compatible store (`S3_ENDPOINT`): rust-s3 signs each PUT
//! (AWS Signature V4 in the query string, the content type and metadata headers signed
//! with it, the payload unsigned as S3 allows), and the sinks' HTTP client sends it. So
//! a PUT goes out on a kept-alive connection with `TCP_NODELAY`, straight from the
//! downloaded bytes, and S3's error code comes back in the reason: rust-s3's own sync
//! transport opens a connection per request, copies the body, drops the error body, and
//! writes the body after the headers without `TCP_NODELAY`, which costs a delayed ACK
//! (40 ms on Linux) per PUT and capped the pipeline near 100 voice messages a second
//! (docs/benchmarks.md).

use std::fmt;
use std::time::{Duration, SystemTime};

use s3::creds::Credentials;
use s3::{Bucket, Region};
use telegram_bots_core::secret::Secret;
use telegram_bots_core::voice::VoiceJob;
use ureq::http::header::CONTENT_TYPE;
use ureq::http::{HeaderMap, HeaderName, HeaderValue};

use super::error::status_text;
use super::{ObjectLocation, ObjectStore, SinkError, http, retry_after, tls};

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
    agent: ureq::Agent,
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
        Ok(S3Store {
            bucket,
            agent: http::agent(settings.timeout),
            shown,
        })
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

/// How long a signed PUT stays valid: it is sent at once, so a minute is plenty.
const SIGNED_FOR_SECS: u32 = 60;

impl ObjectStore for S3Store {
    fn put(&self, job: &VoiceJob, bytes: &[u8]) -> Result<ObjectLocation, SinkError> {
        let key = job.object_key();
        let what = format!("S3 put {key}");
        let mut headers = HeaderMap::new();
        let mime = HeaderValue::try_from(content_type(&job.file.mime_type))
            .map_err(|e| SinkError::permanent(format!("{what}: content type: {e}")))?;
        headers.insert(CONTENT_TYPE, mime);
        for (name, value) in job.object_metadata() {
            let name = HeaderName::try_from(format!("x-amz-meta-{name}"))
                .map_err(|e| SinkError::permanent(format!("{what}: metadata {name}: {e}")))?;
            let value = HeaderValue::try_from(metadata_value(&value))
                .map_err(|e| SinkError::permanent(format!("{what}: metadata value: {e}")))?;
            headers.insert(name, value);
        }
        // The URL carries a signature that lets anyone write this key for a minute: it is
        // never shown.
        let url = self
            .bucket
            .presign_put(&key, SIGNED_FOR_SECS, Some(headers.clone()), None)
            .map_err(|e| SinkError::permanent(format!("{what}: cannot sign: {e}")))?;
        let mut request = self.agent.put(&url);
        for (name, value) in &headers {
            request = request.header(name, value);
        }
        let mut response = match request.send(bytes) {
            Ok(response) => response,
            Err(error) => {
                let reason = format!("{what}: {}", redact(&error.to_string(), &url));
                return Err(http::transport_error(&error, reason));
            }
        };
        let status = response.status().as_u16();
        let body = http::drain(&mut response, 16 * 1024);
        if response.status().is_success() {
            return Ok(ObjectLocation::of(self.bucket.name(), key, bytes));
        }
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| retry_after::parse(v, SystemTime::now()));
        let reason = match error_code(&body) {
            Some(code) => format!("{what}: {} {code}", status_text(status)),
            None => format!("{what}: {}", status_text(status)),
        };
        Err(SinkError::from_status(status, retry_after, reason))
    }

    fn describe(&self) -> String {
        self.shown.clone()
    }
}

/// `text` without the signed URL or its query (the credential and the signature).
fn redact(text: &str, url: &str) -> String {
    let text = text.replace(url, "<signed URL>");
    match url.split_once('?') {
        Some((_, query)) => text.replace(query, "***"),
        None => text,
    }
}

/// S3's error code (`<Code>NoSuchBucket</Code>`) in an error answer's XML body.
fn error_code(body: &str) -> Option<&str> {
    let start = body.find("<Code>")? + "<Code>".len();
    let len = body[start..].find("</Code>")?;
    let code = &body[start..start + len];
    let plain =
        !code.is_empty() && code.len() <= 64 && code.bytes().all(|b| b.is_ascii_alphanumeric());
    plain.then_some(code)
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
    http::percent_encode(value, |b| (0x20..0x7f).contains(&b) && b != b'%')
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
    fn an_error_names_s3s_code_and_never_the_signature() {
        let body =
            "<?xml version=\"1.0\"?><Error><Code>NoSuchBucket</Code><Message>x</Message></Error>";
        assert_eq!(error_code(body), Some("NoSuchBucket"));
        assert_eq!(error_code("<Code><script></Code>"), None);
        assert_eq!(error_code("not xml"), None);
        let url = "http://s3:9000/voice/k.ogg?X-Amz-Credential=AKID&X-Amz-Signature=abc";
        let shown = redact(
            &format!("bad uri {url}; query X-Amz-Credential=AKID&X-Amz-Signature=abc"),
            url,
        );
        assert_eq!(shown, "bad uri <signed URL>; query ***");
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
