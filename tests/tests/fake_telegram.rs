//! Tests of the fake Telegram DC itself, through a real MTProto client over real sockets.

use std::io::Read as _;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use grammers_tl_types::{enums, functions, types};
use telegram_bots_tests::fake_dc::client::{CallError, Framing, RpcError, TestClient, test_key};
use telegram_bots_tests::fake_dc::fault::{Fault, FaultKind};
use telegram_bots_tests::fake_dc::world::{Content, NewMessage, VoiceForm, voice_bytes};
use telegram_bots_tests::fake_dc::{FakeTelegram, crypto};

const TOKEN: &str = "7000001:AAtest-token";

fn telegram() -> FakeTelegram {
    let t = FakeTelegram::start(2).expect("start the fake DCs");
    t.add_bot(TOKEN, "bot1").unwrap();
    t
}

fn key(seed: u8) -> [u8; 256] {
    test_key(seed)
}

/// A client on DC 1 with a stored key, logged in as bot1.
fn logged_in(t: &FakeTelegram, seed: u8) -> TestClient {
    t.add_auth_key(1, key(seed), Some("bot1")).unwrap();
    TestClient::with_key(t.addr(1), key(seed), Framing::Full).unwrap()
}

fn rpc_error(result: Result<impl std::fmt::Debug, CallError>) -> RpcError {
    match result {
        Err(CallError::Rpc(e)) => e,
        other => panic!("expected an RPC error, got {other:?}"),
    }
}

fn login(client: &mut TestClient, token: &str) -> Result<enums::auth::Authorization, CallError> {
    client.login(token)
}

fn voice(t: &FakeTelegram, size: usize, dc: Option<i32>) -> (i32, String) {
    let sent = t
        .send_message(NewMessage {
            bot: "bot1".into(),
            chat_id: 42,
            from_user_id: 42,
            content: Content::Voice {
                size,
                duration: 2,
                mime_type: "audio/ogg".into(),
                seed: 9,
                bytes: None,
                dc,
                form: VoiceForm::Voice,
            },
        })
        .unwrap();
    (sent.pts, sent.sha256.unwrap())
}

fn text(t: &FakeTelegram, text: &str) -> i32 {
    t.send_text("bot1", 42, text).unwrap().pts
}

fn get_state(client: &mut TestClient) -> types::updates::State {
    client.get_state().unwrap()
}

fn difference(client: &mut TestClient, pts: i32, limit: Option<i32>) -> enums::updates::Difference {
    client.get_difference(pts, 0, limit).unwrap()
}

#[test]
fn handshake_in_every_framing_then_login_and_config() {
    let t = telegram();
    for (i, framing) in [Framing::Full, Framing::Intermediate, Framing::Abridged]
        .into_iter()
        .enumerate()
    {
        let (mut client, _key) =
            TestClient::with_handshake(t.addr(1), &crypto::RsaKey::test_key(), framing).unwrap();
        let enums::Config::Config(config) = client.call(&functions::help::GetConfig {}).unwrap();
        assert_eq!(config.this_dc, 1);
        assert_eq!(config.dc_options.len(), 2);
        let enums::auth::Authorization::Authorization(auth) = login(&mut client, TOKEN).unwrap()
        else {
            panic!("sign-up required?")
        };
        let enums::User::User(user) = auth.user else {
            panic!("empty user")
        };
        assert_eq!(
            (user.id, user.bot, user.username.as_deref()),
            (7_000_001, true, Some("bot1"))
        );
        assert_eq!(t.stats()["handshakes"], i + 1);
        assert_eq!(t.stats()["handshakes_by_bot"]["bot1"], i + 1);
        assert_eq!(t.stats()["logins"]["bot1"], i + 1);
    }
}

#[test]
fn unknown_token_and_unknown_key_are_refused() {
    let t = telegram();
    t.add_auth_key(1, key(1), None).unwrap();
    let mut client = TestClient::with_key(t.addr(1), key(1), Framing::Full).unwrap();
    let e = rpc_error(client.call(&functions::updates::GetState {}));
    assert_eq!((e.code, e.message.as_str()), (401, "AUTH_KEY_UNREGISTERED"));
    let e = rpc_error(login(&mut client, "7000001:wrong"));
    assert_eq!((e.code, e.message.as_str()), (400, "ACCESS_TOKEN_INVALID"));
    let e = rpc_error(client.call(&functions::messages::GetDialogFilters {}));
    assert_eq!((e.code, e.message.as_str()), (401, "AUTH_KEY_UNREGISTERED"));
    let e = rpc_error(client.call(&functions::help::GetCdnConfig {}));
    assert_eq!((e.code, e.message.as_str()), (400, "INPUT_METHOD_INVALID"));

    let mut stranger = TestClient::with_key(t.addr(1), key(99), Framing::Full).unwrap();
    match stranger.call(&functions::help::GetConfig {}) {
        Err(CallError::Transport(404)) => {}
        other => panic!("an unknown key must get -404, got {other:?}"),
    }
}

