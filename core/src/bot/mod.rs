//! One bot's life: `Connecting -> (Handshaking) -> Authorizing -> Syncing -> Running`,
//! with `Backoff`, `Failed` and `Stopping -> Stopped`, over a [`Session`].
//!
//! It logs in with `auth.importBotAuthorization` only when its record says the key is not
//! logged in (a login on every start draws FLOOD_WAIT of 1000-3000 s), learns its
//! username, takes or catches up its update state, and hands every incoming message on.
//! Connection losses bring a capped exponential backoff with full jitter that resets only
//! after the bot has run stably for a while; FLOOD_WAIT is honoured; `USER_MIGRATE` moves
//! the bot's home DC; an unknown, logged-out or duplicated key leads to a new handshake or
//! login; a rejected token ends in `Failed` without retries.
//!
//! Its outputs are one ordered stream ([`Bot::poll_output`]): connections to open, bytes
//! to send, and [`Commit`]s that carry the new record together with the messages it
//! covers. A message counts as handled, and the update state as persisted, only when the
//! runtime reports the commit written ([`Bot::handle_committed`]).
//!
//! Every connection has a number; what a runtime reports about a connection the bot has
//! already left (a write that failed on it, its close) is ignored, so a stale report can
//! neither start a second backoff nor leave a deadline behind. Besides its home
//! connection a bot may hold media connections to other DCs, for files stored there
//! ([`media`]); their numbers come from the same counter.

mod channels;
mod commits;
mod download;
mod media;
mod output;
mod sync;

pub use self::download::{CHUNK, MAX_FILE, REQUEST_TIMEOUT};
pub use self::media::{MAX_MEDIA_DCS, MEDIA_IDLE};
pub use self::output::{BotOutput, ConnNo, Warning};

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use grammers_tl_types::enums;

use crate::backoff;
use crate::fleet::BotState;
use crate::random::Random;
use crate::record::{BotRecord, CommitId, SessionRecord};
use crate::secret::Secret;
use crate::session::{Now, RequestId, Session, SessionConfig, SessionError, SessionEvent};
use crate::updates::MediaKinds;

use self::commits::Commits;

/// A bot's fixed settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BotConfig {
    pub workspace_id: String,
    pub token: Secret<String>,
    pub api_id: i32,
    pub api_hash: Secret<String>,
    /// The DC to try first when the record has no home DC.
    pub default_dc: i32,
    /// Which media count as voice messages (voice messages only, by default).
    pub media: MediaKinds,
}

impl BotConfig {
    /// The bot's user id: the numeric prefix of its token.
    pub fn token_user_id(&self) -> Option<i64> {
        self.token.expose().split(':').next()?.parse().ok()
    }
}

/// How long a handshake, login or sync may take before the bot reconnects.
pub const PHASE_TIMEOUT: Duration = Duration::from_secs(60);
/// A bot that has run this long is stable: its reconnect backoff starts over.
pub const STABLE_AFTER: Duration = Duration::from_secs(60);
/// With no update for this long, a running bot checks in with getDifference (Telegram's
/// advice), so that a revoked token or a silent gap is noticed.
pub const CHECK_IN_AFTER: Duration = Duration::from_secs(15 * 60);
/// Reconnect backoff: full jitter over 1 s doubling to 5 min.
const RECONNECT_BASE: Duration = Duration::from_secs(1);
const RECONNECT_CAP: Duration = Duration::from_secs(300);
/// Telegram's DC ids are small; anything else in a migrate error is nonsense.
const MAX_DC_ID: i32 = 1000;

