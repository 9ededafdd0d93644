//! The fleet on one smol executor thread: the core's [`Fleet`] in a `RefCell`, a task per
//! open connection, one driver task for the fleet's deadlines and the store's answers.
//!
//! Whoever feeds the fleet (a connection task with bytes, the driver with a deadline, a
//! store or sink answer) then *pumps*: carries out every effect the fleet put out (open a
//! connection, write bytes, close, hand a commit or a voice outcome to the state writer,
//! a voice file or event to the sinks' pool) and logs its events. No borrow of the fleet is held across an `.await` or across an effect, so the
//! effects may feed the fleet again.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use async_io::Timer;
use smol::LocalExecutor;
use smol::channel::{self, Receiver, Sender};
use smol::future::FutureExt as _;
use telegram_bots_adapters::clock::{OsRandom, now};
use telegram_bots_adapters::log;
use telegram_bots_adapters::state_writer::{StateWriter, Written};
use telegram_bots_adapters::store_watch::VoiceRoom;
use telegram_bots_adapters::voice_sink::{self, SinkDone, SinkPool};
use telegram_bots_core::fleet::{ConnId, Effect, Fleet};

use crate::conn::{self, Conn};

/// Read buffer shared by every connection of the executor: reads happen one at a time,
/// so ten thousand idle bots need not hold one each.
const READ_BUFFER: usize = 64 * 1024;

/// The fleet and everything its effects need.
pub struct Runtime {
    pub fleet: RefCell<Fleet>,
    ex: Rc<LocalExecutor<'static>>,
    conns: RefCell<HashMap<ConnId, Rc<Conn>>>,
    dcs: BTreeMap<i32, SocketAddr>,
    bind: Option<IpAddr>,
    writer: RefCell<Option<StateWriter>>,
    /// Where the state writer's answers arrive (from its thread).
    written: Receiver<Vec<Written>>,
    /// The voice sinks' threads, and where their answers arrive.
    pool: SinkPool,
    sunk: Receiver<SinkDone>,
    /// How many pending voice messages the fleet can take, for the store watcher.
    pub voice_room: VoiceRoom,
    /// Wakes the driver when a deadline came closer than the one it sleeps for.
    kick: Sender<()>,
    kicked: Receiver<()>,
    sleeping_until: Cell<Option<Instant>>,
    pub(crate) read_buffer: RefCell<Vec<u8>>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("conns", &self.conns.borrow().len())
            .finish_non_exhaustive()
    }
}

impl Runtime {
    /// A runtime for `fleet`; `writer_for` and `pool_for` start the state writer and the
    /// sinks' pool with the callbacks that bring their answers back to this executor.
    pub fn new(
        ex: Rc<LocalExecutor<'static>>,
        fleet: Fleet,
        dcs: BTreeMap<i32, SocketAddr>,
        bind: Option<IpAddr>,
        writer_for: impl FnOnce(Box<dyn Fn(Vec<Written>) + Send>) -> std::io::Result<StateWriter>,
        pool_for: impl FnOnce(Box<dyn Fn(SinkDone) + Send + Sync>) -> std::io::Result<SinkPool>,
    ) -> std::io::Result<Rc<Runtime>> {
        let (written_tx, written) = channel::unbounded();
        let writer = writer_for(Box::new(move |batch| {
            let _ = written_tx.try_send(batch);
        }))?;
        let (sunk_tx, sunk) = channel::unbounded();
        let pool = pool_for(Box::new(move |done| {
            let _ = sunk_tx.try_send(done);
        }))?;
        let voice_room = VoiceRoom::default();
        voice_room.store(fleet.voice_outbox_read(), Ordering::Relaxed);
        let (kick, kicked) = channel::bounded(1);
        Ok(Rc::new(Runtime {
            fleet: RefCell::new(fleet),
            ex,
            conns: RefCell::new(HashMap::new()),
            dcs,
            bind,
            writer: RefCell::new(Some(writer)),
            written,
            pool,
            sunk,
            voice_room,
            kick,
            kicked,
            sleeping_until: Cell::new(None),
            read_buffer: RefCell::new(vec![0; READ_BUFFER]),
        }))
    }

    /// Feeds the fleet with `f`, then carries out what it asks.
    pub fn feed(self: &Rc<Self>, f: impl FnOnce(&mut Fleet)) {
        f(&mut self.fleet.borrow_mut());
        self.pump();
    }

