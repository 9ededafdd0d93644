//! The core's fleet driven in memory against the fake DC, with a fake clock and an
//! in-memory store (records, delivered messages, the voice outbox) and voice sinks
//! (objects, events) whose failures a test scripts: what `core_fleet` and `core_voice`
//! drive.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use serde_json::Value;

use telegram_bots_core::bot::BotConfig;
use telegram_bots_core::fleet::admission::AdmissionLimits;
use telegram_bots_core::fleet::{
    BotId, BotState, ConnId, Effect, Fleet, FleetEvent, FleetSettings, WantedBot,
};
use telegram_bots_core::random::Seeded;
use telegram_bots_core::record::{BotRecord, Commit, SessionRecord};
use telegram_bots_core::secret::Secret;
use telegram_bots_core::session::Now;
use telegram_bots_core::updates::{MediaKinds, UpdateState};
use telegram_bots_core::voice::{Failure, JobId, ObjectLocation, VoiceJob, VoiceKey, VoiceOutcome};

use crate::fake_dc::FakeTelegram;
use crate::memory_net::{MemoryNet, real_now};

/// The bucket the sim's objects are stored in.
pub const BUCKET: &str = "voice";

/// A row of the sim's outbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboxRow {
    pub job: VoiceJob,
    pub outcome: Option<VoiceOutcome>,
    /// Retries recorded.
    pub retries: u32,
}

impl OutboxRow {
    pub fn is_pending(&self) -> bool {
        matches!(self.outcome, None | Some(VoiceOutcome::Retry { .. }))
    }
}

/// A fleet wired to the fake DC and to a store, in memory.
pub struct Sim {
    pub telegram: FakeTelegram,
    pub fleet: Fleet,
    pub net: MemoryNet<ConnId>,
    pub now: Now,
    pub random: Seeded,
    /// What the store holds, by workspace.
    pub durable: BTreeMap<String, BotRecord>,
    /// Messages of written commits, by workspace.
    pub delivered: BTreeMap<String, Vec<i32>>,
    /// Commits handed over and not answered yet.
    pub handed: Vec<(BotId, String, Commit)>,
    /// Refuse writes with this error.
    pub store_error: Option<String>,
    pub events: Vec<FleetEvent>,
    /// When each connection was asked for.
    pub connects: Vec<(Instant, ConnId)>,
    /// The most connects, and handshakes, seen in flight at once.
    pub peak_in_flight: usize,
    pub peak_handshakes: usize,
    /// The voice outbox, written with the commits that record its messages.
    pub outbox: BTreeMap<VoiceKey, OutboxRow>,
    /// Stored objects by key, and how many times each was written.
    pub objects: BTreeMap<String, (Vec<u8>, u32)>,
    /// Events accepted, in order, and how many times each id was sent.
    pub published: Vec<Value>,
    pub sends_by_id: BTreeMap<String, u32>,
    /// Voice effects handed over and not answered yet.
    pub voice_handed: Vec<Effect>,
    /// Leave voice effects unanswered (a crash test's moment).
    pub hold_voice: bool,
    /// Scripted answers: the next stores, sends and outbox writes fail like this.
    pub store_failures: VecDeque<Failure>,
    pub publish_failures: VecDeque<Failure>,
    pub outbox_failures: VecDeque<String>,
    /// Which media the bots hand on as voice messages.
    pub media: MediaKinds,
    /// The DC of every connection asked for.
    pub conn_dcs: BTreeMap<ConnId, i32>,
    /// DCs that refuse new connections (down).
    pub refused_dcs: BTreeSet<i32>,
    /// DCs whose answers are lost (a DC that stopped answering on open connections).
    pub muted_dcs: BTreeSet<i32>,
}

impl std::fmt::Debug for Sim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sim")
            .field("fleet", &self.fleet)
            .field("outbox", &self.outbox.len())
            .finish_non_exhaustive()
    }
}

pub fn settings(max_in_flight: usize, per_second: u32, burst: u32) -> FleetSettings {
    FleetSettings {
        admission: AdmissionLimits {
            max_in_flight,
            max_handshakes: max_in_flight,
            per_second,
            burst,
        },
        ..FleetSettings::default()
    }
}

pub fn token(i: usize) -> String {
    format!("{}:AAfleet-{i}", 7_100_000 + i)
}

pub fn config(ws: &str, token: &str) -> BotConfig {
    BotConfig {
        workspace_id: ws.into(),
        token: Secret::new(token.into()),
        api_id: crate::fake_dc::TEST_API_ID,
        api_hash: Secret::new(crate::fake_dc::TEST_API_HASH.into()),
        default_dc: 1,
        media: Default::default(),
    }
}