/// The connection, as far as the bot knows.
enum Link {
    None,
    /// Asked for with [`BotOutput::Connect`]; not open yet.
    Opening,
    Open(Box<Session>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Call {
    Login,
    GetMe,
    GetState,
    GetDifference,
    GetChannelDifference(i64),
    /// A chunk of a voice file, for the pipeline's job.
    GetFile(crate::voice::JobId),
    /// The message again, for a fresh file reference.
    RefetchMessage(crate::voice::JobId),
    /// The login, for a media connection to this DC.
    ExportAuthorization(i32),
}

/// One bot.
pub struct Bot {
    config: Arc<BotConfig>,
    session_config: Arc<SessionConfig>,
    /// The record as the bot knows it; ahead of the store by what is in `commits`.
    record: BotRecord,
    commits: Commits,
    state: BotState,
    /// The home connection's number.
    conn: ConnNo,
    /// The last connection number handed out, home or media.
    last_conn: ConnNo,
    link: Link,
    calls: Vec<(RequestId, Call)>,
    /// Failed connection attempts since the bot last ran stably.
    attempts: u32,
    /// When to reconnect; set only in `Backoff` (cleared by [`Bot::set_state`]).
    retry_at: Option<Instant>,
    /// When a handshake, login or sync in progress is given up (a server that answers
    /// pings but not the request must not hold the bot forever).
    phase_deadline: Option<Instant>,
    running_since: Option<Instant>,
    /// When the last update or difference arrived (for the check-in).
    last_update: Instant,
    /// A getDifference or getState is in flight: updates are held until it is done.
    syncing: bool,
    /// A failed sync while running is tried again then, on the same connection.
    resync_at: Option<Instant>,
    /// New updates were left to getDifference because the store is behind.
    backlogged: bool,
    /// Channels whose difference is in flight.
    channel_syncs: Vec<i64>,
    /// Voice files being downloaded.
    downloads: Vec<download::Download>,
    /// Connections to other DCs, for files stored there.
    media: Vec<media::Media>,
    /// DCs whose media connection failed lately.
    media_backoff: Vec<media::Backoff>,
    /// Access hashes of channels seen in updates' chat lists.
    channel_hashes: Vec<(i64, i64)>,
    /// Updates that arrived during a sync, replayed after it.
    held: VecDeque<enums::Updates>,
    /// Some were dropped during this sync (and warned about, once).
    held_dropped: bool,
    /// Home-DC moves and re-logins on this connection attempt (each capped).
    migrations: u32,
    relogins: u32,
    /// Transport -404s in a row: the key is dropped on the second, as one could be forged.
    unknown_key_strikes: u32,
    /// The latest `now` seen, for steps that get none of their own.
    now: Instant,
    out: VecDeque<BotOutput>,
}

impl fmt::Debug for Bot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bot")
            .field("workspace_id", &self.config.workspace_id)
            .field("state", &self.state)
            .field("conn", &self.conn)
            .field("record", &self.record)
            .field("session", &self.session())
            .field("calls", &self.calls)
            .field("attempts", &self.attempts)
            .field("held", &self.held.len())
            .field("downloads", &self.downloads.len())
            .field("media", &self.media)
            .field("commits", &self.commits)
            .finish_non_exhaustive()
    }
}

impl Bot {
    /// A bot with its stored record (or none), not started yet.
    pub fn new(
        config: Arc<BotConfig>,
        session_config: Arc<SessionConfig>,
        record: Option<BotRecord>,
        now: Instant,
    ) -> Bot {
        // A token of another bot (the workspace's token was replaced) starts afresh: the
        // stored login belongs to the old bot.
        let token_user = config.token_user_id();
        let record = record.filter(|r| r.session.user_id.is_none_or(|id| Some(id) == token_user));
        Bot {
            record: record.unwrap_or_default(),
            commits: Commits::new(config.media),
            config,
            session_config,
            state: BotState::Stopped,
            conn: 0,
            last_conn: 0,
            link: Link::None,
            calls: Vec::new(),
            attempts: 0,
            retry_at: None,
            phase_deadline: None,
            running_since: None,
            last_update: now,
            syncing: false,
            resync_at: None,
            backlogged: false,
            channel_syncs: Vec::new(),
            downloads: Vec::new(),
            media: Vec::new(),
            media_backoff: Vec::new(),
            channel_hashes: Vec::new(),
            held: VecDeque::new(),
            held_dropped: false,
            migrations: 0,
            relogins: 0,
            unknown_key_strikes: 0,
            now,
            out: VecDeque::new(),
        }
    }

