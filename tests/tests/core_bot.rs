//! The core's bot state machine against the fake DC, both sans-IO, in memory, with a fake
//! clock: login, sync, messages, restart without login, backoff, FLOOD_WAIT, migrate,
//! gaps, lost keys and a rejected token.

use std::time::{Duration, Instant};

use smol::channel::Receiver;
use telegram_bots_core::bot::{Bot, BotAction, BotConfig, BotEvent, BotSnapshot};
use telegram_bots_core::fleet::BotState;
use telegram_bots_core::random::Seeded;
use telegram_bots_core::secret::Secret;
use telegram_bots_core::session::Now;
use telegram_bots_tests::fake_dc::FakeTelegram;
use telegram_bots_tests::fake_dc::fault::{Fault, FaultKind};
use telegram_bots_tests::fake_dc::session::Connection;
use telegram_bots_tests::fake_dc::world::{Conn, Content, NewMessage, Push};

const TOKEN: &str = "7000001:AAcore-bot";

/// One bot wired to the fake DC through an in-memory "network".
struct Sim {
    telegram: FakeTelegram,
    bot: Bot,
    server: Option<(Connection, Receiver<Push>)>,
    next_conn: u64,
    now: Now,
    random: Seeded,
    events: Vec<BotEvent>,
    connects: Vec<i32>,
    /// Connection attempts that fail before the DC answers (a network outage).
    refuse: usize,
    /// The DC reads but never answers (a server that hangs).
    mute: bool,
}

fn bot_config(token: &str) -> BotConfig {
    BotConfig {
        workspace_id: "ws_1".into(),
        token: Secret::new(token.into()),
        api_id: telegram_bots_tests::fake_dc::TEST_API_ID,
        api_hash: Secret::new(telegram_bots_tests::fake_dc::TEST_API_HASH.into()),
        default_dc: 1,
    }
}

fn real_now() -> Now {
    // grammers' session reads the real clock for message ids: Unix time is real here.
    let unix_secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    Now {
        instant: Instant::now(),
        unix_secs,
    }
}

impl Sim {
    fn new(telegram: FakeTelegram, token: &str, snapshot: Option<BotSnapshot>) -> Sim {
        let bot = Bot::new(
            bot_config(token),
            telegram_bots_tests::fake_dc::session_config(),
            snapshot,
        );
        let mut sim = Sim {
            telegram,
            bot,
            server: None,
            next_conn: 1000,
            now: real_now(),
            random: Seeded::new(11),
            events: Vec::new(),
            connects: Vec::new(),
            refuse: 0,
            mute: false,
        };
        sim.run();
        sim
    }

    fn drop_server(&mut self) {
        if let Some((conn, _)) = self.server.take() {
            self.telegram.world().conns.remove(&conn.id);
        }
    }

    /// Carries out the bot's actions and the DC's answers until both are quiet.
    fn run(&mut self) {
        for step in 0.. {
            assert!(step < 5000, "no quiet point: {:?}", self.events);
            while let Some(event) = self.bot.poll_event() {
                self.events.push(event);
            }
            if let Some(action) = self.bot.poll_action() {
                match action {
                    BotAction::Connect { dc } => {
                        self.drop_server();
                        self.connects.push(dc);
                        if self.refuse > 0 {
                            self.refuse -= 1;
                            self.bot.handle_disconnected(self.now, &mut self.random);
                            continue;
                        }
                        self.next_conn += 1;
                        let (push, pushes) = smol::channel::unbounded();
                        self.telegram
                            .world()
                            .conns
                            .insert(self.next_conn, Conn::new(dc, push));
                        self.server = Some((Connection::new(self.next_conn, dc), pushes));
                        self.bot.handle_connected(self.now, &mut self.random);
                    }
                    BotAction::Send(frame) => {
                        let shared = self.telegram.shared().clone();
                        // As the runtimes do: without a connection the bot has been told.
                        let Some((server, _)) = &mut self.server else {
                            continue;
                        };
                        let out = server.handle_read(&frame, &shared);
                        let replies = if self.mute { Vec::new() } else { out.frames };
                        for reply in replies {
                            self.bot.handle_input(&reply, self.now, &mut self.random);
                        }
                        if out.close {
                            self.drop_server();
                            self.bot.handle_disconnected(self.now, &mut self.random);
                        }
                    }
                    BotAction::Disconnect => self.drop_server(),
                }
                continue;
            }
            let push = self
                .server
                .as_ref()
                .and_then(|(_, pushes)| pushes.try_recv().ok());
            match push {
                Some(Push::Close { .. }) => {
                    self.drop_server();
                    self.bot.handle_disconnected(self.now, &mut self.random);
                }
                Some(push) => {
                    let shared = self.telegram.shared().clone();
                    let (server, _) = self.server.as_mut().expect("a push comes on a connection");
                    for frame in server.handle_push(push, &shared).frames {
                        self.bot.handle_input(&frame, self.now, &mut self.random);
                    }
                }
                None => return,
            }
        }
    }

