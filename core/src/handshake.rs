//! The client's half of MTProto's auth-key handshake (req_pq_multi, req_DH_params,
//! set_client_DH_params), with the server's RSA keys as a parameter and randomness
//! injected. grammers' own handshake only trusts Telegram's two keys, so it could never
//! be tested against anything but Telegram.
//!
//! Bytes in, bytes out: [`Handshake::start`] gives the first request's body, each
//! [`Handshake::handle`] takes an answer's body and gives the next request or the key.
//! The caller wraps bodies in unencrypted messages.

use std::fmt;

use grammers_crypto::{AuthKey, aes, generate_key_data_from_nonce};
use grammers_tl_types::{Cursor, Deserializable as _, Serializable as _, enums, functions, types};
use num_bigint::BigUint;
use sha1::{Digest as _, Sha1};

use crate::random::Random;
use crate::rsa::RsaPublicKey;

/// Telegram's 2048-bit safe prime, the only DH group the client accepts.
pub const DH_PRIME_HEX: &str = "c71caeb9c6b1c9048e6c522f70f13f73980d40238e3e21c14934d037563d930f\
48198a0aa7c14058229493d22530f4dbfa336f6e0ac925139543aed44cce7c37\
20fd51f69458705ac68cd4fe6b6b13abdc9746512969328454f18faf8c595f64\
2477fe96bb2a941d5bcd1d4ac8cc49880708fa9b378e3c4f3a9060bee67cf9a4\
a4a695811051907e162753b56b0f6b410dba74d8a84b2a14b3144e0ef1284754\
fd17ed950d5965b4b9dd46582db1178d169c6bc465b0d6ff9ca3928fef5b9ae4\
e418fc15e83ebea0f87fa9ff5eed70050ded2849f47bf959d956850ce929851f\
0d8115f635b105ee2e4e15d04b2454bf6f4fadf034b10403119cd8e3b92fcc5b";

pub fn dh_prime() -> BigUint {
    BigUint::parse_bytes(DH_PRIME_HEX.as_bytes(), 16).expect("valid hex")
}

/// `n` as big-endian bytes, left-padded with zeros to `len`.
pub fn to_be_padded(n: &BigUint, len: usize) -> Vec<u8> {
    let bytes = n.to_bytes_be();
    let mut out = vec![0u8; len.saturating_sub(bytes.len())];
    out.extend_from_slice(&bytes);
    out
}

fn sha1(parts: &[&[u8]]) -> [u8; 20] {
    let mut h = Sha1::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// The agreed key.
#[derive(Clone, PartialEq, Eq)]
pub struct Finished {
    pub auth_key: [u8; 256],
    /// Server time minus local time, in seconds.
    pub time_offset: i32,
    pub first_salt: i64,
}

impl fmt::Debug for Finished {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Finished")
            .field("auth_key", &"[redacted]")
            .field("time_offset", &self.time_offset)
            .finish()
    }
}

/// Why a handshake failed. Each is a reason to drop the connection and start over.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HandshakeError {
    /// An answer that does not parse as what this step expects.
    Malformed(&'static str),
    /// The server offered no key this client trusts.
    UnknownServerKey(Vec<i64>),
    /// The server echoed another nonce: not our exchange.
    NonceMismatch,
    /// pq is not a product of two 32-bit primes.
    BadPq,
    /// The server refused our DH parameters, or its answer's hash does not match.
    DhRefused,
    /// The server's group or g_a fail the security checks.
    UnsafeDh(&'static str),
    /// The server's proof of the key does not match ours.
    KeyMismatch,
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandshakeError::Malformed(what) => write!(f, "malformed {what}"),
            HandshakeError::UnknownServerKey(fps) => write!(
                f,
                "the server offers no trusted RSA key (fingerprints {fps:?})"
            ),
            HandshakeError::NonceMismatch => f.write_str("nonce mismatch"),
            HandshakeError::BadPq => f.write_str("pq is not a product of two 32-bit primes"),
            HandshakeError::DhRefused => f.write_str("the server refused the DH exchange"),
            HandshakeError::UnsafeDh(why) => write!(f, "unsafe DH parameters: {why}"),
            HandshakeError::KeyMismatch => f.write_str("the server's key proof does not match"),
        }
    }
}

