//! The server's half of MTProto's cryptography: the DC's RSA key, both RSA paddings
//! clients use for `p_q_inner_data`, the Diffie-Hellman group, and MTProto 2.0 message
//! encryption in both directions (grammers-crypto only has the client's half).

use grammers_crypto::aes;
use num_bigint::BigUint;
use sha1::{Digest as _, Sha1};
use sha2::Sha256;
use telegram_bots_core::rsa::RsaPublicKey;

/// The DH generator; with Telegram's prime it meets every client's checks.
pub const DH_G: u32 = 3;
pub use telegram_bots_core::handshake::{dh_prime, to_be_padded};

pub fn sha1(parts: &[&[u8]]) -> [u8; 20] {
    let mut h = Sha1::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

pub fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// Random bytes from the operating system.
pub fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).expect("the OS has randomness");
    b
}

/// The fake DC's RSA key pair: a fixed 2048-bit test key, so that clients can be told
/// to trust it once (it protects nothing: anyone may read it here).
#[derive(Clone, Debug)]
pub struct RsaKey {
    n: BigUint,
    e: BigUint,
    d: BigUint,
}

const TEST_N: &str = "896194f0bbfb7ffe9bf70a411fea5bb1b52287ea7175042a9bf040bfd1cfab1156e915594bec5ae3411758e354aa9d7a6fe8c8e6bdf8bf58e4ea62bdd232b77585f32f27feec6224ee2097de4fb53f859124be8b4d23d69005801a78f6bbc0cd43f5c9944ada0dbec22b1608ef70191c7f56011bedbca0e9e044736a9a8af8dc2dceab80346f161bf87b20c3891c77d0cb79de4e19469af5d6f48ac9312e9b1804584966bf3411d3e7d7069a94787f3c5a214b1b4118b89928da576cbbb30257a2998d3ce4405293557f747f1872adef5fbe120e948791d786f3117f6b80b6c674dc4e987874b1ac837114f14734f5460e6f20351e133ac508693832b44078f7";
const TEST_D: &str = "86f8fc5fd810ac1bf617ac577787c536bf03820d7012cb592183d5d99fc52c09091e4eff407ca27f0b8068b0508a9fd59f0551fc8140569e7ba95c01aaf6711061de1ec268cecd4e0336ba7e8c49427373ba6a0a6a6b7f6e583917c9288026588520823fd39a904e8e6dce6450fa0d71d6192555cf28b7ded6ba1e3a10f8094ed9054c750f546c1ffff0eb43a4c39bea41bd667489499e0b22f4d62693f9de3337b573d01ea77b2fbdbd0d7781c9c8fd12da912b2bf618a6888395634224327a2040de14b14cb4032b2f3551b85afe571d7a1803615b9b84a5854b1f14afd309c43d96faf65e22bf185a133410bddeaec2eb62e88b84ccd7a9adc6463faf12e1";

impl RsaKey {
    pub fn test_key() -> RsaKey {
        let hex = |s: &str| BigUint::parse_bytes(s.as_bytes(), 16).expect("valid hex");
        RsaKey {
            n: hex(TEST_N),
            e: BigUint::from(65_537u32),
            d: hex(TEST_D),
        }
    }

    pub fn n(&self) -> &BigUint {
        &self.n
    }

    pub fn e(&self) -> &BigUint {
        &self.e
    }

    /// The public half, as clients trust it.
    pub fn public(&self) -> RsaPublicKey {
        RsaPublicKey::new(self.n.clone(), self.e.clone())
    }

    pub fn fingerprint(&self) -> i64 {
        self.public().fingerprint()
    }

    /// The public key as PKCS#1 PEM (`-----BEGIN RSA PUBLIC KEY-----`).
    pub fn public_pem(&self) -> String {
        let der_int = |n: &BigUint| {
            let mut v = n.to_bytes_be();
            if v[0] & 0x80 != 0 {
                v.insert(0, 0);
            }
            let mut out = vec![0x02];
            out.extend(der_len(v.len()));
            out.extend(v);
            out
        };
        let mut body = der_int(&self.n);
        body.extend(der_int(&self.e));
        let mut der = vec![0x30];
        der.extend(der_len(body.len()));
        der.extend(body);
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        let mut pem = String::from("-----BEGIN RSA PUBLIC KEY-----\n");
        for line in b64.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
            pem.push('\n');
        }
        pem.push_str("-----END RSA PUBLIC KEY-----\n");
        pem
    }

    fn decrypt_raw(&self, data: &[u8]) -> Option<Vec<u8>> {
        let c = BigUint::from_bytes_be(data);
        if c >= self.n {
            return None;
        }
        Some(to_be_padded(&c.modpow(&self.d, &self.n), 256))
    }

    /// Recovers the serialized `p_q_inner_data` from `req_DH_params.encrypted_data`,
    /// accepting RSA_PAD (grammers, tdlib) and the older `sha1(data) ‖ data ‖ padding`
    /// (Telethon, Pyrogram, GramJS). Returns bytes that start with the boxed object.
    pub fn decrypt_inner_data(&self, encrypted: &[u8]) -> Option<Vec<u8>> {
        if encrypted.len() != 256 {
            return None;
        }
        let m = self.decrypt_raw(encrypted)?;
        rsa_pad_inverse(&m).or_else(|| old_padding_inverse(&m))
    }
}