    /// Starts the bot: it asks for a connection at once.
    pub fn start(&mut self, now: Instant) {
        self.now = now;
        if self.state == BotState::Stopped {
            self.connect();
        }
    }

    pub fn state(&self) -> BotState {
        self.state
    }

    /// The record as the bot knows it (the store may be behind by what is in flight).
    pub fn record(&self) -> &BotRecord {
        &self.record
    }

    pub fn config(&self) -> &BotConfig {
        &self.config
    }

    pub fn workspace_id(&self) -> &str {
        &self.config.workspace_id
    }

    /// Stopped, and everything it received is durable: the bot can be dropped.
    pub fn is_finished(&self) -> bool {
        self.state == BotState::Stopped && self.commits.is_settled()
    }

    fn home_dc(&self) -> i32 {
        self.record
            .session
            .home_dc
            .unwrap_or(self.config.default_dc)
    }

    fn session(&self) -> Option<&Session> {
        match &self.link {
            Link::Open(session) => Some(session),
            _ => None,
        }
    }

    /// Changes the session record; the change goes into the next commit.
    fn session_record(&mut self) -> &mut SessionRecord {
        self.commits.session_changed();
        &mut self.record.session
    }

    fn set_state(&mut self, state: BotState, reason: Option<String>) {
        let in_progress = matches!(
            state,
            BotState::Handshaking | BotState::Authorizing | BotState::Syncing
        );
        if !in_progress {
            self.phase_deadline = None;
        } else if self.state != state {
            self.phase_deadline = Some(self.now + PHASE_TIMEOUT);
        }
        if state != BotState::Backoff {
            self.retry_at = None;
        }
        if state != BotState::Running {
            self.running_since = None;
            self.resync_at = None;
        }
        if self.state != state || reason.is_some() {
            self.state = state;
            self.out.push_back(BotOutput::State { state, reason });
        }
    }

    fn connect(&mut self) {
        self.close();
        self.conn = self.next_conn();
        self.link = Link::Opening;
        self.set_state(BotState::Connecting, None);
        let dc = self.home_dc();
        self.out.push_back(BotOutput::Connect {
            conn: self.conn,
            dc,
            handshake: !self.record.session.auth_keys.contains_key(&dc),
            media: false,
        });
    }

    fn next_conn(&mut self) -> ConnNo {
        self.last_conn = self.last_conn.wrapping_add(1);
        self.last_conn
    }

    /// Leaves the current connection, if any, and every media connection with it.
    fn close(&mut self) {
        if !matches!(self.link, Link::None) {
            self.out
                .push_back(BotOutput::Disconnect { conn: self.conn });
        }
        self.close_media();
        self.link = Link::None;
        self.calls.clear();
        self.channel_syncs.clear();
        self.end_downloads();
        self.syncing = false;
    }

    /// The connection asked for by [`BotOutput::Connect`] is open.
    pub fn handle_connected(&mut self, conn: ConnNo, now: Now, random: &mut impl Random) {
        self.now = now.instant;
        if self.is_media(conn) {
            return self.media_connected(conn, now, random);
        }
        if conn != self.conn || !matches!(self.link, Link::Opening) {
            return;
        }
        let dc = self.home_dc();
        let key = self.record.session.auth_keys.get(&dc).map(|k| *k.expose());
        if key.is_none() {
            self.set_state(BotState::Handshaking, None);
        }
        self.relogins = 0;
        let session = Session::new(self.session_config.clone(), key, now, random);
        self.link = Link::Open(Box::new(session));
        self.drive(random);
    }

