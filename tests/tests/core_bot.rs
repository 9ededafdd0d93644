//! The core's bot state machine against the fake DC, both sans-IO, in memory, with a fake
//! clock: login, sync, messages, restart without login, backoff, FLOOD_WAIT, migrate,
//! gaps, lost keys, a rejected token, and the commit protocol with a crash at every step.

use std::sync::Arc;
use std::time::Duration;

use grammers_tl_types::{Serializable as _, enums};
use telegram_bots_core::bot::{Bot, BotConfig, BotOutput, ConnNo, Warning};
use telegram_bots_core::fleet::BotState;
use telegram_bots_core::random::Seeded;
use telegram_bots_core::record::{BotRecord, Commit};
use telegram_bots_core::secret::Secret;
use telegram_bots_core::session::Now;
use telegram_bots_core::updates::{IncomingMessage, Peer};
use telegram_bots_tests::fake_dc::FakeTelegram;
use telegram_bots_tests::fake_dc::fault::{Fault, FaultKind};
use telegram_bots_tests::fake_dc::world::{Content, NewMessage, Push, VoiceForm};
use telegram_bots_tests::memory_net::{MemoryNet, real_now};

const TOKEN: &str = "7000001:AAcore-bot";

/// A store in memory, written one step at a time so that a test can crash between the
/// steps: a commit is handed over, then written, then answered.
#[derive(Debug, Default)]
struct Store {
    durable: BotRecord,
    /// Every message of every written commit, in order.
    delivered: Vec<IncomingMessage>,
    handed: Vec<Commit>,
    written: Vec<u64>,
    /// Refuse writes with this error.
    failing: Option<String>,
}

/// One bot wired to the fake DC through an in-memory network and store.
struct Sim {
    telegram: FakeTelegram,
    bot: Bot,
    net: MemoryNet<ConnNo>,
    now: Now,
    random: Seeded,
    store: Store,
    /// Everything the bot reported that is not an action, in order.
    notes: Vec<BotOutput>,
    connects: Vec<i32>,
    /// Connection attempts that fail before the DC answers (a network outage).
    refuse: usize,
    /// The DC reads but never answers (a server that hangs).
    mute: bool,
    /// Writes so far, and from which one on they are lost on the way (the DC never sees
    /// them, so it never answers; what it pushes still arrives).
    sends: usize,
    lose_from_send: Option<usize>,
    /// When the bot leaves a connection for another DC, report the old one's close too,
    /// as a runtime whose reader saw the DC hang up would.
    stale_close_on_move: bool,
    stale_reports: usize,
    /// Writes that failed.
    failed_sends: usize,
    /// Outputs taken from the bot to look ahead, carried out before its next ones.
    ahead: std::collections::VecDeque<BotOutput>,
    steps: usize,
}

fn bot_config(token: &str) -> BotConfig {
    BotConfig {
        workspace_id: "ws_1".into(),
        token: Secret::new(token.into()),
        api_id: telegram_bots_tests::fake_dc::TEST_API_ID,
        api_hash: Secret::new(telegram_bots_tests::fake_dc::TEST_API_HASH.into()),
        default_dc: 1,
        media: Default::default(),
    }
}

impl Sim {
    fn new(telegram: FakeTelegram, token: &str, record: Option<BotRecord>) -> Sim {
        let mut sim = Sim::idle(telegram, token, record);
        sim.bot.start(sim.now.instant);
        sim.run();
        sim
    }

    /// A bot created but not started.
    fn idle(telegram: FakeTelegram, token: &str, record: Option<BotRecord>) -> Sim {
        let now = real_now();
        let store = Store {
            durable: record.clone().unwrap_or_default(),
            ..Store::default()
        };
        let bot = Bot::new(
            Arc::new(bot_config(token)),
            telegram_bots_tests::fake_dc::session_config(),
            record,
            now.instant,
        );
        Sim {
            telegram,
            bot,
            net: MemoryNet::new(),
            now,
            random: Seeded::new(11),
            store,
            notes: Vec::new(),
            connects: Vec::new(),
            refuse: 0,
            mute: false,
            sends: 0,
            lose_from_send: None,
            stale_close_on_move: false,
            stale_reports: 0,
            failed_sends: 0,
            ahead: Default::default(),
            steps: 0,
        }
    }

