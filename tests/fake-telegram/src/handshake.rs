//! The server's half of the auth-key handshake (req_pq_multi, req_DH_params,
//! set_client_DH_params), one per connection, restartable at any step.

use grammers_crypto::{AuthKey, aes, generate_key_data_from_nonce};
use grammers_tl_types::{
    Cursor, Deserializable as _, Identifiable as _, Serializable as _, enums, functions, types,
};
use num_bigint::BigUint;

use super::crypto::{DH_G, RsaKey, dh_prime, random, sha1, to_be_padded};

/// The pq Telegram's documentation uses: 0x494C553B × 0x53911073, two 32-bit primes.
const PQ: u64 = 0x17ED_4894_1A08_F981;
const P: u32 = 0x494C_553B;
const Q: u32 = 0x5391_1073;

#[derive(Debug, Default)]
enum Step {
    #[default]
    Idle,
    SentResPq {
        nonce: [u8; 16],
        server_nonce: [u8; 16],
    },
    SentDhParams {
        nonce: [u8; 16],
        server_nonce: [u8; 16],
        new_nonce: [u8; 32],
        a: BigUint,
    },
}

/// What a handshake message leads to.
#[derive(Debug)]
pub enum Outcome {
    /// Send this message (a boxed object) back, unencrypted.
    Reply(Vec<u8>),
    /// The key is agreed: send the reply and store the key with its first salt.
    Done {
        reply: Vec<u8>,
        auth_key: Box<[u8; 256]>,
        salt: i64,
    },
}

#[derive(Debug, Default)]
pub struct Handshake {
    step: Step,
}

fn parse<T: grammers_tl_types::Deserializable>(body: &[u8]) -> Result<T, String> {
    T::from_bytes(body).map_err(|e| format!("malformed handshake message: {e}"))
}

impl Handshake {
    /// Handles one unencrypted message (its `message_data`).
    pub fn handle(&mut self, data: &[u8], rsa: &RsaKey, now: i32) -> Result<Outcome, String> {
        let id = u32::from_bytes(data).map_err(|_| "empty handshake message")?;
        let body = &data[4..];
        match id {
            functions::ReqPqMulti::CONSTRUCTOR_ID | functions::ReqPq::CONSTRUCTOR_ID => {
                let nonce = parse::<functions::ReqPqMulti>(body)?.nonce;
                let server_nonce = random::<16>();
                self.step = Step::SentResPq {
                    nonce,
                    server_nonce,
                };
                let reply = enums::ResPq::Pq(types::ResPq {
                    nonce,
                    server_nonce,
                    pq: PQ.to_be_bytes().to_vec(),
                    server_public_key_fingerprints: vec![rsa.fingerprint()],
                });
                Ok(Outcome::Reply(reply.to_bytes()))
            }
            functions::ReqDhParams::CONSTRUCTOR_ID => self.req_dh_params(parse(body)?, rsa, now),
            functions::SetClientDhParams::CONSTRUCTOR_ID => self.set_client_dh_params(parse(body)?),
            other => Err(format!(
                "unexpected unencrypted message {}",
                grammers_tl_types::name_for_id(other)
            )),
        }
    }

