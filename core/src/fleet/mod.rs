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
mod progress;
mod slots;
mod status;
pub mod timers;
mod voice;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use self::admission::{Admission, AdmissionLimits};
pub use self::progress::PROGRESS_EVERY;
use self::progress::Start;
use self::slots::Slot;
pub use self::status::{BotState, BotStatus, Counters, FleetStatus, Progress};
use self::timers::Timers;
pub use self::voice::VoiceStatus;
use crate::bot::{BotConfig, ConnNo, Warning};
use crate::health::Health;
use crate::random::Random;
use crate::record::{BotRecord, Commit, CommitId};
use crate::session::{Now, SessionConfig};
use crate::updates::IncomingMessage;
use crate::voice::{Failure, JobId, Pipeline, PipelineLimits, VoiceJob, VoiceKey, VoiceOutcome};

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
    /// Why the bot cannot run (a token that does not decrypt, say): it is shown as
    /// failed with this reason, and not started.
    pub refused: Option<String>,
}

impl WantedBot {
    pub fn new(config: BotConfig, record: Option<BotRecord>) -> WantedBot {
        WantedBot {
            config,
            record,
            refused: None,
        }
    }
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
    /// Store a voice message's audio under [`VoiceJob::object_key`], then call
    /// [`Fleet::handle_voice_stored`].
    StoreVoice {
        job: JobId,
        voice: VoiceJob,
        bytes: Vec<u8>,
    },
    /// Send this event, then call [`Fleet::handle_voice_published`].
    PublishVoice {
        job: JobId,
        event: serde_json::Value,
    },
    /// Record a voice message's outcome in the outbox, then call
    /// [`Fleet::handle_voice_finished`].
    FinishVoice {
        job: JobId,
        key: VoiceKey,
        outcome: VoiceOutcome,
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
    /// A voice message is done, failed, or failed for now and is retried.
    Voice {
        key: VoiceKey,
        outcome: VoiceOutcome,
    },
    /// How far the start has come: every [`PROGRESS_EVERY`] while bots start, and once
    /// more when every bot has had its first try, with the time the start took
    /// (`elapsed`); never after that.
    Progress {
        progress: Progress,
        elapsed: Option<Duration>,
    },
}

/// The fleet's bounds and pacing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FleetSettings {
    pub admission: AdmissionLimits,
    /// A bot whose code panicked restarts after full jitter over this, doubling with
    /// each panic in a row, up to `restart_cap`.
    pub restart_base: Duration,
    pub restart_cap: Duration,
    /// The voice pipeline's bounds.
    pub voice: PipelineLimits,
}

impl Default for FleetSettings {
    fn default() -> Self {
        FleetSettings {
            admission: AdmissionLimits::default(),
            restart_base: Duration::from_secs(1),
            restart_cap: Duration::from_secs(300),
            voice: PipelineLimits::default(),
        }
    }
}