    /// Moves the clock to the bot's next deadline and runs.
    fn advance(&mut self) -> Duration {
        let at = self.bot.poll_timeout().expect("a deadline");
        let waited = at.saturating_duration_since(self.now.instant);
        self.now.instant = at.max(self.now.instant);
        self.bot.handle_timeout(self.now, &mut self.random);
        self.run();
        waited
    }

    fn messages(&self) -> Vec<&telegram_bots_core::updates::IncomingMessage> {
        self.events
            .iter()
            .filter_map(|e| match e {
                BotEvent::Message(m) => Some(m),
                _ => None,
            })
            .collect()
    }

    /// The reason given the last time the bot entered `state`.
    fn last_reason(&self, state: BotState) -> Option<String> {
        self.events.iter().rev().find_map(|e| match e {
            BotEvent::State { state: s, reason } if *s == state => reason.clone(),
            _ => None,
        })
    }

    fn last_snapshot(&self) -> BotSnapshot {
        self.events
            .iter()
            .rev()
            .find_map(|e| match e {
                BotEvent::Snapshot(s) => Some(s.clone()),
                _ => None,
            })
            .expect("a snapshot")
    }

    fn voice(&self, size: usize) -> i32 {
        self.telegram
            .send_message(NewMessage {
                bot: "bot1".into(),
                chat_id: 42,
                from_user_id: 42,
                content: Content::Voice {
                    size,
                    duration: 3,
                    mime_type: "audio/ogg".into(),
                    seed: 1,
                    bytes: None,
                    dc: None,
                },
            })
            .unwrap()
            .message_id
    }
}

fn telegram(dcs: usize) -> FakeTelegram {
    let t = FakeTelegram::start(dcs).unwrap();
    t.add_bot(TOKEN, "bot1").unwrap();
    t
}

#[test]
fn a_new_bot_handshakes_logs_in_syncs_and_runs() {
    let mut sim = Sim::new(telegram(1), TOKEN, None);
    assert_eq!(sim.bot.state(), BotState::Running, "{:?}", sim.events);
    let states: Vec<BotState> = sim
        .events
        .iter()
        .filter_map(|e| match e {
            BotEvent::State { state, .. } => Some(*state),
            _ => None,
        })
        .collect();
    assert_eq!(
        states,
        [
            BotState::Handshaking,
            BotState::Authorizing,
            BotState::Syncing,
            BotState::Running
        ]
    );
    let snapshot = sim.last_snapshot();
    assert!(snapshot.authorized && snapshot.auth_keys.contains_key(&1));
    assert_eq!(
        (snapshot.username.as_deref(), snapshot.user_id),
        (Some("bot1"), Some(7_000_001))
    );
    assert_eq!(snapshot.updates.unwrap().pts, 1);
    let debug = format!("{snapshot:?}");
    assert!(
        debug.contains("auth_keys: [1]") && debug.len() < 400,
        "auth keys in Debug: {debug}"
    );

    let id = sim.voice(5000);
    sim.run();
    let messages = sim.messages();
    assert_eq!(messages.len(), 1);
    let voice = messages[0].voice.as_ref().expect("a voice message");
    assert_eq!(
        (messages[0].message_id, messages[0].chat_id, voice.size),
        (id, 42, 5000)
    );
    assert_eq!(sim.last_snapshot().updates.unwrap().pts, 2);
}

