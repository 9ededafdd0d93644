//! The core's client handshake against the fake DC's server handshake, both sans-IO,
//! message by message in memory.

use grammers_tl_types::{Deserializable as _, Serializable as _, enums, types};
use telegram_bots_core::handshake::{Handshake, HandshakeError, Progress};
use telegram_bots_core::random::Seeded;
use telegram_bots_core::rsa::RsaPublicKey;
use telegram_bots_tests::fake_dc::crypto::RsaKey;
use telegram_bots_tests::fake_dc::handshake::{Handshake as Server, Outcome};

const NOW: i64 = 1_790_000_000;

/// Runs a whole exchange; `tamper` may rewrite each server answer by step.
fn exchange(
    trusted: Vec<RsaPublicKey>,
    mut tamper: impl FnMut(usize, Vec<u8>) -> Vec<u8>,
) -> Result<(), HandshakeError> {
    let rsa = RsaKey::test_key();
    let mut server = Server::default();
    let mut random = Seeded::new(7);
    let (mut client, mut request) = Handshake::start(trusted, &mut random);
    for step in 0.. {
        let answer = match server
            .handle(&request, &rsa, NOW as i32 + 5)
            .expect("the server accepts")
        {
            Outcome::Reply(reply) => reply,
            Outcome::Done {
                reply,
                auth_key,
                salt,
            } => {
                let answer = tamper(step, reply);
                let Progress::Done(done) = client.handle(&answer, NOW, &mut random)? else {
                    panic!("the client wants more after dh_gen_ok")
                };
                assert_eq!(done.auth_key, *auth_key, "both sides agree on the key");
                assert_eq!(done.first_salt, salt);
                assert_eq!(done.time_offset, 5);
                return Ok(());
            }
        };
        match client.handle(&tamper(step, answer), NOW, &mut random)? {
            Progress::Send(next) => request = next,
            Progress::Done(_) => panic!("done before dh_gen_ok"),
        }
    }
    unreachable!()
}

#[test]
fn client_and_server_agree_on_a_key() {
    exchange(
        vec![
            RsaPublicKey::telegram_production(),
            RsaKey::test_key().public(),
        ],
        |_, a| a,
    )
    .unwrap();
}

#[test]
fn a_server_without_a_trusted_key_is_refused() {
    let err = exchange(vec![RsaPublicKey::telegram_production()], |_, a| a).unwrap_err();
    assert_eq!(
        err,
        HandshakeError::UnknownServerKey(vec![RsaKey::test_key().fingerprint()])
    );
}

#[test]
fn tampered_answers_are_refused() {
    let trusted = || vec![RsaKey::test_key().public()];
    // Another nonce in resPQ.
    let err = exchange(trusted(), |step, a| {
        if step != 0 {
            return a;
        }
        let enums::ResPq::Pq(mut res) = enums::ResPq::from_bytes(&a).unwrap();
        res.nonce[0] ^= 1;
        enums::ResPq::Pq(res).to_bytes()
    });
    assert_eq!(err.unwrap_err(), HandshakeError::NonceMismatch);
    // A pq that is not two 32-bit primes.
    let err = exchange(trusted(), |step, a| {
        if step != 0 {
            return a;
        }
        let enums::ResPq::Pq(mut res) = enums::ResPq::from_bytes(&a).unwrap();
        res.pq = 1_000_000_007u64.to_be_bytes().to_vec();
        enums::ResPq::Pq(res).to_bytes()
    });
    assert_eq!(err.unwrap_err(), HandshakeError::BadPq);
    // A flipped bit in the encrypted DH answer.
    let err = exchange(trusted(), |step, a| {
        if step != 1 {
            return a;
        }
        let enums::ServerDhParams::Ok(mut ok) = enums::ServerDhParams::from_bytes(&a).unwrap()
        else {
            panic!()
        };
        ok.encrypted_answer[40] ^= 1;
        enums::ServerDhParams::Ok(ok).to_bytes()
    });
    assert!(matches!(
        err.unwrap_err(),
        HandshakeError::DhRefused | HandshakeError::Malformed(_)
    ));
    // A wrong key proof in dh_gen_ok.
    let err = exchange(trusted(), |step, a| {
        if step != 2 {
            return a;
        }
        let enums::SetClientDhParamsAnswer::DhGenOk(mut ok) =
            enums::SetClientDhParamsAnswer::from_bytes(&a).unwrap()
        else {
            panic!()
        };
        ok.new_nonce_hash1[0] ^= 1;
        enums::SetClientDhParamsAnswer::DhGenOk(types::DhGenOk { ..ok }).to_bytes()
    });
    assert_eq!(err.unwrap_err(), HandshakeError::KeyMismatch);
    // Garbage instead of an answer.
    assert_eq!(
        exchange(trusted(), |_, _| vec![1, 2, 3]).unwrap_err(),
        HandshakeError::Malformed("resPQ")
    );
}
