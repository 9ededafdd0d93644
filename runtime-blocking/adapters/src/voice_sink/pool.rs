//! A few worker threads that make the sinks' blocking calls, so that the executor never
//! waits on S3 or Inngest and the number of threads never grows with the fleet.
//!
//! Tasks come through a bounded queue: the pool holds at most `capacity` tasks at once
//! (waiting or running), and refuses more ([`PoolFull`], the task handed back) rather
//! than growing. Each task's result goes to the callback given at start, on the worker
//! that ran it, and frees its place first: the callback may hand over the next task.

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};

use serde_json::Value;
use telegram_bots_core::fleet::Fleet;
use telegram_bots_core::random::Random;
use telegram_bots_core::session::Now;
use telegram_bots_core::voice::{Failure, VoiceJob};

use super::{ObjectLocation, SinkError, Sinks};

/// How many tasks the pool holds at once (each `Store` holds a voice file's bytes).
pub const CAPACITY: usize = 32;

/// Work for the pool; `id` is the caller's (the outbox row's), given back with the result.
pub enum SinkTask {
    /// Put the audio of `job` in the object store.
    Store {
        id: u64,
        job: VoiceJob,
        bytes: Vec<u8>,
    },
    /// Deliver `event` to the event sink.
    Publish { id: u64, event: Value },
}

impl SinkTask {
    pub fn id(&self) -> u64 {
        match self {
            SinkTask::Store { id, .. } | SinkTask::Publish { id, .. } => *id,
        }
    }

    fn not_run(self, reason: &str) -> SinkDone {
        let error = SinkError::transient(reason);
        match self {
            SinkTask::Store { id, .. } => SinkDone::Stored {
                id,
                result: Err(error),
            },
            SinkTask::Publish { id, .. } => SinkDone::Published {
                id,
                result: Err(error),
            },
        }
    }
}

impl fmt::Debug for SinkTask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SinkTask::Store { id, job, bytes } => f
                .debug_struct("Store")
                .field("id", id)
                .field("key", &job.object_key())
                .field("bytes", &bytes.len())
                .finish(),
            SinkTask::Publish { id, event } => f
                .debug_struct("Publish")
                .field("id", id)
                .field("event_id", &event.get("id"))
                .finish(),
        }
    }
}

/// The result of one task.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SinkDone {
    Stored {
        id: u64,
        result: Result<ObjectLocation, SinkError>,
    },
    Published {
        id: u64,
        result: Result<(), SinkError>,
    },
}

impl SinkDone {
    pub fn id(&self) -> u64 {
        match self {
            SinkDone::Stored { id, .. } | SinkDone::Published { id, .. } => *id,
        }
    }
}

/// The pool holds `capacity` tasks already: the task is handed back (boxed: a refusal is
/// rare, and keeps `submit`'s result small).
#[derive(Debug)]
pub struct PoolFull(pub Box<SinkTask>);

impl fmt::Display for PoolFull {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the sink pool is full (task {})", self.0.id())
    }
}

impl std::error::Error for PoolFull {}

impl PoolFull {
    /// The refused task's answer: not tried, to be retried.
    pub fn into_done(self) -> SinkDone {
        self.0.not_run("not tried: the sink pool is full")
    }
}

impl SinkDone {
    /// Tells the fleet.
    pub fn feed(self, fleet: &mut Fleet, now: Now, random: &mut impl Random) {
        match self {
            SinkDone::Stored { id, result } => {
                fleet.handle_voice_stored(id, result.map_err(Failure::from), now, random)
            }
            SinkDone::Published { id, result } => {
                fleet.handle_voice_published(id, result.map_err(Failure::from), now, random)
            }
        }
    }
}

struct Queue {
    waiting: VecDeque<SinkTask>,
    /// Accepted and not yet answered: waiting or running.
    held: usize,
    stopping: bool,
}

struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
    capacity: usize,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The workers and their queue.
pub struct SinkPool {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
}

impl fmt::Debug for SinkPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SinkPool")
            .field("threads", &self.workers.len())
            .field("capacity", &self.shared.capacity)
            .field("held", &self.held())
            .finish()
    }
}