    /// Bytes read from the connection.
    pub fn handle_input(&mut self, conn: ConnNo, data: &[u8], now: Now, random: &mut impl Random) {
        self.now = now.instant;
        if self.is_media(conn) {
            return self.media_input(conn, data, now, random);
        }
        if conn != self.conn {
            return;
        }
        if let Link::Open(session) = &mut self.link {
            session.handle_input(data, now, random);
        }
        self.drive(random);
    }

    /// The connection failed, closed, or could not be opened.
    pub fn handle_disconnected(&mut self, conn: ConnNo, now: Now, random: &mut impl Random) {
        self.now = now.instant;
        if self.is_media(conn) {
            self.media_disconnected(conn, random);
            return self.flush_commits();
        }
        if conn != self.conn || matches!(self.link, Link::None) {
            return;
        }
        self.close_media();
        self.link = Link::None;
        self.calls.clear();
        self.channel_syncs.clear();
        self.end_downloads();
        self.syncing = false;
        self.back_off(random, "connection lost".into(), None);
        self.flush_commits();
    }

    /// The store's answer to [`BotOutput::Commit`] `id`.
    pub fn handle_committed(
        &mut self,
        id: CommitId,
        result: Result<(), String>,
        now: Now,
        random: &mut impl Random,
    ) {
        self.now = now.instant;
        let error = result.as_ref().err().cloned();
        match self.commits.handle_result(id, result, now.instant, random) {
            Some(commit) => self.out.push_back(BotOutput::Committed(commit)),
            None => {
                if let Some(error) = error {
                    self.out.push_back(BotOutput::CommitFailed { error });
                }
            }
        }
        if self.state == BotState::Stopping && self.commits.is_settled() {
            self.set_state(BotState::Stopped, None);
        }
        self.resume_after_backlog();
        self.flush_commits();
    }

    pub fn handle_timeout(&mut self, now: Now, random: &mut impl Random) {
        self.now = now.instant;
        let due = |at: Option<Instant>| at.is_some_and(|at| now.instant >= at);
        if due(self.phase_deadline) {
            self.phase_deadline = None;
            self.close();
            let what = self.state.as_str();
            self.back_off(
                random,
                format!("no answer from Telegram while {what}"),
                None,
            );
        } else if due(self.retry_at) {
            self.retry_at = None;
            self.out.push_back(BotOutput::Reconnecting);
            self.connect();
        } else {
            if let Link::Open(session) = &mut self.link {
                session.handle_timeout(now);
            }
            if due(self.resync_at) {
                self.resync_at = None;
                self.resync();
            }
            if due(self.check_in_at()) {
                // Quiet for long: ask Telegram whether anything was missed.
                self.start_difference();
            }
            self.drive(random);
            self.expire_downloads();
            self.media_timeout(now, random);
        }
        self.flush_commits();
    }

    /// Stops: closes the connection and finishes once everything received is durable.
    pub fn stop(&mut self, now: Instant) {
        self.now = now;
        if matches!(self.state, BotState::Stopping | BotState::Stopped) {
            return;
        }
        self.close();
        self.held.clear();
        self.set_state(BotState::Stopping, None);
        if self.commits.is_settled() {
            self.set_state(BotState::Stopped, None);
        }
        self.flush_commits();
    }

    pub fn poll_output(&mut self) -> Option<BotOutput> {
        let output = self.out.pop_front();
        if output.is_none() && self.out.capacity() > 0 {
            // An idle bot keeps no queue: ten thousand of them would keep ten thousand.
            self.out = VecDeque::new();
        }
        output
    }

    /// When [`Bot::handle_timeout`] is due. After `handle_timeout(now)` this is never at or
    /// before `now`: every deadline that passed has been acted on.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.retry_at,
            self.phase_deadline,
            self.resync_at,
            self.check_in_at(),
            self.commits.poll_timeout(),
            self.session().and_then(Session::poll_timeout),
            self.downloads_deadline(),
            self.media_poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn check_in_at(&self) -> Option<Instant> {
        (self.state == BotState::Running && !self.syncing && self.resync_at.is_none())
            .then(|| self.last_update + CHECK_IN_AFTER)
    }