fn der_len(len: usize) -> Vec<u8> {
    if len < 0x80 {
        vec![len as u8]
    } else if len < 0x100 {
        vec![0x81, len as u8]
    } else {
        vec![0x82, (len >> 8) as u8, len as u8]
    }
}

/// RSA_PAD, undone: temp_key_xor ‖ aes_encrypted, where the AES-IGE plaintext is
/// reverse(data_with_padding) ‖ SHA256(temp_key ‖ data_with_padding).
fn rsa_pad_inverse(m: &[u8]) -> Option<Vec<u8>> {
    let (temp_key_xor, aes_encrypted) = m.split_at(32);
    let hash = sha256(&[aes_encrypted]);
    let mut temp_key = [0u8; 32];
    for i in 0..32 {
        temp_key[i] = temp_key_xor[i] ^ hash[i];
    }
    let mut data_with_hash = aes_encrypted.to_vec();
    aes::ige_decrypt(&mut data_with_hash, &temp_key, &[0u8; 32]);
    let (reversed, hash) = data_with_hash.split_at(192);
    let data: Vec<u8> = reversed.iter().rev().copied().collect();
    (sha256(&[&temp_key, &data]) == hash).then_some(data)
}

/// `0 ‖ sha1(data) ‖ data ‖ random`, undone; the object's length is found by parsing it.
fn old_padding_inverse(m: &[u8]) -> Option<Vec<u8>> {
    use grammers_tl_types::{Cursor, Deserializable as _, enums::PQInnerData};
    if m[0] != 0 {
        return None;
    }
    let rest = &m[21..];
    let mut cursor = Cursor::from_slice(rest);
    PQInnerData::deserialize(&mut cursor).ok()?;
    let data = &rest[..cursor.pos()];
    (sha1(&[data]) == m[1..21]).then(|| data.to_vec())
}

/// The id of an auth key: the low 64 bits of its SHA1.
pub fn auth_key_id(auth_key: &[u8; 256]) -> i64 {
    let h = sha1(&[auth_key]);
    i64::from_le_bytes(h[12..20].try_into().expect("8 bytes"))
}

/// MTProto 2.0 key derivation; `x` is 0 for client-to-server, 8 for server-to-client.
fn message_key_iv(auth_key: &[u8; 256], msg_key: &[u8], x: usize) -> ([u8; 32], [u8; 32]) {
    let a = sha256(&[msg_key, &auth_key[x..x + 36]]);
    let b = sha256(&[&auth_key[40 + x..76 + x], msg_key]);
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&a[..8]);
    key[8..24].copy_from_slice(&b[8..24]);
    key[24..].copy_from_slice(&a[24..]);
    let mut iv = [0u8; 32];
    iv[..8].copy_from_slice(&b[..8]);
    iv[8..24].copy_from_slice(&a[8..24]);
    iv[24..].copy_from_slice(&b[24..]);
    (key, iv)
}

/// Who sent a message: MTProto 2.0 derives keys differently for each direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    ClientToServer,
    ServerToClient,
}

impl Direction {
    fn x(self) -> usize {
        match self {
            Direction::ClientToServer => 0,
            Direction::ServerToClient => 8,
        }
    }
}

/// Decrypts a message (`auth_key_id ‖ msg_key ‖ ciphertext`). `None` when the msg_key does
/// not match: a forged, corrupted or wrongly keyed message.
pub fn decrypt(auth_key: &[u8; 256], packet: &[u8], direction: Direction) -> Option<Vec<u8>> {
    if packet.len() < 24 + 32 || !(packet.len() - 24).is_multiple_of(16) {
        return None;
    }
    let x = direction.x();
    let msg_key = &packet[8..24];
    let (key, iv) = message_key_iv(auth_key, msg_key, x);
    let mut plain = packet[24..].to_vec();
    aes::ige_decrypt(&mut plain, &key, &iv);
    let expected = sha256(&[&auth_key[88 + x..120 + x], &plain]);
    (expected[8..24] == *msg_key).then_some(plain)
}