impl std::error::Error for HandshakeError {}

/// What to do after an answer.
#[derive(Debug)]
pub enum Progress {
    /// Send this request body.
    Send(Vec<u8>),
    Done(Box<Finished>),
}

enum State {
    ResPq {
        nonce: [u8; 16],
    },
    DhParams {
        nonce: [u8; 16],
        server_nonce: [u8; 16],
        new_nonce: [u8; 32],
    },
    DhGen {
        nonce: [u8; 16],
        server_nonce: [u8; 16],
        new_nonce: [u8; 32],
        auth_key: Box<[u8; 256]>,
        time_offset: i32,
    },
    Done,
}

/// One handshake in progress. `Debug` shows the step only (the key being made is secret).
pub struct Handshake {
    keys: Vec<RsaPublicKey>,
    state: State,
}

impl fmt::Debug for Handshake {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let step = match self.state {
            State::ResPq { .. } => "waiting for resPQ",
            State::DhParams { .. } => "waiting for server_DH_params",
            State::DhGen { .. } => "waiting for dh_gen",
            State::Done => "done",
        };
        write!(f, "Handshake({step})")
    }
}

impl Handshake {
    /// Starts a handshake trusting `keys`; returns it and the first request's body.
    pub fn start(keys: Vec<RsaPublicKey>, random: &mut impl Random) -> (Handshake, Vec<u8>) {
        let nonce = random.bytes::<16>();
        let request = functions::ReqPqMulti { nonce }.to_bytes();
        (
            Handshake {
                keys,
                state: State::ResPq { nonce },
            },
            request,
        )
    }

    /// Takes the body of the server's answer. `now` is the local Unix time in seconds.
    pub fn handle(
        &mut self,
        answer: &[u8],
        now: i64,
        random: &mut impl Random,
    ) -> Result<Progress, HandshakeError> {
        match std::mem::replace(&mut self.state, State::Done) {
            State::ResPq { nonce } => self.res_pq(nonce, answer, random),
            State::DhParams {
                nonce,
                server_nonce,
                new_nonce,
            } => self.server_dh_params(nonce, server_nonce, new_nonce, answer, now, random),
            State::DhGen {
                nonce,
                server_nonce,
                new_nonce,
                auth_key,
                time_offset,
            } => dh_gen(
                nonce,
                server_nonce,
                new_nonce,
                *auth_key,
                time_offset,
                answer,
            ),
            State::Done => Err(HandshakeError::Malformed(
                "message after the handshake finished",
            )),
        }
    }

    fn res_pq(
        &mut self,
        nonce: [u8; 16],
        answer: &[u8],
        random: &mut impl Random,
    ) -> Result<Progress, HandshakeError> {
        let enums::ResPq::Pq(res) =
            enums::ResPq::from_bytes(answer).map_err(|_| HandshakeError::Malformed("resPQ"))?;
        if res.nonce != nonce {
            return Err(HandshakeError::NonceMismatch);
        }
        let key = self
            .keys
            .iter()
            .find(|k| {
                res.server_public_key_fingerprints
                    .contains(&k.fingerprint())
            })
            .ok_or_else(|| {
                HandshakeError::UnknownServerKey(res.server_public_key_fingerprints.clone())
            })?;
        let pq = u64::from_be_bytes(
            res.pq
                .clone()
                .try_into()
                .map_err(|_| HandshakeError::BadPq)?,
        );
        let (p, q) = factorize(pq).ok_or(HandshakeError::BadPq)?;
        if p > u64::from(u32::MAX) || q > u64::from(u32::MAX) {
            return Err(HandshakeError::BadPq);
        }
        let (p, q) = (
            (p as u32).to_be_bytes().to_vec(),
            (q as u32).to_be_bytes().to_vec(),
        );
        let new_nonce = random.bytes::<32>();
        let server_nonce = res.server_nonce;
        let inner = enums::PQInnerData::Data(types::PQInnerData {
            pq: res.pq,
            p: p.clone(),
            q: q.clone(),
            nonce,
            server_nonce,
            new_nonce,
        })
        .to_bytes();
        let public = grammers_crypto::rsa::Key::new(&key.n().to_string(), &key.e().to_string())
            .ok_or(HandshakeError::Malformed("RSA key"))?;
        let encrypted_data =
            grammers_crypto::rsa::encrypt_hashed(&inner, &public, &random.bytes::<224>());
        self.state = State::DhParams {
            nonce,
            server_nonce,
            new_nonce,
        };
        let request = functions::ReqDhParams {
            nonce,
            server_nonce,
            p,
            q,
            public_key_fingerprint: key.fingerprint(),
            encrypted_data,
        };
        Ok(Progress::Send(request.to_bytes()))
    }