#[test]
fn restart_from_snapshot_does_not_log_in_again() {
    let mut first = Sim::new(telegram(1), TOKEN, None);
    first.bot.stop();
    first.run();
    let snapshot = first.last_snapshot();
    assert_eq!(first.bot.state(), BotState::Stopped);
    let telegram = first.telegram;
    // A message while the bot is down.
    telegram.send_text("bot1", 9, "while away").unwrap();

    let second = Sim::new(telegram, TOKEN, Some(snapshot));
    assert_eq!(second.bot.state(), BotState::Running, "{:?}", second.events);
    let stats = second.telegram.stats();
    assert_eq!(
        (
            stats["logins"]["bot1"].as_u64(),
            stats["handshakes"].as_u64()
        ),
        (Some(1), Some(1)),
        "{stats}"
    );
    assert_eq!(
        second.messages().len(),
        1,
        "the missed message comes through getDifference"
    );
    assert_eq!(second.messages()[0].text, "while away");
}

#[test]
fn lost_connections_back_off_exponentially_and_reconnect() {
    let mut sim = Sim::new(telegram(1), TOKEN, None);
    sim.refuse = 4;
    sim.telegram
        .add_fault(Fault::new(FaultKind::DropConnections).for_bot("bot1"))
        .unwrap();
    sim.run();
    assert_eq!(sim.bot.state(), BotState::Backoff);
    // 1, 2, 4, 8 and 16 s before the fifth attempt, each with up to 50 % jitter.
    for i in 0..5 {
        let wait = sim.advance();
        let base = Duration::from_secs(1 << i);
        assert!(
            wait >= base && wait <= base + base / 2,
            "attempt {i}: {wait:?}"
        );
    }
    assert_eq!(sim.bot.state(), BotState::Running, "{:?}", sim.events);
    assert_eq!(
        sim.telegram.stats()["logins"]["bot1"],
        1,
        "reconnects do not log in again"
    );
    // Running again resets the schedule.
    sim.telegram
        .add_fault(Fault::new(FaultKind::DropConnections).for_bot("bot1"))
        .unwrap();
    sim.run();
    let wait = sim.advance();
    assert!(wait <= Duration::from_millis(1500), "{wait:?}");
}

#[test]
fn flood_wait_is_honoured() {
    let t = telegram(1);
    t.add_fault(Fault {
        seconds: 120,
        ..Fault::new(FaultKind::FloodWait).for_method("updates.getState")
    })
    .unwrap();
    let mut sim = Sim::new(t, TOKEN, None);
    assert_eq!(sim.bot.state(), BotState::Backoff);
    let waited = sim.advance();
    assert!(waited >= Duration::from_secs(120), "{waited:?}");
    assert_eq!(sim.bot.state(), BotState::Running);
}

#[test]
fn a_bot_homed_elsewhere_follows_user_migrate() {
    let t = FakeTelegram::start(2).unwrap();
    t.add_bot_on(TOKEN, "bot1", 2).unwrap();
    let sim = Sim::new(t, TOKEN, None);
    assert_eq!(sim.connects, [1, 2]);
    assert_eq!(sim.bot.state(), BotState::Running, "{:?}", sim.events);
    assert_eq!(sim.last_snapshot().home_dc, Some(2));
}

#[test]
fn a_gap_is_filled_with_get_difference() {
    let mut sim = Sim::new(telegram(1), TOKEN, None);
    sim.telegram
        .add_fault(Fault {
            count: 2,
            ..Fault::new(FaultKind::SkipPts).for_bot("bot1")
        })
        .unwrap();
    sim.voice(100);
    sim.run();
    assert_eq!(sim.messages().len(), 1, "{:?}", sim.events);
    assert_eq!(sim.bot.state(), BotState::Running);
    assert_eq!(sim.last_snapshot().updates.unwrap().pts, 4);
}