impl SinkPool {
    /// Starts `threads` workers (`voice-sink-{n}`) over `sinks`, holding at most
    /// `capacity` tasks; `on_done` gets every accepted task's result, exactly once.
    pub fn start(
        sinks: Sinks,
        threads: usize,
        capacity: usize,
        on_done: impl Fn(SinkDone) + Send + Sync + 'static,
    ) -> io::Result<SinkPool> {
        assert!(threads > 0 && capacity > 0, "a pool needs threads and room");
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                waiting: VecDeque::with_capacity(capacity),
                held: 0,
                stopping: false,
            }),
            wake: Condvar::new(),
            capacity,
        });
        let on_done: Arc<dyn Fn(SinkDone) + Send + Sync> = Arc::new(on_done);
        let mut pool = SinkPool {
            shared,
            workers: Vec::with_capacity(threads),
        };
        for n in 0..threads {
            let (shared, sinks, on_done) = (pool.shared.clone(), sinks.clone(), on_done.clone());
            let worker = thread::Builder::new()
                .name(format!("voice-sink-{n}"))
                .spawn(move || work(&shared, &sinks, &*on_done));
            match worker {
                Ok(worker) => pool.workers.push(worker),
                Err(e) => {
                    pool.stop();
                    return Err(e);
                }
            }
        }
        Ok(pool)
    }

    /// Hands over a task, or hands it back when the pool is full.
    pub fn submit(&self, task: SinkTask) -> Result<(), PoolFull> {
        let mut queue = self.shared.lock();
        if queue.held >= self.shared.capacity {
            return Err(PoolFull(Box::new(task)));
        }
        queue.held += 1;
        queue.waiting.push_back(task);
        self.shared.wake.notify_one();
        Ok(())
    }

    /// Tasks accepted and not yet answered.
    pub fn held(&self) -> usize {
        self.shared.lock().held
    }

    /// Lets the workers finish the tasks they are running and joins them. Tasks still
    /// waiting are not started: each is answered as a transient error ("not tried"), so
    /// that its row stays pending for the next start. At worst this waits for one
    /// request's timeout.
    pub fn stop(mut self) {
        self.shared.lock().stopping = true;
        self.shared.wake.notify_all();
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}

impl Drop for SinkPool {
    /// Without [`SinkPool::stop`], the workers still end after their current task.
    fn drop(&mut self) {
        self.shared.lock().stopping = true;
        self.shared.wake.notify_all();
    }
}

fn work(shared: &Shared, sinks: &Sinks, on_done: &(dyn Fn(SinkDone) + Send + Sync)) {
    loop {
        let (task, stopping) = {
            let mut queue = shared.lock();
            loop {
                if let Some(task) = queue.waiting.pop_front() {
                    break (task, queue.stopping);
                }
                if queue.stopping {
                    return;
                }
                queue = shared
                    .wake
                    .wait(queue)
                    .unwrap_or_else(PoisonError::into_inner);
            }
        };
        let done = if stopping {
            task.not_run("not tried: the service is stopping")
        } else {
            run(sinks, task)
        };
        shared.lock().held -= 1;
        on_done(done);
    }
}

/// One task, one attempt. A panic in a sink is a bug, not a reason to lose the worker:
/// it is answered as a permanent error, so that the row shows up among the failed.
fn run(sinks: &Sinks, task: SinkTask) -> SinkDone {
    let id = task.id();
    match task {
        SinkTask::Store { job, bytes, .. } => {
            let result = catch_unwind(AssertUnwindSafe(|| sinks.objects.put(&job, &bytes)))
                .unwrap_or_else(|panic| Err(panicked("object store", &*panic)));
            SinkDone::Stored { id, result }
        }
        SinkTask::Publish { event, .. } => {
            let result = catch_unwind(AssertUnwindSafe(|| sinks.events.send(&event)))
                .unwrap_or_else(|panic| Err(panicked("event sink", &*panic)));
            SinkDone::Published { id, result }
        }
    }
}

