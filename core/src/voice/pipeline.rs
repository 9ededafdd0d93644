//! The voice pipeline: every voice message in the outbox goes through
//! `download -> store -> publish -> done`, each step an effect whose completion comes
//! back as an input, within bounds on how many are in flight, with retries after a
//! backoff for what may succeed later and a failed row for what cannot.
//!
//! Jobs come from the commits that record them (the outbox row is written in the same
//! transaction as the update state) and from the outbox's pending rows (after a crash,
//! an `outbox retry`, or when this pipeline had no room for them). The row stays pending
//! until the event is accepted and the row marked done: a crash at any step repeats the
//! steps, and the object key and the event id (`VoiceJob::object_key`, `event_id`) make
//! the repetition harmless.
//!
//! Memory is bounded: at most `in_memory` jobs are known at once (the rest wait in the
//! outbox), and a file's bytes exist only between its download and its store.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::stats::PipelineStats;
use super::{Failure, ObjectLocation, VoiceJob, VoiceKey, VoiceOutcome};
use crate::backoff;
use crate::random::Random;

/// A job of the pipeline.
pub type JobId = u64;

/// Retries of a transient failure: full jitter over 1 s doubling to 5 min.
const RETRY_BASE: Duration = Duration::from_secs(1);
const RETRY_CAP: Duration = Duration::from_secs(300);
/// The longest wait a server's `Retry-After` (or Telegram's FLOOD_WAIT) is granted: a
/// broken or hostile answer must not park a message for days.
const RETRY_AFTER_CAP: Duration = Duration::from_secs(3600);

/// How many of each step may be in flight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PipelineLimits {
    /// Downloads per bot at once (they share the bot's connection with its updates).
    pub downloads_per_bot: usize,
    pub downloads: usize,
    pub stores: usize,
    pub publishes: usize,
    /// Jobs known at once; more wait in the outbox.
    pub in_memory: usize,
}

impl Default for PipelineLimits {
    fn default() -> Self {
        PipelineLimits {
            downloads_per_bot: 2,
            downloads: 32,
            stores: 8,
            publishes: 8,
            in_memory: 1000,
        }
    }
}

/// What the pipeline asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum VoiceEffect {
    /// The workspace's bot downloads the file (the fleet hands it to the bot).
    Download { id: JobId, job: VoiceJob },
    /// Store the audio (S3, or the local directory).
    Store {
        id: JobId,
        job: VoiceJob,
        bytes: Vec<u8>,
    },
    /// Send the event (Inngest, or the local events file).
    Publish { id: JobId, event: Value },
    /// Record the outcome in the outbox. For `Retry` nothing waits on the answer.
    Finish {
        id: JobId,
        key: VoiceKey,
        outcome: VoiceOutcome,
    },
}

#[derive(Debug)]
enum Stage {
    /// Waiting for a download slot (and for its bot to run).
    Waiting,
    Downloading,
    Storing,
    Publishing,
    /// The final outcome is being written.
    Finishing(VoiceOutcome),
    /// After a transient failure: waits, then goes on with `then`.
    Backoff {
        until: Instant,
        then: Box<Stage>,
    },
    /// Between steps: the effect for this stage is due.
    Due(Due),
}

#[derive(Debug)]
enum Due {
    Store(Vec<u8>),
    Publish(ObjectLocation),
    Finish(VoiceOutcome),
}

#[derive(Debug)]
struct Job {
    job: VoiceJob,
    stage: Stage,
    /// When this process took the message in (for the latency of messages it received).
    received: Option<Instant>,
    /// The location once stored.
    location: Option<ObjectLocation>,
}

/// Every voice message on its way.
#[derive(Debug)]
pub struct Pipeline {
    limits: PipelineLimits,
    jobs: BTreeMap<JobId, Job>,
    keys: HashSet<VoiceKey>,
    next_id: JobId,
    /// Jobs waiting for a download slot, in arrival order.
    waiting: VecDeque<JobId>,
    /// Jobs whose next effect (store, publish, finish) is due, in order.
    due: VecDeque<JobId>,
    /// Retry records to write (they hold nothing up).
    records: VecDeque<(JobId, VoiceKey, VoiceOutcome)>,
    downloads: usize,
    downloads_per_bot: BTreeMap<String, usize>,
    stores: usize,
    publishes: usize,
    stats: PipelineStats,
    /// When each job recently left (its outcome recorded): an outbox read begun before
    /// that still lists it as pending, and must not start it again.
    left: HashMap<VoiceKey, Instant>,
    /// Stopping: nothing new starts, and a failure drops the job (its row stays pending).
    stopping: bool,
}