#[test]
fn a_logged_out_key_logs_in_again_and_a_forgotten_key_handshakes_again() {
    let mut sim = Sim::new(telegram(1), TOKEN, None);
    sim.telegram
        .add_fault(Fault::new(FaultKind::AuthKeyUnregistered).for_bot("bot1"))
        .unwrap();
    sim.telegram
        .add_fault(Fault::new(FaultKind::DropConnections).for_bot("bot1"))
        .unwrap();
    sim.run();
    sim.advance();
    assert_eq!(sim.bot.state(), BotState::Running, "{:?}", sim.events);
    assert_eq!(sim.telegram.stats()["logins"]["bot1"], 2);

    sim.telegram.world().keys.clear();
    sim.telegram
        .add_fault(Fault::new(FaultKind::DropConnections).for_bot("bot1"))
        .unwrap();
    sim.run();
    sim.advance(); // reconnect: -404 (one could be forged: the key is kept)
    sim.advance(); // reconnect: -404 again, the key is dropped
    sim.advance(); // reconnect: a new handshake and login
    assert_eq!(sim.bot.state(), BotState::Running, "{:?}", sim.events);
    assert_eq!(sim.telegram.stats()["handshakes"], 2);
}

#[test]
fn a_rejected_token_fails_for_good() {
    let mut sim = Sim::new(telegram(1), "7000001:wrong", None);
    assert_eq!(sim.bot.state(), BotState::Failed);
    let reason = sim.last_reason(BotState::Failed);
    assert_eq!(
        reason.as_deref(),
        Some("Telegram rejected the bot token (ACCESS_TOKEN_INVALID)")
    );
    assert!(!reason.unwrap().contains("wrong"), "no token in the reason");
    assert_eq!(sim.bot.poll_timeout(), None, "no retries");
    let connects = sim.connects.len();
    sim.now.instant += Duration::from_secs(3600);
    sim.bot.handle_timeout(sim.now, &mut sim.random);
    sim.run();
    assert_eq!(sim.connects.len(), connects);
}

#[test]
fn a_login_that_never_gets_an_answer_is_retried() {
    let t = telegram(1);
    let bot = Bot::new(
        bot_config(TOKEN),
        telegram_bots_tests::fake_dc::session_config(),
        None,
    );
    let mut sim = Sim {
        telegram: t,
        bot,
        server: None,
        next_conn: 1000,
        now: real_now(),
        random: Seeded::new(5),
        events: Vec::new(),
        connects: Vec::new(),
        refuse: 0,
        mute: true,
    };
    sim.run();
    assert_eq!(sim.bot.state(), BotState::Handshaking);
    let waited = sim.advance();
    assert_eq!(waited, telegram_bots_core::bot::PHASE_TIMEOUT);
    assert_eq!(sim.bot.state(), BotState::Backoff);
    let reason = sim.last_reason(BotState::Backoff);
    assert_eq!(
        reason.as_deref(),
        Some("no answer from Telegram while handshaking")
    );
    sim.mute = false;
    sim.advance();
    assert_eq!(sim.bot.state(), BotState::Running, "{:?}", sim.events);
}

#[test]
fn a_server_that_keeps_logging_the_bot_out_gets_a_back_off_not_a_login_loop() {
    let mut sim = Sim::new(telegram(1), TOKEN, None);
    sim.telegram
        .add_fault(Fault {
            times: 1000,
            ..Fault::new(FaultKind::AuthKeyUnregistered).for_bot("bot1")
        })
        .unwrap();
    sim.telegram
        .add_fault(Fault::new(FaultKind::DropConnections).for_bot("bot1"))
        .unwrap();
    sim.run();
    sim.advance();
    assert_eq!(sim.bot.state(), BotState::Backoff, "{:?}", sim.events);
    let logins = sim.telegram.stats()["logins"]["bot1"].as_u64().unwrap();
    assert!(logins <= 2, "{logins} logins");
}

#[test]
fn a_replaced_token_does_not_reuse_the_old_bots_login() {
    let mut first = Sim::new(telegram(1), TOKEN, None);
    first.bot.stop();
    first.run();
    let snapshot = first.last_snapshot();
    let telegram = first.telegram;
    telegram.add_bot("7000002:AAother-bot", "bot2").unwrap();
    let second = Sim::new(telegram, "7000002:AAother-bot", Some(snapshot));
    assert_eq!(second.bot.state(), BotState::Running);
    assert_eq!(second.last_snapshot().username.as_deref(), Some("bot2"));
    assert_eq!(second.telegram.stats()["logins"]["bot2"], 1);
}