    fn server_dh_params(
        &mut self,
        nonce: [u8; 16],
        server_nonce: [u8; 16],
        new_nonce: [u8; 32],
        answer: &[u8],
        now: i64,
        random: &mut impl Random,
    ) -> Result<Progress, HandshakeError> {
        let params = enums::ServerDhParams::from_bytes(answer)
            .map_err(|_| HandshakeError::Malformed("server_DH_params"))?;
        if params.nonce() != nonce || params.server_nonce() != server_nonce {
            return Err(HandshakeError::NonceMismatch);
        }
        let enums::ServerDhParams::Ok(ok) = params else {
            return Err(HandshakeError::DhRefused);
        };
        if ok.encrypted_answer.len() < 20 || ok.encrypted_answer.len() % 16 != 0 {
            return Err(HandshakeError::Malformed("encrypted_answer"));
        }
        let (key, iv) = generate_key_data_from_nonce(&server_nonce, &new_nonce);
        let mut plain = ok.encrypted_answer;
        aes::ige_decrypt(&mut plain, &key, &iv);
        let mut cursor = Cursor::from_slice(&plain[20..]);
        let enums::ServerDhInnerData::Data(dh) = enums::ServerDhInnerData::deserialize(&mut cursor)
            .map_err(|_| HandshakeError::Malformed("server_DH_inner_data"))?;
        if sha1(&[&plain[20..20 + cursor.pos()]]) != plain[..20] {
            return Err(HandshakeError::DhRefused);
        }
        if dh.nonce != nonce || dh.server_nonce != server_nonce {
            return Err(HandshakeError::NonceMismatch);
        }
        let prime = dh_prime();
        if BigUint::from_bytes_be(&dh.dh_prime) != prime {
            return Err(HandshakeError::UnsafeDh("not Telegram's DH prime"));
        }
        if !(2..=7).contains(&dh.g) {
            return Err(HandshakeError::UnsafeDh("g out of range"));
        }
        let g_a = BigUint::from_bytes_be(&dh.g_a);
        check_dh_value(&g_a, &prime)?;
        let b = BigUint::from_bytes_be(&random.bytes::<256>());
        let g_b = BigUint::from(dh.g as u32).modpow(&b, &prime);
        check_dh_value(&g_b, &prime)?;
        let auth_key: [u8; 256] = to_be_padded(&g_a.modpow(&b, &prime), 256)
            .try_into()
            .expect("padded to 256");
        let inner = enums::ClientDhInnerData::Data(types::ClientDhInnerData {
            nonce,
            server_nonce,
            retry_id: 0,
            g_b: to_be_padded(&g_b, 256),
        })
        .to_bytes();
        let mut data = sha1(&[&inner]).to_vec();
        data.extend(inner);
        let pad = (16 - data.len() % 16) % 16;
        data.extend_from_slice(&random.bytes::<16>()[..pad]);
        aes::ige_encrypt(&mut data, &key, &iv);
        self.state = State::DhGen {
            nonce,
            server_nonce,
            new_nonce,
            auth_key: Box::new(auth_key),
            time_offset: (i64::from(dh.server_time) - now) as i32,
        };
        Ok(Progress::Send(
            functions::SetClientDhParams {
                nonce,
                server_nonce,
                encrypted_data: data,
            }
            .to_bytes(),
        ))
    }
}