impl Sim {
    /// A fake DC with bots 0..n and a fleet with these settings (nothing wanted yet).
    pub fn new(n: usize, settings: FleetSettings) -> Sim {
        Sim::with_dcs(n, 1, settings)
    }

    /// The same with `dcs` DCs (ids 1..=dcs; the bots' home is DC 1).
    pub fn with_dcs(n: usize, dcs: usize, settings: FleetSettings) -> Sim {
        let telegram = FakeTelegram::start(dcs).unwrap();
        for i in 0..n {
            telegram.add_bot(&token(i), &format!("bot{i}")).unwrap();
        }
        let fleet = Fleet::new(settings, crate::fake_dc::session_config());
        let mut sim = Sim {
            telegram,
            fleet,
            net: MemoryNet::new(),
            now: real_now(),
            random: Seeded::new(7),
            durable: BTreeMap::new(),
            delivered: BTreeMap::new(),
            handed: Vec::new(),
            store_error: None,
            events: Vec::new(),
            connects: Vec::new(),
            peak_in_flight: 0,
            peak_handshakes: 0,
            outbox: BTreeMap::new(),
            objects: BTreeMap::new(),
            published: Vec::new(),
            sends_by_id: BTreeMap::new(),
            voice_handed: Vec::new(),
            hold_voice: false,
            store_failures: VecDeque::new(),
            publish_failures: VecDeque::new(),
            outbox_failures: VecDeque::new(),
            media: MediaKinds::default(),
            conn_dcs: BTreeMap::new(),
            refused_dcs: BTreeSet::new(),
            muted_dcs: BTreeSet::new(),
        };
        sim.fleet.health_mut().set_serving();
        sim
    }

    /// Bots `range`, each with what the store has for it.
    pub fn wanted(&self, range: std::ops::Range<usize>) -> Vec<WantedBot> {
        range
            .map(|i| {
                let ws = format!("ws_{i}");
                WantedBot {
                    record: self.durable.get(&ws).cloned(),
                    config: BotConfig {
                        media: self.media,
                        ..config(&ws, &token(i))
                    },
                    refused: None,
                }
            })
            .collect()
    }

    /// Gives bot `i` a stored session the fake DC knows (as after an earlier run).
    pub fn stored_session(&mut self, i: usize) {
        let key: [u8; 256] = std::array::from_fn(|b| (b as u8) ^ (i as u8) ^ 0x5a);
        let key = {
            let mut k = key;
            k[..8].copy_from_slice(&(i as u64 + 1).to_le_bytes());
            k
        };
        self.telegram
            .add_auth_key(1, key, Some(&format!("bot{i}")))
            .unwrap();
        let mut session = SessionRecord {
            home_dc: Some(1),
            authorized: true,
            user_id: Some(7_100_000 + i as i64),
            username: Some(format!("bot{i}")),
            ..SessionRecord::default()
        };
        session.auth_keys.insert(1, Secret::new(key));
        self.durable.insert(
            format!("ws_{i}"),
            BotRecord {
                session,
                updates: Some(UpdateState {
                    pts: 1,
                    ..UpdateState::default()
                }),
                channels: Vec::new(),
            },
        );
    }

    pub fn set_wanted(&mut self, wanted: Vec<WantedBot>) {
        self.fleet.set_wanted(wanted, self.now);
        self.run();
    }

    /// Carries out effects, writes and answers commits, and delivers the DC's pushes
    /// until all are quiet.
    pub fn run(&mut self) {
        for _ in 0..1_000_000 {
            let (in_flight, handshakes, _) = self.fleet.admission_load();
            self.peak_in_flight = self.peak_in_flight.max(in_flight);
            self.peak_handshakes = self.peak_handshakes.max(handshakes);
            while let Some(event) = self.fleet.poll_event() {
                self.events.push(event);
            }
            if let Some(effect) = self.fleet.poll_effect() {
                self.carry_out(effect);
                continue;
            }
            if !self.handed.is_empty() {
                for (bot, ws, commit) in std::mem::take(&mut self.handed) {
                    let result = match &self.store_error {
                        Some(e) => Err(e.clone()),
                        None => {
                            self.durable.entry(ws.clone()).or_default().apply(&commit);
                            for m in &commit.messages {
                                if let Some(job) = VoiceJob::from_message(&ws, m, 0) {
                                    self.outbox.entry(job.key.clone()).or_insert(OutboxRow {
                                        job,
                                        outcome: None,
                                        retries: 0,
                                    });
                                }
                            }
                            let ids = commit.messages.iter().map(|m| m.message_id);
                            self.delivered.entry(ws).or_default().extend(ids);
                            Ok(())
                        }
                    };
                    self.fleet
                        .handle_committed(bot, commit.id, result, self.now, &mut self.random);
                }
                continue;
            }
            if !self.hold_voice && !self.voice_handed.is_empty() {
                for effect in std::mem::take(&mut self.voice_handed) {
                    self.answer_voice(effect);
                }
                continue;
            }
            let Some((conn, answer)) = self.net.poll_push(&self.telegram) else {
                return;
            };
            if self.is_muted(&conn) {
                continue;
            }
            for frame in answer.frames {
                self.fleet
                    .handle_input(conn, &frame, self.now, &mut self.random);
            }
            if answer.closed {
                self.fleet
                    .handle_disconnected(conn, self.now, &mut self.random);
            }
        }
        panic!("no quiet point");
    }