    fn req_dh_params(
        &mut self,
        req: functions::ReqDhParams,
        rsa: &RsaKey,
        now: i32,
    ) -> Result<Outcome, String> {
        let Step::SentResPq {
            nonce,
            server_nonce,
        } = self.step
        else {
            return Err("req_DH_params before req_pq_multi".into());
        };
        if req.nonce != nonce || req.server_nonce != server_nonce {
            return Err("req_DH_params with the wrong nonces".into());
        }
        if req.public_key_fingerprint != rsa.fingerprint() {
            return Err("req_DH_params for an unknown RSA key".into());
        }
        let (p, q) = (
            BigUint::from_bytes_be(&req.p),
            BigUint::from_bytes_be(&req.q),
        );
        if p.clone() * q.clone() != BigUint::from(PQ)
            || !(p == BigUint::from(P) || p == BigUint::from(Q))
        {
            return Err("req_DH_params with a wrong factorisation of pq".into());
        }
        let inner = rsa
            .decrypt_inner_data(&req.encrypted_data)
            .ok_or("p_q_inner_data does not decrypt with the DC's key in either padding")?;
        let inner =
            enums::PQInnerData::from_bytes(&inner).map_err(|e| format!("p_q_inner_data: {e}"))?;
        if inner.nonce() != nonce
            || inner.server_nonce() != server_nonce
            || inner.pq() != PQ.to_be_bytes()
        {
            return Err("p_q_inner_data does not match the exchange".into());
        }
        let new_nonce = inner.new_nonce();

        let prime = dh_prime();
        let a = BigUint::from_bytes_be(&random::<256>());
        let g_a = BigUint::from(DH_G).modpow(&a, &prime);
        let answer = enums::ServerDhInnerData::Data(types::ServerDhInnerData {
            nonce,
            server_nonce,
            g: DH_G as i32,
            dh_prime: to_be_padded(&prime, 256),
            g_a: to_be_padded(&g_a, 256),
            server_time: now,
        })
        .to_bytes();
        let mut answer_with_hash = sha1(&[&answer]).to_vec();
        answer_with_hash.extend(&answer);
        let pad = (16 - answer_with_hash.len() % 16) % 16;
        answer_with_hash.extend_from_slice(&random::<16>()[..pad]);
        let (key, iv) = generate_key_data_from_nonce(&server_nonce, &new_nonce);
        aes::ige_encrypt(&mut answer_with_hash, &key, &iv);

        self.step = Step::SentDhParams {
            nonce,
            server_nonce,
            new_nonce,
            a,
        };
        let reply = enums::ServerDhParams::Ok(types::ServerDhParamsOk {
            nonce,
            server_nonce,
            encrypted_answer: answer_with_hash,
        });
        Ok(Outcome::Reply(reply.to_bytes()))
    }

    fn set_client_dh_params(
        &mut self,
        req: functions::SetClientDhParams,
    ) -> Result<Outcome, String> {
        let Step::SentDhParams {
            nonce,
            server_nonce,
            new_nonce,
            ref a,
        } = self.step
        else {
            return Err("set_client_DH_params before req_DH_params".into());
        };
        if req.nonce != nonce || req.server_nonce != server_nonce {
            return Err("set_client_DH_params with the wrong nonces".into());
        }
        let mut data = req.encrypted_data;
        if data.len() < 20 + 16 || !data.len().is_multiple_of(16) {
            return Err("client_DH_inner_data has a bad length".into());
        }
        let (key, iv) = generate_key_data_from_nonce(&server_nonce, &new_nonce);
        aes::ige_decrypt(&mut data, &key, &iv);
        let mut cursor = Cursor::from_slice(&data[20..]);
        let enums::ClientDhInnerData::Data(inner) =
            enums::ClientDhInnerData::deserialize(&mut cursor)
                .map_err(|e| format!("client_DH_inner_data: {e}"))?;
        if sha1(&[&data[20..20 + cursor.pos()]]) != data[..20] {
            return Err("client_DH_inner_data hash mismatch".into());
        }
        if inner.nonce != nonce || inner.server_nonce != server_nonce {
            return Err("client_DH_inner_data with the wrong nonces".into());
        }
        let prime = dh_prime();
        let g_b = BigUint::from_bytes_be(&inner.g_b);
        let one = BigUint::from(1u32);
        if g_b <= one || g_b >= &prime - &one {
            return Err("g_b out of range".into());
        }
        let key_bytes: [u8; 256] = to_be_padded(&g_b.modpow(a, &prime), 256)
            .try_into()
            .expect("padded to 256");
        let new_nonce_hash1 = AuthKey::from_bytes(key_bytes).calc_new_nonce_hash(&new_nonce, 1);
        let mut salt = [0u8; 8];
        for (i, s) in salt.iter_mut().enumerate() {
            *s = new_nonce[i] ^ server_nonce[i];
        }
        self.step = Step::Idle;
        let reply = enums::SetClientDhParamsAnswer::DhGenOk(types::DhGenOk {
            nonce,
            server_nonce,
            new_nonce_hash1,
        });
        Ok(Outcome::Done {
            reply: reply.to_bytes(),
            auth_key: Box::new(key_bytes),
            salt: i64::from_le_bytes(salt),
        })
    }
}