    /// Carries out the bot's outputs, the store's work and the DC's answers until all are
    /// quiet.
    fn run(&mut self) {
        while self.step() {
            assert!(self.steps < 100_000, "no quiet point: {:?}", self.notes);
        }
    }

    /// One thing happens: the bot's next output is carried out, or the store writes or
    /// answers a commit, or the DC pushes something. `false` when nothing is left.
    fn step(&mut self) -> bool {
        self.steps += 1;
        if let Some(output) = self.ahead.pop_front().or_else(|| self.bot.poll_output()) {
            self.carry_out(output);
            return true;
        }
        if let Some(commit) = self.store.handed.first().cloned()
            && !self.store.written.contains(&commit.id)
        {
            if self.store.failing.is_none() {
                self.store.durable.apply(&commit);
                self.store.delivered.extend(commit.messages.iter().cloned());
                self.store.written.push(commit.id);
            } else {
                let error = self.store.failing.clone().unwrap();
                self.store.handed.remove(0);
                self.bot
                    .handle_committed(commit.id, Err(error), self.now, &mut self.random);
            }
            return true;
        }
        if let Some(commit) = self.store.handed.first().cloned() {
            self.store.handed.remove(0);
            self.bot
                .handle_committed(commit.id, Ok(()), self.now, &mut self.random);
            return true;
        }
        if let Some((conn, answer)) = self.net.poll_push(&self.telegram) {
            for frame in answer.frames {
                self.bot
                    .handle_input(conn, &frame, self.now, &mut self.random);
            }
            if answer.closed {
                self.bot
                    .handle_disconnected(conn, self.now, &mut self.random);
            }
            return true;
        }
        false
    }

    fn carry_out(&mut self, output: BotOutput) {
        match output {
            BotOutput::Connect { conn, dc, .. } => {
                self.connects.push(dc);
                if self.refuse > 0 {
                    self.refuse -= 1;
                    self.bot
                        .handle_disconnected(conn, self.now, &mut self.random);
                    return;
                }
                self.net.connect(&self.telegram, conn, dc);
                self.bot.handle_connected(conn, self.now, &mut self.random);
            }
            BotOutput::Send { conn, bytes } => {
                self.sends += 1;
                if self.lose_from_send.is_some_and(|n| self.sends >= n) {
                    return;
                }
                match self.net.send(&self.telegram, &conn, &bytes) {
                    // As the runtimes do: a failed write is a lost connection.
                    None => {
                        self.failed_sends += 1;
                        self.bot
                            .handle_disconnected(conn, self.now, &mut self.random);
                    }
                    Some(answer) => {
                        if !self.mute {
                            for frame in answer.frames {
                                self.bot
                                    .handle_input(conn, &frame, self.now, &mut self.random);
                            }
                        }
                        if answer.closed {
                            self.bot
                                .handle_disconnected(conn, self.now, &mut self.random);
                        }
                    }
                }
            }
            BotOutput::Disconnect { conn } => {
                self.net.disconnect(&self.telegram, &conn);
                if self.stale_close_on_move {
                    while let Some(o) = self.bot.poll_output() {
                        self.ahead.push_back(o);
                    }
                    if self
                        .ahead
                        .iter()
                        .any(|o| matches!(o, BotOutput::Connect { .. }))
                    {
                        self.stale_reports += 1;
                        self.bot
                            .handle_disconnected(conn, self.now, &mut self.random);
                    }
                }
            }
            BotOutput::Commit(commit) => self.store.handed.push(commit),
            note => self.notes.push(note),
        }
    }

    /// Moves the clock to the bot's next deadline and runs. After the bot has acted on
    /// its deadline, none is left at or before now.
    fn advance(&mut self) -> Duration {
        let at = self.bot.poll_timeout().expect("a deadline");
        let waited = at.saturating_duration_since(self.now.instant);
        self.now.instant = at.max(self.now.instant);
        self.now.unix_secs += waited.as_secs() as i64;
        self.bot.handle_timeout(self.now, &mut self.random);
        self.assert_no_deadline_in_the_past();
        self.run();
        waited
    }

    /// Moves the clock by `by` and lets the bot act on what is due.
    fn wait(&mut self, by: Duration) {
        self.now.instant += by;
        self.now.unix_secs += by.as_secs() as i64;
        self.bot.handle_timeout(self.now, &mut self.random);
        self.assert_no_deadline_in_the_past();
        self.run();
    }

