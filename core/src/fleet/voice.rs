//! The fleet's side of the voice pipeline: jobs come from the commits that record them
//! and from the outbox's pending rows; downloads go to the workspace's current bot; the
//! store, the event and the outbox record go out as effects, and their answers come
//! back through `handle_voice_*`.
//!
//! The pipeline is pumped only when something it depends on changed (a job, an answer,
//! a backoff over, a bot now running): a fleet of thousands of bots must not scan the
//! waiting jobs on every packet.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::slots::Slot;
use super::{BotId, BotState, Effect, Fleet, FleetEvent};
use crate::random::Random;
use crate::record::Commit;
use crate::session::Now;
use crate::voice::{Failure, JobId, ObjectLocation, VoiceEffect, VoiceJob};

/// What the health surface shows of the voice pipeline.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct VoiceStatus {
    pub stats: crate::voice::PipelineStats,
    /// Jobs in memory, under way or waiting.
    pub in_memory: usize,
    /// The outbox's pending rows, as last counted (none yet: not counted).
    pub outbox_pending: Option<u64>,
    /// When the oldest pending row was received, on the process's clock.
    pub outbox_oldest: Option<Instant>,
}

impl Fleet {
    /// Pending rows of the outbox, read at `read_at`: what a crash, an `outbox retry`,
    /// or a full pipeline left there. Jobs of a workspace whose bot does not run stay
    /// there until it does.
    pub fn handle_voice_pending(
        &mut self,
        jobs: Vec<VoiceJob>,
        read_at: Instant,
        now: Now,
        random: &mut impl Random,
    ) {
        let jobs = jobs
            .into_iter()
            .filter(|j| runs(&self.by_workspace, &self.slots, &j.key.workspace_id))
            .collect();
        if self.pipeline.add_pending(jobs, read_at, now.instant) > 0 {
            self.voice_dirty = true;
        }
        self.pump_voice(now, random);
    }

    /// How many of the outbox's oldest pending rows a read should fetch: the jobs the
    /// pipeline holds (their rows are pending too, and among the oldest: they are
    /// skipped) plus its room for more; none when it is full. A read of the room alone
    /// would return mostly rows already held, and a backlog beyond memory would drain
    /// at a trickle.
    pub fn voice_outbox_read(&self) -> usize {
        let held = self.pipeline.len();
        match self.settings.voice.in_memory.saturating_sub(held) {
            0 => 0,
            room => held + room,
        }
    }

    /// The answer to [`Effect::StoreVoice`].
    pub fn handle_voice_stored(
        &mut self,
        job: JobId,
        result: Result<ObjectLocation, Failure>,
        now: Now,
        random: &mut impl Random,
    ) {
        self.pipeline.stored(job, result, now.instant, random);
        self.voice_dirty = true;
        self.pump_voice(now, random);
    }

    /// The answer to [`Effect::PublishVoice`].
    pub fn handle_voice_published(
        &mut self,
        job: JobId,
        result: Result<(), Failure>,
        now: Now,
        random: &mut impl Random,
    ) {
        self.pipeline.published(job, result, now.instant, random);
        self.voice_dirty = true;
        self.pump_voice(now, random);
    }

    /// The answer to [`Effect::FinishVoice`].
    pub fn handle_voice_finished(
        &mut self,
        job: JobId,
        result: Result<(), String>,
        now: Now,
        random: &mut impl Random,
    ) {
        self.pipeline.finished(job, result, now.instant, random);
        self.voice_dirty = true;
        self.pump_voice(now, random);
    }

    /// A commit is durable: its voice messages, in the outbox now, start on their way.
    pub(super) fn voice_committed(&mut self, ws: &str, commit: &Commit, now: Now) {
        let received_at_ms = now.unix_secs.saturating_mul(1000);
        let mut added = false;
        for message in &commit.messages {
            if let Some(job) = VoiceJob::from_message(ws, message, received_at_ms) {
                // No room: it waits in the outbox, read again when there is.
                added |= self.pipeline.add(job, Some(now.instant));
            }
        }
        self.voice_dirty |= added;
    }

