//! The core's session state machine against the fake DC's connection, both sans-IO,
//! frame by frame in memory with a fake clock: handshake, requests, RPC errors, pushed
//! updates, keep-alive, and the failures that end a session.

use std::time::{Duration, Instant};

use grammers_tl_types::{Deserializable as _, Serializable as _, enums, functions};
use smol::channel::Receiver;
use telegram_bots_core::random::Seeded;
use telegram_bots_core::session::{Now, RequestId, Session, SessionError, SessionEvent};
use telegram_bots_tests::fake_dc::FakeTelegram;
use telegram_bots_tests::fake_dc::fault::{Fault, FaultKind};
use telegram_bots_tests::fake_dc::session::Connection;
use telegram_bots_tests::fake_dc::world::{Conn, Push};

const TOKEN: &str = "7000001:AAcore-session";

struct Link {
    telegram: FakeTelegram,
    server: Connection,
    pushes: Receiver<Push>,
    session: Session,
    random: Seeded,
    now: Now,
    events: Vec<SessionEvent>,
}

impl Link {
    fn new(auth_key: Option<[u8; 256]>) -> Link {
        let telegram = FakeTelegram::start(1).unwrap();
        telegram.add_bot(TOKEN, "bot1").unwrap();
        Self::on(telegram, auth_key)
    }

    fn on(telegram: FakeTelegram, auth_key: Option<[u8; 256]>) -> Link {
        let (push, pushes) = smol::channel::unbounded();
        telegram.world().conns.insert(900, Conn::new(1, push));
        // grammers' session reads the system clock for message ids, so Unix time is real.
        let unix_secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let now = Now {
            instant: Instant::now(),
            unix_secs,
        };
        let mut random = Seeded::new(3);
        let session = Session::new(
            telegram_bots_tests::fake_dc::session_config(),
            auth_key,
            now,
            &mut random,
        );
        Link {
            server: Connection::new(900, 1),
            telegram,
            pushes,
            session,
            random,
            now,
            events: Vec::new(),
        }
    }

    /// Moves frames both ways until neither side has anything more to say.
    fn pump(&mut self) {
        for step in 0.. {
            assert!(
                step < 1000,
                "the session and the DC keep talking: {:?}",
                self.events
            );
            let shared = self.telegram.shared().clone();
            let replies = if let Some(frame) = self.session.poll_transmit() {
                self.server.handle_read(&frame, &shared).frames
            } else if let Ok(push) = self.pushes.try_recv() {
                self.server.handle_push(push, &shared).frames
            } else {
                break;
            };
            for reply in replies {
                self.session
                    .handle_input(&reply, self.now, &mut self.random);
            }
        }
        while let Some(event) = self.session.poll_event() {
            self.events.push(event);
        }
    }

    fn call(&mut self, body: Vec<u8>) -> Result<Vec<u8>, telegram_bots_core::rpc_error::RpcError> {
        let id = self.session.invoke(body);
        self.pump();
        self.take_answer(id).expect("an answer")
    }

    fn take_answer(
        &mut self,
        id: RequestId,
    ) -> Option<Result<Vec<u8>, telegram_bots_core::rpc_error::RpcError>> {
        let i = self.events.iter().position(|e| matches!(e, SessionEvent::Result { id: x, .. } | SessionEvent::Error { id: x, .. } if *x == id))?;
        match self.events.remove(i) {
            SessionEvent::Result { body, .. } => Some(Ok(body)),
            SessionEvent::Error { error, .. } => Some(Err(error)),
            _ => unreachable!(),
        }
    }

    fn login(&mut self) -> Result<Vec<u8>, telegram_bots_core::rpc_error::RpcError> {
        self.call(
            functions::auth::ImportBotAuthorization {
                flags: 0,
                api_id: telegram_bots_tests::fake_dc::TEST_API_ID,
                api_hash: telegram_bots_tests::fake_dc::TEST_API_HASH.into(),
                bot_auth_token: TOKEN.into(),
            }
            .to_bytes(),
        )
    }
}

#[test]
fn handshake_then_requests_over_the_new_key() {
    let mut link = Link::new(None);
    link.pump();
    let Some(SessionEvent::Ready { new_key: Some(key) }) = link.events.first() else {
        panic!("no new key: {:?}", link.events)
    };
    let key = key.auth_key;
    assert!(
        link.telegram.world().keys.values().any(|k| *k.key == key),
        "the DC stored the same key"
    );
    assert!(link.session.is_ready());

    let config =
        enums::Config::from_bytes(&link.call(functions::help::GetConfig {}.to_bytes()).unwrap())
            .unwrap();
    let enums::Config::Config(config) = config;
    assert_eq!(config.this_dc, 1);
    link.login().unwrap();
    assert_eq!(link.telegram.stats()["logins"]["bot1"], 1);
    assert_eq!(link.telegram.stats()["handshakes"], 1);
}