/// Multiplications [`factorize`] may spend: Telegram's pq, a product of two 32-bit primes,
/// splits after about 2^16 rho steps; this bound leaves a wide margin and still keeps a
/// hostile pq (the server is not authenticated yet) to milliseconds of CPU.
const FACTORIZE_BUDGET: u32 = 1 << 21;

/// Splits `pq` into its two factors (smaller first) with Pollard's rho in Brent's form,
/// or `None`. grammers' `factorize` panics when it fails and is unbounded, and the server
/// (not yet authenticated) chooses pq: a prime is refused at once, and anything else
/// costs at most [`FACTORIZE_BUDGET`] modular multiplications.
fn factorize(pq: u64) -> Option<(u64, u64)> {
    factorize_counted(pq).0
}

/// [`factorize`], also returning the multiplications spent.
fn factorize_counted(pq: u64) -> (Option<(u64, u64)>, u32) {
    if pq < 4 || is_prime(pq) {
        return (None, 0);
    }
    if pq.is_multiple_of(2) {
        return (Some((2, pq / 2)), 0);
    }
    let mulmod = |a: u64, b: u64| (u128::from(a) * u128::from(b) % u128::from(pq)) as u64;
    let mut spent = 0u32;
    for c in 1..64u64 {
        let f = |x: u64| (mulmod(x, x) + c) % pq;
        // Brent: y races ahead in doubling strides; |x - y| products are batched so
        // that one gcd covers up to 128 steps.
        let (mut y, mut r, mut q, mut d) = (2u64, 1u64, 1u64, 1u64);
        let (mut x, mut ys) = (y, y);
        while d == 1 {
            x = y;
            for _ in 0..r {
                y = f(y);
            }
            spent = spent.saturating_add(r as u32);
            let mut k = 0;
            while k < r && d == 1 {
                ys = y;
                for _ in 0..128.min(r - k) {
                    y = f(y);
                    q = mulmod(q, x.abs_diff(y));
                }
                spent += 2 * 128.min(r - k) as u32;
                d = gcd(q, pq);
                k += 128;
            }
            r *= 2;
            if spent > FACTORIZE_BUDGET {
                return (None, spent);
            }
        }
        if d == pq {
            // The batch overshot: step back one at a time from its start.
            loop {
                ys = f(ys);
                spent += 1;
                d = gcd(x.abs_diff(ys), pq);
                if d != 1 || spent > FACTORIZE_BUDGET {
                    break;
                }
            }
        }
        if d != 1 && d != pq {
            return (Some((d.min(pq / d), d.max(pq / d))), spent);
        }
        if spent > FACTORIZE_BUDGET {
            break;
        }
    }
    (None, spent)
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Deterministic Miller-Rabin for 64-bit numbers (these bases decide every n < 2^64).
fn is_prime(n: u64) -> bool {
    const BASES: [u64; 12] = [2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37];
    if n < 2 {
        return false;
    }
    for p in BASES {
        if n.is_multiple_of(p) {
            return n == p;
        }
    }
    let mulmod = |a: u64, b: u64| (u128::from(a) * u128::from(b) % u128::from(n)) as u64;
    let powmod = |mut base: u64, mut exp: u64| {
        let mut result = 1u64;
        while exp > 0 {
            if exp & 1 == 1 {
                result = mulmod(result, base);
            }
            base = mulmod(base, base);
            exp >>= 1;
        }
        result
    };
    let (mut d, mut s) = (n - 1, 0);
    while d.is_multiple_of(2) {
        d /= 2;
        s += 1;
    }
    'bases: for a in BASES {
        let mut x = powmod(a, d);
        if x == 1 || x == n - 1 {
            continue;
        }
        for _ in 1..s {
            x = mulmod(x, x);
            if x == n - 1 {
                continue 'bases;
            }
        }
        return false;
    }
    true
}