    fn assert_no_deadline_in_the_past(&self) {
        if let Some(at) = self.bot.poll_timeout() {
            assert!(
                at > self.now.instant,
                "a deadline {:?} in the past after handle_timeout: {:?}",
                self.now.instant - at,
                self.bot
            );
        }
    }

    /// The messages handed on (durably committed).
    fn messages(&self) -> &[IncomingMessage] {
        &self.store.delivered
    }

    /// The reason given the last time the bot entered `state`.
    fn last_reason(&self, state: BotState) -> Option<String> {
        self.notes.iter().rev().find_map(|e| match e {
            BotOutput::State { state: s, reason } if *s == state => reason.clone(),
            _ => None,
        })
    }

    fn states(&self) -> Vec<BotState> {
        self.notes
            .iter()
            .filter_map(|e| match e {
                BotOutput::State { state, .. } => Some(*state),
                _ => None,
            })
            .collect()
    }

    fn warnings(&self) -> Vec<&Warning> {
        self.notes
            .iter()
            .filter_map(|e| match e {
                BotOutput::Warning(w) => Some(w),
                _ => None,
            })
            .collect()
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
                    form: VoiceForm::Voice,
                },
            })
            .unwrap()
            .message_id
    }

    /// The bot's next message skips a pts (a gap, so the bot calls getDifference), and
    /// that getDifference is answered with `code` and `message`.
    fn gap_answered_with(&mut self, code: i32, message: &str) {
        self.telegram
            .add_fault(Fault {
                code,
                message: message.into(),
                ..Fault::new(FaultKind::RpcError).for_method("updates.getDifference")
            })
            .unwrap();
        self.telegram
            .add_fault(Fault {
                count: 1,
                ..Fault::new(FaultKind::SkipPts).for_bot("bot1")
            })
            .unwrap();
        self.voice(100);
        self.run();
    }

    /// Stores a message for the bot without pushing it (as if the push was lost).
    fn send_unpushed(&self, text: &str) -> i32 {
        let conns = std::mem::take(&mut self.telegram.world().conns);
        let sent = self.telegram.send_text("bot1", 6, text).unwrap();
        self.telegram.world().conns = conns;
        sent.message_id
    }

    /// Pushes a raw `Updates` object to the bot's live connection.
    fn push_updates(&self, updates: &enums::Updates) {
        let world = self.telegram.world();
        for conn in world.conns.values() {
            let _ = conn.push.try_send(Push::Updates(updates.to_bytes()));
        }
    }
}

/// A bot's first life: it logs in, commits its record and stops. Its DC set and the
/// record it leaves, to start a second life from.
fn first_life() -> (FakeTelegram, BotRecord) {
    let mut first = Sim::new(telegram(1), TOKEN, None);
    first.bot.stop(first.now.instant);
    first.run();
    assert!(first.bot.is_finished());
    (first.telegram, first.store.durable)
}

fn telegram(dcs: usize) -> FakeTelegram {
    let t = FakeTelegram::start(dcs).unwrap();
    t.add_bot(TOKEN, "bot1").unwrap();
    t
}

#[test]
fn a_new_bot_handshakes_logs_in_syncs_and_runs() {
    let mut sim = Sim::new(telegram(1), TOKEN, None);
    assert_eq!(sim.bot.state(), BotState::Running, "{:?}", sim.notes);
    assert_eq!(
        sim.states(),
        [
            BotState::Connecting,
            BotState::Handshaking,
            BotState::Authorizing,
            BotState::Syncing,
            BotState::Running
        ]
    );
    let record = sim.store.durable.clone();
    assert!(record.session.authorized && record.session.auth_keys.contains_key(&1));
    assert_eq!(
        (record.session.username.as_deref(), record.session.user_id),
        (Some("bot1"), Some(7_000_001))
    );
    assert_eq!(record.updates.unwrap().pts, 1);
    let debug = format!("{record:?}");
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
        (messages[0].message_id, messages[0].chat, voice.size),
        (id, Peer::User(42), 5000)
    );
    assert_eq!(sim.store.durable.updates.unwrap().pts, 2);
}