    pub fn carry_out(&mut self, effect: Effect) {
        match effect {
            Effect::Connect { conn, dc } => {
                self.connects.push((self.now.instant, conn));
                self.conn_dcs.insert(conn, dc);
                if self.refused_dcs.contains(&dc) {
                    return self
                        .fleet
                        .handle_disconnected(conn, self.now, &mut self.random);
                }
                self.net.connect(&self.telegram, conn, dc);
                self.fleet
                    .handle_connected(conn, self.now, &mut self.random);
            }
            Effect::Send { conn, bytes } => match self.net.send(&self.telegram, &conn, &bytes) {
                None => self
                    .fleet
                    .handle_disconnected(conn, self.now, &mut self.random),
                Some(_) if self.is_muted(&conn) => {}
                Some(answer) => {
                    for frame in answer.frames {
                        self.fleet
                            .handle_input(conn, &frame, self.now, &mut self.random);
                    }
                    if answer.closed {
                        self.fleet
                            .handle_disconnected(conn, self.now, &mut self.random);
                    }
                }
            },
            Effect::Disconnect { conn } => self.net.disconnect(&self.telegram, &conn),
            Effect::Commit {
                bot,
                workspace_id,
                commit,
            } => self.handed.push((bot, workspace_id, commit)),
            voice => self.voice_handed.push(voice),
        }
    }

    fn is_muted(&self, conn: &ConnId) -> bool {
        self.conn_dcs
            .get(conn)
            .is_some_and(|dc| self.muted_dcs.contains(dc))
    }

    /// The open connections to `dc`.
    pub fn open_on(&self, dc: i32) -> Vec<ConnId> {
        self.conn_dcs
            .iter()
            .filter(|(conn, d)| **d == dc && self.net.is_open(conn))
            .map(|(conn, _)| *conn)
            .collect()
    }

    /// How many connections to `dc` were asked for so far.
    pub fn connects_to(&self, dc: i32) -> usize {
        self.connects
            .iter()
            .filter(|(_, conn)| self.conn_dcs.get(conn) == Some(&dc))
            .count()
    }

    /// `dc` closes every connection to it (a restart of the DC, a network cut).
    pub fn drop_dc(&mut self, dc: i32) {
        for conn in self.open_on(dc) {
            self.net.disconnect(&self.telegram, &conn);
            self.fleet
                .handle_disconnected(conn, self.now, &mut self.random);
        }
        self.run();
    }

    /// Answers a voice effect as S3, Inngest and the outbox would (or as scripted).
    fn answer_voice(&mut self, effect: Effect) {
        let (now, random) = (self.now, &mut self.random);
        match effect {
            Effect::StoreVoice { job, voice, bytes } => {
                let result = match self.store_failures.pop_front() {
                    Some(failure) => Err(failure),
                    None => {
                        let key = voice.object_key();
                        let object = self.objects.entry(key.clone()).or_default();
                        let location = ObjectLocation::of(BUCKET.into(), key, &bytes);
                        *object = (bytes, object.1 + 1);
                        Ok(location)
                    }
                };
                self.fleet.handle_voice_stored(job, result, now, random);
            }
            Effect::PublishVoice { job, event } => {
                let key = event["data"]["s3"]["key"].as_str().unwrap_or_default();
                assert!(
                    self.objects.contains_key(key),
                    "an event is sent only for a stored object: {event}"
                );
                let result = match self.publish_failures.pop_front() {
                    Some(failure) => Err(failure),
                    None => {
                        let id = event["id"].as_str().unwrap_or_default().to_owned();
                        *self.sends_by_id.entry(id).or_default() += 1;
                        self.published.push(event);
                        Ok(())
                    }
                };
                self.fleet.handle_voice_published(job, result, now, random);
            }
            Effect::FinishVoice { job, key, outcome } => {
                let result = match self.outbox_failures.pop_front() {
                    Some(error) => Err(error),
                    None => {
                        if let Some(row) = self.outbox.get_mut(&key) {
                            match &outcome {
                                VoiceOutcome::Retry { .. } if !row.is_pending() => {}
                                VoiceOutcome::Retry { .. } => {
                                    row.retries += 1;
                                    row.outcome = Some(outcome.clone());
                                }
                                _ => row.outcome = Some(outcome.clone()),
                            }
                        }
                        Ok(())
                    }
                };
                self.fleet.handle_voice_finished(job, result, now, random);
            }
            other => unreachable!("not a voice effect: {other:?}"),
        }
    }

