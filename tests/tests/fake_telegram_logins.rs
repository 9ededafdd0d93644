//! Logins and limits on the fake DC as Telegram's: registered applications, the first call
//! on a key in `initConnection`, a token's prefix as the bot's user id, and `FLOOD_WAIT`
//! for repeated logins.

use std::time::Duration;

use grammers_tl_types::{self as tl, Serializable as _, functions};
use telegram_bots_tests::fake_dc::client::{
    CallError, Framing, RpcError, TestClient, init_connection, test_key,
};
use telegram_bots_tests::fake_dc::crypto::RsaKey;
use telegram_bots_tests::fake_dc::{FakeTelegram, TEST_API_HASH, TEST_API_ID};

const TOKEN: &str = "7000001:AAlogins-test";
const OTHER_HASH: &str = "fedcba9876543210fedcba9876543210";

fn telegram() -> FakeTelegram {
    let t = FakeTelegram::start(1).expect("start the fake DC");
    t.add_bot(TOKEN, "bot1").unwrap();
    t
}

fn rpc_error<T: std::fmt::Debug>(result: Result<T, CallError>) -> (i32, String) {
    match result {
        Err(CallError::Rpc(RpcError { code, message })) => (code, message),
        other => panic!("expected an RPC error, got {other:?}"),
    }
}

fn import(client: &mut TestClient, api_id: i32, api_hash: &str) -> Result<Vec<u8>, CallError> {
    let request = functions::auth::ImportBotAuthorization {
        flags: 0,
        api_id,
        api_hash: api_hash.into(),
        bot_auth_token: TOKEN.into(),
    };
    client.call_raw(&init_connection(TEST_API_ID, request.to_bytes()))
}

#[test]
fn only_a_registered_app_may_log_in() {
    let t = telegram();
    t.add_auth_key(1, test_key(1), None).unwrap();
    let mut client = TestClient::with_key(t.addr(1), test_key(1), Framing::Full).unwrap();
    let invalid = (400, "API_ID_INVALID".to_owned());
    assert_eq!(rpc_error(import(&mut client, 1, TEST_API_HASH)), invalid);
    assert_eq!(
        rpc_error(import(&mut client, TEST_API_ID, OTHER_HASH)),
        invalid
    );
    t.add_app(777, OTHER_HASH).unwrap();
    import(&mut client, 777, OTHER_HASH).expect("a registered app logs in");
    assert_eq!(t.stats()["logins"]["bot1"], 1);
    assert!(t.add_app(777, OTHER_HASH).is_err(), "registered twice");
    assert!(t.add_app(778, "not hex").is_err());
}

fn init_with(api_id: i32, device_model: &str, query: Vec<u8>) -> Vec<u8> {
    struct Raw(Vec<u8>);
    impl tl::Serializable for Raw {
        fn serialize(&self, buf: &mut impl Extend<u8>) {
            buf.extend(self.0.iter().copied());
        }
    }
    functions::InvokeWithLayer {
        layer: tl::LAYER,
        query: functions::InitConnection {
            api_id,
            device_model: device_model.into(),
            system_version: "test".into(),
            app_version: "1".into(),
            system_lang_code: "en".into(),
            lang_pack: String::new(),
            lang_code: "en".into(),
            proxy: None,
            params: None,
            query: Raw(query),
        },
    }
    .to_bytes()
}

#[test]
fn the_first_call_on_a_new_key_must_be_in_init_connection() {
    let t = telegram();
    let (mut client, key) =
        TestClient::with_handshake(t.addr(1), &RsaKey::test_key(), Framing::Full).unwrap();
    let config = functions::help::GetConfig {}.to_bytes();
    assert_eq!(
        rpc_error(client.call_raw(&config)),
        (400, "CONNECTION_NOT_INITED".to_owned())
    );
    assert_eq!(
        rpc_error(client.call_raw(&init_with(999, "test", config.clone()))),
        (400, "CONNECTION_API_ID_INVALID".to_owned())
    );
    assert_eq!(
        rpc_error(client.call_raw(&init_with(TEST_API_ID, "", config.clone()))),
        (400, "CONNECTION_DEVICE_MODEL_EMPTY".to_owned())
    );
    client
        .call_raw(&init_with(TEST_API_ID, "test", config.clone()))
        .expect("initConnection with the test app");
    client
        .call_raw(&config)
        .expect("later calls need no wrapper");
    // The client info is saved with the key: another session of it goes on unwrapped.
    let mut again = TestClient::with_key(t.addr(1), key, Framing::Full).unwrap();
    again.call_raw(&config).expect("the key is initialized");
}

#[test]
fn a_tokens_numeric_prefix_is_the_bots_user_id() {
    let t = telegram();
    let taken = t.add_bot("7000001:AAanother-secret", "bot2").unwrap_err();
    assert!(taken.contains("7000001"), "{taken}");
    for token in ["bot:AAsecret", "-5:AAsecret", "7000003", "7000003:"] {
        assert!(t.add_bot(token, "bot3").is_err(), "{token}");
    }
    assert_eq!(t.add_bot("7000003:AAsecret", "bot3"), Ok(7_000_003));
}

#[test]
fn repeated_logins_draw_flood_wait_on_their_own() {
    let t = telegram();
    t.configure(|s| {
        s.login_limit = 2;
        s.login_window = Duration::from_millis(1500);
    });
    t.add_auth_key(1, test_key(2), None).unwrap();
    let mut client = TestClient::with_key(t.addr(1), test_key(2), Framing::Full).unwrap();
    client.login(TOKEN).unwrap();
    client.login(TOKEN).unwrap();
    let (code, message) = rpc_error(client.login(TOKEN));
    assert!(
        code == 420 && ["FLOOD_WAIT_1", "FLOOD_WAIT_2"].contains(&message.as_str()),
        "a third login within the window: {code} {message}"
    );
    assert_eq!(
        t.stats()["logins"]["bot1"],
        2,
        "a refused login is no login"
    );
    std::thread::sleep(Duration::from_millis(1600));
    client.login(TOKEN).expect("the window has passed");
}