    /// A bot finished (or gave up) a download.
    pub(super) fn voice_downloaded(&mut self, job: JobId, result: Result<Vec<u8>, Failure>) {
        self.voice_downloads.remove(&job);
        self.downloaded.push((job, result));
        self.voice_dirty = true;
    }

    /// A bot is gone without a word (it panicked, or its slot is reaped): its downloads
    /// end, to be retried.
    pub(super) fn voice_bot_gone(&mut self, bot: BotId) {
        let jobs: Vec<JobId> = self
            .voice_downloads
            .iter()
            .filter(|(_, b)| **b == bot)
            .map(|(job, _)| *job)
            .collect();
        for job in jobs {
            self.voice_downloaded(job, Err(Failure::transient("the bot restarted")));
        }
    }

    /// A bot's state changed: a running bot can download; one that failed leaves its
    /// waiting jobs to the outbox.
    pub(super) fn voice_bot_state(&mut self, ws: &str, state: BotState) {
        match state {
            BotState::Running => self.voice_dirty = true,
            BotState::Failed => {
                self.pipeline.release_waiting(ws);
                self.voice_dirty = true;
            }
            _ => {}
        }
    }

    /// Feeds the pipeline what came back from bots, then turns its effects into the
    /// fleet's, if anything changed since the last pump.
    pub(super) fn pump_voice(&mut self, now: Now, random: &mut impl Random) {
        if !self.voice_dirty {
            return;
        }
        self.voice_dirty = false;
        for (job, result) in std::mem::take(&mut self.downloaded) {
            self.pipeline.downloaded(job, result, now.instant, random);
        }
        loop {
            let effect = {
                let (by_workspace, slots, health) = (&self.by_workspace, &self.slots, &self.health);
                self.pipeline.poll(
                    |ws| runs(by_workspace, slots, ws),
                    |ws| health.fleet.get(ws).and_then(|s| s.username.clone()),
                )
            };
            let Some(effect) = effect else { break };
            match effect {
                VoiceEffect::Download { id, job } => {
                    let bot = self.by_workspace[&job.key.workspace_id];
                    self.voice_downloads.insert(id, bot);
                    self.with_bot(bot, now, |b| b.download(id, &job, random));
                }
                VoiceEffect::Store { id, job, bytes } => {
                    self.effects.push_back(Effect::StoreVoice {
                        job: id,
                        voice: job,
                        bytes,
                    });
                }
                VoiceEffect::Publish { id, event } => {
                    self.effects
                        .push_back(Effect::PublishVoice { job: id, event });
                }
                VoiceEffect::Finish { id, key, outcome } => {
                    self.events.push_back(FleetEvent::Voice {
                        key: key.clone(),
                        outcome: outcome.clone(),
                    });
                    self.effects.push_back(Effect::FinishVoice {
                        job: id,
                        key,
                        outcome,
                    });
                }
            }
            // A download may end at once (its bot stopped meanwhile): take it in.
            for (job, result) in std::mem::take(&mut self.downloaded) {
                self.pipeline.downloaded(job, result, now.instant, random);
            }
        }
        self.health.voice.stats = self.pipeline.stats().clone();
        self.health.voice.in_memory = self.pipeline.len();
    }

    /// The outbox's backlog as the store counted it: `pending` rows, the oldest received
    /// at `oldest_ms` (Unix milliseconds).
    pub fn set_voice_backlog(&mut self, pending: u64, oldest_ms: Option<i64>, now: Now) {
        let oldest = oldest_ms.map(|ms| {
            let age_ms = now.unix_secs.saturating_mul(1000).saturating_sub(ms).max(0);
            now.instant
                .checked_sub(Duration::from_millis(age_ms as u64))
                .unwrap_or(now.instant)
        });
        self.health.voice.outbox_pending = Some(pending);
        self.health.voice.outbox_oldest = oldest;
    }
}

/// Whether the workspace's current bot runs (a download needs its connection).
fn runs(by_workspace: &HashMap<String, BotId>, slots: &HashMap<BotId, Slot>, ws: &str) -> bool {
    by_workspace
        .get(ws)
        .and_then(|id| slots.get(id))
        .and_then(|s| s.bot.as_ref())
        .is_some_and(|b| b.state() == BotState::Running)
}