#[test]
fn restart_from_the_committed_record_does_not_log_in_again() {
    let (telegram, record) = first_life();
    // A message while the bot is down.
    telegram.send_text("bot1", 9, "while away").unwrap();

    let second = Sim::new(telegram, TOKEN, Some(record));
    assert_eq!(second.bot.state(), BotState::Running, "{:?}", second.notes);
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
fn an_unchanged_session_is_not_written_again() {
    let mut sim = Sim::new(telegram(1), TOKEN, None);
    let sessions_before = sim
        .notes
        .iter()
        .filter(|n| matches!(n, BotOutput::Committed(c) if c.session.is_some()))
        .count();
    for _ in 0..3 {
        sim.voice(100);
        sim.run();
    }
    let committed: Vec<&Commit> = sim
        .notes
        .iter()
        .filter_map(|n| match n {
            BotOutput::Committed(c) => Some(c),
            _ => None,
        })
        .collect();
    let sessions_after = committed.iter().filter(|c| c.session.is_some()).count();
    assert_eq!(
        sessions_after, sessions_before,
        "messages do not rewrite the auth key"
    );
    assert_eq!(sim.messages().len(), 3);
}

#[test]
fn lost_connections_back_off_with_full_jitter_and_reconnect() {
    let mut sim = Sim::new(telegram(1), TOKEN, None);
    sim.refuse = 4;
    sim.telegram
        .add_fault(Fault::new(FaultKind::DropConnections).for_bot("bot1"))
        .unwrap();
    sim.run();
    assert_eq!(sim.bot.state(), BotState::Backoff);
    // Before the n-th attempt: anywhere up to 2^n s (full jitter), never at once.
    for i in 0..5 {
        let wait = sim.advance();
        let ceiling = Duration::from_secs(1 << i);
        assert!(
            wait >= telegram_bots_core::backoff::MIN_DELAY && wait <= ceiling,
            "attempt {i}: {wait:?}"
        );
    }
    assert_eq!(sim.bot.state(), BotState::Running, "{:?}", sim.notes);
    assert_eq!(
        sim.telegram.stats()["logins"]["bot1"],
        1,
        "reconnects do not log in again"
    );
    // A drop right after coming back does not reset the schedule: the ceiling is 32 s.
    sim.telegram
        .add_fault(Fault::new(FaultKind::DropConnections).for_bot("bot1"))
        .unwrap();
    sim.run();
    let at = sim.bot.poll_timeout().unwrap();
    assert!(at - sim.now.instant <= Duration::from_secs(32));
    sim.advance();
    assert_eq!(sim.bot.state(), BotState::Running);
    // After a minute of running it does: the next ceiling is 1 s.
    sim.wait(Duration::from_secs(61));
    assert_eq!(sim.bot.state(), BotState::Running);
    sim.telegram
        .add_fault(Fault::new(FaultKind::DropConnections).for_bot("bot1"))
        .unwrap();
    sim.run();
    let wait = sim.advance();
    assert!(wait <= Duration::from_secs(1), "{wait:?}");
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
    assert_eq!(sim.bot.state(), BotState::Running, "{:?}", sim.notes);
    assert_eq!(sim.store.durable.session.home_dc, Some(2));
}

/// A failure reported for the old connection while a move to another DC is queued must
/// not leave a reconnect deadline behind: in the past for ever, it would wake the runtime
/// without end and starve every other bot.
#[test]
fn a_stale_close_during_a_dc_move_leaves_no_deadline_in_the_past() {
    let t = FakeTelegram::start(2).unwrap();
    t.add_bot_on(TOKEN, "bot1", 2).unwrap();
    let mut sim = Sim::idle(t, TOKEN, None);
    sim.stale_close_on_move = true;
    sim.bot.start(sim.now.instant);
    sim.run();
    sim.stale_close_on_move = false;
    assert_eq!(sim.stale_reports, 1, "the old connection's close came late");
    assert_eq!(sim.connects, [1, 2]);
    assert_eq!(sim.bot.state(), BotState::Running, "{:?}", sim.notes);
    // Every deadline is in the future, and acting on them keeps it so.
    for _ in 0..3 {
        assert!(sim.bot.poll_timeout().unwrap() > sim.now.instant);
        sim.advance();
    }
    assert_eq!(sim.bot.state(), BotState::Running);
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
    assert_eq!(sim.messages().len(), 1, "{:?}", sim.notes);
    assert_eq!(sim.bot.state(), BotState::Running);
    assert_eq!(sim.store.durable.updates.unwrap().pts, 4);
}

#[test]
fn updates_too_long_takes_the_gap_path() {
    let mut sim = Sim::new(telegram(1), TOKEN, None);
    let message = sim.send_unpushed("only via getDifference");
    // All Telegram says: there were too many updates to push.
    sim.push_updates(&enums::Updates::TooLong);
    sim.run();
    assert!(
        sim.messages().iter().any(|m| m.message_id == message),
        "{:?}",
        sim.notes
    );
    assert_eq!(sim.bot.state(), BotState::Running);
}

#[test]
fn an_update_that_does_not_parse_is_warned_about_and_caught_up() {
    let mut sim = Sim::new(telegram(1), TOKEN, None);
    let message = sim.send_unpushed("behind garbage");
    {
        let world = sim.telegram.world();
        for conn in world.conns.values() {
            // A constructor no layer has.
            let _ = conn
                .push
                .try_send(Push::Updates(vec![1, 2, 3, 4, 5, 6, 7, 8]));
        }
    }
    sim.run();
    assert!(
        sim.warnings()
            .contains(&&Warning::Unparsable { what: "Updates" }),
        "{:?}",
        sim.notes
    );
    assert!(sim.messages().iter().any(|m| m.message_id == message));
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
    assert_eq!(sim.bot.state(), BotState::Running, "{:?}", sim.notes);
    assert_eq!(sim.telegram.stats()["logins"]["bot1"], 2);

    sim.telegram.world().keys.clear();
    sim.telegram
        .add_fault(Fault::new(FaultKind::DropConnections).for_bot("bot1"))
        .unwrap();
    sim.run();
    sim.advance(); // reconnect: -404 (one could be forged: the key is kept)
    sim.advance(); // reconnect: -404 again, the key is dropped
    sim.advance(); // reconnect: a new handshake and login
    assert_eq!(sim.bot.state(), BotState::Running, "{:?}", sim.notes);
    assert_eq!(sim.telegram.stats()["handshakes"], 2);
}

#[test]
fn a_duplicated_key_is_dropped_for_a_new_handshake_and_login() {
    let mut sim = Sim::new(telegram(1), TOKEN, None);
    sim.gap_answered_with(406, "AUTH_KEY_DUPLICATED");
    assert_eq!(sim.bot.state(), BotState::Backoff, "{:?}", sim.notes);
    assert!(sim.warnings().contains(&&Warning::KeyDuplicated));
    assert!(
        sim.store.durable.session.auth_keys.is_empty(),
        "the dead key is not kept"
    );
    sim.advance();
    assert_eq!(sim.bot.state(), BotState::Running, "{:?}", sim.notes);
    let stats = sim.telegram.stats();
    assert_eq!(
        (
            stats["handshakes"].as_u64(),
            stats["logins"]["bot1"].as_u64()
        ),
        (Some(2), Some(2))
    );
    assert_eq!(sim.messages().len(), 1, "the message still arrives");
}

#[test]
fn a_refused_update_state_falls_back_to_get_state() {
    let (telegram, record) = first_life();
    telegram
        .add_fault(Fault {
            code: 400,
            message: "PERSISTENT_TIMESTAMP_INVALID".into(),
            ..Fault::new(FaultKind::RpcError).for_method("updates.getDifference")
        })
        .unwrap();
    let sim = Sim::new(telegram, TOKEN, Some(record));
    assert_eq!(sim.bot.state(), BotState::Running, "{:?}", sim.notes);
    assert!(
        sim.warnings()
            .iter()
            .any(|w| matches!(w, Warning::StateReset { .. })),
        "{:?}",
        sim.notes
    );
    assert_eq!(sim.connects.len(), 1, "no reconnect, no backoff");
}

#[test]
fn an_error_while_running_keeps_the_connection_and_tries_again() {
    let mut sim = Sim::new(telegram(1), TOKEN, None);
    sim.gap_answered_with(500, "INTERNAL_SERVER_ERROR");
    assert_eq!(sim.bot.state(), BotState::Running, "{:?}", sim.notes);
    assert!(sim.messages().is_empty(), "held until the retry");
    sim.advance();
    assert_eq!(sim.messages().len(), 1, "{:?}", sim.notes);
    assert_eq!(sim.connects.len(), 1, "the healthy connection was kept");
    assert!(
        sim.warnings()
            .iter()
            .any(|w| matches!(w, Warning::SyncRetried { .. }))
    );
}

#[test]
fn a_quiet_bot_checks_in_and_notices_a_revoked_token() {
    let mut sim = Sim::new(telegram(1), TOKEN, None);
    sim.telegram
        .add_fault(Fault::new(FaultKind::RevokeToken).for_bot("bot1"))
        .unwrap();
    // Pings keep the connection; nothing tells the bot until it asks.
    for _ in 0..16 {
        sim.wait(Duration::from_secs(60));
    }
    assert_eq!(sim.bot.state(), BotState::Failed, "{:?}", sim.notes);
    assert_eq!(
        sim.last_reason(BotState::Failed).as_deref(),
        Some("Telegram rejected the bot token (ACCESS_TOKEN_INVALID)")
    );
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
    sim.wait(Duration::from_secs(3600));
    assert_eq!(sim.connects.len(), connects);
}

#[test]
fn a_login_that_never_gets_an_answer_is_retried() {
    let mut sim = Sim::idle(telegram(1), TOKEN, None);
    sim.mute = true;
    sim.bot.start(sim.now.instant);
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
    assert_eq!(sim.bot.state(), BotState::Running, "{:?}", sim.notes);
}

#[test]
fn no_debug_output_shows_the_token() {
    let (telegram, mut record) = first_life();
    record.session.authorized = false;
    // Stopped while the login (which carries the token) is pending.
    let mut sim = Sim::idle(telegram, TOKEN, Some(record));
    sim.mute = true;
    sim.bot.start(sim.now.instant);
    sim.run();
    assert_eq!(sim.bot.state(), BotState::Authorizing);
    let debug = format!("{:?} {:#?}", sim.bot, sim.bot);
    let token_bytes = format!("{:?}", TOKEN.as_bytes());
    let inner = &token_bytes[1..token_bytes.len() - 1];
    assert!(!debug.contains("AAcore-bot"), "{debug}");
    assert!(!debug.contains(inner), "the token's bytes in {debug}");
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
    assert_eq!(sim.bot.state(), BotState::Backoff, "{:?}", sim.notes);
    let logins = sim.telegram.stats()["logins"]["bot1"].as_u64().unwrap();
    assert!(logins <= 2, "{logins} logins");
}

#[test]
fn a_replaced_token_does_not_reuse_the_old_bots_login() {
    let (telegram, record) = first_life();
    telegram.add_bot("7000002:AAother-bot", "bot2").unwrap();
    let second = Sim::new(telegram, "7000002:AAother-bot", Some(record));
    assert_eq!(second.bot.state(), BotState::Running);
    assert_eq!(
        second.store.durable.session.username.as_deref(),
        Some("bot2")
    );
    assert_eq!(second.telegram.stats()["logins"]["bot2"], 1);
}

#[test]
fn a_failing_store_holds_messages_and_retries_until_they_are_durable() {
    let mut sim = Sim::new(telegram(1), TOKEN, None);
    sim.store.failing = Some("disk full".into());
    let ids: Vec<i32> = (0..3).map(|_| sim.voice(100)).collect();
    sim.run();
    assert!(sim.messages().is_empty());
    assert!(
        sim.notes
            .iter()
            .any(|n| matches!(n, BotOutput::CommitFailed { error } if error == "disk full"))
    );
    assert_eq!(
        sim.store.durable.updates.unwrap().pts,
        1,
        "pts waits for the store"
    );
    for _ in 0..3 {
        sim.advance(); // retried, refused again
    }
    sim.store.failing = None;
    sim.advance();
    let delivered: Vec<i32> = sim.messages().iter().map(|m| m.message_id).collect();
    assert_eq!(delivered, ids, "all of them, once, in order");
    assert_eq!(sim.store.durable.updates.unwrap().pts, 4);
}

/// The commit protocol under crashes: the bot is restarted from the store after every
/// possible step of a run (an output carried out, a commit written, an answer given, an
/// update pushed). Whatever the step, every message is handed on at least once, and the
/// stored pts never covers a message that was not handed on.
#[test]
fn a_crash_at_any_step_loses_no_message_and_commits_nothing_early() {
    let (_, record) = first_life();
    let mut crash_at = 1;
    loop {
        let telegram = FakeTelegram::start(1).unwrap();
        telegram.add_bot(TOKEN, "bot1").unwrap();
        // Same key and login as the first life, on a DC set of its own per run.
        let key = *record.session.auth_keys[&1].expose();
        telegram.add_auth_key(1, key, Some("bot1")).unwrap();
        let mut sent = Vec::new();
        // Two messages while the bot is down (they come by getDifference) ...
        for text in ["away 1", "away 2"] {
            sent.push(telegram.send_text("bot1", 5, text).unwrap());
        }
        let mut sim = Sim::idle(telegram, TOKEN, Some(record.clone()));
        sim.bot.start(sim.now.instant);
        let mut pushed = false;
        let mut crashed = false;
        while sim.step() {
            // ... and three pushed once it runs.
            if !pushed && sim.bot.state() == BotState::Running {
                pushed = true;
                for text in ["live 1", "live 2", "live 3"] {
                    sent.push(sim.telegram.send_text("bot1", 5, text).unwrap());
                }
            }
            check_committed_pts(&sim, &sent);
            if sim.steps == crash_at {
                crashed = true;
                break;
            }
        }
        if !crashed {
            break; // the run had fewer steps: every crash point is covered
        }
        // The crash: the bot, its connection and the commits not written are gone.
        let durable = sim.store.durable.clone();
        let delivered = std::mem::take(&mut sim.store.delivered);
        let telegram = sim.telegram;
        telegram.world().conns.clear();
        if !pushed {
            for text in ["live 1", "live 2", "live 3"] {
                sent.push(telegram.send_text("bot1", 5, text).unwrap());
            }
        }
        let mut again = Sim::idle(telegram, TOKEN, Some(durable.clone()));
        again.store.durable = durable;
        again.store.delivered = delivered;
        again.bot.start(again.now.instant);
        again.run();
        assert_eq!(again.bot.state(), BotState::Running, "crash at {crash_at}");
        for s in &sent {
            assert!(
                again
                    .messages()
                    .iter()
                    .any(|m| m.message_id == s.message_id),
                "crash at step {crash_at}: message {} lost",
                s.message_id
            );
        }
        check_committed_pts(&again, &sent);
        assert_eq!(
            again.store.durable.updates.unwrap().pts,
            sent.last().unwrap().pts,
            "crash at step {crash_at}"
        );
        crash_at += 1;
    }
    assert!(crash_at > 20, "the run has {crash_at} steps");
}

/// The stored pts covers only messages that were handed on.
fn check_committed_pts(sim: &Sim, sent: &[telegram_bots_tests::fake_dc::world::Sent]) {
    let pts = sim.store.durable.updates.map_or(0, |u| u.pts);
    for s in sent.iter().filter(|s| s.pts <= pts) {
        assert!(
            sim.messages().iter().any(|m| m.message_id == s.message_id),
            "pts {pts} committed without message {} (pts {})",
            s.message_id,
            s.pts
        );
    }
}

#[test]
fn updates_telegram_no_longer_has_are_warned_about() {
    let (telegram, record) = first_life();
    // More than Telegram keeps for a difference while the bot is down.
    let behind = telegram_bots_tests::fake_dc::settings::Settings::default().difference_limit + 5;
    for _ in 0..behind {
        telegram.send_text("bot1", 5, "lost").unwrap();
    }
    let sim = Sim::new(telegram, TOKEN, Some(record));
    assert_eq!(sim.bot.state(), BotState::Running, "{:?}", sim.notes);
    assert!(
        sim.warnings()
            .contains(&&Warning::UpdatesSkipped { pts: behind }),
        "{:?}",
        sim.warnings()
    );
    assert_eq!(sim.store.durable.updates.unwrap().pts, behind + 1);
}

#[test]
fn updates_beyond_what_a_sync_can_hold_are_dropped_with_a_warning_and_fetched_again() {
    let mut sim = Sim::new(telegram(1), TOKEN, None);
    // From now on what the bot writes is lost on the way: the getDifference for the gap
    // below never gets an answer, while the DC keeps pushing to the session.
    sim.lose_from_send = Some(sim.sends + 1);
    sim.telegram
        .add_fault(Fault {
            count: 1,
            ..Fault::new(FaultKind::SkipPts).for_bot("bot1")
        })
        .unwrap();
    // A gap, then more than a syncing bot holds (100).
    let sent: Vec<i32> = (0..111)
        .map(|_| {
            sim.telegram
                .send_text("bot1", 5, "held")
                .unwrap()
                .message_id
        })
        .collect();
    sim.run();
    let dropped = sim
        .warnings()
        .iter()
        .filter(|w| **w == &Warning::HeldDropped)
        .count();
    assert_eq!(dropped, 1, "one warning, not one per update");
    // The sync is given up and done again: everything arrives, once.
    sim.lose_from_send = None;
    sim.advance();
    sim.advance();
    assert_eq!(sim.bot.state(), BotState::Running, "{:?}", sim.states());
    let delivered: Vec<i32> = sim.messages().iter().map(|m| m.message_id).collect();
    assert_eq!(delivered, sent);
}

/// The text messages handed on in supergroup `channel`.
fn group_texts(sim: &Sim, channel: i64) -> Vec<String> {
    sim.messages()
        .iter()
        .filter(|m| m.chat == Peer::Channel(channel))
        .map(|m| m.text.clone())
        .collect()
}

#[test]
fn a_supergroup_message_pushed_twice_is_handed_on_once() {
    let mut sim = Sim::new(telegram(1), TOKEN, None);
    let group = sim.telegram.add_channel("team", true, &["bot1"]).unwrap();
    sim.telegram.send_group_text(group, 42, "first").unwrap();
    sim.run();
    sim.telegram
        .add_fault(Fault::new(FaultKind::DuplicateUpdate).for_bot("bot1"))
        .unwrap();
    let sent = sim.telegram.send_group_text(group, 42, "once").unwrap();
    sim.run();
    assert_eq!(group_texts(&sim, group), ["first", "once"]);
    assert_eq!(
        sim.store.durable.channel(group).unwrap().pts,
        sent.pts,
        "the channel's own pts"
    );
}

#[test]
fn supergroup_messages_missed_while_away_are_fetched_with_get_channel_difference() {
    let telegram = telegram(1);
    let known = telegram.add_channel("known", true, &["bot1"]).unwrap();
    let mut first = Sim::new(telegram, TOKEN, None);
    let before = first.telegram.send_group_text(known, 42, "before").unwrap();
    first.run();
    first.bot.stop(first.now.instant);
    first.run();
    let record = first.store.durable.clone();
    assert_eq!(
        record.channel(known).unwrap().pts,
        before.pts,
        "saved with the record"
    );
    let telegram = first.telegram;
    // While the bot is away: news in the group it knows, and in one it never heard of.
    let unknown = telegram.add_channel("new", true, &["bot1"]).unwrap();
    telegram.send_group_text(known, 42, "away 1").unwrap();
    let last = telegram.send_group_text(known, 43, "away 2").unwrap();
    telegram
        .send_group_text(unknown, 44, "hello from a new group")
        .unwrap();
    let sim = Sim::new(telegram, TOKEN, Some(record));
    assert_eq!(sim.bot.state(), BotState::Running, "{:?}", sim.notes);
    assert_eq!(group_texts(&sim, known), ["away 1", "away 2"]);
    assert_eq!(
        group_texts(&sim, unknown),
        ["hello from a new group"],
        "{:?}",
        sim.warnings()
    );
    assert_eq!(sim.store.durable.channel(known).unwrap().pts, last.pts);
    assert_eq!(sim.connects.len(), 1, "no reconnect for it");
}

#[test]
fn a_channel_that_has_too_much_to_push_is_caught_up() {
    let mut sim = Sim::new(telegram(1), TOKEN, None);
    let group = sim.telegram.add_channel("busy", true, &["bot1"]).unwrap();
    sim.telegram.send_group_text(group, 42, "one").unwrap();
    sim.run();
    sim.telegram
        .add_fault(Fault::new(FaultKind::ChannelTooLong).for_bot("bot1"))
        .unwrap();
    sim.telegram.send_group_text(group, 42, "two").unwrap();
    sim.run();
    assert_eq!(group_texts(&sim, group), ["one", "two"]);
}