/// How long a finished job is remembered against stale outbox reads; a read older than
/// this is ignored whole.
const REMEMBER_LEFT: Duration = Duration::from_secs(300);

impl Pipeline {
    pub fn new(limits: PipelineLimits) -> Pipeline {
        Pipeline {
            limits,
            jobs: BTreeMap::new(),
            keys: HashSet::new(),
            next_id: 0,
            waiting: VecDeque::new(),
            due: VecDeque::new(),
            records: VecDeque::new(),
            downloads: 0,
            downloads_per_bot: BTreeMap::new(),
            stores: 0,
            publishes: 0,
            stats: PipelineStats::default(),
            left: HashMap::new(),
            stopping: false,
        }
    }

    pub fn stats(&self) -> &PipelineStats {
        &self.stats
    }

    /// Jobs known and not finished.
    pub fn len(&self) -> usize {
        self.jobs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }

    /// Whether there is room for more jobs.
    pub fn has_room(&self) -> bool {
        self.jobs.len() < self.limits.in_memory
    }

    /// Takes a job in, unless it is known already or there is no room (it waits in the
    /// outbox then). `received`: when this process received the message, if it did.
    pub fn add(&mut self, job: VoiceJob, received: Option<Instant>) -> bool {
        if !self.has_room() || self.keys.contains(&job.key) {
            return false;
        }
        self.next_id += 1;
        self.keys.insert(job.key.clone());
        self.jobs.insert(
            self.next_id,
            Job {
                job,
                stage: Stage::Waiting,
                received,
                location: None,
            },
        );
        self.waiting.push_back(self.next_id);
        true
    }

    /// Takes in pending rows of the outbox, read at `read_at`: the jobs known already,
    /// and those that left after the read began (the read could not see that), are
    /// skipped. How many were taken.
    pub fn add_pending(&mut self, jobs: Vec<VoiceJob>, read_at: Instant, now: Instant) -> usize {
        self.left
            .retain(|_, at| now.saturating_duration_since(*at) < REMEMBER_LEFT);
        if self.stopping || now.saturating_duration_since(read_at) >= REMEMBER_LEFT {
            return 0;
        }
        let mut taken = 0;
        for job in jobs {
            if self.left.get(&job.key).is_some_and(|at| *at >= read_at) {
                continue;
            }
            taken += usize::from(self.add(job, None));
        }
        taken
    }

    /// Forgets the jobs of a workspace whose integration is gone or disabled (their rows
    /// went with it, or wait in the outbox).
    pub fn forget(&mut self, workspace_id: &str) {
        self.drop_where(|j| j.job.key.workspace_id == workspace_id);
    }

    /// Leaves the jobs of this workspace that wait for its bot to the outbox (the bot
    /// cannot run: a revoked token, say), so that they hold no room meanwhile.
    pub fn release_waiting(&mut self, workspace_id: &str) {
        self.drop_where(|j| {
            j.job.key.workspace_id == workspace_id && matches!(j.stage, Stage::Waiting)
        });
    }

    /// Stops: nothing new starts and jobs not under way are dropped (their rows stay
    /// pending for the next start); what is under way finishes and is recorded.
    pub fn stop(&mut self) {
        self.stopping = true;
        self.drop_where(|j| {
            matches!(
                j.stage,
                Stage::Waiting
                    | Stage::Backoff { .. }
                    | Stage::Due(Due::Store(_) | Due::Publish(_))
            )
        });
    }

