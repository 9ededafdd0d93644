//! One bot's life: `Connecting -> (Handshaking) -> Authorizing -> Syncing -> Running`,
//! with `Backoff`, `Failed` and `Stopping -> Stopped`, over a [`Session`].
//!
//! It logs in with `auth.importBotAuthorization` only when the stored state says the key
//! is not logged in (a login on every start draws FLOOD_WAIT of 1000-3000 s), learns its
//! username, takes or catches up its update state, and hands every incoming message on.
//! Connection losses bring a capped exponential backoff with jitter; FLOOD_WAIT is
//! honoured; `USER_MIGRATE` moves the bot's home DC; an unknown or logged-out key leads
//! to a new handshake or login; a rejected token ends in `Failed` without retries.
//! Whatever must survive a restart is announced as a [`BotSnapshot`].

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use grammers_tl_types::{Deserializable as _, Serializable as _, enums, functions};

use crate::fleet::BotState;
use crate::random::Random;
use crate::rpc_error::RpcError;
use crate::secret::Secret;
use crate::session::{Now, RequestId, Session, SessionConfig, SessionError, SessionEvent};
use crate::updates::{self, IncomingMessage, PtsCheck, Received, UpdateState};

/// What must survive a restart. Auth keys are secrets: `Debug` hides them.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct BotSnapshot {
    pub home_dc: Option<i32>,
    pub auth_keys: BTreeMap<i32, Secret<[u8; 256]>>,
    /// The home DC's key is logged in as the bot.
    pub authorized: bool,
    pub user_id: Option<i64>,
    pub username: Option<String>,
    pub updates: Option<UpdateState>,
}

impl fmt::Debug for BotSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BotSnapshot")
            .field("home_dc", &self.home_dc)
            .field("auth_keys", &self.auth_keys.keys().collect::<Vec<_>>())
            .field("authorized", &self.authorized)
            .field("username", &self.username)
            .field("updates", &self.updates)
            .finish()
    }
}

/// A bot's fixed settings.
#[derive(Clone, Debug)]
pub struct BotConfig {
    pub workspace_id: String,
    pub token: Secret<String>,
    pub api_id: i32,
    pub api_hash: Secret<String>,
    /// The DC to try first when the snapshot has no home DC.
    pub default_dc: i32,
}

/// What the runtime must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BotAction {
    /// Open a connection to this DC, then call [`Bot::handle_connected`].
    Connect { dc: i32 },
    /// Write these bytes to the connection.
    Send(Vec<u8>),
    /// Close the connection (no [`Bot::handle_disconnected`] follows).
    Disconnect,
}

/// What happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BotEvent {
    State {
        state: BotState,
        reason: Option<String>,
    },
    /// Persist this before relying on it.
    Snapshot(BotSnapshot),
    Message(IncomingMessage),
    Reconnecting,
}

/// Capped exponential backoff: 1 s doubling to 5 min, plus up to 50 % jitter.
pub fn backoff_delay(attempt: u32, random: &mut impl Random) -> Duration {
    let base = Duration::from_secs(1u64 << attempt.min(8)).min(Duration::from_secs(300));
    base + Duration::from_millis(random.below(base.as_millis() as u64 / 2 + 1))
}

/// How long a handshake, login or sync may take before the bot reconnects.
pub const PHASE_TIMEOUT: Duration = Duration::from_secs(60);
/// Updates kept while the bot syncs.
const MAX_HELD: usize = 1000;
/// Telegram's DC ids are small; anything else in a migrate error is nonsense.
const MAX_DC_ID: i32 = 1000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Call {
    Login,
    GetMe,
    GetState,
    GetDifference,
}

