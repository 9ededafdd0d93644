//! The RSA public keys a client trusts for the auth-key handshake: Telegram's own by
//! default, or another DC's (a test DC) read from PEM.

use std::fmt;

use base64::Engine as _;
use num_bigint::BigUint;
use sha1::{Digest as _, Sha1};

/// Telegram's production key (fingerprint -3414540481677951611), as published for clients.
const TELEGRAM_PRODUCTION_N: &str = "29379598170669337022986177149456128565388431120058863768162556424047512191330847455146576344487764408661701890505066208632169112269581063774293102577308490531282748465986139880977280302242772832972539403531316010870401287642763009136156734339538042419388722777357134487746169093539093850251243897188928735903389451772730245253062963384108812842079887538976360465290946139638691491496062099570836476454855996319192747663615955633778034897140982517446405334423701359108810182097749467210509584293428076654573384828809574217079944388301239431309115013843331317877374435868468779972014486325557807783825502498215169806323";
/// Telegram's test-DC key (fingerprint -5595554452916591101).
const TELEGRAM_TEST_N: &str = "25342889448840415564971689590713473206898847759084779052582026594546022463853940585885215951168491965708222649399180603818074200620463776135424884632162512403163793083921641631564740959529419359595852941166848940585952337613333022396096584117954892216031229237302943701877588456738335398602461675225081791820393153757504952636234951323237820036543581047826906120927972487366805292115792231423684261262330394324750785450942589751755390156647751460719351439969059949569615302809050721500330239005077889855323917509948255722081644689442127297605422579707142646660768825302832201908302295573257427896031830742328565032949";

/// A server's RSA public key.
#[derive(Clone, PartialEq, Eq)]
pub struct RsaPublicKey {
    n: BigUint,
    e: BigUint,
}

impl fmt::Debug for RsaPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RsaPublicKey({})", self.fingerprint())
    }
}

/// Why a PEM file is not an RSA public key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PemError(pub &'static str);

impl fmt::Display for PemError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "not an RSA public key in PEM: {}", self.0)
    }
}

impl std::error::Error for PemError {}

impl RsaPublicKey {
    pub fn new(n: BigUint, e: BigUint) -> Self {
        RsaPublicKey { n, e }
    }

    pub fn telegram_production() -> Self {
        Self::from_decimal(TELEGRAM_PRODUCTION_N)
    }

    pub fn telegram_test() -> Self {
        Self::from_decimal(TELEGRAM_TEST_N)
    }

    fn from_decimal(n: &str) -> Self {
        RsaPublicKey {
            n: n.parse().expect("a valid constant"),
            e: BigUint::from(65_537u32),
        }
    }

    pub fn n(&self) -> &BigUint {
        &self.n
    }

    pub fn e(&self) -> &BigUint {
        &self.e
    }

    /// Reads `-----BEGIN RSA PUBLIC KEY-----` (PKCS#1, what Telegram publishes) or
    /// `-----BEGIN PUBLIC KEY-----` (SubjectPublicKeyInfo).
    pub fn from_pem(pem: &str) -> Result<Self, PemError> {
        let (label, body) = pem_body(pem)?;
        let der = base64::engine::general_purpose::STANDARD
            .decode(body)
            .map_err(|_| PemError("the body is not base64"))?;
        let pkcs1 = match label.as_str() {
            "RSA PUBLIC KEY" => der,
            "PUBLIC KEY" => {
                // SEQUENCE { SEQUENCE { OID, NULL }, BIT STRING { 0 unused bits, PKCS#1 } }
                let (spki, _) = der_read(&der, 0x30)?;
                let (_algorithm, rest) = der_read(spki, 0x30)?;
                let (bits, _) = der_read(rest, 0x03)?;
                bits.split_first()
                    .filter(|(unused, _)| **unused == 0)
                    .ok_or(PemError("bad BIT STRING"))?
                    .1
                    .to_vec()
            }
            _ => {
                return Err(PemError(
                    "the label is neither RSA PUBLIC KEY nor PUBLIC KEY",
                ));
            }
        };
        let (sequence, _) = der_read(&pkcs1, 0x30)?;
        let (n, rest) = der_read(sequence, 0x02)?;
        let (e, _) = der_read(rest, 0x02)?;
        let key = RsaPublicKey {
            n: BigUint::from_bytes_be(n),
            e: BigUint::from_bytes_be(e),
        };
        if key.n.bits() < 1024 || key.e < BigUint::from(3u32) {
            return Err(PemError("the modulus or exponent is too small"));
        }
        Ok(key)
    }