    /// Carries out every effect and logs every event the fleet has put out.
    pub fn pump(self: &Rc<Self>) {
        loop {
            let (effect, events) = {
                let mut fleet = self.fleet.borrow_mut();
                let events: Vec<_> = std::iter::from_fn(|| fleet.poll_event()).collect();
                (fleet.poll_effect(), events)
            };
            for event in &events {
                log::fleet_event(event);
                if let Some(writer) = self.writer.borrow().as_ref() {
                    writer.record(event);
                }
            }
            match effect {
                Some(effect) => self.carry_out(effect),
                None if events.is_empty() => break,
                None => {}
            }
        }
        self.voice_room
            .store(self.fleet.borrow().voice_outbox_read(), Ordering::Relaxed);
        // A deadline may have come closer than the one the driver sleeps for.
        let next = self.fleet.borrow_mut().poll_timeout();
        if let (Some(next), Some(sleeping)) = (next, self.sleeping_until.get())
            && next < sleeping
        {
            let _ = self.kick.try_send(());
        }
    }

    fn carry_out(self: &Rc<Self>, effect: Effect) {
        match effect {
            Effect::Connect { conn, dc } => {
                let Some(addr) = self.dcs.get(&dc).copied() else {
                    tracing::warn!("no address for DC {dc} (TELEGRAM_DC_ADDRS)");
                    self.feed(|f| f.handle_disconnected(conn, now(), &mut OsRandom));
                    return;
                };
                let state = Rc::new(Conn::new());
                self.conns.borrow_mut().insert(conn, state.clone());
                self.ex
                    .spawn(conn::run(self.clone(), conn, addr, self.bind, state))
                    .detach();
            }
            Effect::Send { conn, bytes } => {
                let state = self.conns.borrow().get(&conn).cloned();
                if let Some(state) = state
                    && state.send(&bytes).is_err()
                {
                    self.lost(conn);
                }
            }
            Effect::Disconnect { conn } => {
                let removed = self.conns.borrow_mut().remove(&conn);
                if let Some(state) = removed {
                    state.close();
                }
            }
            Effect::Commit {
                bot,
                workspace_id,
                commit,
            } => {
                if let Some(writer) = self.writer.borrow().as_ref() {
                    writer.submit(bot, workspace_id, commit);
                }
            }
            voice => {
                let done = voice_sink::carry_out(voice, &self.pool, self.writer.borrow().as_ref());
                if let Some(done) = done {
                    self.feed(|f| done.feed(f, now(), &mut OsRandom));
                }
            }
        }
    }

    /// A connection failed: forget it and tell the fleet.
    pub(crate) fn lost(self: &Rc<Self>, conn: ConnId) {
        let removed = self.conns.borrow_mut().remove(&conn);
        if let Some(state) = removed {
            state.close();
            self.feed(|f| f.handle_disconnected(conn, now(), &mut OsRandom));
        }
    }

    /// Whether `conn` is still wanted (not closed by the fleet).
    pub(crate) fn is_open(&self, conn: ConnId) -> bool {
        self.conns.borrow().contains_key(&conn)
    }

    /// The fleet's clock and store loop; returns once the fleet has stopped.
    pub async fn drive(self: &Rc<Self>) {
        enum Wake {
            Deadline,
            Written(Vec<Written>),
            Sunk(SinkDone),
            Kicked,
        }
        loop {
            self.feed(|f| f.handle_timeout(now(), &mut OsRandom));
            if self.fleet.borrow().is_stopped() {
                return;
            }
            let deadline = self.fleet.borrow_mut().poll_timeout();
            self.sleeping_until.set(deadline);
            let timer = async {
                match deadline {
                    Some(at) => Timer::at(at).await,
                    None => std::future::pending().await,
                };
                Wake::Deadline
            };
            let written = async {
                match self.written.recv().await {
                    Ok(batch) => Wake::Written(batch),
                    Err(_) => std::future::pending().await,
                }
            };
            let sunk = async {
                match self.sunk.recv().await {
                    Ok(done) => Wake::Sunk(done),
                    Err(_) => std::future::pending().await,
                }
            };
            let kicked = async {
                let _ = self.kicked.recv().await;
                Wake::Kicked
            };
            let wake = written.or(sunk).or(kicked).or(timer).await;
            self.sleeping_until.set(None);
            match wake {
                Wake::Written(batch) => self.feed(|f| {
                    for w in batch {
                        w.feed(f, now(), &mut OsRandom);
                    }
                }),
                Wake::Sunk(done) => self.feed(|f| done.feed(f, now(), &mut OsRandom)),
                Wake::Deadline | Wake::Kicked => {}
            }
            // A deadline already past completes its timer without yielding: yield here,
            // so that nothing the fleet does can starve the other tasks.
            smol::future::yield_now().await;
        }
    }

    /// Wakes the driver to look at the fleet again (after a stop, say).
    pub fn kick(&self) {
        let _ = self.kick.try_send(());
    }

    /// Stops the state writer after writing what it holds.
    pub fn stop_writer(&self) {
        let writer = self.writer.borrow_mut().take();
        if let Some(writer) = writer {
            writer.stop();
        }
    }

    /// Open connections.
    pub fn connections(&self) -> usize {
        self.conns.borrow().len()
    }
}