fn panicked(what: &str, panic: &(dyn std::any::Any + Send)) -> SinkError {
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    SinkError::permanent(format!("{what} panicked: {message}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::voice_sink::{EventSink, ObjectStore};
    use serde_json::json;
    use std::sync::mpsc;
    use std::time::{Duration, Instant};
    use telegram_bots_core::updates::{Peer, VoiceFile};
    use telegram_bots_core::voice::VoiceKey;

    /// The tests that count the pool's threads run one at a time.
    static COUNTING: Mutex<()> = Mutex::new(());

    /// Sinks whose calls wait at a gate, counting how many are inside at once.
    #[derive(Debug, Default)]
    struct Gate {
        state: Mutex<GateState>,
        changed: Condvar,
    }

    #[derive(Debug, Default)]
    struct GateState {
        open: bool,
        inside: usize,
        most_inside: usize,
    }

    impl Gate {
        fn pass(&self) {
            let mut s = self.state.lock().unwrap();
            s.inside += 1;
            s.most_inside = s.most_inside.max(s.inside);
            self.changed.notify_all();
            while !s.open {
                s = self.changed.wait(s).unwrap();
            }
            s.inside -= 1;
        }

        fn open(&self) {
            self.state.lock().unwrap().open = true;
            self.changed.notify_all();
        }

        fn wait_inside(&self, n: usize) {
            let deadline = Instant::now() + Duration::from_secs(10);
            let mut s = self.state.lock().unwrap();
            while s.inside < n {
                let left = deadline.saturating_duration_since(Instant::now());
                assert!(!left.is_zero(), "{} calls inside, expected {n}", s.inside);
                s = self.changed.wait_timeout(s, left).unwrap().0;
            }
        }
    }

    #[derive(Debug)]
    struct Gated(Arc<Gate>);

    impl ObjectStore for Gated {
        fn put(&self, job: &VoiceJob, bytes: &[u8]) -> Result<ObjectLocation, SinkError> {
            self.0.pass();
            Ok(ObjectLocation::of("gated".into(), job.object_key(), bytes))
        }
        fn describe(&self) -> String {
            "gated".into()
        }
    }

    impl EventSink for Gated {
        fn send(&self, event: &Value) -> Result<(), SinkError> {
            self.0.pass();
            if event["panic"] == true {
                panic!("boom");
            }
            Ok(())
        }
        fn describe(&self) -> String {
            "gated".into()
        }
    }

    fn gated() -> (Sinks, Arc<Gate>) {
        let gate = Arc::new(Gate::default());
        let sinks = Sinks {
            objects: Arc::new(Gated(gate.clone())),
            events: Arc::new(Gated(gate.clone())),
        };
        (sinks, gate)
    }

    fn store(id: u64) -> SinkTask {
        SinkTask::Store {
            id,
            job: VoiceJob {
                key: VoiceKey {
                    workspace_id: "ws".into(),
                    chat: Peer::User(1),
                    message_id: id as i32,
                },
                from_user_id: None,
                date: 0,
                file: VoiceFile {
                    kind: telegram_bots_core::updates::MediaKind::Voice,
                    document_id: 1,
                    access_hash: 2,
                    file_reference: vec![],
                    dc_id: 2,
                    size: 3,
                    mime_type: "audio/ogg".into(),
                    duration_seconds: 1,
                },
                received_at_ms: 0,
                attempts: 0,
            },
            bytes: vec![1, 2, 3],
        }
    }

    fn publish(id: u64) -> SinkTask {
        SinkTask::Publish {
            id,
            event: json!({"name": "x", "id": id.to_string(), "data": {}}),
        }
    }

    /// Threads of this process named like the pool's workers, from /proc/self/task.
    fn workers() -> usize {
        std::fs::read_dir("/proc/self/task")
            .unwrap()
            .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
            .filter(|name| name.starts_with("voice-sink-"))
            .count()
    }

    /// Waits for the count to settle at `n`: a thread names itself once it runs, and
    /// leaves /proc a moment after it is joined.
    fn settled_workers(n: usize) -> usize {
        let deadline = Instant::now() + Duration::from_secs(5);
        while workers() != n && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(5));
        }
        workers()
    }

    #[test]
    fn a_fixed_number_of_workers_runs_the_tasks_and_answers_each() {
        let _counting = COUNTING.lock().unwrap_or_else(PoisonError::into_inner);
        let (sinks, gate) = gated();
        let (tx, rx) = mpsc::channel();
        let pool = SinkPool::start(sinks, 4, 10, move |done| tx.send(done).unwrap()).unwrap();
        assert_eq!(settled_workers(4), 4);
        for id in 0..10 {
            let task = if id % 2 == 0 { store(id) } else { publish(id) };
            pool.submit(task).unwrap();
        }
        // Full: the eleventh is handed back, not queued.
        let PoolFull(refused) = pool.submit(publish(10)).unwrap_err();
        assert_eq!(refused.id(), 10);
        gate.wait_inside(4);
        assert_eq!((workers(), pool.held()), (4, 10));
        gate.open();
        let mut answered: Vec<SinkDone> = (0..10)
            .map(|_| rx.recv_timeout(Duration::from_secs(10)).unwrap())
            .collect();
        answered.sort_by_key(SinkDone::id);
        for (id, done) in answered.iter().enumerate() {
            match done {
                SinkDone::Stored { id: got, result } => {
                    assert_eq!((*got, id % 2), (id as u64, 0));
                    assert_eq!(
                        result.as_ref().unwrap().key,
                        format!("ws/1970/01/01/user-1/{id}.ogg")
                    );
                }
                SinkDone::Published { id: got, result } => {
                    assert_eq!((*got, id % 2), (id as u64, 1));
                    assert_eq!(result, &Ok(()));
                }
            }
        }
        assert_eq!(gate.state.lock().unwrap().most_inside, 4);
        // Many more, handed over as room frees: still four threads.
        let mut sent = 0;
        let mut answers = 0;
        while answers < 200 {
            while sent < 200 && pool.submit(publish(100 + sent)).is_ok() {
                sent += 1;
            }
            rx.recv_timeout(Duration::from_secs(10)).unwrap();
            answers += 1;
            assert!(workers() == 4 && pool.held() <= 10);
        }
        assert_eq!(pool.held(), 0);
        pool.stop();
        assert_eq!(settled_workers(0), 0);
    }

    #[test]
    fn stop_finishes_the_running_tasks_and_answers_the_others_as_not_tried() {
        let _counting = COUNTING.lock().unwrap_or_else(PoisonError::into_inner);
        let (sinks, gate) = gated();
        let (tx, rx) = mpsc::channel();
        let pool = SinkPool::start(sinks, 2, 6, move |done| tx.send(done).unwrap()).unwrap();
        for id in 0..6 {
            pool.submit(publish(id)).unwrap();
        }
        gate.wait_inside(2);
        let opener = thread::spawn({
            let gate = gate.clone();
            move || {
                thread::sleep(Duration::from_millis(200));
                gate.open();
            }
        });
        pool.stop();
        opener.join().unwrap();
        assert_eq!(settled_workers(0), 0);
        let answered: Vec<SinkDone> = rx.try_iter().collect();
        assert_eq!(answered.len(), 6);
        let tried = answered
            .iter()
            .filter(|d| matches!(d, SinkDone::Published { result: Ok(()), .. }))
            .count();
        assert_eq!(tried, 2, "{answered:?}");
        for done in answered
            .iter()
            .filter(|d| !matches!(d, SinkDone::Published { result: Ok(()), .. }))
        {
            let SinkDone::Published { result: Err(e), .. } = done else {
                panic!("{done:?}")
            };
            assert!(e.is_transient());
            assert_eq!(e.reason(), "not tried: the service is stopping");
        }
    }

    #[test]
    fn a_panicking_sink_is_a_permanent_error_and_the_worker_goes_on() {
        let _counting = COUNTING.lock().unwrap_or_else(PoisonError::into_inner);
        let (sinks, gate) = gated();
        gate.open();
        let (tx, rx) = mpsc::channel();
        let pool = SinkPool::start(sinks, 1, 2, move |done| tx.send(done).unwrap()).unwrap();
        pool.submit(SinkTask::Publish {
            id: 1,
            event: json!({"panic": true}),
        })
        .unwrap();
        let done = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(
            done,
            SinkDone::Published {
                id: 1,
                result: Err(SinkError::permanent("event sink panicked: boom"))
            }
        );
        pool.submit(store(2)).unwrap();
        let done = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert!(
            matches!(
                done,
                SinkDone::Stored {
                    id: 2,
                    result: Ok(_)
                }
            ),
            "{done:?}"
        );
        assert_eq!(settled_workers(1), 1);
        pool.stop();
    }
}