    /// Answers the voice effects held so far (what they lead to is held in turn).
    pub fn answer_held(&mut self) {
        for effect in std::mem::take(&mut self.voice_handed) {
            self.answer_voice(effect);
        }
        self.run();
    }

    /// Answers the held voice effects of `job` and what they lead to, until it holds
    /// none; the other jobs' effects stay held.
    pub fn answer_held_job(&mut self, job: JobId) {
        loop {
            let (mine, rest): (Vec<Effect>, Vec<Effect>) = std::mem::take(&mut self.voice_handed)
                .into_iter()
                .partition(|e| voice_job(e) == Some(job));
            self.voice_handed = rest;
            if mine.is_empty() {
                return;
            }
            for effect in mine {
                self.answer_voice(effect);
            }
            self.run();
        }
    }

    /// The outbox's pending rows, as the store watcher reads them, handed to the fleet.
    pub fn read_outbox(&mut self) {
        let limit = self.fleet.voice_outbox_read();
        let jobs: Vec<VoiceJob> = self
            .outbox
            .values()
            .filter(|r| r.is_pending())
            .take(limit)
            .map(|r| r.job.clone())
            .collect();
        let read_at = self.now.instant;
        self.fleet
            .handle_voice_pending(jobs, read_at, self.now, &mut self.random);
        self.run();
    }

    /// The process dies: the fleet and every connection are gone, what was handed over
    /// and not answered is lost; the store, the objects, the events and Telegram stay.
    /// A new fleet with `settings` takes over (nothing wanted yet).
    pub fn crash(&mut self, settings: FleetSettings) {
        self.net.close_all(&self.telegram);
        self.handed.clear();
        self.voice_handed.clear();
        self.hold_voice = false;
        self.fleet = Fleet::new(settings, crate::fake_dc::session_config());
        self.fleet.health_mut().set_serving();
    }

    /// Moves the clock to the fleet's next deadline and runs; afterwards no deadline is
    /// left at or before now.
    pub fn advance(&mut self) -> Duration {
        let at = self.fleet.poll_timeout().expect("a deadline");
        let waited = at.saturating_duration_since(self.now.instant);
        self.now.instant = at.max(self.now.instant);
        self.now.unix_secs += waited.as_secs() as i64;
        self.fleet.handle_timeout(self.now, &mut self.random);
        self.run();
        if let Some(next) = self.fleet.poll_timeout() {
            assert!(next > self.now.instant, "a deadline in the past");
        }
        waited
    }

    /// Advances until `done`, for at most `limit` of fake time.
    pub fn advance_until(&mut self, limit: Duration, mut done: impl FnMut(&Sim) -> bool) {
        let end = self.now.instant + limit;
        while !done(self) {
            assert!(
                self.now.instant < end,
                "not within {limit:?}: {:?}",
                self.states()
            );
            self.advance();
        }
    }

    pub fn state(&self, ws: &str) -> BotState {
        self.fleet
            .health()
            .fleet
            .bots()
            .find(|b| b.workspace_id == ws)
            .unwrap_or_else(|| panic!("no {ws}"))
            .state
    }

    pub fn states(&self) -> Vec<(String, BotState)> {
        self.fleet
            .health()
            .fleet
            .bots()
            .map(|b| (b.workspace_id.clone(), b.state))
            .collect()
    }

    pub fn running(&self) -> usize {
        self.fleet.health().fleet.count(BotState::Running)
    }

    pub fn ready(&self) -> Result<(), String> {
        match self.fleet.health().not_ready_reason(self.now.instant) {
            None => Ok(()),
            Some(reason) => Err(reason),
        }
    }
}

/// The job a voice effect is for.
pub fn voice_job(effect: &Effect) -> Option<JobId> {
    match effect {
        Effect::StoreVoice { job, .. }
        | Effect::PublishVoice { job, .. }
        | Effect::FinishVoice { job, .. } => Some(*job),
        _ => None,
    }
}
