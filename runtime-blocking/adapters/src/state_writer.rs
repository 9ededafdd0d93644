//! One writer per process: the fleet's commits go to a queue, and a single thread writes
//! them to the store in batches, at most every [`FLUSH_INTERVAL`] and at once on stop.
//! Never a write per bot, never a wait on the executor, one thread whatever the fleet's
//! size. Each commit's result goes back through the callback given at start, so that the
//! fleet learns what is durable.
//!
//! The store behind it is a [`Store`]: today the local state file ([`StateFile`]); the
//! PostgreSQL store takes the same place.

use std::collections::BTreeMap;
use std::io::{self, Write as _};
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use telegram_bots_core::fleet::BotId;
use telegram_bots_core::record::{BotRecord, Commit, CommitId};
use telegram_bots_core::state_file;

/// The shortest time between two writes.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(200);

/// Where commits are written: a batch is written whole, or the error says why not.
pub trait Store: Send + 'static {
    fn write(&mut self, batch: &[(String, Commit)]) -> Result<(), String>;
}

/// The result of one commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Written {
    pub bot: BotId,
    pub commit: CommitId,
    pub result: Result<(), String>,
}

struct Queue {
    waiting: Vec<(BotId, String, Commit)>,
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
        mut store: impl Store,
        on_written: impl Fn(Vec<Written>) + Send + 'static,
    ) -> io::Result<StateWriter> {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                waiting: Vec::new(),
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
        while queue.waiting.is_empty() && !queue.stopping {
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
        let stopping = queue.stopping;
        drop(queue);
        if batch.is_empty() {
            if stopping {
                return;
            }
            continue;
        }
        let ids: Vec<(BotId, CommitId)> = batch.iter().map(|(bot, _, c)| (*bot, c.id)).collect();
        let commits: Vec<(String, Commit)> = batch.into_iter().map(|(_, ws, c)| (ws, c)).collect();
        let result = store.write(&commits);
        if let Err(e) = &result {
            tracing::error!("cannot save the bots' state ({} commits): {e}", ids.len());
        }
        last_write = Some(Instant::now());
        on_written(
            ids.into_iter()
                .map(|(bot, commit)| Written {
                    bot,
                    commit,
                    result: result.clone(),
                })
                .collect(),
        );
    }
}

/// The local state file: every bot's record by workspace id, rewritten whole (to a
/// temporary file, synced, renamed over the old one) on each batch, readable by the
/// owner only since it holds auth keys.
#[derive(Debug)]
pub struct StateFile {
    path: String,
    records: BTreeMap<String, BotRecord>,
}

impl StateFile {
    /// Reads the file (a missing one is empty) and makes sure it can be written: a state
    /// that cannot be saved would mean a new login for every bot at every start.
    pub fn open(path: &str) -> Result<StateFile, String> {
        let records = match std::fs::read_to_string(path) {
            Ok(text) => state_file::decode(&text).map_err(|e| format!("STATE_FILE {path}: {e}"))?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(format!("STATE_FILE {path}: {e}")),
        };
        let file = StateFile {
            path: path.to_owned(),
            records,
        };
        let probe = file.temp_path();
        create_private(&probe)
            .and_then(|_| std::fs::remove_file(&probe))
            .map_err(|e| {
                format!(
                    "STATE_FILE {path}: cannot write there ({e}); point it at a writable, persistent place"
                )
            })?;
        Ok(file)
    }

    pub fn records(&self) -> &BTreeMap<String, BotRecord> {
        &self.records
    }

    /// Per process, so that two processes on one file cannot interleave their writes.
    fn temp_path(&self) -> String {
        format!("{}.{}.tmp", self.path, std::process::id())
    }

    fn persist(&self) -> io::Result<()> {
        let tmp = self.temp_path();
        let mut file = create_private(&tmp)?;
        file.write_all(state_file::encode(&self.records).as_bytes())?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, &self.path)?;
        // The rename itself is durable only once the directory is.
        let dir = Path::new(&self.path)
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::File::open(dir)?.sync_all()
    }
}

impl Store for StateFile {
    fn write(&mut self, batch: &[(String, Commit)]) -> Result<(), String> {
        for (ws, commit) in batch {
            self.records.entry(ws.clone()).or_default().apply(commit);
        }
        self.persist()
            .map_err(|e| format!("STATE_FILE {}: {e}", self.path))
    }
}

fn create_private(path: &str) -> io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
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

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn commits_are_written_in_batches_and_answered() {
        let dir = temp_dir("state-writer-batches");
        let path = dir.join("state.json").to_string_lossy().into_owned();
        let file = StateFile::open(&path).unwrap();
        let (tx, rx) = mpsc::channel();
        let writer = StateWriter::start(file, move |w| tx.send(w).unwrap()).unwrap();
        writer.submit(BotId(1), "ws_1".into(), commit(1, 5));
        let first = rx.recv().unwrap();
        assert_eq!(first.len(), 1);
        // While the interval runs, commits of many bots gather into one write.
        for i in 0..100 {
            writer.submit(BotId(i), format!("ws_{i}"), commit(2, 7));
        }
        let mut answered = 0;
        let mut batches = 0;
        while answered < 100 {
            let batch = rx.recv().unwrap();
            assert!(batch.iter().all(|w| w.result.is_ok()));
            answered += batch.len();
            batches += 1;
        }
        assert!(batches <= 2, "{batches} writes for 100 commits");
        writer.stop();
        let reread = StateFile::open(&path).unwrap();
        assert_eq!(reread.records()["ws_1"].updates.unwrap().pts, 7);
        assert_eq!(reread.records().len(), 100);
        let mode = std::fs::metadata(&path).unwrap().permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_place_that_cannot_be_written_is_refused_at_open_and_failures_are_reported() {
        let dir = temp_dir("state-writer-readonly");
        let missing = dir
            .join("no-such-dir/state.json")
            .to_string_lossy()
            .into_owned();
        let error = StateFile::open(&missing).unwrap_err();
        assert!(error.contains("cannot write there"), "{error}");

        let path = dir.join("state.json").to_string_lossy().into_owned();
        let file = StateFile::open(&path).unwrap();
        // The directory goes away after the start: every write fails, and says so.
        std::fs::remove_dir_all(&dir).unwrap();
        let (tx, rx) = mpsc::channel();
        let writer = StateWriter::start(file, move |w| tx.send(w).unwrap()).unwrap();
        writer.submit(BotId(1), "ws_1".into(), commit(1, 5));
        let written = rx.recv().unwrap();
        let error = written[0].result.clone().unwrap_err();
        assert!(
            error.starts_with(&format!("STATE_FILE {path}: ")),
            "{error}"
        );
        writer.stop();
    }
}
