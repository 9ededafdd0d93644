//! One thread that keeps the fleet's wanted set equal to the store: it connects (and
//! migrates) with retries while the database is unreachable, makes the store match the
//! bots file if one is declared, then reports the enabled integrations, and again within
//! about a second of every change (PostgreSQL: `LISTEN`/`NOTIFY` with a poll of the
//! change counter as the safety net; SQLite: the change counter polled) and of every
//! change of the bots file. Every few seconds it also reads the voice outbox's pending
//! rows, as many as the pipeline has room for: what a crash, an `outbox retry` or a full
//! pipeline left there.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime};

use telegram_bots_core::fleet::{Fleet, WantedBot};
use telegram_bots_core::random::Random;
use telegram_bots_core::session::Now;
use telegram_bots_core::voice::VoiceJob;

use crate::declare;
use crate::plan::BotDefaults;
use crate::store::{Backlog, Store, StorePlace};

/// How long to wait for a change before looking again.
const WATCH_INTERVAL: Duration = Duration::from_secs(1);
/// Retries of an unreachable store: doubling up to this.
const RETRY_CAP: Duration = Duration::from_secs(30);
/// How often the outbox's pending rows are read.
pub const OUTBOX_INTERVAL: Duration = Duration::from_secs(5);

/// How many pending rows an outbox read fetches, kept by the runtime from
/// [`Fleet::voice_outbox_read`] and read by the watcher.
pub type VoiceRoom = Arc<AtomicUsize>;

/// What the watcher tells the runtime.
#[derive(Debug)]
pub enum Report {
    /// The bots that should run now.
    Wanted(Vec<WantedBot>),
    /// The store cannot be used (yet); it is retried. For readiness and the log.
    Trouble(String),
    /// The outbox's pending rows, read at `read_at`, and the backlog counted then.
    VoicePending {
        jobs: Vec<VoiceJob>,
        read_at: Instant,
        backlog: Backlog,
    },
}

/// The watcher thread; told to stop when dropped or [`StoreWatch::stop`]ped. A stop does
/// not wait for it: it may be waiting for a notification, and nothing it does after the
/// fleet stops matters (the fleet ignores a wanted set once stopping), so the process
/// exits without waiting out its interval.
#[derive(Debug)]
pub struct StoreWatch {
    stop: Arc<AtomicBool>,
    _thread: JoinHandle<()>,
}

impl StoreWatch {
    pub fn start(
        place: StorePlace,
        defaults: BotDefaults,
        bots_file: Option<String>,
        voice_room: VoiceRoom,
        report: impl Fn(Report) + Send + 'static,
    ) -> std::io::Result<StoreWatch> {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = thread::Builder::new().name("store-watch".into()).spawn({
            let stop = stop.clone();
            move || {
                let watched = Watched {
                    place: &place,
                    defaults: &defaults,
                    bots_file: bots_file.as_deref(),
                    voice_room: &voice_room,
                };
                watch(&watched, &report, &stop)
            }
        })?;
        Ok(StoreWatch {
            stop,
            _thread: thread,
        })
    }

    /// Tells the thread to stop (as dropping it does).
    pub fn stop(self) {}
}

impl Drop for StoreWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// A report, applied to the fleet: the wanted set (the fleet serves from the first one
/// on), trouble to show as the reason while starting, or pending voice messages.
pub fn apply(fleet: &mut Fleet, report: Report, now: Now, random: &mut impl Random) {
    match report {
        Report::VoicePending {
            jobs,
            read_at,
            backlog,
        } => {
            fleet.set_voice_backlog(backlog.pending, backlog.oldest_ms, now);
            fleet.handle_voice_pending(jobs, read_at, now, random)
        }
        Report::Wanted(wanted) => {
            let bots = wanted.len();
            tracing::info!(bots, "{bots} bots wanted");
            fleet.set_wanted(wanted, now);
            fleet.health_mut().set_starting_reason(None);
            fleet.health_mut().set_serving();
        }
        Report::Trouble(why) => fleet.health_mut().set_starting_reason(Some(why)),
    }
}