/// One bot.
#[derive(Debug)]
pub struct Bot {
    config: BotConfig,
    session_config: Arc<SessionConfig>,
    snapshot: BotSnapshot,
    state: BotState,
    session: Option<Session>,
    connected_dc: Option<i32>,
    calls: Vec<(RequestId, Call)>,
    attempts: u32,
    retry_at: Option<Instant>,
    /// When a handshake, login or sync in progress is given up (a server that answers
    /// pings but not the request must not hold the bot forever).
    phase_deadline: Option<Instant>,
    /// The latest `now` seen, for deadlines set by steps that get no `now` of their own.
    last_now: Option<Instant>,
    /// Updates that arrived before the bot was running, replayed when it is.
    held: VecDeque<enums::Updates>,
    /// Home-DC moves and re-logins on this connection attempt (each capped).
    migrations: u32,
    relogins: u32,
    /// Transport -404s in a row: the key is dropped on the second, as one could be forged.
    unknown_key_strikes: u32,
    actions: VecDeque<BotAction>,
    events: VecDeque<BotEvent>,
}

impl Bot {
    /// A bot starting from its stored snapshot (or none); asks to connect at once.
    pub fn new(
        config: BotConfig,
        session_config: Arc<SessionConfig>,
        snapshot: Option<BotSnapshot>,
    ) -> Bot {
        // A token of another bot (the workspace's token was replaced) starts afresh: the
        // stored login belongs to the old bot.
        let token_user: Option<i64> = config
            .token
            .expose()
            .split(':')
            .next()
            .and_then(|id| id.parse().ok());
        let snapshot = snapshot.filter(|s| s.user_id.is_none() || s.user_id == token_user);
        let mut bot = Bot {
            snapshot: snapshot.unwrap_or_default(),
            config,
            session_config,
            state: BotState::Connecting,
            session: None,
            connected_dc: None,
            calls: Vec::new(),
            attempts: 0,
            retry_at: None,
            phase_deadline: None,
            last_now: None,
            held: VecDeque::new(),
            migrations: 0,
            relogins: 0,
            unknown_key_strikes: 0,
            actions: VecDeque::new(),
            events: VecDeque::new(),
        };
        bot.connect();
        bot
    }

    pub fn state(&self) -> BotState {
        self.state
    }

    pub fn snapshot(&self) -> &BotSnapshot {
        &self.snapshot
    }

    pub fn workspace_id(&self) -> &str {
        &self.config.workspace_id
    }

    fn home_dc(&self) -> i32 {
        self.snapshot.home_dc.unwrap_or(self.config.default_dc)
    }

    fn set_state(&mut self, state: BotState, reason: Option<String>) {
        let in_progress = matches!(
            state,
            BotState::Handshaking | BotState::Authorizing | BotState::Syncing
        );
        if !in_progress {
            self.phase_deadline = None;
        } else if self.state != state {
            self.phase_deadline = self.last_now.map(|now| now + PHASE_TIMEOUT);
        }
        if self.state != state || reason.is_some() {
            self.state = state;
            self.events.push_back(BotEvent::State { state, reason });
        }
    }

    fn save(&mut self) {
        self.events
            .push_back(BotEvent::Snapshot(self.snapshot.clone()));
    }

    fn connect(&mut self) {
        let dc = self.home_dc();
        self.set_state(BotState::Connecting, None);
        self.actions.push_back(BotAction::Connect { dc });
        self.connected_dc = Some(dc);
    }

    /// The connection asked for by [`BotAction::Connect`] is open.
    pub fn handle_connected(&mut self, now: Now, random: &mut impl Random) {
        self.last_now = Some(now.instant);
        let dc = self.home_dc();
        let key = self.snapshot.auth_keys.get(&dc).map(|k| *k.expose());
        if key.is_none() {
            self.set_state(BotState::Handshaking, None);
        }
        self.calls.clear();
        self.relogins = 0;
        self.session = Some(Session::new(self.session_config.clone(), key, now, random));
        self.drive(now, random);
    }

    /// Bytes read from the connection.
    pub fn handle_input(&mut self, data: &[u8], now: Now, random: &mut impl Random) {
        self.last_now = Some(now.instant);
        if let Some(session) = &mut self.session {
            session.handle_input(data, now, random);
        }
        self.drive(now, random);
    }

