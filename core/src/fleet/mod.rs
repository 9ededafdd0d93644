//! The fleet: every bot of this process, driven as one state machine.
//!
//! [`Fleet`] takes the *wanted* set of bots ([`Fleet::set_wanted`]: today the bots file,
//! next the store, later the leases this replica holds) and reconciles the running set:
//! it starts new bots, stops removed ones, replaces a bot whose token changed (after the
//! old one has stopped and saved), and restarts a bot whose code panicked from its last
//! committed record, after a backoff. It owns admission control ([`admission`]), keeps
//! every bot's deadline in one heap ([`timers`]), and keeps the health surface's view of
//! the fleet ([`Health`]).
//!
//! In the quinn-proto manner, a runtime feeds it what happened on a connection, in the
//! store or on the clock (`handle_*`, with `now`), and drains what to do
//! ([`Fleet::poll_effect`]), what to log ([`Fleet::poll_event`]) and when to call again
//! ([`Fleet::poll_timeout`]). Connections are named by [`ConnId`]; a report about a
//! connection its bot has already left is ignored.

pub mod admission;
mod status;
pub mod timers;

use std::collections::{HashMap, VecDeque};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::{Duration, Instant};

use self::admission::{Admission, AdmissionLimits, Kind};
pub use self::status::{BotState, BotStatus, Counters, FleetStatus};
use self::timers::Timers;
use crate::backoff;
use crate::bot::{Bot, BotConfig, BotOutput, ConnNo, STABLE_AFTER, Warning};
use crate::health::Health;
use crate::random::Random;
use crate::record::{BotRecord, Commit, CommitId};
use crate::session::{Now, SessionConfig};
use crate::updates::IncomingMessage;

/// A bot of the fleet (stable for its life; a replaced bot gets a new one).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BotId(pub u64);

/// A connection of a bot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId {
    pub bot: BotId,
    pub no: ConnNo,
}

/// A bot the fleet should run, with its stored record.
#[derive(Clone, Debug)]
pub struct WantedBot {
    pub config: BotConfig,
    pub record: Option<BotRecord>,
}

/// What the runtime must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Open a TCP connection to this DC, then call [`Fleet::handle_connected`] (or
    /// [`Fleet::handle_disconnected`]).
    Connect { conn: ConnId, dc: i32 },
    /// Write these bytes to the connection.
    Send { conn: ConnId, bytes: Vec<u8> },
    /// Close the connection; no report about it is needed.
    Disconnect { conn: ConnId },
    /// Write this commit for this workspace, then call [`Fleet::handle_committed`].
    Commit {
        bot: BotId,
        workspace_id: String,
        commit: Commit,
    },
}

/// What happened, for the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FleetEvent {
    State {
        workspace_id: String,
        state: BotState,
        reason: Option<String>,
    },
    /// Messages are durable and handed on.
    Delivered {
        workspace_id: String,
        messages: Vec<IncomingMessage>,
    },
    Reconnecting {
        workspace_id: String,
    },
    Warning {
        workspace_id: String,
        warning: Warning,
    },
    /// A bot's code panicked; it restarts from its last committed record.
    Panicked {
        workspace_id: String,
        restart_in: Duration,
    },
    /// The store refuses commits (the first failure after a success), or works again.
    StoreFailing {
        error: String,
    },
    StoreRecovered,
}

/// The fleet's bounds and pacing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FleetSettings {
    pub admission: AdmissionLimits,
    /// A bot whose code panicked restarts after full jitter over this, doubling with
    /// each panic in a row, up to `restart_cap`.
    pub restart_base: Duration,
    pub restart_cap: Duration,
}

impl Default for FleetSettings {
    fn default() -> Self {
        FleetSettings {
            admission: AdmissionLimits::default(),
            restart_base: Duration::from_secs(1),
            restart_cap: Duration::from_secs(300),
        }
    }
}

