//! Secrets at rest: bot tokens and auth keys are stored sealed with NaCl's secretbox
//! (XSalsa20-Poly1305) under `ENCRYPTION_KEY`.
//!
//! A sealed value is `k{id}:{base64(nonce24 || secretbox)}`: a random nonce per write, and
//! the id of the key that sealed it (the first four bytes of the key's SHA-256, in hex),
//! so that keys can be rotated: values are read with the current key or the previous one
//! (`ENCRYPTION_KEY_PREVIOUS`), and rewritten under the current one. A value without the
//! prefix (`base64(nonce24 || secretbox)`, as the TypeScript service stored tokens) is
//! tried with each key. The nonce comes in as a parameter: the core reads no randomness.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest as _, Sha256};
use xsalsa20poly1305::aead::{Aead as _, KeyInit as _};
use xsalsa20poly1305::{Key, Nonce, XSalsa20Poly1305};

use crate::secret::Secret;

/// A 32-byte key and its id.
#[derive(Clone)]
pub struct SealKey {
    key: Secret<[u8; 32]>,
    id: String,
}

impl SealKey {
    pub fn new(key: [u8; 32]) -> SealKey {
        let digest = Sha256::digest(key);
        let id = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
        SealKey {
            key: Secret::new(key),
            id,
        }
    }

    /// The key's id, as written in front of what it sealed (no secret: a hash prefix).
    pub fn id(&self) -> &str {
        &self.id
    }

    fn cipher(&self) -> XSalsa20Poly1305 {
        XSalsa20Poly1305::new(Key::from_slice(self.key.expose()))
    }
}

impl fmt::Debug for SealKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SealKey(k{})", self.id)
    }
}

/// The keys a store seals and opens with: the current one, and the previous one during
/// a rotation.
#[derive(Clone, Debug)]
pub struct Keyring {
    pub current: SealKey,
    pub previous: Option<SealKey>,
}

/// Why a sealed value does not open. Names the key, never a value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpenError {
    /// Not `k{id}:base64`, or too short to hold a nonce and a tag.
    Malformed,
    /// Sealed with a key that is neither the current nor the previous one.
    UnknownKey(String),
    /// The key matches by id (or was tried) but the value does not authenticate.
    Corrupt,
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpenError::Malformed => f.write_str("not a sealed value"),
            OpenError::UnknownKey(id) => write!(
                f,
                "sealed with key k{id}, which is neither ENCRYPTION_KEY nor ENCRYPTION_KEY_PREVIOUS (wrong ENCRYPTION_KEY?)"
            ),
            OpenError::Corrupt => {
                f.write_str("does not decrypt with ENCRYPTION_KEY (wrong ENCRYPTION_KEY?)")
            }
        }
    }
}

impl std::error::Error for OpenError {}

impl Keyring {
    pub fn new(current: [u8; 32], previous: Option<[u8; 32]>) -> Keyring {
        Keyring {
            current: SealKey::new(current),
            previous: previous.map(SealKey::new),
        }
    }

    /// Seals `plaintext` under the current key with `nonce` (fresh and random per write).
    pub fn seal(&self, plaintext: &[u8], nonce: [u8; 24]) -> String {
        let sealed = self
            .current
            .cipher()
            .encrypt(Nonce::from_slice(&nonce), plaintext)
            .expect("XSalsa20-Poly1305 seals any length that fits in memory");
        let mut raw = Vec::with_capacity(24 + sealed.len());
        raw.extend_from_slice(&nonce);
        raw.extend_from_slice(&sealed);
        format!("k{}:{}", self.current.id, STANDARD.encode(raw))
    }

