//! The HTTP client both network sinks send with: ureq, keeping connections alive between
//! requests (a voice message costs no new TCP or TLS handshake) and with `TCP_NODELAY`
//! (a body written after its headers does not wait for the server's delayed ACK), on
//! rustls with this process's crypto provider.

use std::time::Duration;

use super::tls;

/// For the connection alone.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// An agent whose every request (connecting included) ends within `timeout`, that
/// answers every status as a response to classify, and follows no redirect (a URL that
/// carries a key or a signature must go nowhere else).
pub(crate) fn agent(timeout: Duration) -> ureq::Agent {
    let config = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .timeout_connect(Some(timeout.min(CONNECT_TIMEOUT)))
        .http_status_as_error(false)
        .max_redirects(0)
        .tls_config(
            ureq::tls::TlsConfig::builder()
                .unversioned_rustls_crypto_provider(tls::provider())
                .build(),
        )
        .build();
    ureq::Agent::new_with_config(config)
}

/// The error for a request that got no answer: a URL that cannot be used needs a new
/// configuration; being down, unreachable, slow, reset or refused by TLS is worth another
/// try. `reason` already says what failed.
pub(crate) fn transport_error(error: &ureq::Error, reason: String) -> super::SinkError {
    match error {
        ureq::Error::BadUri(_)
        | ureq::Error::Http(_)
        | ureq::Error::RequireHttpsOnly(_)
        | ureq::Error::InvalidProxyUrl => super::SinkError::permanent(reason),
        _ => super::SinkError::transient(reason),
    }
}

/// `text` with every byte that `keep` refuses written as `%XX` (UTF-8 bytes included).
pub(crate) fn percent_encode(text: &str, keep: impl Fn(u8) -> bool) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if keep(byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Reads what is left of an answer's body (at most `limit` bytes), so that the connection
/// can serve the next request; the text, for an error's reason.
pub(crate) fn drain(response: &mut ureq::http::Response<ureq::Body>, limit: u64) -> String {
    let body = response
        .body_mut()
        .with_config()
        .limit(limit)
        .read_to_vec()
        .unwrap_or_default();
    String::from_utf8_lossy(&body).into_owned()
}
