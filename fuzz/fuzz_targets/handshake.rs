//! Arbitrary server answers into the core's client handshake: an error, never a panic
//! (the server chooses pq, the DH group and every length).
#![no_main]

use libfuzzer_sys::fuzz_target;
use telegram_bots_core::handshake::Handshake;
use telegram_bots_core::random::Seeded;
use telegram_bots_core::rsa::RsaPublicKey;

fuzz_target!(|data: &[u8]| {
    let mut random = Seeded::new(1);
    let (mut handshake, _request) =
        Handshake::start(vec![RsaPublicKey::telegram_production()], &mut random);
    // Up to three answers, separated by a 0xff 0xff marker.
    for answer in data.split(|b| *b == 0xff).take(3) {
        if handshake
            .handle(answer, 1_790_000_000, &mut random)
            .is_err()
        {
            break;
        }
    }
});
