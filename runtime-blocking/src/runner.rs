//! The fleet on OS threads, for local debugging: the core's [`Fleet`] behind one mutex, a
//! thread per bot's open connection (it connects, then blocks reading), and a driver
//! thread for the fleet's deadlines. Plain blocking code that a debugger and a stack
//! trace read easily; the decisions are the same core's as in production.
//!
//! Whoever feeds the fleet then *pumps*: takes its effects under the lock and carries
//! them out after releasing it (so that a slow socket never holds the fleet).

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Read as _, Write as _};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use telegram_bots_adapters::clock::{OsRandom, now};
use telegram_bots_adapters::health::{Responder, process_sample};
use telegram_bots_adapters::log;
use telegram_bots_adapters::net::connect_blocking;
use telegram_bots_adapters::state_writer::{StateWriter, Written};
use telegram_bots_adapters::store::Store;
use telegram_bots_adapters::store_watch::VoiceRoom;
use telegram_bots_adapters::voice_sink::{self, SinkPool, Sinks, pool};
use telegram_bots_core::fleet::{ConnId, Effect, Fleet};
use telegram_bots_core::http::{Request, Response};

/// Generated TL types are large and deserialized on the stack: debug builds need room.
const STACK_SIZE: usize = 4 * 1024 * 1024;

/// An open connection: the reading thread's socket, shared for writes and closing.
#[derive(Debug)]
struct Conn {
    stream: Mutex<Option<TcpStream>>,
    closed: AtomicBool,
}