/// 1 < x < p - 1, and x within [2^(2048-64), p - 2^(2048-64)] as the spec requires.
fn check_dh_value(x: &BigUint, prime: &BigUint) -> Result<(), HandshakeError> {
    let margin = BigUint::from(1u32) << (2048 - 64);
    if *x < margin || *x > prime - &margin {
        return Err(HandshakeError::UnsafeDh(
            "g_a or g_b outside the safe range",
        ));
    }
    Ok(())
}

fn dh_gen(
    nonce: [u8; 16],
    server_nonce: [u8; 16],
    new_nonce: [u8; 32],
    auth_key: [u8; 256],
    time_offset: i32,
    answer: &[u8],
) -> Result<Progress, HandshakeError> {
    let answer = enums::SetClientDhParamsAnswer::from_bytes(answer)
        .map_err(|_| HandshakeError::Malformed("dh_gen"))?;
    let enums::SetClientDhParamsAnswer::DhGenOk(ok) = answer else {
        return Err(HandshakeError::DhRefused);
    };
    if ok.nonce != nonce || ok.server_nonce != server_nonce {
        return Err(HandshakeError::NonceMismatch);
    }
    if ok.new_nonce_hash1 != AuthKey::from_bytes(auth_key).calc_new_nonce_hash(&new_nonce, 1) {
        return Err(HandshakeError::KeyMismatch);
    }
    let mut salt = [0u8; 8];
    for (i, s) in salt.iter_mut().enumerate() {
        *s = new_nonce[i] ^ server_nonce[i];
    }
    Ok(Progress::Done(Box::new(Finished {
        auth_key,
        time_offset,
        first_salt: i64::from_le_bytes(salt),
    })))
}

#[cfg(test)]
mod tests {
    use super::{FACTORIZE_BUDGET, factorize, factorize_counted, is_prime};

    #[test]
    fn factorize_splits_two_primes_and_refuses_a_prime() {
        assert_eq!(
            factorize(0x17ED_4894_1A08_F981),
            Some((0x494C_553B, 0x5391_1073))
        );
        assert_eq!(
            factorize(4_294_967_291 * 4_294_967_279),
            Some((4_294_967_279, 4_294_967_291))
        );
        assert_eq!(factorize(1_000_000_007), None);
        assert_eq!(factorize(3), None);
    }

    #[test]
    fn a_hostile_pq_costs_a_bounded_amount_of_work() {
        // The largest 64-bit prime: refused without a single rho step.
        assert_eq!(factorize_counted(18_446_744_073_709_551_557), (None, 0));
        // A product of three primes: a factor is found, but the work stays bounded.
        let (split, spent) = factorize_counted(2_147_483_647 * 65_537 * 3);
        assert!(
            split.is_some() && spent <= FACTORIZE_BUDGET,
            "{split:?} {spent}"
        );
        // Telegram-sized products of two 32-bit primes, many of them, all within budget.
        let primes = [
            4_294_967_291u64,
            4_294_967_279,
            4_294_967_231,
            4_294_967_197,
            3_037_000_493,
        ];
        for p in primes {
            for q in primes.iter().filter(|&&q| q < p) {
                let (split, spent) = factorize_counted(p * q);
                assert_eq!(split, Some((*q, p)), "{p} * {q}");
                assert!(
                    spent <= FACTORIZE_BUDGET / 4,
                    "{p} * {q}: {spent} multiplications"
                );
            }
        }
    }

    #[test]
    fn miller_rabin_agrees_with_trial_division() {
        let trial = |n: u64| {
            n >= 2
                && (2..)
                    .take_while(|d| d * d <= n)
                    .all(|d| !n.is_multiple_of(d))
        };
        for n in 0..5000 {
            assert_eq!(is_prime(n), trial(n), "{n}");
        }
        assert!(is_prime(4_294_967_291) && !is_prime(4_294_967_291 * 65_537));
    }
}