    /// Hands the next commit to the runtime, if one is due.
    fn flush_commits(&mut self) {
        if let Some(commit) = self.commits.poll(&self.record, self.now) {
            self.out.push_back(BotOutput::Commit(commit));
        }
    }

    /// Moves session output to the bot's outputs and session events into its life.
    fn drive(&mut self, random: &mut impl Random) {
        while let Link::Open(session) = &mut self.link {
            if let Some(bytes) = session.poll_transmit() {
                self.out.push_back(BotOutput::Send {
                    conn: self.conn,
                    bytes,
                });
                continue;
            }
            let Some(event) = session.poll_event() else {
                break;
            };
            self.on_session_event(event, random);
        }
        self.flush_commits();
    }

    fn on_session_event(&mut self, event: SessionEvent, random: &mut impl Random) {
        match event {
            SessionEvent::Ready { new_key } => {
                if let Some(finished) = new_key {
                    let dc = self.home_dc();
                    let session = self.session_record();
                    session.auth_keys.insert(dc, Secret::new(finished.auth_key));
                    session.home_dc = Some(dc);
                    // A new key is logged in as nobody.
                    session.authorized = false;
                }
                if self.record.session.authorized {
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
                        self.phase_deadline = Some(self.now + PHASE_TIMEOUT);
                    }
                    self.on_result(call, &body, random);
                }
            }
            SessionEvent::Error { id, error } => {
                if let Some(call) = self.take_call(id) {
                    self.on_error(call, error, random);
                }
            }
            SessionEvent::Update(bytes) => {
                use grammers_tl_types::Deserializable as _;
                match enums::Updates::from_bytes(&bytes) {
                    Ok(updates) => self.on_updates(updates),
                    Err(_) => {
                        // Whatever it was may have moved pts: fetch the difference.
                        self.warn(Warning::Unparsable { what: "Updates" });
                        self.start_difference();
                    }
                }
            }
            SessionEvent::Failed(error) => {
                self.close();
                if error == SessionError::UnknownAuthKey {
                    self.unknown_key_strikes += 1;
                }
                if self.unknown_key_strikes >= 2 {
                    // The DC forgot the key (twice in a row, so not one forged -404): a
                    // new handshake, then a new login.
                    self.unknown_key_strikes = 0;
                    self.drop_home_key();
                }
                self.back_off(random, error.to_string(), None);
            }
        }
    }

    fn take_call(&mut self, id: RequestId) -> Option<Call> {
        let i = self.calls.iter().position(|(x, _)| *x == id)?;
        Some(self.calls.remove(i).1)
    }

    fn invoke(&mut self, call: Call, body: Vec<u8>) {
        if let Link::Open(session) = &mut self.link {
            let id = session.invoke(body);
            self.calls.push((id, call));
        }
    }

    fn drop_home_key(&mut self) {
        let dc = self.home_dc();
        let session = self.session_record();
        session.auth_keys.remove(&dc);
        session.authorized = false;
    }

    fn warn(&mut self, warning: Warning) {
        self.out.push_back(BotOutput::Warning(warning));
    }

    /// Waits before the next connection attempt: full jitter over an exponential ceiling
    /// that starts over once the bot has run stably; at least `at_least` (FLOOD_WAIT).
    fn back_off(&mut self, random: &mut impl Random, reason: String, at_least: Option<Duration>) {
        if self
            .running_since
            .is_some_and(|since| self.now.saturating_duration_since(since) >= STABLE_AFTER)
        {
            self.attempts = 0;
        }
        let delay = backoff::full_jitter(RECONNECT_BASE, RECONNECT_CAP, self.attempts, random)
            .max(at_least.unwrap_or_default());
        self.attempts = self.attempts.saturating_add(1);
        self.set_state(BotState::Backoff, Some(reason));
        self.retry_at = Some(self.now + delay);
    }
}