#[test]
fn large_requests_arrive_gzipped_and_are_unpacked() {
    let t = telegram();
    let mut client = logged_in(&t, 16);
    // 80 users make a request far over grammers' 512-byte compression threshold.
    let ids: Vec<enums::InputUser> = (0..80)
        .map(|i| {
            enums::InputUser::User(types::InputUser {
                user_id: 1000 + i,
                access_hash: 0,
            })
        })
        .chain([enums::InputUser::UserSelf])
        .collect();
    let users: Vec<enums::User> = client
        .call(&functions::users::GetUsers { id: ids })
        .unwrap();
    assert_eq!(users.len(), 1, "only the bot itself is known");
    assert_eq!(
        t.stats()["gzipped_requests"],
        1,
        "grammers sent the request as gzip_packed"
    );
}

#[test]
fn users_and_state_of_a_logged_in_bot() {
    let t = telegram();
    let mut client = logged_in(&t, 2);
    let users: Vec<enums::User> = client
        .call(&functions::users::GetUsers {
            id: vec![enums::InputUser::UserSelf],
        })
        .unwrap();
    let enums::User::User(me) = &users[0] else {
        panic!()
    };
    assert!(me.is_self && me.bot && me.id == 7_000_001);
    let enums::users::UserFull::Full(full) = client
        .call(&functions::users::GetFullUser {
            id: enums::InputUser::UserSelf,
        })
        .unwrap();
    let enums::UserFull::Full(inner) = full.full_user;
    assert_eq!(inner.id, 7_000_001);
    assert_eq!(get_state(&mut client).pts, 1);
    text(&t, "hello");
    assert_eq!(get_state(&mut client).pts, 2);
    assert_eq!(
        t.stats()["logins"]["bot1"],
        0,
        "a stored session needs no login"
    );
}

#[test]
fn messages_are_pushed_and_recorded_for_get_difference() {
    let t = telegram();
    let mut client = logged_in(&t, 3);
    let start = get_state(&mut client).pts;
    let (pts, _sha) = voice(&t, 5000, None);
    let enums::Updates::Updates(updates) = client
        .next_update(Duration::from_secs(5))
        .unwrap()
        .expect("a pushed update")
    else {
        panic!("not an Updates")
    };
    let enums::Update::NewMessage(new) = &updates.updates[0] else {
        panic!()
    };
    assert_eq!((new.pts, new.pts_count), (pts, 1));
    assert_eq!(updates.users.len(), 1, "the sender comes with the update");

    assert!(matches!(
        difference(&mut client, pts, None),
        enums::updates::Difference::Empty(_)
    ));
    let enums::updates::Difference::Difference(d) = difference(&mut client, start, None) else {
        panic!()
    };
    assert_eq!(d.new_messages.len(), 1);
    let enums::updates::State::State(state) = d.state;
    assert_eq!(state.pts, pts);
}

fn get_file(
    client: &mut TestClient,
    t: &FakeTelegram,
    offset: i64,
    limit: i32,
    precise: bool,
) -> Result<Vec<u8>, CallError> {
    let (id, access_hash, file_reference) = {
        let world = t.world();
        let f = world.files.values().next().expect("a stored file");
        (f.id, f.access_hash, world.file_reference(f.id).unwrap())
    };
    let enums::upload::File::File(file) = client.call(&functions::upload::GetFile {
        precise,
        cdn_supported: false,
        location: enums::InputFileLocation::InputDocumentFileLocation(
            types::InputDocumentFileLocation {
                id,
                access_hash,
                file_reference,
                thumb_size: String::new(),
            },
        ),
        offset,
        limit,
    })?
    else {
        panic!("CDN redirect?")
    };
    Ok(file.bytes)
}