    fn drop_where(&mut self, drop: impl Fn(&Job) -> bool) {
        let ids: Vec<JobId> = self
            .jobs
            .iter()
            .filter(|(_, j)| drop(j))
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            self.remove(id);
        }
    }

    /// Drops a job from memory (its row is untouched).
    fn remove(&mut self, id: JobId) {
        let Some(j) = self.jobs.remove(&id) else {
            return;
        };
        self.keys.remove(&j.job.key);
        self.leave(&j.stage, &j.job.key.workspace_id);
        self.waiting.retain(|w| *w != id);
        self.due.retain(|d| *d != id);
        self.records.retain(|(r, ..)| *r != id);
    }

    /// Counts a job out of the stage it leaves.
    fn leave(&mut self, stage: &Stage, workspace_id: &str) {
        match stage {
            Stage::Downloading => {
                self.downloads -= 1;
                if let Some(n) = self.downloads_per_bot.get_mut(workspace_id) {
                    *n -= 1;
                    if *n == 0 {
                        self.downloads_per_bot.remove(workspace_id);
                    }
                }
            }
            Stage::Storing => self.stores -= 1,
            Stage::Publishing => self.publishes -= 1,
            _ => {}
        }
    }

    /// Sets a job's stage, keeping the counts and queues right.
    fn enter(&mut self, id: JobId, stage: Stage) {
        let j = self.jobs.get_mut(&id).expect("a job of this pipeline");
        let ws = j.job.key.workspace_id.clone();
        let old = std::mem::replace(&mut j.stage, Stage::Waiting);
        match &stage {
            Stage::Downloading => {
                self.downloads += 1;
                *self.downloads_per_bot.entry(ws.clone()).or_default() += 1;
            }
            Stage::Storing => self.stores += 1,
            Stage::Publishing => self.publishes += 1,
            Stage::Waiting => self.waiting.push_back(id),
            Stage::Due(_) => self.due.push_back(id),
            Stage::Finishing(_) | Stage::Backoff { .. } => {}
        }
        self.jobs.get_mut(&id).expect("looked up").stage = stage;
        self.leave(&old, &ws);
    }

    /// The next effect due, within the limits. `can_download(workspace)`: whether that
    /// workspace's bot runs (a download waits for it); `username(workspace)`: the bot's
    /// @username, for the event.
    pub fn poll(
        &mut self,
        can_download: impl Fn(&str) -> bool,
        username: impl Fn(&str) -> Option<String>,
    ) -> Option<VoiceEffect> {
        if let Some((id, key, outcome)) = self.records.pop_front() {
            return Some(VoiceEffect::Finish { id, key, outcome });
        }
        let limits = self.limits;
        let position = self.due.iter().position(|id| match &self.jobs[id].stage {
            Stage::Due(Due::Store(_)) => self.stores < limits.stores,
            Stage::Due(Due::Publish(_)) => self.publishes < limits.publishes,
            _ => true,
        });
        if let Some(at) = position {
            let id = self.due.remove(at).expect("found above");
            let j = self.jobs.get_mut(&id).expect("queued jobs exist");
            let Stage::Due(due) = std::mem::replace(&mut j.stage, Stage::Waiting) else {
                unreachable!("only due jobs are queued as due")
            };
            return Some(match due {
                Due::Store(bytes) => {
                    let job = j.job.clone();
                    j.stage = Stage::Storing;
                    self.stores += 1;
                    VoiceEffect::Store { id, job, bytes }
                }
                Due::Publish(location) => {
                    let event = j
                        .job
                        .event(&location, username(&j.job.key.workspace_id).as_deref());
                    j.location = Some(location);
                    j.stage = Stage::Publishing;
                    self.publishes += 1;
                    VoiceEffect::Publish { id, event }
                }
                Due::Finish(outcome) => {
                    j.stage = Stage::Finishing(outcome.clone());
                    VoiceEffect::Finish {
                        id,
                        key: j.job.key.clone(),
                        outcome,
                    }
                }
            });
        }
        if self.downloads >= limits.downloads || self.stopping {
            return None;
        }
        let position = self.waiting.iter().position(|id| {
            let ws = self.jobs[id].job.key.workspace_id.as_str();
            self.downloads_per_bot.get(ws).copied().unwrap_or(0) < limits.downloads_per_bot
                && can_download(ws)
        })?;
        let id = self.waiting.remove(position).expect("found above");
        self.enter(id, Stage::Downloading);
        Some(VoiceEffect::Download {
            id,
            job: self.jobs[&id].job.clone(),
        })
    }

    /// The bot downloaded the file, or could not.
    pub fn downloaded(
        &mut self,
        id: JobId,
        result: Result<Vec<u8>, Failure>,
        now: Instant,
        random: &mut impl Random,
    ) {
        if !self
            .jobs
            .get(&id)
            .is_some_and(|j| matches!(j.stage, Stage::Downloading))
        {
            return;
        }
        match result {
            Ok(bytes) => {
                self.stats.bytes_downloaded += bytes.len() as u64;
                self.enter(id, Stage::Due(Due::Store(bytes)));
            }
            Err(failure) => self.fail(id, "download", failure, Stage::Waiting, now, random),
        }
    }

    /// The audio is stored, or could not be.
    pub fn stored(
        &mut self,
        id: JobId,
        result: Result<ObjectLocation, Failure>,
        now: Instant,
        random: &mut impl Random,
    ) {
        if !self
            .jobs
            .get(&id)
            .is_some_and(|j| matches!(j.stage, Stage::Storing))
        {
            return;
        }
        match result {
            Ok(location) => self.enter(id, Stage::Due(Due::Publish(location))),
            // The bytes went with the effect: a retry downloads again (rare, and it keeps
            // a failing store from holding files in memory).
            Err(failure) => self.fail(id, "s3", failure, Stage::Waiting, now, random),
        }
    }

    /// The event is accepted, or not.
    pub fn published(
        &mut self,
        id: JobId,
        result: Result<(), Failure>,
        now: Instant,
        random: &mut impl Random,
    ) {
        let Some(j) = self
            .jobs
            .get(&id)
            .filter(|j| matches!(j.stage, Stage::Publishing))
        else {
            return;
        };
        let location = j.location.clone().expect("stored before publishing");
        match result {
            Ok(()) => {
                if let Some(received) = j.received {
                    let seconds = now.saturating_duration_since(received).as_secs_f64();
                    self.stats.latency.observe(seconds);
                }
                let done = VoiceOutcome::Done {
                    object_key: location.key,
                };
                self.enter(id, Stage::Due(Due::Finish(done)));
            }
            Err(failure) => {
                let then = Stage::Due(Due::Publish(location));
                self.fail(id, "inngest", failure, then, now, random);
            }
        }
    }

    /// The outbox has (or has not) recorded a job's final outcome. Answers to `Retry`
    /// records are ignored: nothing waits on them.
    pub fn finished(
        &mut self,
        id: JobId,
        result: Result<(), String>,
        now: Instant,
        random: &mut impl Random,
    ) {
        let Some(Stage::Finishing(outcome)) = self.jobs.get(&id).map(|j| &j.stage) else {
            return;
        };
        let outcome = outcome.clone();
        match result {
            Ok(()) => {
                match outcome {
                    VoiceOutcome::Done { .. } => self.stats.done += 1,
                    VoiceOutcome::Failed { .. } => self.stats.failed += 1,
                    VoiceOutcome::Retry { .. } => {}
                }
                let j = self.jobs.remove(&id).expect("looked up");
                self.keys.remove(&j.job.key);
                self.left.insert(j.job.key, now);
            }
            Err(error) => {
                let then = Stage::Due(Due::Finish(outcome));
                self.fail(id, "outbox", Failure::transient(error), then, now, random);
            }
        }
    }

    /// A transient failure waits and goes on with `then` (and is recorded in the
    /// outbox); a permanent one fails the row.
    fn fail(
        &mut self,
        id: JobId,
        step: &'static str,
        failure: Failure,
        then: Stage,
        now: Instant,
        random: &mut impl Random,
    ) {
        let kind = if failure.permanent {
            "permanent"
        } else {
            "transient"
        };
        *self.stats.errors.entry((step, kind)).or_default() += 1;
        if self.stopping && !failure.permanent {
            // Its row stays pending for the next start; no retry is recorded for a stop.
            return self.remove(id);
        }
        if failure.permanent {
            let failed = VoiceOutcome::Failed {
                reason: failure.reason,
            };
            return self.enter(id, Stage::Due(Due::Finish(failed)));
        }
        self.stats.retried += 1;
        let j = self.jobs.get_mut(&id).expect("a job of this pipeline");
        let delay = backoff::full_jitter(RETRY_BASE, RETRY_CAP, j.job.attempts, random)
            .max(failure.retry_after.unwrap_or_default().min(RETRY_AFTER_CAP));
        j.job.attempts = j.job.attempts.saturating_add(1);
        if step != "outbox" {
            let retry = VoiceOutcome::Retry {
                error: format!("{step}: {}", failure.reason),
            };
            self.records.push_back((id, j.job.key.clone(), retry));
        }
        let backoff = Stage::Backoff {
            until: now + delay,
            then: Box::new(then),
        };
        self.enter(id, backoff);
    }

    /// Ends the backoffs that are over.
    pub fn handle_timeout(&mut self, now: Instant) {
        let over: Vec<JobId> = self
            .jobs
            .iter()
            .filter(|(_, j)| matches!(&j.stage, Stage::Backoff { until, .. } if *until <= now))
            .map(|(id, _)| *id)
            .collect();
        for id in over {
            let j = self.jobs.get_mut(&id).expect("listed above");
            let Stage::Backoff { then, .. } = std::mem::replace(&mut j.stage, Stage::Waiting)
            else {
                unreachable!("listed as a backoff")
            };
            self.enter(id, *then);
        }
    }

    /// When the earliest backoff ends.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.jobs
            .values()
            .filter_map(|j| match &j.stage {
                Stage::Backoff { until, .. } => Some(*until),
                _ => None,
            })
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random::Seeded;
    use crate::updates::{Peer, VoiceFile};

    fn job(ws: &str, message_id: i32) -> VoiceJob {
        VoiceJob {
            key: VoiceKey {
                workspace_id: ws.into(),
                chat: Peer::User(42),
                message_id,
            },
            from_user_id: Some(42),
            date: 1_795_651_200,
            file: VoiceFile {
                kind: crate::updates::MediaKind::Voice,
                document_id: 1,
                access_hash: 2,
                file_reference: vec![],
                dc_id: 1,
                size: 3,
                mime_type: "audio/ogg".into(),
                duration_seconds: 1,
            },
            received_at_ms: 0,
            attempts: 0,
        }
    }

    fn poll(p: &mut Pipeline) -> Option<VoiceEffect> {
        p.poll(|_| true, |_| Some("bot1".into()))
    }

    fn location() -> ObjectLocation {
        ObjectLocation::of("voice".into(), "k".into(), &[])
    }

    #[test]
    fn a_job_goes_through_every_step_and_is_counted_once_done() {
        let (t0, mut random) = (Instant::now(), Seeded::new(1));
        let mut p = Pipeline::new(PipelineLimits::default());
        assert!(p.add(job("ws_1", 1), Some(t0)));
        assert!(!p.add(job("ws_1", 1), None), "a job is known once");
        let Some(VoiceEffect::Download { id, .. }) = poll(&mut p) else {
            panic!()
        };
        assert_eq!(poll(&mut p), None);
        p.downloaded(id, Ok(vec![1, 2, 3]), t0, &mut random);
        assert!(
            matches!(poll(&mut p), Some(VoiceEffect::Store { bytes, .. }) if bytes == [1, 2, 3])
        );
        p.stored(id, Ok(location()), t0, &mut random);
        let Some(VoiceEffect::Publish { event, .. }) = poll(&mut p) else {
            panic!()
        };
        assert_eq!(event["data"]["bot_username"], "bot1");
        assert_eq!(event["data"]["s3"]["key"], "k");
        p.published(id, Ok(()), t0 + Duration::from_millis(250), &mut random);
        let Some(VoiceEffect::Finish { outcome, .. }) = poll(&mut p) else {
            panic!()
        };
        assert_eq!(
            outcome,
            VoiceOutcome::Done {
                object_key: "k".into()
            }
        );
        assert_eq!(p.len(), 1, "not gone before the outbox says done");
        p.finished(id, Ok(()), t0, &mut random);
        assert!(p.is_empty());
        assert_eq!((p.stats().done, p.stats().latency.count), (1, 1));
        assert_eq!(
            p.stats().latency.counts[2],
            1,
            "0.25 s falls in the 0.25 bucket"
        );
    }

    #[test]
    fn transient_failures_wait_and_retry_and_permanent_ones_fail_the_row() {
        let (t0, mut random) = (Instant::now(), Seeded::new(1));
        let mut p = Pipeline::new(PipelineLimits::default());
        p.add(job("ws_1", 1), None);
        let Some(VoiceEffect::Download { id, .. }) = poll(&mut p) else {
            panic!()
        };
        p.downloaded(id, Ok(vec![1]), t0, &mut random);
        poll(&mut p);
        let mut slow = Failure::transient("503 Slow Down");
        slow.retry_after = Some(Duration::from_secs(30));
        p.stored(id, Err(slow), t0, &mut random);
        // The retry is recorded in the outbox, and nothing else happens until it is due.
        let Some(VoiceEffect::Finish { outcome, .. }) = poll(&mut p) else {
            panic!()
        };
        assert_eq!(
            outcome,
            VoiceOutcome::Retry {
                error: "s3: 503 Slow Down".into()
            }
        );
        p.finished(id, Ok(()), t0, &mut random);
        assert_eq!(poll(&mut p), None);
        let at = p.poll_timeout().unwrap();
        assert!(
            at >= t0 + Duration::from_secs(30),
            "Retry-After is honoured"
        );
        // Within reason: a day's Retry-After waits an hour.
        let mut q = Pipeline::new(PipelineLimits::default());
        q.add(job("ws_2", 1), None);
        let Some(VoiceEffect::Download { id: other, .. }) = poll(&mut q) else {
            panic!()
        };
        let mut day = Failure::transient("429");
        day.retry_after = Some(Duration::from_secs(86_400));
        q.downloaded(other, Err(day), t0, &mut random);
        assert_eq!(q.poll_timeout(), Some(t0 + RETRY_AFTER_CAP));
        p.handle_timeout(at);
        assert!(
            matches!(poll(&mut p), Some(VoiceEffect::Download { .. })),
            "downloads again"
        );
        p.downloaded(
            id,
            Err(Failure::permanent("FILE_ID_INVALID")),
            at,
            &mut random,
        );
        let Some(VoiceEffect::Finish { outcome, .. }) = poll(&mut p) else {
            panic!()
        };
        assert_eq!(
            outcome,
            VoiceOutcome::Failed {
                reason: "FILE_ID_INVALID".into()
            }
        );
        p.finished(id, Ok(()), at, &mut random);
        assert_eq!((p.stats().failed, p.stats().retried), (1, 1));
        assert!(p.is_empty());
    }

    #[test]
    fn limits_hold_and_a_bot_that_does_not_run_waits() {
        let (t0, mut random) = (Instant::now(), Seeded::new(1));
        let limits = PipelineLimits {
            downloads_per_bot: 1,
            downloads: 2,
            stores: 1,
            publishes: 1,
            in_memory: 4,
        };
        let mut p = Pipeline::new(limits);
        for i in 0..3 {
            p.add(job("ws_1", i), None);
        }
        p.add(job("ws_2", 9), None);
        assert!(
            !p.add(job("ws_3", 1), None),
            "no room: it waits in the outbox"
        );
        let mut downloads = Vec::new();
        while let Some(VoiceEffect::Download { id, job }) = p.poll(|ws| ws != "ws_2", |_| None) {
            downloads.push((id, job.key.workspace_id));
        }
        assert_eq!(
            downloads.len(),
            1,
            "one per bot, and ws_2's bot does not run"
        );
        let ws_2 = p.poll(|_| true, |_| None);
        assert!(
            matches!(ws_2, Some(VoiceEffect::Download { job, .. }) if job.key.workspace_id == "ws_2")
        );
        assert_eq!(p.poll(|_| true, |_| None), None, "two downloads at most");
        p.downloaded(downloads[0].0, Ok(vec![1]), t0, &mut random);
        assert!(matches!(poll(&mut p), Some(VoiceEffect::Store { .. })));
        p.forget("ws_1");
        assert_eq!(p.len(), 1);
        assert!(poll(&mut p).is_none(), "ws_2's download is still in flight");
    }

    #[test]
    fn a_failed_outbox_write_is_tried_again() {
        let (t0, mut random) = (Instant::now(), Seeded::new(1));
        let mut p = Pipeline::new(PipelineLimits::default());
        p.add(job("ws_1", 1), None);
        let Some(VoiceEffect::Download { id, .. }) = poll(&mut p) else {
            panic!()
        };
        p.downloaded(
            id,
            Err(Failure::permanent("FILE_ID_INVALID")),
            t0,
            &mut random,
        );
        poll(&mut p);
        p.finished(id, Err("database down".into()), t0, &mut random);
        assert_eq!(poll(&mut p), None, "waits first");
        let at = p.poll_timeout().unwrap();
        p.handle_timeout(at);
        let Some(VoiceEffect::Finish { outcome, .. }) = poll(&mut p) else {
            panic!()
        };
        assert!(matches!(outcome, VoiceOutcome::Failed { .. }));
    }
}