    /// The connection failed or closed.
    pub fn handle_disconnected(&mut self, now: Now, random: &mut impl Random) {
        if matches!(
            self.state,
            BotState::Stopping | BotState::Stopped | BotState::Failed
        ) {
            return;
        }
        if self.session.is_none() && self.state == BotState::Backoff {
            return; // already told, and already waiting
        }
        self.session = None;
        self.back_off(now, random, "connection lost".into(), None);
    }

    pub fn handle_timeout(&mut self, now: Now, random: &mut impl Random) {
        self.last_now = Some(now.instant);
        if self.phase_deadline.is_some_and(|at| now.instant >= at) {
            self.phase_deadline = None;
            self.session = None;
            self.actions.push_back(BotAction::Disconnect);
            let what = self.state.as_str();
            return self.back_off(
                now,
                random,
                format!("no answer from Telegram while {what}"),
                None,
            );
        }
        if self.retry_at.is_some_and(|at| now.instant >= at) && self.state == BotState::Backoff {
            self.retry_at = None;
            self.events.push_back(BotEvent::Reconnecting);
            self.connect();
            return;
        }
        if let Some(session) = &mut self.session {
            session.handle_timeout(now);
        }
        self.drive(now, random);
    }

    /// Stop: close the connection and save the state.
    pub fn stop(&mut self) {
        if self.session.take().is_some() {
            self.actions.push_back(BotAction::Disconnect);
        }
        self.retry_at = None;
        self.set_state(BotState::Stopping, None);
        self.save();
        self.set_state(BotState::Stopped, None);
    }

