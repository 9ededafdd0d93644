//! One writer per process: the fleet's commits go to a queue, and a single thread writes
//! them to the store in batches, at most every [`FLUSH_INTERVAL`] and at once on stop.
//! Never a write per bot, never a wait on the executor, one thread whatever the fleet's
//! size. Each commit's result goes back through the callback given at start, so that the
//! fleet learns what is durable.
//!
//! The store behind it is a [`Store`] (PostgreSQL or the embedded SQLite file) on a
//! connection of the writer's own. What the fleet reports about a bot that failed for
//! good (a rejected token) is written the same way, for `integrations list`, and so are
//! the voice pipeline's outcomes (the outbox's rows done, failed or retried), each
//! batch of them one statement.

use std::io;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use telegram_bots_core::fleet::{BotId, BotState, Fleet, FleetEvent};
use telegram_bots_core::random::Random;
use telegram_bots_core::record::{Commit, CommitId};
use telegram_bots_core::session::Now;
use telegram_bots_core::voice::{JobId, VoiceKey, VoiceOutcome};

use crate::store::Store;

/// The shortest time between two writes.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(50);

/// The result of one write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Written {
    Commit {
        bot: BotId,
        commit: CommitId,
        result: Result<(), String>,
    },
    /// A voice message's outcome.
    Voice {
        job: JobId,
        result: Result<(), String>,
    },
}

impl Written {
    /// Tells the fleet.
    pub fn feed(self, fleet: &mut Fleet, now: Now, random: &mut impl Random) {
        match self {
            Written::Commit {
                bot,
                commit,
                result,
            } => fleet.handle_committed(bot, commit, result, now, random),
            Written::Voice { job, result } => fleet.handle_voice_finished(job, result, now, random),
        }
    }
}

struct Queue {
    waiting: Vec<(BotId, String, Commit)>,
    outcomes: Vec<(JobId, VoiceKey, VoiceOutcome)>,
    /// The latest trouble reported for each bot, to record.
    notes: Vec<(String, Option<String>)>,
    stopping: bool,
}

struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The writer thread and its queue.
pub struct StateWriter {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for StateWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateWriter").finish_non_exhaustive()
    }
}