/// What the watcher watches.
struct Watched<'a> {
    place: &'a StorePlace,
    defaults: &'a BotDefaults,
    bots_file: Option<&'a str>,
    voice_room: &'a VoiceRoom,
}

fn watch(watched: &Watched<'_>, report: &impl Fn(Report), stop: &AtomicBool) {
    let Watched {
        place,
        defaults,
        bots_file,
        voice_room,
    } = *watched;
    let mut store: Option<Box<dyn Store>> = None;
    let mut outbox_read: Option<Instant> = None;
    let mut outbox_every = OUTBOX_INTERVAL;
    let mut retry = Duration::from_secs(1);
    let mut reported_version: Option<i64> = None;
    let mut file_seen: Option<SystemTime> = None;
    let mut last_trouble = String::new();
    while !stop.load(Ordering::SeqCst) {
        let step = (|| -> Result<(), String> {
            let s = match &mut store {
                Some(s) => s,
                None => {
                    let mut s = place.connect().map_err(|e| e.to_string())?;
                    s.migrate().map_err(|e| e.to_string())?;
                    store.insert(s)
                }
            };
            if let Some(path) = bots_file {
                let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok();
                if modified != file_seen {
                    let declared = declare::read(path)?;
                    let synced = declare::sync(s.as_mut(), &declared).map_err(|e| e.to_string())?;
                    let integrations = declared.len();
                    let (added, changed, disabled) =
                        (synced.added, synced.updated, synced.disabled);
                    tracing::info!(
                        bots_file = %path,
                        integrations,
                        added,
                        changed,
                        disabled,
                        "bots file {path}: {integrations} integrations ({added} added, {changed} changed, {disabled} disabled)"
                    );
                    file_seen = modified;
                }
            }
            let version = s.integrations_version().map_err(|e| e.to_string())?;
            if reported_version != Some(version) {
                let integrations = s.integrations().map_err(|e| e.to_string())?;
                report(Report::Wanted(defaults.wanted(integrations)));
                reported_version = Some(version);
            }
            if outbox_read.is_none_or(|at| at.elapsed() >= outbox_every) {
                let read_at = Instant::now();
                let backlog = s.voice_backlog().map_err(|e| e.to_string())?;
                let limit = voice_room.load(Ordering::Relaxed);
                let jobs = if limit > 0 && backlog.pending > 0 {
                    s.voice_pending(limit).map_err(|e| e.to_string())?
                } else {
                    Vec::new()
                };
                // A full read leaves more behind: the next comes after the watch interval.
                outbox_every = if limit > 0 && jobs.len() == limit {
                    WATCH_INTERVAL
                } else {
                    OUTBOX_INTERVAL
                };
                outbox_read = Some(read_at);
                report(Report::VoicePending {
                    jobs,
                    read_at,
                    backlog,
                });
            }
            s.wait_for_change(WATCH_INTERVAL).map_err(|e| e.to_string())
        })();
        match step {
            Ok(()) => {
                retry = Duration::from_secs(1);
                last_trouble.clear();
            }
            Err(e) => {
                let trouble = format!("the store ({}): {e}", place.describe());
                if trouble != last_trouble {
                    tracing::error!(error = %e, "{trouble}; retrying");
                    report(Report::Trouble(trouble.clone()));
                    last_trouble = trouble;
                }
                store = None;
                sleep_unless_stopped(retry, stop);
                retry = (retry * 2).min(RETRY_CAP);
            }
        }
    }
}

fn sleep_unless_stopped(total: Duration, stop: &AtomicBool) {
    let step = Duration::from_millis(100);
    let mut slept = Duration::ZERO;
    while slept < total && !stop.load(Ordering::SeqCst) {
        thread::sleep(step);
        slept += step;
    }
}