#[test]
fn get_file_follows_telegrams_limit_rules() {
    let t = telegram();
    let mut client = logged_in(&t, 4);
    let size = 1_300_000;
    let (_, sha) = voice(&t, size, None);
    let expected = voice_bytes(9, size);
    assert_eq!(
        crypto::sha256(&[&expected])
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>(),
        sha
    );

    let mut downloaded = Vec::new();
    let chunk = 512 * 1024;
    while downloaded.len() < size {
        let part = get_file(&mut client, &t, downloaded.len() as i64, chunk, false).unwrap();
        assert!(!part.is_empty());
        downloaded.extend(part);
    }
    assert_eq!(downloaded, expected);
    assert_eq!(t.stats()["files_served"], 1);
    assert_eq!(t.stats()["files_served_by_bot"]["bot1"], 1);

    for (offset, limit, error) in [
        (0, 1000, "LIMIT_INVALID"),            // not a multiple of 4 KiB
        (0, 2 * 1024 * 1024, "LIMIT_INVALID"), // over 1 MiB
        (0, 12 * 1024, "LIMIT_INVALID"),       // does not divide 1 MiB
        (100, 4096, "OFFSET_INVALID"),         // offset not a multiple of 4 KiB
        (-4096, 4096, "OFFSET_INVALID"),
        (1024 * 1024 - 4096, 8192, "LIMIT_INVALID"), // crosses a 1 MiB boundary
    ] {
        let e = rpc_error(get_file(&mut client, &t, offset, limit, false));
        assert_eq!(
            (e.code, e.message.as_str()),
            (400, error),
            "offset {offset} limit {limit}"
        );
    }
    // `precise` allows multiples of 1 KiB that need not divide 1 MiB, still within one MiB.
    assert_eq!(
        get_file(&mut client, &t, 1024, 3072, true).unwrap(),
        expected[1024..4096]
    );
    let e = rpc_error(get_file(&mut client, &t, 1024 * 1024 - 1024, 3072, true));
    assert_eq!(e.message, "LIMIT_INVALID");
    assert!(
        get_file(&mut client, &t, 2 * 1024 * 1024, 4096, false)
            .unwrap()
            .is_empty(),
        "past the end"
    );
}

#[test]
fn home_dc_and_file_dc_redirects() {
    let t = FakeTelegram::start(2).unwrap();
    t.add_bot_on("7000002:AAother", "bot2", 2).unwrap();
    t.add_auth_key(1, key(5), None).unwrap();
    let mut on_dc1 = TestClient::with_key(t.addr(1), key(5), Framing::Full).unwrap();
    let e = rpc_error(login(&mut on_dc1, "7000002:AAother"));
    assert_eq!((e.code, e.message.as_str()), (303, "USER_MIGRATE_2"));

    t.add_bot(TOKEN, "bot1").unwrap();
    login(&mut on_dc1, TOKEN).unwrap();
    voice(&t, 10_000, Some(2));
    let e = rpc_error(get_file(&mut on_dc1, &t, 0, 4096, false));
    assert_eq!((e.code, e.message.as_str()), (303, "FILE_MIGRATE_2"));

    let enums::auth::ExportedAuthorization::Authorization(exported) = on_dc1
        .call(&functions::auth::ExportAuthorization { dc_id: 2 })
        .unwrap();
    t.add_auth_key(2, key(6), None).unwrap();
    let mut on_dc2 = TestClient::with_key(t.addr(2), key(6), Framing::Intermediate).unwrap();
    let e = rpc_error(on_dc2.call(&functions::auth::ImportAuthorization {
        id: exported.id,
        bytes: vec![1, 2, 3],
    }));
    assert_eq!(e.message, "AUTH_BYTES_INVALID");
    on_dc2
        .call(&functions::auth::ImportAuthorization {
            id: exported.id,
            bytes: exported.bytes,
        })
        .unwrap();
    assert_eq!(
        get_file(&mut on_dc2, &t, 0, 16384, false).unwrap(),
        voice_bytes(9, 10_000)
    );
    assert_eq!(
        t.stats()["logins"]["bot1"],
        1,
        "importAuthorization is not a bot login"
    );
}