/// How often the fleet wants to be woken when nothing else is due: readiness takes a
/// missed heartbeat for a stuck loop.
pub const HEARTBEAT: Duration = Duration::from_secs(1);

/// One bot of the fleet and the fleet's books about it.
#[derive(Debug)]
struct Slot {
    config: Arc<BotConfig>,
    /// `None` while a bot that panicked waits to restart, or before a replaced bot's
    /// predecessor has finished.
    bot: Option<Bot>,
    /// The record as the store has it.
    committed: BotRecord,
    /// The commit the store is writing, as handed out.
    in_flight: Option<Commit>,
    /// The connection the bot asked for and has not left.
    conn: Option<ConnNo>,
    /// A connection asked for and waiting for admission.
    parked: Option<(ConnNo, i32)>,
    /// The admission permit the bot holds while connecting and handshaking.
    permit: Option<Kind>,
    restart_at: Option<Instant>,
    panics: u32,
    running_since: Option<Instant>,
    /// No longer wanted: stop, and forget once everything is durable.
    retiring: bool,
    /// A replacement waiting for this slot to finish.
    successor: Option<BotId>,
}

/// Every bot of the process.
#[derive(Debug)]
pub struct Fleet {
    settings: FleetSettings,
    session_config: Arc<SessionConfig>,
    slots: HashMap<BotId, Slot>,
    /// The current bot of each wanted workspace.
    by_workspace: HashMap<String, BotId>,
    /// Bots no longer wanted that are still saving, by workspace.
    retiring: HashMap<String, BotId>,
    next_id: u64,
    admission: Admission<BotId>,
    timers: Timers<BotId>,
    health: Health,
    store_failing: bool,
    stopping: bool,
    effects: VecDeque<Effect>,
    events: VecDeque<FleetEvent>,
}