/// Decrypts a client's message.
pub fn decrypt_from_client(auth_key: &[u8; 256], packet: &[u8]) -> Option<Vec<u8>> {
    decrypt(auth_key, packet, Direction::ClientToServer)
}

/// Encrypts `plaintext` (salt ‖ session ‖ msg_id ‖ seq ‖ len ‖ data) with `padding` random
/// bytes, which must bring it to a multiple of 16 (MTProto 2.0 asks for 12 to 1024).
pub fn encrypt(
    auth_key: &[u8; 256],
    plaintext: &[u8],
    padding: usize,
    direction: Direction,
) -> Vec<u8> {
    let x = direction.x();
    let mut padded = plaintext.to_vec();
    while padded.len() < plaintext.len() + padding {
        let missing = plaintext.len() + padding - padded.len();
        padded.extend_from_slice(&random::<32>()[..missing.min(32)]);
    }
    let large = sha256(&[&auth_key[88 + x..120 + x], &padded]);
    let msg_key = &large[8..24];
    let (key, iv) = message_key_iv(auth_key, msg_key, x);
    aes::ige_encrypt(&mut padded, &key, &iv);
    let mut out = auth_key_id(auth_key).to_le_bytes().to_vec();
    out.extend_from_slice(msg_key);
    out.extend(padded);
    out
}

/// The least MTProto 2.0 padding (12 to 27 bytes) that makes `len` a multiple of 16.
pub fn padding_for(len: usize) -> usize {
    12 + (16 - (len + 12) % 16) % 16
}

/// Encrypts a message for a client with the least padding.
pub fn encrypt_to_client(auth_key: &[u8; 256], plaintext: &[u8]) -> Vec<u8> {
    encrypt(
        auth_key,
        plaintext,
        padding_for(plaintext.len()),
        Direction::ServerToClient,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use grammers_crypto::{AuthKey, DequeBuffer, decrypt_data_v2, encrypt_data_v2};

    #[test]
    fn test_key_fingerprint_and_pem_match_telethon() {
        let key = RsaKey::test_key();
        assert_eq!(key.fingerprint(), -1_593_010_162_628_045_094);
        assert_eq!(
            RsaPublicKey::from_pem(&key.public_pem()).unwrap(),
            key.public()
        );
        let pem = key.public_pem();
        assert!(pem.starts_with("-----BEGIN RSA PUBLIC KEY-----\nMIIBCgKCAQEAiWGU8Lv7f/6b9wpBH+pbsbUih+pxdQQqm/BAv9HPqxFW6RVZS+xa\n"));
        assert!(
            pem.ends_with(
                "rINxFPFHNPVGDm8gNR4TOsUIaTgytEB49wIDAQAB\n-----END RSA PUBLIC KEY-----\n"
            )
        );
    }

    #[test]
    fn rsa_pad_from_grammers_is_undone() {
        let key = RsaKey::test_key();
        let public = grammers_crypto::rsa::Key::new(&key.n.to_string(), "65537").unwrap();
        let data: Vec<u8> = (0..100u8).collect();
        let encrypted = grammers_crypto::rsa::encrypt_hashed(&data, &public, &random::<224>());
        let decrypted = rsa_pad_inverse(&key.decrypt_raw(&encrypted).unwrap()).unwrap();
        assert_eq!(&decrypted[..100], &data[..]);
    }

    #[test]
    fn messages_round_trip_with_grammers_client_crypto() {
        let raw: [u8; 256] = std::array::from_fn(|i| (i * 7 + 3) as u8);
        let client_key = AuthKey::from_bytes(raw);
        let plaintext: Vec<u8> = (0..64u8).collect();

        let mut buffer = DequeBuffer::with_capacity(plaintext.len(), 32);
        buffer.extend(plaintext.iter().copied());
        encrypt_data_v2(&mut buffer, &client_key);
        let decrypted = decrypt_from_client(&raw, &buffer[..]).expect("msg_key matches");
        assert_eq!(&decrypted[..64], &plaintext[..]);

        let mut packet = encrypt_to_client(&raw, &plaintext);
        let decrypted = decrypt_data_v2(&mut packet, &client_key).expect("client accepts");
        assert_eq!(&decrypted[..64], &plaintext[..]);

        let mut tampered = encrypt_to_client(&raw, &plaintext);
        tampered[40] ^= 1;
        assert!(decrypt_data_v2(&mut tampered, &client_key).is_err());
        assert!(decrypt_from_client(&raw, &tampered).is_none());
    }
}