/// How often the fleet wants to be woken when nothing else is due: readiness takes a
/// missed heartbeat for a stuck loop.
pub const HEARTBEAT: Duration = Duration::from_secs(1);

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
    /// Every slot retiring, which [`Fleet::reap`] looks at: a scan of all the slots on
    /// every timeout and commit cost ten thousand idle bots several percent of a core.
    retiring_slots: HashSet<BotId>,
    next_id: u64,
    admission: Admission<BotId>,
    timers: Timers<BotId>,
    health: Health,
    store_failing: bool,
    stopping: bool,
    effects: VecDeque<Effect>,
    events: VecDeque<FleetEvent>,
    pipeline: Pipeline,
    /// The bot each download in flight was handed to.
    voice_downloads: HashMap<JobId, BotId>,
    /// Downloads ended, for the pipeline's next pump.
    downloaded: Vec<(JobId, Result<Vec<u8>, Failure>)>,
    /// The pipeline may have something to do.
    voice_dirty: bool,
    /// The start's progress reports.
    startup: Start,
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
            retiring_slots: HashSet::new(),
            next_id: 0,
            timers: Timers::new(),
            health: Health::new(),
            store_failing: false,
            stopping: false,
            effects: VecDeque::new(),
            events: VecDeque::new(),
            pipeline: Pipeline::new(settings.voice),
            voice_downloads: HashMap::new(),
            downloaded: Vec::new(),
            voice_dirty: false,
            startup: Start::default(),
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
        for WantedBot {
            config,
            record,
            refused,
        } in wanted
        {
            let ws = config.workspace_id.clone();
            if !keep.insert(ws.clone()) {
                continue; // the first entry of a workspace wins
            }
            if let Some(reason) = refused {
                // Shown as failed, never started; a bot running under this workspace
                // stops.
                if let Some(old) = self.by_workspace.get(&ws).copied()
                    && self.slots[&old].refused.as_ref() == Some(&reason)
                {
                    continue;
                }
                let id = self.add_slot(config, record, now);
                self.slot_mut(id).refused = Some(reason.clone());
                if let Some(old) = self.by_workspace.insert(ws.clone(), id) {
                    self.retire(old, now);
                }
                if let Some(status) = self.health.fleet.get_mut(&ws) {
                    status.set_state(BotState::Failed, Some(reason), now.unix_secs.max(0) as u64);
                }
                continue;
            }
            match self.by_workspace.get(&ws).copied() {
                Some(id)
                    if *self.slots[&id].config == config && self.slots[&id].refused.is_none() => {}
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
            // Its rows went with the integration, or wait in the outbox while disabled.
            self.pipeline.forget(&ws);
            self.retire(id, now);
        }
        self.admit(now.instant);
        self.progress_wanted(now);
    }

    /// Stops every bot; [`Fleet::is_stopped`] tells when all they received is durable.
    pub fn stop(&mut self, now: Now) {
        self.stopping = true;
        self.health.set_stopping();
        self.progress_end();
        self.pipeline.stop();
        self.voice_dirty = true;
        let ids: Vec<BotId> = self.slots.keys().copied().collect();
        for id in ids {
            let slot = self.slot_mut(id);
            slot.restart_at = None;
            slot.successor = None;
            self.with_bot(id, now, |bot| bot.stop(now.instant));
        }
        self.reap(now);
    }

    /// Every bot is stopped, everything it received is durable, and the voice messages
    /// under way are recorded.
    pub fn is_stopped(&self) -> bool {
        self.stopping && self.slots.is_empty() && self.pipeline.is_empty()
    }

    pub fn handle_connected(&mut self, conn: ConnId, now: Now, random: &mut impl Random) {
        self.with_bot(conn.bot, now, |bot| {
            bot.handle_connected(conn.no, now, random)
        });
        self.pump_voice(now, random);
    }

    pub fn handle_input(&mut self, conn: ConnId, data: &[u8], now: Now, random: &mut impl Random) {
        self.with_bot(conn.bot, now, |bot| {
            bot.handle_input(conn.no, data, now, random)
        });
        self.pump_voice(now, random);
    }

    pub fn handle_disconnected(&mut self, conn: ConnId, now: Now, random: &mut impl Random) {
        if let Some(slot) = self.slots.get_mut(&conn.bot) {
            if slot.conn == Some(conn.no) {
                slot.conn = None;
            }
            slot.media.retain(|no| *no != conn.no);
        }
        self.with_bot(conn.bot, now, |bot| {
            bot.handle_disconnected(conn.no, now, random)
        });
        self.pump_voice(now, random);
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
                self.voice_committed(&ws, &commit, now);
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
        self.pump_voice(now, random);
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
        self.progress_timeout(now);
        self.pipeline.handle_timeout(now.instant);
        self.voice_dirty = true;
        self.pump_voice(now, random);
    }

    pub fn poll_effect(&mut self) -> Option<Effect> {
        self.effects.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<FleetEvent> {
        self.events.pop_front()
    }

    /// When [`Fleet::handle_timeout`] is due: the earliest bot deadline, admission's next
    /// token, a voice message's retry, the start's next progress report, or the
    /// heartbeat.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        let heartbeat = self.health.last_heartbeat().map(|at| at + HEARTBEAT);
        [
            self.timers.next_deadline(),
            self.admission.poll_timeout(),
            self.pipeline.poll_timeout(),
            self.progress_deadline(),
            heartbeat,
        ]
        .into_iter()
        .flatten()
        .min()
    }
}