impl Fleet {
    pub fn new(settings: FleetSettings, session_config: Arc<SessionConfig>) -> Fleet {
        Fleet {
            admission: Admission::new(settings.admission),
            settings,
            session_config,
            slots: HashMap::new(),
            by_workspace: HashMap::new(),
            retiring: HashMap::new(),
            next_id: 0,
            timers: Timers::new(),
            health: Health::new(),
            store_failing: false,
            stopping: false,
            effects: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// The health surface's view: lifecycle, bots, counters.
    pub fn health(&self) -> &Health {
        &self.health
    }

    pub fn health_mut(&mut self) -> &mut Health {
        &mut self.health
    }

    /// The bots, running or not, of the wanted set (replaced and retiring ones aside).
    pub fn len(&self) -> usize {
        self.by_workspace.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_workspace.is_empty()
    }

    /// The current bot of a workspace, if it is wanted.
    pub fn bot_id(&self, workspace_id: &str) -> Option<BotId> {
        self.by_workspace.get(workspace_id).copied()
    }

    /// The record the store has for a bot.
    pub fn committed(&self, bot: BotId) -> Option<&BotRecord> {
        self.slots.get(&bot).map(|s| &s.committed)
    }

    /// Connects in flight, handshakes among them, and bots waiting for admission.
    pub fn admission_load(&self) -> (usize, usize, usize) {
        (
            self.admission.in_flight(),
            self.admission.handshakes(),
            self.admission.waiting(),
        )
    }

    /// Reconciles the running bots with `wanted`: starts the new, stops the removed,
    /// replaces a bot whose configuration (token) changed.
    pub fn set_wanted(&mut self, wanted: Vec<WantedBot>, now: Now) {
        if self.stopping {
            return;
        }
        self.health.heartbeat(now.instant);
        let mut keep = std::collections::HashSet::new();
        for WantedBot { config, record } in wanted {
            let ws = config.workspace_id.clone();
            if !keep.insert(ws.clone()) {
                continue; // the first entry of a workspace wins
            }
            match self.by_workspace.get(&ws).copied() {
                Some(id) if *self.slots[&id].config == config => {}
                Some(old) => {
                    // The old bot stops and saves first; its successor starts from the
                    // record it leaves.
                    let new = self.add_slot(config, None, now);
                    self.by_workspace.insert(ws, new);
                    self.slot_mut(old).successor = Some(new);
                    self.retire(old, now);
                }
                None => {
                    let id = self.add_slot(config, record, now);
                    self.by_workspace.insert(ws.clone(), id);
                    match self.retiring.get(&ws).copied() {
                        // Removed a moment ago and still saving: it goes on from there.
                        Some(old) => self.slot_mut(old).successor = Some(id),
                        None => self.start(id, now),
                    }
                }
            }
        }
        let removed: Vec<BotId> = self
            .by_workspace
            .iter()
            .filter(|(ws, _)| !keep.contains(*ws))
            .map(|(_, id)| *id)
            .collect();
        for id in removed {
            let ws = self.slots[&id].config.workspace_id.clone();
            self.by_workspace.remove(&ws);
            self.retire(id, now);
        }
        self.admit(now.instant);
    }

    /// Stops every bot; [`Fleet::is_stopped`] tells when all they received is durable.
    pub fn stop(&mut self, now: Now) {
        self.stopping = true;
        self.health.set_stopping();
        let ids: Vec<BotId> = self.slots.keys().copied().collect();
        for id in ids {
            let slot = self.slot_mut(id);
            slot.restart_at = None;
            slot.successor = None;
            self.with_bot(id, now, |bot| bot.stop(now.instant));
        }
        self.reap(now);
    }

    /// Every bot is stopped and everything it received is durable.
    pub fn is_stopped(&self) -> bool {
        self.stopping && self.slots.is_empty()
    }

    pub fn handle_connected(&mut self, conn: ConnId, now: Now, random: &mut impl Random) {
        self.with_bot(conn.bot, now, |bot| {
            bot.handle_connected(conn.no, now, random)
        });
    }

    pub fn handle_input(&mut self, conn: ConnId, data: &[u8], now: Now, random: &mut impl Random) {
        self.with_bot(conn.bot, now, |bot| {
            bot.handle_input(conn.no, data, now, random)
        });
    }

    pub fn handle_disconnected(&mut self, conn: ConnId, now: Now, random: &mut impl Random) {
        if let Some(slot) = self.slots.get_mut(&conn.bot)
            && slot.conn == Some(conn.no)
        {
            slot.conn = None;
        }
        self.with_bot(conn.bot, now, |bot| {
            bot.handle_disconnected(conn.no, now, random)
        });
    }

    /// The store's answer to [`Effect::Commit`].
    pub fn handle_committed(
        &mut self,
        bot: BotId,
        id: CommitId,
        result: Result<(), String>,
        now: Now,
        random: &mut impl Random,
    ) {
        let Some(slot) = self.slots.get_mut(&bot) else {
            return;
        };
        if slot.in_flight.as_ref().is_none_or(|c| c.id != id) {
            return;
        }
        let commit = slot.in_flight.take().expect("checked above");
        let ws = slot.config.workspace_id.clone();
        match &result {
            Ok(()) => {
                slot.committed.apply(&commit);
                self.health.fleet.counters.commits += 1;
                if let Some(status) = self.health.fleet.get_mut(&ws) {
                    status.messages += commit.messages.len() as u64;
                    if let Some(name) = commit.session.as_ref().and_then(|s| s.username.clone()) {
                        status.username = Some(name);
                    }
                }
                if !commit.messages.is_empty() {
                    self.events.push_back(FleetEvent::Delivered {
                        workspace_id: ws,
                        messages: commit.messages,
                    });
                }
                if std::mem::take(&mut self.store_failing) {
                    self.health.set_store_error(None);
                    self.events.push_back(FleetEvent::StoreRecovered);
                }
            }
            Err(error) => {
                self.health.fleet.counters.commit_failures += 1;
                self.health.set_store_error(Some(error.clone()));
                if !std::mem::replace(&mut self.store_failing, true) {
                    self.events.push_back(FleetEvent::StoreFailing {
                        error: error.clone(),
                    });
                }
            }
        }
        self.with_bot(bot, now, |b| b.handle_committed(id, result, now, random));
        self.poke(bot, now);
        self.reap(now);
    }

    /// Acts on every deadline at or before `now`; each bot is called at most once, so a
    /// deadline that stayed in the past could not make this loop.
    pub fn handle_timeout(&mut self, now: Now, random: &mut impl Random) {
        self.health.heartbeat(now.instant);
        for id in self.timers.expired(now.instant) {
            self.with_bot(id, now, |bot| bot.handle_timeout(now, random));
            self.poke(id, now);
        }
        self.admit(now.instant);
        self.reap(now);
    }

    pub fn poll_effect(&mut self) -> Option<Effect> {
        self.effects.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<FleetEvent> {
        self.events.pop_front()
    }

    /// When [`Fleet::handle_timeout`] is due: the earliest bot deadline, admission's next
    /// token, or the heartbeat.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        let heartbeat = self.health.last_heartbeat().map(|at| at + HEARTBEAT);
        [
            self.timers.next_deadline(),
            self.admission.poll_timeout(),
            heartbeat,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn slot_mut(&mut self, id: BotId) -> &mut Slot {
        self.slots.get_mut(&id).expect("a slot of this fleet")
    }

    fn add_slot(&mut self, config: BotConfig, record: Option<BotRecord>, now: Now) -> BotId {
        self.next_id += 1;
        let id = BotId(self.next_id);
        let now_unix = now.unix_secs.max(0) as u64;
        let mut status = BotStatus::new(&config.workspace_id, now_unix);
        status.username = record.as_ref().and_then(|r| r.session.username.clone());
        self.health.fleet.upsert(status);
        self.slots.insert(
            id,
            Slot {
                config: Arc::new(config),
                bot: None,
                committed: record.unwrap_or_default(),
                in_flight: None,
                conn: None,
                parked: None,
                permit: None,
                restart_at: None,
                panics: 0,
                running_since: None,
                retiring: false,
                successor: None,
            },
        );
        id
    }

    /// Creates the slot's bot from its committed record and starts it.
    fn start(&mut self, id: BotId, now: Now) {
        let session_config = self.session_config.clone();
        let slot = self.slot_mut(id);
        let bot = Bot::new(
            slot.config.clone(),
            session_config,
            Some(slot.committed.clone()),
            now.instant,
        );
        slot.bot = Some(bot);
        self.with_bot(id, now, |bot| bot.start(now.instant));
    }

    /// Restarts a bot whose restart is due (once its last commit is answered), and
    /// schedules its next deadline.
    fn poke(&mut self, id: BotId, now: Now) {
        let Some(slot) = self.slots.get_mut(&id) else {
            self.timers.remove(id);
            return;
        };
        if slot.bot.is_none()
            && slot.in_flight.is_none()
            && slot.restart_at.is_some_and(|at| now.instant >= at)
        {
            slot.restart_at = None;
            self.start(id, now);
        }
        self.schedule(id);
    }

    fn retire(&mut self, id: BotId, now: Now) {
        let slot = self.slot_mut(id);
        slot.retiring = true;
        slot.restart_at = None;
        let ws = slot.config.workspace_id.clone();
        self.retiring.insert(ws, id);
        self.with_bot(id, now, |bot| bot.stop(now.instant));
        self.reap(now);
    }

    /// Calls into a slot's bot, turning a panic into a restart, then books its outputs.
    fn with_bot(&mut self, id: BotId, now: Now, f: impl FnOnce(&mut Bot)) {
        let Some(slot) = self.slots.get_mut(&id) else {
            return;
        };
        let Some(bot) = slot.bot.as_mut() else {
            return;
        };
        // grammers panics on some hostile input: that ends this bot's current life, not
        // the fleet's (nothing of the fleet is borrowed inside).
        if catch_unwind(AssertUnwindSafe(|| f(bot))).is_err() {
            self.bot_panicked(id, now);
            return;
        }
        self.drain(id, now);
    }

    /// Books what a bot put out since it was last drained.
    fn drain(&mut self, id: BotId, now: Now) {
        let now_unix = now.unix_secs.max(0) as u64;
        loop {
            let slot = self.slots.get_mut(&id).expect("a slot of this fleet");
            let Some(output) = slot.bot.as_mut().and_then(Bot::poll_output) else {
                break;
            };
            let ws = &slot.config.workspace_id;
            match output {
                BotOutput::Connect {
                    conn,
                    dc,
                    handshake,
                } => {
                    slot.conn = Some(conn);
                    slot.parked = Some((conn, dc));
                    let kind = if handshake {
                        Kind::Handshake
                    } else {
                        Kind::Resume
                    };
                    self.admission.request(id, kind);
                }
                BotOutput::Send { conn, bytes } => {
                    self.effects.push_back(Effect::Send {
                        conn: ConnId { bot: id, no: conn },
                        bytes,
                    });
                }
                BotOutput::Disconnect { conn } => {
                    if slot.parked.is_some_and(|(no, _)| no == conn) {
                        // It never got out: nothing to close.
                        slot.parked = None;
                        self.admission.cancel(&id);
                    } else {
                        self.effects.push_back(Effect::Disconnect {
                            conn: ConnId { bot: id, no: conn },
                        });
                    }
                    if slot.conn == Some(conn) {
                        slot.conn = None;
                    }
                }
                BotOutput::Commit(commit) => {
                    slot.in_flight = Some(commit.clone());
                    self.effects.push_back(Effect::Commit {
                        bot: id,
                        workspace_id: ws.clone(),
                        commit,
                    });
                }
                BotOutput::State { state, reason } => {
                    slot.running_since = (state == BotState::Running).then_some(now.instant);
                    if let Some(status) = self.health.fleet.get_mut(ws).filter(|_| !slot.retiring) {
                        status.set_state(state, reason.clone(), now_unix);
                        // Who the bot is, for the health surface, as soon as it is known.
                        let username = slot.bot.as_ref().map(|b| &b.record().session.username);
                        if let Some(Some(name)) = username {
                            status.username = Some(name.clone());
                        }
                    }
                    self.events.push_back(FleetEvent::State {
                        workspace_id: ws.clone(),
                        state,
                        reason,
                    });
                }
                BotOutput::Reconnecting => {
                    if let Some(status) = self.health.fleet.get_mut(ws) {
                        status.reconnects += 1;
                    }
                    self.events.push_back(FleetEvent::Reconnecting {
                        workspace_id: ws.clone(),
                    });
                }
                BotOutput::Warning(warning) => {
                    *self
                        .health
                        .fleet
                        .counters
                        .warnings
                        .entry(warning.kind())
                        .or_default() += 1;
                    self.events.push_back(FleetEvent::Warning {
                        workspace_id: ws.clone(),
                        warning,
                    });
                }
                // The fleet books commits from its own copy, which also covers a bot
                // that panicked while its commit was being written.
                BotOutput::Committed(_) | BotOutput::CommitFailed { .. } => {}
            }
        }
        self.release_permit_if_done(id);
        self.schedule(id);
        self.admit(now.instant);
    }

    /// A bot holds its admission permit while connecting and handshaking.
    fn release_permit_if_done(&mut self, id: BotId) {
        let slot = self.slot_mut(id);
        let connecting = slot
            .bot
            .as_ref()
            .is_some_and(|b| matches!(b.state(), BotState::Connecting | BotState::Handshaking));
        if (!connecting || slot.conn.is_none())
            && let Some(kind) = slot.permit.take()
        {
            self.admission.release(kind);
        }
    }

    fn schedule(&mut self, id: BotId) {
        let Some(slot) = self.slots.get(&id) else {
            self.timers.remove(id);
            return;
        };
        // A restart waits for the answer to the last commit, which pokes the slot: until
        // then its time is no deadline (one in the past would wake the runtime for ever).
        let deadline = [
            slot.bot.as_ref().and_then(Bot::poll_timeout),
            slot.restart_at.filter(|_| slot.in_flight.is_none()),
        ]
        .into_iter()
        .flatten()
        .min();
        self.timers.set(id, deadline);
    }

    /// Hands out free admission permits.
    fn admit(&mut self, now: Instant) {
        while let Some((id, kind)) = self.admission.admit(now) {
            let Some(slot) = self.slots.get_mut(&id) else {
                self.admission.release(kind);
                continue;
            };
            let Some((no, dc)) = slot.parked.take() else {
                self.admission.release(kind);
                continue;
            };
            slot.permit = Some(kind);
            self.effects.push_back(Effect::Connect {
                conn: ConnId { bot: id, no },
                dc,
            });
        }
    }

    fn bot_panicked(&mut self, id: BotId, now: Now) {
        let restart_base = self.settings.restart_base;
        let restart_cap = self.settings.restart_cap;
        let stopping = self.stopping;
        let slot = self.slots.get_mut(&id).expect("a slot of this fleet");
        slot.bot = None;
        if slot
            .running_since
            .is_some_and(|since| now.instant.saturating_duration_since(since) >= STABLE_AFTER)
        {
            slot.panics = 0;
        }
        // Deterministic from the slot, so that no randomness needs to reach here; the
        // jitter comes from the bot id.
        let mut jitter = crate::random::Seeded::new(id.0 ^ u64::from(slot.panics));
        let delay = backoff::full_jitter(restart_base, restart_cap, slot.panics, &mut jitter);
        slot.panics = slot.panics.saturating_add(1);
        slot.running_since = None;
        if let Some(no) = slot.conn.take() {
            self.effects.push_back(Effect::Disconnect {
                conn: ConnId { bot: id, no },
            });
        }
        if slot.parked.take().is_some() {
            self.admission.cancel(&id);
        }
        let retiring = slot.retiring || stopping;
        if !retiring {
            slot.restart_at = Some(now.instant + delay);
        }
        if let Some(kind) = slot.permit.take() {
            self.admission.release(kind);
        }
        let ws = slot.config.workspace_id.clone();
        self.health.fleet.counters.bot_restarts += 1;
        if let Some(status) = self.health.fleet.get_mut(&ws) {
            let reason = "internal error (a panic; the bot restarts from its last saved state)";
            status.set_state(
                BotState::Backoff,
                Some(reason.into()),
                now.unix_secs.max(0) as u64,
            );
        }
        self.events.push_back(FleetEvent::Panicked {
            workspace_id: ws,
            restart_in: delay,
        });
        self.schedule(id);
        self.reap(now);
    }

    /// Forgets retiring bots that have finished, and starts their successors.
    fn reap(&mut self, now: Now) {
        let finished: Vec<BotId> = self
            .slots
            .iter()
            .filter(|(_, s)| {
                (s.retiring || self.stopping)
                    && s.in_flight.is_none()
                    && s.bot.as_ref().is_none_or(Bot::is_finished)
            })
            .map(|(id, _)| *id)
            .collect();
        for id in finished {
            let slot = self.slots.remove(&id).expect("listed above");
            self.timers.remove(id);
            if let Some(kind) = slot.permit {
                self.admission.release(kind);
            }
            if slot.parked.is_some() {
                self.admission.cancel(&id);
            }
            let ws = &slot.config.workspace_id;
            if self.retiring.get(ws) == Some(&id) {
                self.retiring.remove(ws);
            }
            if !self.by_workspace.contains_key(ws) && !self.stopping {
                self.health.fleet.remove(ws);
            }
            if let Some(next) = slot.successor
                && self.slots.contains_key(&next)
            {
                self.slot_mut(next).committed = slot.committed;
                self.start(next, now);
            }
        }
    }
}