impl StateWriter {
    /// Starts the writer thread over `store`; `on_written` gets each batch's results.
    pub fn start(
        mut store: Box<dyn Store>,
        on_written: impl Fn(Vec<Written>) + Send + 'static,
    ) -> io::Result<StateWriter> {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                waiting: Vec::new(),
                outcomes: Vec::new(),
                notes: Vec::new(),
                stopping: false,
            }),
            wake: Condvar::new(),
        });
        let thread = thread::Builder::new().name("state-writer".into()).spawn({
            let shared = shared.clone();
            move || run(&shared, &mut store, &on_written)
        })?;
        Ok(StateWriter {
            shared,
            thread: Some(thread),
        })
    }

    /// Queues a commit for the next batch.
    pub fn submit(&self, bot: BotId, workspace_id: String, commit: Commit) {
        let mut queue = self.shared.lock();
        queue.waiting.push((bot, workspace_id, commit));
        self.shared.wake.notify_one();
    }

    /// Queues a voice message's outcome for the next batch.
    pub fn finish(&self, job: JobId, key: VoiceKey, outcome: VoiceOutcome) {
        let mut queue = self.shared.lock();
        queue.outcomes.push((job, key, outcome));
        self.shared.wake.notify_one();
    }

    /// Records what the fleet reports about a bot (`None`: no trouble) with the next batch.
    pub fn note(&self, workspace_id: String, error: Option<String>) {
        let mut queue = self.shared.lock();
        queue.notes.retain(|(ws, _)| *ws != workspace_id);
        queue.notes.push((workspace_id, error));
        self.shared.wake.notify_one();
    }

    /// Records what the store should know of a fleet event: a bot that failed for good
    /// (its reason shows in `integrations list`).
    pub fn record(&self, event: &FleetEvent) {
        if let FleetEvent::State {
            workspace_id,
            state: BotState::Failed,
            reason,
        } = event
        {
            self.note(workspace_id.clone(), reason.clone());
        }
    }

    /// Writes what is queued at once and ends the thread.
    pub fn stop(mut self) {
        self.shared.lock().stopping = true;
        self.shared.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run(shared: &Shared, store: &mut impl Store, on_written: &impl Fn(Vec<Written>)) {
    let mut last_write: Option<Instant> = None;
    loop {
        let mut queue = shared.lock();
        while queue.waiting.is_empty()
            && queue.outcomes.is_empty()
            && queue.notes.is_empty()
            && !queue.stopping
        {
            queue = shared
                .wake
                .wait(queue)
                .unwrap_or_else(PoisonError::into_inner);
        }
        // Let the batch fill up: at most one write per interval.
        while !queue.stopping
            && let Some(wait) = last_write
                .map(|at| (at + FLUSH_INTERVAL).saturating_duration_since(Instant::now()))
                .filter(|wait| !wait.is_zero())
        {
            queue = shared
                .wake
                .wait_timeout(queue, wait)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        let batch = std::mem::take(&mut queue.waiting);
        let outcomes = std::mem::take(&mut queue.outcomes);
        let notes = std::mem::take(&mut queue.notes);
        let stopping = queue.stopping;
        drop(queue);
        if !notes.is_empty()
            && let Err(e) = store.note_error(&notes)
        {
            tracing::warn!("cannot record the bots' last errors: {e}");
        }
        if batch.is_empty() && outcomes.is_empty() {
            if stopping {
                return;
            }
            continue;
        }
        let mut written = write_commits(store, batch);
        written.extend(write_outcomes(store, outcomes));
        last_write = Some(Instant::now());
        on_written(written);
    }
}

fn write_commits(store: &mut impl Store, batch: Vec<(BotId, String, Commit)>) -> Vec<Written> {
    if batch.is_empty() {
        return Vec::new();
    }
    let ids: Vec<(BotId, CommitId)> = batch.iter().map(|(bot, _, c)| (*bot, c.id)).collect();
    let commits: Vec<(String, Commit)> = batch.into_iter().map(|(_, ws, c)| (ws, c)).collect();
    let result = store.write(&commits).map_err(|e| e.to_string());
    if let Err(e) = &result {
        tracing::error!("cannot save the bots' state ({} commits): {e}", ids.len());
    }
    ids.into_iter()
        .map(|(bot, commit)| Written::Commit {
            bot,
            commit,
            result: result.clone(),
        })
        .collect()
}

fn write_outcomes(
    store: &mut impl Store,
    outcomes: Vec<(JobId, VoiceKey, VoiceOutcome)>,
) -> Vec<Written> {
    if outcomes.is_empty() {
        return Vec::new();
    }
    let jobs: Vec<JobId> = outcomes.iter().map(|(job, ..)| *job).collect();
    let rows: Vec<(VoiceKey, VoiceOutcome)> =
        outcomes.into_iter().map(|(_, key, o)| (key, o)).collect();
    let result = store.voice_finish(&rows).map_err(|e| e.to_string());
    if let Err(e) = &result {
        tracing::error!(
            "cannot record {} voice outcomes in the outbox: {e}",
            jobs.len()
        );
    }
    jobs.into_iter()
        .map(|job| Written::Voice {
            job,
            result: result.clone(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Sealer;
    use crate::store::sqlite::SqliteStore;
    use std::sync::mpsc;
    use telegram_bots_core::seal::Keyring;
    use telegram_bots_core::secret::Secret;
    use telegram_bots_core::updates::UpdateState;

    fn commit(id: CommitId, pts: i32) -> Commit {
        Commit {
            id,
            session: None,
            updates: Some(UpdateState {
                pts,
                ..UpdateState::default()
            }),
            channels: None,
            messages: vec![],
        }
    }

    #[test]
    fn commits_and_notes_are_written_in_batches_and_answered() {
        let dir = std::env::temp_dir().join(format!("state-writer-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let sealer = Sealer::new(Keyring::new([3; 32], None));
        let path = dir.join("store.sqlite3");
        let mut store = SqliteStore::open(&path, sealer.clone()).unwrap();
        store.migrate().unwrap();
        let token = |i: u64| Secret::new(format!("{}:AAbcdefghijklmnopqrstuvwxyz0123456", 100 + i));
        for i in 0..100 {
            store.add(&format!("ws_{i}"), &token(i)).unwrap();
        }
        let (tx, rx) = mpsc::channel();
        let writer = StateWriter::start(Box::new(store), move |w| tx.send(w).unwrap()).unwrap();
        writer.submit(BotId(1), "ws_1".into(), commit(1, 5));
        assert_eq!(rx.recv().unwrap().len(), 1);
        // While the interval runs, commits of many bots gather into one write.
        for i in 0..100 {
            writer.submit(BotId(i), format!("ws_{i}"), commit(2, 7));
        }
        writer.note(
            "ws_3".into(),
            Some("Telegram rejected the bot token".into()),
        );
        let (mut answered, mut batches) = (0, 0);
        while answered < 100 {
            let batch = rx.recv().unwrap();
            assert!(
                batch
                    .iter()
                    .all(|w| matches!(w, Written::Commit { result: Ok(()), .. }))
            );
            answered += batch.len();
            batches += 1;
        }
        assert!(batches <= 2, "{batches} writes for 100 commits");
        writer.stop();
        let mut reread = SqliteStore::open(&path, sealer).unwrap();
        let integrations = reread.integrations().unwrap();
        assert!(
            integrations
                .iter()
                .all(|i| i.record.updates.unwrap().pts == 7)
        );
        let ws_3 = integrations
            .iter()
            .find(|i| i.workspace_id == "ws_3")
            .unwrap();
        assert_eq!(
            ws_3.last_error.as_deref(),
            Some("Telegram rejected the bot token")
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