    /// Opens a sealed value.
    pub fn open(&self, sealed: &str) -> Result<Secret<Vec<u8>>, OpenError> {
        let (keys, encoded): (Vec<&SealKey>, &str) = match sealed
            .strip_prefix('k')
            .and_then(|rest| rest.split_once(':'))
        {
            Some((id, encoded)) => {
                let key = self
                    .keys()
                    .find(|k| k.id == id)
                    .ok_or_else(|| OpenError::UnknownKey(id.to_owned()))?;
                (vec![key], encoded)
            }
            None => (self.keys().collect(), sealed),
        };
        let raw = STANDARD
            .decode(encoded.trim())
            .map_err(|_| OpenError::Malformed)?;
        if raw.len() < 24 + 16 {
            return Err(OpenError::Malformed);
        }
        let (nonce, sealed) = raw.split_at(24);
        keys.iter()
            .find_map(|k| k.cipher().decrypt(Nonce::from_slice(nonce), sealed).ok())
            .map(Secret::new)
            .ok_or(OpenError::Corrupt)
    }

    /// Whether `sealed` is under the current key (else a rotation rewrites it).
    pub fn is_current(&self, sealed: &str) -> bool {
        sealed
            .strip_prefix('k')
            .and_then(|rest| rest.split_once(':'))
            .is_some_and(|(id, _)| id == self.current.id)
    }

    fn keys(&self) -> impl Iterator<Item = &SealKey> {
        std::iter::once(&self.current).chain(self.previous.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &[u8] = b"7000001:AAsecret-token";

    #[test]
    fn a_sealed_value_opens_with_its_key_and_hides_the_plaintext() {
        let ring = Keyring::new([7; 32], None);
        let sealed = ring.seal(TOKEN, [1; 24]);
        assert!(sealed.starts_with(&format!("k{}:", ring.current.id())));
        assert!(!sealed.contains("secret"));
        assert_eq!(ring.open(&sealed).unwrap().expose(), TOKEN);
        assert_ne!(
            ring.seal(TOKEN, [2; 24]),
            sealed,
            "a fresh nonce, another value"
        );
        assert!(ring.is_current(&sealed));
    }

    #[test]
    fn rotation_reads_with_the_previous_key_and_a_wrong_key_says_so() {
        let old = Keyring::new([7; 32], None);
        let sealed = old.seal(TOKEN, [1; 24]);
        let rotated = Keyring::new([9; 32], Some([7; 32]));
        assert_eq!(rotated.open(&sealed).unwrap().expose(), TOKEN);
        assert!(!rotated.is_current(&sealed));
        let wrong = Keyring::new([9; 32], None);
        let error = wrong.open(&sealed).unwrap_err();
        assert_eq!(error, OpenError::UnknownKey(old.current.id().to_owned()));
        assert!(error.to_string().contains("wrong ENCRYPTION_KEY?"));
    }

    #[test]
    fn an_unprefixed_secretbox_as_the_typescript_service_stored_it_opens() {
        let ring = Keyring::new([7; 32], None);
        let sealed = ring.seal(TOKEN, [3; 24]);
        let bare = sealed.split_once(':').unwrap().1;
        assert_eq!(ring.open(bare).unwrap().expose(), TOKEN);
        let wrong = Keyring::new([8; 32], None);
        assert_eq!(wrong.open(bare).unwrap_err(), OpenError::Corrupt);
    }

    #[test]
    fn tampered_or_malformed_values_are_refused() {
        let ring = Keyring::new([7; 32], None);
        let sealed = ring.seal(TOKEN, [1; 24]);
        let mut raw = STANDARD.decode(sealed.split_once(':').unwrap().1).unwrap();
        raw[30] ^= 1;
        let tampered = format!("k{}:{}", ring.current.id(), STANDARD.encode(raw));
        assert_eq!(ring.open(&tampered).unwrap_err(), OpenError::Corrupt);
        assert_eq!(
            ring.open("k00:!!").unwrap_err(),
            OpenError::UnknownKey("00".into())
        );
        assert_eq!(ring.open("AAAA").unwrap_err(), OpenError::Malformed);
        let debug = format!("{ring:?}");
        assert!(!debug.contains("7, 7"), "{debug}");
    }
}