#[test]
fn scripted_rpc_faults() {
    let t = telegram();
    let mut client = logged_in(&t, 7);
    t.add_fault(Fault {
        seconds: 30,
        ..Fault::new(FaultKind::FloodWait).for_method("updates.getState")
    })
    .unwrap();
    let e = rpc_error(client.call(&functions::updates::GetState {}));
    assert_eq!((e.code, e.message.as_str()), (420, "FLOOD_WAIT_30"));
    get_state(&mut client); // once only

    t.add_fault(Fault {
        code: 500,
        message: "RPC_CALL_FAIL".into(),
        times: 2,
        ..Fault::new(FaultKind::RpcError).for_bot("bot1")
    })
    .unwrap();
    assert_eq!(
        rpc_error(client.call(&functions::updates::GetState {})).message,
        "RPC_CALL_FAIL"
    );
    assert_eq!(
        rpc_error(client.call(&functions::updates::GetState {})).message,
        "RPC_CALL_FAIL"
    );
    get_state(&mut client);

    t.add_fault(Fault {
        millis: 600,
        ..Fault::new(FaultKind::Stall)
    })
    .unwrap();
    let started = Instant::now();
    get_state(&mut client);
    assert!(
        started.elapsed() >= Duration::from_millis(600),
        "stalled {:?}",
        started.elapsed()
    );

    voice(&t, 4096, None);
    t.add_fault(Fault::new(FaultKind::FileReferenceExpired))
        .unwrap();
    assert_eq!(
        rpc_error(get_file(&mut client, &t, 0, 4096, false)).message,
        "FILE_REFERENCE_EXPIRED"
    );
    assert_eq!(
        get_file(&mut client, &t, 0, 4096, false).unwrap().len(),
        4096
    );

    t.add_fault(Fault::new(FaultKind::AuthKeyUnregistered).for_bot("bot1"))
        .unwrap();
    assert_eq!(
        rpc_error(client.call(&functions::updates::GetState {})).code,
        401
    );
    assert_eq!(
        rpc_error(client.call(&functions::updates::GetState {})).code,
        401,
        "the login is gone"
    );
    login(&mut client, TOKEN).unwrap();
    get_state(&mut client);
}

#[test]
fn skipped_pts_leaves_a_gap_that_get_difference_fills() {
    let t = telegram();
    let mut client = logged_in(&t, 8);
    let before = get_state(&mut client).pts;
    t.add_fault(Fault {
        count: 3,
        ..Fault::new(FaultKind::SkipPts).for_bot("bot1")
    })
    .unwrap();
    let pts = text(&t, "after a gap");
    assert_eq!(pts, before + 4);
    let update = client.next_update(Duration::from_secs(5)).unwrap();
    let Some(enums::Updates::UpdateShortMessage(m)) = update else {
        panic!("{update:?}")
    };
    assert_eq!(
        (m.pts, m.pts_count),
        (before + 4, 1),
        "pts - pts_count != local pts: a gap"
    );
    let enums::updates::Difference::Difference(d) = difference(&mut client, before, None) else {
        panic!()
    };
    assert_eq!(d.new_messages.len(), 1);
}

#[test]
fn revoked_token_logs_sessions_out_and_refuses_login() {
    let t = telegram();
    let mut client = logged_in(&t, 9);
    get_state(&mut client);
    t.add_fault(Fault::new(FaultKind::RevokeToken).for_bot("bot1"))
        .unwrap();
    assert_eq!(
        rpc_error(client.call(&functions::updates::GetState {})).message,
        "AUTH_KEY_UNREGISTERED"
    );
    assert_eq!(
        rpc_error(login(&mut client, TOKEN)).message,
        "ACCESS_TOKEN_INVALID"
    );
}

#[test]
fn connections_can_be_dropped_reset_and_refused() {
    let t = telegram();
    for kind in [FaultKind::DropConnections, FaultKind::ResetConnections] {
        let mut client = logged_in(&t, 10);
        get_state(&mut client);
        t.add_fault(Fault::new(kind).for_bot("bot1")).unwrap();
        client
            .stream()
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut buf = [0u8; 64];
        match client.stream().read(&mut buf) {
            Ok(0) => assert_eq!(kind, FaultKind::DropConnections),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                assert_eq!(kind, FaultKind::ResetConnections)
            }
            other => panic!("{kind:?}: connection still open: {other:?}"),
        }
    }
    t.add_fault(Fault::new(FaultKind::TooManyConnections))
        .unwrap();
    let mut refused = logged_in(&t, 11);
    match refused.call(&functions::help::GetConfig {}) {
        Err(CallError::Transport(429)) => {}
        other => panic!("want -429, got {other:?}"),
    }
    let mut next = logged_in(&t, 12);
    next.call(&functions::help::GetConfig {}).unwrap();
}

/// Two loopback addresses play two hosts (Linux routes all of 127.0.0.0/8 to `lo`).
const HOST_A: Option<IpAddr> = Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)));
const HOST_B: Option<IpAddr> = Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3)));

