//! The TLS of both HTTP clients: rustls, with aws-lc-rs as its one crypto provider and
//! the webpki roots (the production image has no system certificates to rely on).

use std::sync::Arc;

use rustls::crypto::CryptoProvider;

/// The provider, made the process default first: attohttpc (under rust-s3) builds its
/// rustls configuration from the process default, while ureq is given it explicitly.
/// A provider installed earlier by someone else stays, and is the one returned.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    CryptoProvider::get_default()
        .cloned()
        .expect("a process default provider was just installed")
}