    /// Telegram's fingerprint: the low 64 bits of SHA1 over the TL-serialized n and e.
    pub fn fingerprint(&self) -> i64 {
        let mut data = tl_bytes(&self.n.to_bytes_be());
        data.extend(tl_bytes(&self.e.to_bytes_be()));
        let hash: [u8; 20] = Sha1::digest(&data).into();
        i64::from_le_bytes(hash[12..20].try_into().expect("8 bytes"))
    }
}

/// TL `bytes` serialization: a length prefix (1 byte, or 0xfe and 3 bytes) and padding.
fn tl_bytes(data: &[u8]) -> Vec<u8> {
    let mut out = if data.len() < 254 {
        vec![data.len() as u8]
    } else {
        let len = data.len() as u32;
        vec![0xfe, len as u8, (len >> 8) as u8, (len >> 16) as u8]
    };
    out.extend_from_slice(data);
    while out.len() % 4 != 0 {
        out.push(0);
    }
    out
}

fn pem_body(pem: &str) -> Result<(String, String), PemError> {
    let mut lines = pem.lines().map(str::trim).filter(|l| !l.is_empty());
    let label = lines
        .next()
        .and_then(|l| l.strip_prefix("-----BEGIN "))
        .and_then(|l| l.strip_suffix("-----"))
        .ok_or(PemError("no -----BEGIN line"))?
        .to_owned();
    let mut body = String::new();
    for line in lines {
        if line.starts_with("-----END ") {
            return Ok((label, body));
        }
        body.push_str(line);
    }
    Err(PemError("no -----END line"))
}

/// One DER element with tag `tag`: its content and what follows it.
fn der_read(data: &[u8], tag: u8) -> Result<(&[u8], &[u8]), PemError> {
    let bad = PemError("malformed DER");
    if data.first() != Some(&tag) {
        return Err(PemError("unexpected DER element"));
    }
    let first = *data.get(1).ok_or(bad.clone())?;
    let (len, header) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 {
            return Err(bad);
        }
        let bytes = data.get(2..2 + count).ok_or(bad.clone())?;
        (
            bytes
                .iter()
                .fold(0usize, |acc, b| acc << 8 | usize::from(*b)),
            2 + count,
        )
    };
    let end = header.checked_add(len).ok_or(bad.clone())?;
    let content = data.get(header..end).ok_or(bad)?;
    Ok((content, &data[end..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Telegram's production key as its documentation prints it.
    const PRODUCTION_PEM: &str = "-----BEGIN RSA PUBLIC KEY-----
MIIBCgKCAQEA6LszBcC1LGzyr992NzE0ieY+BSaOW622Aa9Bd4ZHLl+TuFQ4lo4g
5nKaMBwK/BIb9xUfg0Q29/2mgIR6Zr9krM7HjuIcCzFvDtr+L0GQjae9H0pRB2OO
62cECs5HKhT5DZ98K33vmWiLowc621dQuwKWSQKjWf50XYFw42h21P2KXUGyp2y/
+aEyZ+uVgLLQbRA1dEjSDZ2iGRy12Mk5gpYc397aYp438fsJoHIgJ2lgMv5h7WY9
t6N/byY9Nw9p21Og3AoXSL2q/2IJ1WRUhebgAdGVMlV1fkuOQoEzR7EdpqtQD9Cs
5+bfo3Nhmcyvk5ftB0WkJ9z6bNZ7yxrP8wIDAQAB
-----END RSA PUBLIC KEY-----";

    #[test]
    fn telegram_keys_have_their_published_fingerprints() {
        assert_eq!(
            RsaPublicKey::telegram_production().fingerprint(),
            -3_414_540_481_677_951_611
        );
        assert_eq!(
            RsaPublicKey::telegram_test().fingerprint(),
            -5_595_554_452_916_591_101
        );
    }

    #[test]
    fn pem_of_the_production_key_parses_to_the_same_key() {
        assert_eq!(
            RsaPublicKey::from_pem(PRODUCTION_PEM).unwrap(),
            RsaPublicKey::telegram_production()
        );
    }

    #[test]
    fn bad_pem_is_a_clear_error() {
        assert_eq!(
            RsaPublicKey::from_pem("hello").unwrap_err(),
            PemError("no -----BEGIN line")
        );
        let truncated = PRODUCTION_PEM.replace("-----END RSA PUBLIC KEY-----", "");
        assert_eq!(
            RsaPublicKey::from_pem(&truncated).unwrap_err(),
            PemError("no -----END line")
        );
        let cut = "-----BEGIN RSA PUBLIC KEY-----\nMIIBCgKCAQEA6Lsz\n-----END RSA PUBLIC KEY-----";
        assert!(RsaPublicKey::from_pem(cut).is_err());
        let other = PRODUCTION_PEM.replace("RSA PUBLIC KEY", "CERTIFICATE");
        assert!(RsaPublicKey::from_pem(&other).is_err());
    }
}