fn client_from(t: &FakeTelegram, host: Option<IpAddr>, seed: u8) -> TestClient {
    TestClient::with_key_from(host, t.addr(1), key(seed), Framing::Full).unwrap()
}

#[test]
fn several_sessions_of_one_key_from_one_address_are_no_conflict() {
    let t = telegram();
    t.add_auth_key(1, key(13), Some("bot1")).unwrap();
    // A client and its second session for a download, as Telegram's own apps do.
    let mut first = client_from(&t, HOST_A, 13);
    let mut second = client_from(&t, HOST_A, 13);
    for _ in 0..3 {
        get_state(&mut first);
        get_state(&mut second);
    }
    let stats = t.stats();
    assert_eq!(stats["auth_key_conflicts"], 0, "{stats}");
    assert_eq!(stats["live_sessions"]["bot1"], 2, "{stats}");
    assert_eq!(stats["peer_addresses"]["bot1"], 1, "{stats}");
    assert_eq!(stats["peak_live_sessions"]["bot1"], 2, "{stats}");
    assert_eq!(stats["peak_peer_addresses"]["bot1"], 1, "{stats}");
}

#[test]
fn one_key_from_two_addresses_at_once_is_a_conflict() {
    let t = telegram();
    t.add_auth_key(1, key(13), Some("bot1")).unwrap();
    let mut first = client_from(&t, HOST_A, 13);
    get_state(&mut first);
    // The second host's first message is no conflict yet (the first may be a dead
    // connection the server has not noticed) ...
    let mut second = client_from(&t, HOST_B, 13);
    get_state(&mut second);
    assert_eq!(t.stats()["auth_key_conflicts"], 0);
    assert_eq!(t.stats()["peak_peer_addresses"]["bot1"], 2);
    // ... until the first one speaks again: one key used from two addresses at once.
    let e = rpc_error(first.call(&functions::updates::GetState {}));
    assert_eq!((e.code, e.message.as_str()), (406, "AUTH_KEY_DUPLICATED"));
    assert_eq!(t.stats()["auth_key_conflicts"], 1);
    let mut third = client_from(&t, HOST_A, 13);
    assert!(
        matches!(
            third.call(&functions::help::GetConfig {}),
            Err(CallError::Transport(404))
        ),
        "the key is revoked"
    );
}

#[test]
fn one_key_from_two_addresses_one_after_the_other_is_no_conflict() {
    let t = telegram();
    t.add_auth_key(1, key(14), Some("bot1")).unwrap();
    let mut a = client_from(&t, HOST_A, 14);
    get_state(&mut a);
    drop(a);
    // However fast the second host follows (the first connection may still be closing).
    let mut b = client_from(&t, HOST_B, 14);
    get_state(&mut b);
    get_state(&mut b);
    let stats = t.stats();
    assert_eq!(stats["auth_key_conflicts"], 0, "{stats}");
    // The fake notices the first connection's close on its own time (a loaded machine
    // can take a while): then only the second session is live.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while t.stats()["live_sessions"]["bot1"] != 1 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let stats = t.stats();
    assert_eq!(stats["live_sessions"]["bot1"], 1, "{stats}");
    assert_eq!(stats["auth_key_conflicts"], 0, "{stats}");
}

#[test]
fn pings_and_ping_delay_disconnect() {
    let t = telegram();
    let mut client = logged_in(&t, 15);
    // The first call carries initConnection; pings are service messages that go bare.
    get_state(&mut client);
    let enums::Pong::Pong(pong) = client.call(&functions::Ping { ping_id: 77 }).unwrap();
    assert_eq!(pong.ping_id, 77);
    let enums::Pong::Pong(pong) = client
        .call(&functions::PingDelayDisconnect {
            ping_id: 78,
            disconnect_delay: 1,
        })
        .unwrap();
    assert_eq!(pong.ping_id, 78);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        client.call(&functions::help::GetConfig {}).is_err(),
        "closed after the delay without a new ping"
    );
}

#[test]
fn a_dropped_fake_telegram_closes_its_ports_and_connections() {
    let t = telegram();
    let addr = t.addr(1);
    let mut client = logged_in(&t, 30);
    get_state(&mut client);
    drop(t);
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "the listener is closed"
    );
    client
        .stream()
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut buf = [0u8; 16];
    assert!(
        matches!(client.stream().read(&mut buf), Ok(0) | Err(_)),
        "the connection is closed"
    );
}
