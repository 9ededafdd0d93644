//! The fleet's books about each bot (a [`Slot`]) and the machinery behind [`Fleet`]'s
//! commands and inputs: starting, restarting and retiring bots, calling into them with
//! panics caught, booking what they put out, admission and deadlines.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::Instant;

use super::admission::Kind;
use super::{BotId, BotState, BotStatus, ConnId, Effect, Fleet, FleetEvent};
use crate::backoff;
use crate::bot::{Bot, BotConfig, BotOutput, ConnNo, STABLE_AFTER};
use crate::record::{BotRecord, Commit};
use crate::session::Now;

/// One bot of the fleet and the fleet's books about it.
#[derive(Debug)]
pub(super) struct Slot {
    pub(super) config: Arc<BotConfig>,
    /// `None` while a bot that panicked waits to restart, or before a replaced bot's
    /// predecessor has finished.
    pub(super) bot: Option<Bot>,
    /// The record as the store has it.
    pub(super) committed: BotRecord,
    /// The commit the store is writing, as handed out.
    pub(super) in_flight: Option<Commit>,
    /// The home connection the bot asked for and has not left.
    pub(super) conn: Option<ConnNo>,
    /// Its media connections (downloads from other DCs) it has not left.
    pub(super) media: Vec<ConnNo>,
    /// A connection asked for and waiting for admission.
    pub(super) parked: Option<(ConnNo, i32)>,
    /// The admission permit the bot holds while connecting and handshaking.
    pub(super) permit: Option<Kind>,
    pub(super) restart_at: Option<Instant>,
    pub(super) panics: u32,
    pub(super) running_since: Option<Instant>,
    /// No longer wanted: stop, and forget once everything is durable.
    pub(super) retiring: bool,
    /// A replacement waiting for this slot to finish.
    pub(super) successor: Option<BotId>,
    /// Why this bot cannot run: it is never started.
    pub(super) refused: Option<String>,
}

impl Fleet {
    pub(super) fn slot_mut(&mut self, id: BotId) -> &mut Slot {
        self.slots.get_mut(&id).expect("a slot of this fleet")
    }

    pub(super) fn add_slot(
        &mut self,
        config: BotConfig,
        record: Option<BotRecord>,
        now: Now,
    ) -> BotId {
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
                media: Vec::new(),
                parked: None,
                permit: None,
                restart_at: None,
                panics: 0,
                running_since: None,
                retiring: false,
                successor: None,
                refused: None,
            },
        );
        id
    }

    /// Creates the slot's bot from its committed record and starts it.
    pub(super) fn start(&mut self, id: BotId, now: Now) {
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
    pub(super) fn poke(&mut self, id: BotId, now: Now) {
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

    pub(super) fn retire(&mut self, id: BotId, now: Now) {
        let slot = self.slot_mut(id);
        slot.retiring = true;
        slot.restart_at = None;
        let ws = slot.config.workspace_id.clone();
        self.retiring.insert(ws, id);
        self.retiring_slots.insert(id);
        self.with_bot(id, now, |bot| bot.stop(now.instant));
        self.reap(now);
    }

    /// Calls into a slot's bot, turning a panic into a restart, then books its outputs.
    pub(super) fn with_bot(&mut self, id: BotId, now: Now, f: impl FnOnce(&mut Bot)) {
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
    pub(super) fn drain(&mut self, id: BotId, now: Now) {
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
                    media: true,
                    ..
                } => {
                    // Not through admission: the voice pipeline bounds the downloads
                    // that open them, and the bot their number (see `bot::media`).
                    slot.media.push(conn);
                    self.effects.push_back(Effect::Connect {
                        conn: ConnId { bot: id, no: conn },
                        dc,
                    });
                }
                BotOutput::Connect {
                    conn,
                    dc,
                    handshake,
                    media: false,
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
                    slot.media.retain(|no| *no != conn);
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
                    let current = !slot.retiring;
                    let ws = ws.clone();
                    self.events.push_back(FleetEvent::State {
                        workspace_id: ws.clone(),
                        state,
                        reason,
                    });
                    if current {
                        self.voice_bot_state(&ws, state);
                        if state.has_been_tried() {
                            self.progress_tried(&ws, now);
                        }
                    }
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
                BotOutput::Downloaded { id: job, result } => self.voice_downloaded(job, result),
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
    pub(super) fn release_permit_if_done(&mut self, id: BotId) {
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

    pub(super) fn schedule(&mut self, id: BotId) {
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
    pub(super) fn admit(&mut self, now: Instant) {
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

    pub(super) fn bot_panicked(&mut self, id: BotId, now: Now) {
        let restart_base = self.settings.restart_base;
        let restart_cap = self.settings.restart_cap;
        let stopping = self.stopping;
        self.voice_bot_gone(id);
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
        for no in slot.conn.take().into_iter().chain(slot.media.drain(..)) {
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
        if !retiring {
            self.progress_tried(&ws, now);
        }
        self.events.push_back(FleetEvent::Panicked {
            workspace_id: ws,
            restart_in: delay,
        });
        self.schedule(id);
        self.reap(now);
    }

    /// Forgets retiring bots that have finished, and starts their successors.
    pub(super) fn reap(&mut self, now: Now) {
        // Only retiring bots can be done, unless everything stops.
        let candidates: Vec<BotId> = match self.stopping {
            true => self.slots.keys().copied().collect(),
            false => self.retiring_slots.iter().copied().collect(),
        };
        let finished: Vec<BotId> = candidates
            .into_iter()
            .filter(|id| {
                self.slots.get(id).is_some_and(|s| {
                    (s.retiring || self.stopping)
                        && s.in_flight.is_none()
                        && s.bot.as_ref().is_none_or(Bot::is_finished)
                })
            })
            .collect();
        for id in finished {
            self.retiring_slots.remove(&id);
            let slot = self.slots.remove(&id).expect("listed above");
            self.timers.remove(id);
            self.voice_bot_gone(id);
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