#[test]
fn a_stored_key_is_ready_at_once_and_errors_are_parsed() {
    let key = [7u8; 256];
    let telegram = FakeTelegram::start(1).unwrap();
    telegram.add_bot(TOKEN, "bot1").unwrap();
    telegram.add_auth_key(1, key, Some("bot1")).unwrap();
    telegram
        .add_fault(Fault {
            seconds: 42,
            ..Fault::new(FaultKind::FloodWait).for_method("updates.getState")
        })
        .unwrap();
    let mut link = Link::on(telegram, Some(key));
    assert!(matches!(
        link.session.poll_event(),
        Some(SessionEvent::Ready { new_key: None })
    ));
    let error = link
        .call(functions::updates::GetState {}.to_bytes())
        .unwrap_err();
    assert_eq!(
        (error.code, error.name.as_str(), error.wait_seconds()),
        (420, "FLOOD_WAIT", Some(42))
    );
    let state = enums::updates::State::from_bytes(
        &link
            .call(functions::updates::GetState {}.to_bytes())
            .unwrap(),
    );
    assert!(state.is_ok());
    assert_eq!(link.telegram.stats()["handshakes"], 0);
}

#[test]
fn pushed_updates_become_events() {
    let mut link = Link::new(None);
    link.pump();
    link.login().unwrap();
    link.call(functions::updates::GetState {}.to_bytes())
        .unwrap();
    link.events.clear();
    link.telegram.send_text("bot1", 5, "hi").unwrap();
    link.pump();
    let updates: Vec<_> = link
        .events
        .iter()
        .filter_map(|e| match e {
            SessionEvent::Update(u) => Some(enums::Updates::from_bytes(u).unwrap()),
            _ => None,
        })
        .collect();
    assert_eq!(updates.len(), 1, "{:?}", link.events);
}

#[test]
fn keep_alive_pings_and_the_idle_deadline() {
    let key = [9u8; 256];
    let telegram = FakeTelegram::start(1).unwrap();
    telegram.add_auth_key(1, key, None).unwrap();
    let mut link = Link::on(telegram, Some(key));
    link.call(functions::help::GetConfig {}.to_bytes()).unwrap();
    let ping_at = link.session.poll_timeout().unwrap();
    assert_eq!(ping_at, link.now.instant + Duration::from_secs(60));
    link.now.instant = ping_at;
    link.session.handle_timeout(link.now);
    let ping = link.session.poll_transmit().expect("a ping goes out");
    let out = link
        .server
        .handle_read(&ping, &link.telegram.shared().clone());
    assert!(!out.frames.is_empty(), "the server answers the ping");
    assert!(
        link.server.disconnect_at.is_some(),
        "ping_delay_disconnect armed the server's timer"
    );
    for frame in out.frames {
        link.session
            .handle_input(&frame, link.now, &mut link.random);
    }
    assert!(
        link.session.poll_event().is_none(),
        "pongs stay inside the session"
    );

    link.now.instant += Duration::from_secs(91);
    link.session.handle_timeout(link.now);
    let failed: Vec<_> = std::iter::from_fn(|| link.session.poll_event()).collect();
    assert!(
        matches!(
            failed.as_slice(),
            [SessionEvent::Failed(SessionError::Timeout)]
        ),
        "{failed:?}"
    );
    assert_eq!(link.session.poll_timeout(), None);
}

#[test]
fn an_unknown_key_ends_the_session() {
    let mut link = Link::new(Some([1u8; 256]));
    link.session
        .invoke(functions::help::GetConfig {}.to_bytes());
    link.pump();
    assert!(
        link.events
            .iter()
            .any(|e| matches!(e, SessionEvent::Failed(SessionError::UnknownAuthKey))),
        "{:?}",
        link.events
    );
}

#[test]
fn a_server_that_refuses_every_message_ends_the_session_instead_of_a_loop() {
    // A client clock a day off: every message id is "too high", the server says so, and
    // the session must give up rather than resend forever.
    let mut link = Link::new(None);
    link.now.unix_secs -= 86_400;
    link.pump();
    link.session
        .invoke(functions::help::GetConfig {}.to_bytes());
    link.pump();
    assert!(
        link.events
            .iter()
            .any(|e| matches!(e, SessionEvent::Failed(SessionError::Protocol(_)))),
        "{:?}",
        link.events
    );
}