    pub fn poll_action(&mut self) -> Option<BotAction> {
        self.actions.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<BotEvent> {
        self.events.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.retry_at,
            self.phase_deadline,
            self.session.as_ref().and_then(Session::poll_timeout),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Moves session output to actions and session events into the bot's life.
    fn drive(&mut self, now: Now, random: &mut impl Random) {
        loop {
            let Some(session) = &mut self.session else {
                return;
            };
            if let Some(frame) = session.poll_transmit() {
                self.actions.push_back(BotAction::Send(frame));
                continue;
            }
            let Some(event) = session.poll_event() else {
                return;
            };
            self.on_session_event(event, now, random);
        }
    }

    fn invoke(&mut self, call: Call, body: Vec<u8>) {
        if let Some(session) = &mut self.session {
            let id = session.invoke(body);
            self.calls.push((id, call));
        }
    }

    fn on_session_event(&mut self, event: SessionEvent, now: Now, random: &mut impl Random) {
        match event {
            SessionEvent::Ready { new_key } => {
                if let Some(finished) = new_key {
                    let dc = self.home_dc();
                    self.snapshot
                        .auth_keys
                        .insert(dc, Secret::new(finished.auth_key));
                    self.snapshot.home_dc = Some(dc);
                    // A new key is logged in as nobody.
                    self.snapshot.authorized = false;
                    self.save();
                }
                if self.snapshot.authorized {
                    self.sync();
                } else {
                    self.login();
                }
            }
            SessionEvent::Result { id, body } => {
                if let Some(call) = self.take_call(id) {
                    // The DC answers: the key is known, and a long sync is progressing.
                    self.unknown_key_strikes = 0;
                    if self.phase_deadline.is_some() {
                        self.phase_deadline = self.last_now.map(|now| now + PHASE_TIMEOUT);
                    }
                    self.on_result(call, &body);
                }
            }
            SessionEvent::Error { id, error } => {
                if let Some(call) = self.take_call(id) {
                    self.on_error(call, error, now, random);
                }
            }
            SessionEvent::Update(bytes) => {
                if let Ok(updates) = enums::Updates::from_bytes(&bytes) {
                    self.on_updates(&updates);
                }
            }
            SessionEvent::Failed(error) => {
                self.session = None;
                self.actions.push_back(BotAction::Disconnect);
                if error == SessionError::UnknownAuthKey {
                    self.unknown_key_strikes += 1;
                }
                if self.unknown_key_strikes >= 2 {
                    // The DC forgot the key (twice in a row, so not one forged -404): a
                    // new handshake, then a new login.
                    self.unknown_key_strikes = 0;
                    let dc = self.home_dc();
                    self.snapshot.auth_keys.remove(&dc);
                    self.snapshot.authorized = false;
                    self.save();
                }
                self.back_off(now, random, error.to_string(), None);
            }
        }
    }

    fn take_call(&mut self, id: RequestId) -> Option<Call> {
        let i = self.calls.iter().position(|(x, _)| *x == id)?;
        Some(self.calls.remove(i).1)
    }

    fn login(&mut self) {
        self.set_state(BotState::Authorizing, None);
        let request = functions::auth::ImportBotAuthorization {
            flags: 0,
            api_id: self.config.api_id,
            api_hash: self.config.api_hash.expose().clone(),
            bot_auth_token: self.config.token.expose().clone(),
        };
        self.invoke(Call::Login, request.to_bytes());
    }

    fn sync(&mut self) {
        self.set_state(BotState::Syncing, None);
        let me = functions::users::GetUsers {
            id: vec![enums::InputUser::UserSelf],
        };
        self.invoke(Call::GetMe, me.to_bytes());
        match self.snapshot.updates {
            Some(state) => self.get_difference(state),
            None => self.invoke(Call::GetState, functions::updates::GetState {}.to_bytes()),
        }
    }

    fn get_difference(&mut self, state: UpdateState) {
        let request = functions::updates::GetDifference {
            pts: state.pts,
            pts_limit: None,
            pts_total_limit: None,
            date: state.date,
            qts: state.qts,
            qts_limit: None,
        };
        self.invoke(Call::GetDifference, request.to_bytes());
    }

    fn learn_self(&mut self, user: &enums::User) {
        if let enums::User::User(u) = user {
            self.snapshot.user_id = Some(u.id);
            self.snapshot.username = u.username.clone();
        }
    }

    fn on_result(&mut self, call: Call, body: &[u8]) {
        match call {
            Call::Login => {
                if let Ok(enums::auth::Authorization::Authorization(auth)) =
                    enums::auth::Authorization::from_bytes(body)
                {
                    self.learn_self(&auth.user);
                }
                self.snapshot.authorized = true;
                self.snapshot.home_dc = Some(self.home_dc());
                self.save();
                self.sync();
            }
            Call::GetMe => {
                if let Ok(users) = Vec::<enums::User>::from_bytes(body)
                    && let Some(user) = users.first()
                {
                    self.learn_self(user);
                    self.save();
                }
            }
            Call::GetState => {
                if let Ok(enums::updates::State::State(state)) =
                    enums::updates::State::from_bytes(body)
                {
                    self.snapshot.updates = Some(UpdateState::from(&state));
                    self.save();
                    self.running();
                }
            }
            Call::GetDifference => self.on_difference(body),
        }
    }

    fn running(&mut self) {
        self.attempts = 0;
        self.migrations = 0;
        self.set_state(BotState::Running, None);
        // What arrived meanwhile: applied by the pts rule (duplicates of what the sync
        // brought are skipped, anything newer is delivered or shows a gap).
        while self.state == BotState::Running {
            let Some(updates) = self.held.pop_front() else {
                break;
            };
            self.on_updates(&updates);
        }
    }

    fn on_difference(&mut self, body: &[u8]) {
        let Ok(difference) = enums::updates::Difference::from_bytes(body) else {
            return;
        };
        let (messages, state, more) = match difference {
            enums::updates::Difference::Empty(empty) => {
                if let Some(state) = &mut self.snapshot.updates {
                    state.date = empty.date;
                    state.seq = empty.seq;
                }
                (vec![], None, false)
            }
            enums::updates::Difference::Difference(d) => {
                let enums::updates::State::State(s) = d.state;
                (d.new_messages, Some(UpdateState::from(&s)), false)
            }
            enums::updates::Difference::Slice(d) => {
                let enums::updates::State::State(s) = d.intermediate_state;
                (d.new_messages, Some(UpdateState::from(&s)), true)
            }
            enums::updates::Difference::TooLong(t) => {
                // Telegram keeps no more: start from its pts (those messages are gone).
                let mut state = self.snapshot.updates.unwrap_or_default();
                state.pts = t.pts;
                (vec![], Some(state), false)
            }
        };
        for message in messages.iter().filter_map(updates::incoming) {
            self.events.push_back(BotEvent::Message(message));
        }
        if let Some(state) = state {
            self.snapshot.updates = Some(state);
        }
        self.save();
        match (more, self.snapshot.updates) {
            (true, Some(state)) => self.get_difference(state),
            _ => self.running(),
        }
    }

    fn on_updates(&mut self, updates: &enums::Updates) {
        if self.state != BotState::Running {
            if self.held.len() == MAX_HELD {
                // Dropping the oldest is safe: the next one applied shows the gap.
                self.held.pop_front();
            }
            self.held.push_back(updates.clone());
            return;
        }
        let Some(mut state) = self.snapshot.updates else {
            return;
        };
        match updates::received(updates) {
            Received::TooLong => self.get_difference(state),
            Received::Updates(list) => {
                for message in updates::channel_messages(updates) {
                    self.events.push_back(BotEvent::Message(message));
                }
                for update in list {
                    match updates::check_pts(state.pts, update.pts, update.pts_count) {
                        PtsCheck::Apply => {
                            state.pts = update.pts;
                            if let Some(message) = update.message {
                                self.events.push_back(BotEvent::Message(message));
                            }
                        }
                        PtsCheck::Duplicate => {}
                        PtsCheck::Gap => {
                            self.snapshot.updates = Some(state);
                            self.set_state(BotState::Syncing, None);
                            self.get_difference(state);
                            return;
                        }
                    }
                }
                self.snapshot.updates = Some(state);
                self.save();
            }
        }
    }

    fn on_error(&mut self, call: Call, error: RpcError, now: Now, random: &mut impl Random) {
        if error.is_token_rejected() {
            // A person must fix the token: no retries that would hammer Telegram.
            self.session = None;
            self.actions.push_back(BotAction::Disconnect);
            self.set_state(
                BotState::Failed,
                Some(format!("Telegram rejected the bot token ({})", error.name)),
            );
            self.held.clear();
            return;
        }
        if let Some(dc) = error.migrate_to().filter(|_| call == Call::Login) {
            // One move per connection attempt, to a plausible DC: a DC pointing at itself
            // or two pointing at each other must not make the bot log in without end.
            self.session = None;
            self.actions.push_back(BotAction::Disconnect);
            if (1..=MAX_DC_ID).contains(&dc) && dc != self.home_dc() && self.migrations < 2 {
                self.migrations += 1;
                self.snapshot.home_dc = Some(dc);
                self.save();
                self.connect();
            } else {
                self.back_off(
                    now,
                    random,
                    format!("Telegram redirects to DC {dc} again"),
                    None,
                );
            }
            return;
        }
        if error.is_auth_key_unregistered() {
            // Every call in flight fails alike: one login answers them all (the sync
            // after it asks again), and one per connection: a server that logs the key
            // out again right away gets a back-off, not a login loop.
            if self.state == BotState::Authorizing && call != Call::Login {
                return;
            }
            self.calls.clear();
            self.snapshot.authorized = false;
            self.save();
            if self.relogins == 0 && call != Call::Login {
                self.relogins += 1;
                self.login();
            } else {
                self.session = None;
                self.actions.push_back(BotAction::Disconnect);
                self.back_off(
                    now,
                    random,
                    "Telegram logged the bot out again".into(),
                    None,
                );
            }
            return;
        }
        let wait = error
            .wait_seconds()
            .map(|s| Duration::from_secs(u64::from(s)));
        self.session = None;
        self.actions.push_back(BotAction::Disconnect);
        self.back_off(now, random, format!("{call:?}: {error}"), wait);
    }

    fn back_off(
        &mut self,
        now: Now,
        random: &mut impl Random,
        reason: String,
        at_least: Option<Duration>,
    ) {
        let delay = backoff_delay(self.attempts, random).max(at_least.unwrap_or_default());
        self.attempts = self.attempts.saturating_add(1);
        self.retry_at = Some(now.instant + delay);
        self.set_state(BotState::Backoff, Some(reason));
    }
}