impl Conn {
    fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        if let Some(stream) = lock(&self.stream).take() {
            // Wakes the reading thread from its blocking read.
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

/// The fleet and what its effects need, shared by every thread.
#[derive(Debug)]
pub struct Runner {
    fleet: Mutex<Fleet>,
    /// The driver waits here for its next deadline or a nudge.
    nudge: Condvar,
    conns: Mutex<HashMap<ConnId, Arc<Conn>>>,
    dcs: BTreeMap<i32, SocketAddr>,
    bind: Option<IpAddr>,
    writer: Mutex<Option<StateWriter>>,
    /// The voice sinks' threads.
    pool: Mutex<Option<SinkPool>>,
    /// How many pending voice messages the fleet can take, for the store watcher.
    pub voice_room: VoiceRoom,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere while holding a lock leaves the data as it was, which is still
    // the best account there is.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Runner {
    /// The runner, with its state writer started over `store` and the sinks' pool of
    /// `sink_threads` over `sinks`.
    pub fn start(
        fleet: Fleet,
        dcs: BTreeMap<i32, SocketAddr>,
        bind: Option<IpAddr>,
        store: Box<dyn Store>,
        sinks: Sinks,
        sink_threads: usize,
    ) -> io::Result<Arc<Runner>> {
        let voice_room = VoiceRoom::default();
        voice_room.store(fleet.voice_outbox_read(), Ordering::Relaxed);
        let runner = Arc::new(Runner {
            fleet: Mutex::new(fleet),
            nudge: Condvar::new(),
            conns: Mutex::new(HashMap::new()),
            dcs,
            bind,
            writer: Mutex::new(None),
            pool: Mutex::new(None),
            voice_room,
        });
        let weak = Arc::downgrade(&runner);
        let writer = StateWriter::start(store, move |batch: Vec<Written>| {
            if let Some(runner) = weak.upgrade() {
                runner.feed(|f| {
                    for w in batch {
                        w.feed(f, now(), &mut OsRandom);
                    }
                });
            }
        })?;
        *lock(&runner.writer) = Some(writer);
        let weak = Arc::downgrade(&runner);
        let pool = SinkPool::start(sinks, sink_threads, pool::CAPACITY, move |done| {
            if let Some(runner) = weak.upgrade() {
                runner.feed(|f| done.feed(f, now(), &mut OsRandom));
            }
        })?;
        *lock(&runner.pool) = Some(pool);
        Ok(runner)
    }

    /// Feeds the fleet with `f`, then carries out what it asks.
    pub fn feed(self: &Arc<Self>, f: impl FnOnce(&mut Fleet)) {
        f(&mut lock(&self.fleet));
        self.pump();
    }

    /// Carries out every effect and logs every event the fleet has put out.
    fn pump(self: &Arc<Self>) {
        loop {
            let (effects, events) = {
                let mut fleet = lock(&self.fleet);
                let effects: Vec<Effect> = std::iter::from_fn(|| fleet.poll_effect()).collect();
                let events: Vec<_> = std::iter::from_fn(|| fleet.poll_event()).collect();
                (effects, events)
            };
            for event in &events {
                log::fleet_event(event);
                if let Some(writer) = lock(&self.writer).as_ref() {
                    writer.record(event);
                }
            }
            if effects.is_empty() && events.is_empty() {
                break;
            }
            self.voice_room
                .store(lock(&self.fleet).voice_outbox_read(), Ordering::Relaxed);
            for effect in effects {
                self.carry_out(effect);
            }
        }
        // Deadlines may have moved.
        self.nudge.notify_all();
    }

    fn carry_out(self: &Arc<Self>, effect: Effect) {
        match effect {
            Effect::Connect { conn, dc } => {
                let state = Arc::new(Conn {
                    stream: Mutex::new(None),
                    closed: AtomicBool::new(false),
                });
                lock(&self.conns).insert(conn, state.clone());
                let (runner, addr) = (self.clone(), self.dcs.get(&dc).copied());
                let spawned = thread::Builder::new()
                    .name(format!("bot-{}", conn.bot.0))
                    .stack_size(STACK_SIZE)
                    .spawn(move || runner.connection(conn, addr, &state));
                if let Err(e) = spawned {
                    tracing::error!("cannot start a connection thread: {e}");
                    self.lost(conn);
                }
            }
            Effect::Send { conn, bytes } => {
                let state = lock(&self.conns).get(&conn).cloned();
                let Some(state) = state else { return };
                let written = match lock(&state.stream).as_mut() {
                    Some(stream) => stream.write_all(&bytes).is_ok(),
                    None => true, // not connected yet, or already closing
                };
                if !written {
                    self.lost(conn);
                }
            }
            Effect::Disconnect { conn } => {
                let removed = lock(&self.conns).remove(&conn);
                if let Some(state) = removed {
                    state.close();
                }
            }
            Effect::Commit {
                bot,
                workspace_id,
                commit,
            } => {
                if let Some(writer) = lock(&self.writer).as_ref() {
                    writer.submit(bot, workspace_id, commit);
                }
            }
            voice => {
                // Not under the pool's lock when feeding back.
                let done = match lock(&self.pool).as_ref() {
                    Some(pool) => voice_sink::carry_out(voice, pool, lock(&self.writer).as_ref()),
                    None => None, // stopping: the row stays pending
                };
                if let Some(done) = done {
                    self.feed(|f| done.feed(f, now(), &mut OsRandom));
                }
            }
        }
    }

    /// A connection failed: forget it and tell the fleet.
    fn lost(self: &Arc<Self>, conn: ConnId) {
        let removed = lock(&self.conns).remove(&conn);
        if let Some(state) = removed {
            state.close();
            self.feed(|f| f.handle_disconnected(conn, now(), &mut OsRandom));
        }
    }

    /// A bot's connection, on its own thread: connect, then read until it ends.
    fn connection(self: Arc<Self>, conn: ConnId, addr: Option<SocketAddr>, state: &Conn) {
        let connected = addr
            .ok_or_else(|| io::Error::other("no address for this DC (TELEGRAM_DC_ADDRS)"))
            .and_then(|addr| connect_blocking(addr, self.bind));
        let mut stream = match connected.and_then(|s| Ok((s.try_clone()?, s))) {
            Ok((reader, writer)) => {
                *lock(&state.stream) = Some(writer);
                reader
            }
            Err(e) => {
                tracing::debug!("connection failed: {e}");
                return self.lost(conn);
            }
        };
        if state.closed.load(Ordering::SeqCst) {
            return;
        }
        self.feed(|f| f.handle_connected(conn, now(), &mut OsRandom));
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match stream.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => self.feed(|f| f.handle_input(conn, &buf[..n], now(), &mut OsRandom)),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
            if state.closed.load(Ordering::SeqCst) {
                return;
            }
        }
        if !state.closed.load(Ordering::SeqCst) {
            self.lost(conn);
        }
    }

    /// Runs the fleet's deadlines; once `stopping` is set (after [`Fleet::stop`]), until
    /// the fleet has stopped or `grace` has passed.
    pub fn drive(self: &Arc<Self>, stopping: &AtomicBool, grace: Duration) {
        let mut stop_by: Option<Instant> = None;
        loop {
            if stopping.load(Ordering::SeqCst) && stop_by.is_none() {
                stop_by = Some(Instant::now() + grace);
            }
            self.feed(|f| f.handle_timeout(now(), &mut OsRandom));
            let fleet = lock(&self.fleet);
            if fleet.is_stopped() || stop_by.is_some_and(|at| Instant::now() >= at) {
                if !fleet.is_stopped() {
                    tracing::warn!(
                        "stopping without the last commits of some bots (they are fetched again at the next start)"
                    );
                }
                return;
            }
            let mut fleet = fleet;
            let deadline = [fleet.poll_timeout(), stop_by].into_iter().flatten().min();
            let wait = deadline.map_or(Duration::from_millis(100), |at| {
                at.saturating_duration_since(Instant::now())
            });
            let stop_pending = stopping.load(Ordering::SeqCst) && stop_by.is_none();
            if !stop_pending && !wait.is_zero() {
                let _ = self
                    .nudge
                    .wait_timeout(fleet, wait.min(Duration::from_millis(100)))
                    .unwrap_or_else(PoisonError::into_inner);
            }
        }
    }

    /// Wakes the driver to look at the fleet again (after a stop, say).
    pub fn wake(&self) {
        self.nudge.notify_all();
    }

    /// Stops the state writer after writing what it holds, and closes every connection.
    pub fn finish(&self) {
        // Not under the lock: the writer's last answers come back through `feed`.
        let writer = lock(&self.writer).take();
        if let Some(writer) = writer {
            writer.stop();
        }
        // Its threads end after their current request, unwaited for: a voice message
        // under way stays pending in the outbox for the next start.
        drop(lock(&self.pool).take());
        let conns: Vec<_> = lock(&self.conns).drain().collect();
        for (_, conn) in conns {
            conn.close();
        }
    }
}

impl Responder for Runner {
    fn respond(&self, request: &Request) -> Response {
        let sample = process_sample(request);
        lock(&self.fleet)
            .health()
            .respond(request, Instant::now(), sample.as_ref())
    }
}

/// Runs the driver on its own thread.
pub fn spawn_driver(
    runner: Arc<Runner>,
    stopping: Arc<AtomicBool>,
    grace: Duration,
) -> io::Result<JoinHandle<()>> {
    thread::Builder::new()
        .name("fleet".into())
        .spawn(move || runner.drive(&stopping, grace))
}
