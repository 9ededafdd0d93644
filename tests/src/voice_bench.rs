//! The voice pipeline's latency as a user sees it: from the moment Telegram pushes a
//! voice message to a bot until its event is accepted by Inngest (or, with the embedded
//! store, until its line is in `events.jsonl`), with the audio stored on the way.
//!
//! Ten bots; voice messages of 30 KB in private chats, sent at a steady rate spread over
//! the bots. First a steady 100 a second, then rising rates (each step on the same
//! service once the previous one has drained) until the 99th percentile passes a second
//! or a message does not arrive at all; the rate between the last good and the first bad
//! step is then halved twice more. Each step records p50/p90/p99/max, the service's CPU,
//! resident memory and threads. `cargo bench -p telegram-bots-smol --bench voice` (and
//! `-p telegram-bots-blocking`) runs it with PostgreSQL, S3 (`s3s-fs`) and the Inngest
//! receiver, and with the embedded store and its local defaults; docs/benchmarks.md keeps
//! the figures.

use std::collections::HashMap;
use std::io::{BufRead as _, BufReader, Seek as _, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::chaos::Setting;
use crate::e2e::World;
use crate::e2e_store::{VoiceSinks, on_postgres};
use crate::fake_dc::messages::{Content, NewMessage, VoiceForm};
use crate::fleet_bench::{ProcStat, proc_stat};
use crate::inngest::InngestReceiver;
use crate::postgres::PgCluster;
use crate::service::Service;

const BOTS: usize = 10;
const SIZE: usize = 30_000;
/// The latency a rate must keep at its 99th percentile.
const P99_LIMIT: Duration = Duration::from_secs(1);
/// How long a step's last message may take before the step counts as losing messages.
const DRAIN: Duration = Duration::from_secs(30);
/// How long a step's late messages may take to arrive before the next step starts.
const SETTLE: Duration = Duration::from_secs(300);

/// One step: `rate` messages a second for a while.
#[derive(Clone, Debug)]
pub struct Step {
    pub rate: u32,
    pub sent: usize,
    /// The rate the sender kept (below `rate` if it fell behind).
    pub achieved: f64,
    /// Messages whose event had not arrived `DRAIN` after the last was sent.
    pub missing: usize,
    /// Sorted.
    pub latencies: Vec<Duration>,
    /// Service CPU over the step, in cores.
    pub cpu_cores: f64,
    pub after: ProcStat,
}

impl Step {
    pub fn percentile(&self, p: f64) -> Duration {
        crate::bench::percentile(&self.latencies, p)
    }

    /// Within the limit, nothing missing, and the sender kept the rate.
    pub fn good(&self) -> bool {
        self.missing == 0
            && !self.latencies.is_empty()
            && self.percentile(0.99) <= P99_LIMIT
            && self.achieved >= 0.95 * f64::from(self.rate)
    }

    fn print(&self) {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!(
            "{:>6}/s  sent {:>6} ({:>7.1}/s)  missing {:>4}  p50 {:>7.1} ms  p90 {:>7.1} ms  \
             p99 {:>7.1} ms  max {:>7.1} ms  CPU {:>4.2} cores  RSS {:>6.1} MiB  threads {:>3}  {}",
            self.rate,
            self.sent,
            self.achieved,
            self.missing,
            ms(self.percentile(0.5)),
            ms(self.percentile(0.9)),
            ms(self.percentile(0.99)),
            ms(self.percentile(1.0)),
            self.cpu_cores,
            self.after.rss_kib as f64 / 1024.0,
            self.after.threads,
            if self.good() { "ok" } else { "over" }
        );
    }
}

/// Where accepted events show up, and when.
enum Source {
    Inngest(Arc<InngestReceiver>),
    /// `events.jsonl`; a line counts when the collector reads it.
    File(PathBuf),
}

/// A thread that notes when each event id first arrives.
struct Collector {
    arrived: Arc<Mutex<HashMap<String, Instant>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Collector {
    fn start(source: Source) -> Collector {
        let arrived = Arc::new(Mutex::new(HashMap::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (arrived, stop) = (arrived.clone(), stop.clone());
            thread::spawn(move || collect(&source, &arrived, &stop))
        };
        Collector {
            arrived,
            stop,
            thread: Some(thread),
        }
    }

    fn arrived(&self, id: &str) -> Option<Instant> {
        self.arrived.lock().unwrap().get(id).copied()
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn collect(source: &Source, arrived: &Mutex<HashMap<String, Instant>>, stop: &AtomicBool) {
    let (mut seen, mut offset) = (0, 0u64);
    while !stop.load(Ordering::Relaxed) {
        let mut new = Vec::new();
        match source {
            Source::Inngest(receiver) => {
                let events = receiver.events_from(seen);
                seen += events.len();
                new.extend(
                    events
                        .into_iter()
                        .filter_map(|e| Some((e.id?, e.received_at))),
                );
            }
            Source::File(path) => {
                if let Ok(mut file) = std::fs::File::open(path) {
                    let now = Instant::now();
                    file.seek(SeekFrom::Start(offset)).unwrap();
                    let mut reader = BufReader::new(file);
                    let mut line = String::new();
                    // Only whole lines: one being written is read again next time.
                    while reader.read_line(&mut line).unwrap_or(0) > 0 && line.ends_with('\n') {
                        offset += line.len() as u64;
                        let event: serde_json::Value =
                            serde_json::from_str(&line).expect("an event per line");
                        new.push((event["id"].as_str().unwrap().to_owned(), now));
                        line.clear();
                    }
                }
            }
        }
        let mut arrived = arrived.lock().unwrap();
        for (id, at) in new {
            arrived.entry(id).or_insert(at);
        }
        drop(arrived);
        thread::sleep(Duration::from_millis(1));
    }
}

/// The world, the service and the collector of one setting.
struct Bench {
    world: World,
    _sinks: Option<Arc<InngestReceiver>>,
    _s3_and_cluster: Option<(crate::s3::TestS3, PgCluster)>,
    service: Service,
    collector: Collector,
    seed: u64,
}

impl Bench {
    fn start(binary: &Path, setting: Setting) -> Bench {
        let world = World::with_bots(BOTS, false);
        let (world, held, source) = match setting {
            Setting::Production => {
                let (world, cluster, VoiceSinks { s3, inngest }) = on_postgres(world);
                let inngest = Arc::new(inngest);
                (
                    world,
                    Some((inngest.clone(), s3, cluster)),
                    Source::Inngest(inngest),
                )
            }
            Setting::Embedded => {
                let events = world.dir.join("data").join("events.jsonl");
                (world, None, Source::File(events))
            }
        };
        let service = world.start(binary);
        let (sinks, s3_and_cluster) = match held {
            Some((inngest, s3, cluster)) => (Some(inngest), Some((s3, cluster))),
            None => (None, None),
        };
        Bench {
            world,
            _sinks: sinks,
            _s3_and_cluster: s3_and_cluster,
            service,
            collector: Collector::start(source),
            seed: 0,
        }
    }

    /// Sends one 30 KB voice message to bot `bot` and returns its event id.
    fn send(&mut self, bot: usize) -> String {
        self.seed += 1;
        let user = 1000 + (self.seed % 50) as i64;
        let sent = self
            .world
            .telegram
            .send_message(NewMessage {
                bot: format!("bot{bot}"),
                chat_id: user,
                from_user_id: user,
                content: Content::Voice {
                    size: SIZE,
                    duration: 8,
                    mime_type: "audio/ogg".into(),
                    seed: self.seed,
                    bytes: None,
                    dc: None,
                    form: VoiceForm::Voice,
                },
            })
            .unwrap();
        format!("tg-voice:ws_{bot}:user:{user}:{}", sent.message_id)
    }

    /// `rate` messages a second for `length`, then waits for them all.
    fn step(&mut self, rate: u32, length: Duration) -> Step {
        let pid = self.service.pid();
        let cpu_before = proc_stat(pid).cpu_seconds;
        let count = (f64::from(rate) * length.as_secs_f64()).round() as usize;
        let interval = Duration::from_secs_f64(1.0 / f64::from(rate));
        let start = Instant::now();
        let mut sent = Vec::with_capacity(count);
        for i in 0..count {
            let due = start + interval * i as u32;
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                thread::sleep(wait);
            }
            let at = Instant::now();
            sent.push((self.send(1 + i % BOTS), at));
        }
        let sending = start.elapsed();
        let deadline = Instant::now() + DRAIN;
        let mut latencies = Vec::with_capacity(count);
        let mut missing = 0;
        for (id, at) in &sent {
            let arrived = loop {
                match self.collector.arrived(id) {
                    Some(arrived) => break Some(arrived),
                    None if Instant::now() >= deadline => break None,
                    None => thread::sleep(Duration::from_millis(5)),
                }
            };
            match arrived {
                Some(arrived) => latencies.push(arrived.saturating_duration_since(*at)),
                None => missing += 1,
            }
        }
        latencies.sort();
        let elapsed = start.elapsed();
        let after = proc_stat(pid);
        // What is late still arrives (from the outbox) before the next step starts, so
        // that one step's backlog does not count against the next.
        let settled = Instant::now() + SETTLE;
        while missing > 0
            && Instant::now() < settled
            && sent
                .iter()
                .any(|(id, _)| self.collector.arrived(id).is_none())
        {
            thread::sleep(Duration::from_millis(200));
        }
        Step {
            rate,
            sent: count,
            achieved: count as f64 / sending.as_secs_f64(),
            missing,
            latencies,
            cpu_cores: (after.cpu_seconds - cpu_before) / elapsed.as_secs_f64(),
            after,
        }
    }
}

/// The steady step and the rate search for `binary` in `setting`.
pub fn run(binary: &Path, setting: Setting, quick: bool) -> Vec<Step> {
    let length = Duration::from_secs(if quick { 5 } else { 20 });
    let name = binary.file_name().unwrap().to_string_lossy().into_owned();
    println!("== {name}, {setting:?}: {BOTS} bots, voice messages of {SIZE} bytes");
    let mut bench = Bench::start(binary, setting);
    // Warm up: every bot's first message, the sinks' first connections.
    bench.step(50, Duration::from_secs(2));
    let steady = bench.step(100, Duration::from_secs(if quick { 10 } else { 30 }));
    steady.print();
    let mut steps = vec![steady];
    let (mut good, mut bad) = (100, None);
    let mut rate = 200;
    while bad.is_none() && rate <= 6400 {
        let step = bench.step(rate, length);
        step.print();
        if step.good() {
            good = rate;
        } else {
            bad = Some(rate);
        }
        steps.push(step);
        rate *= 2;
    }
    if let Some(mut bad) = bad {
        for _ in 0..2 {
            let rate = (good + bad) / 2;
            let step = bench.step(rate, length);
            step.print();
            if step.good() {
                good = rate;
            } else {
                bad = rate;
            }
            steps.push(step);
        }
    }
    println!("highest rate with p99 <= {P99_LIMIT:?} and nothing missing: {good}/s");
    let stats = bench.world.stats();
    println!(
        "fake DC: auth-key conflicts {}, logins {}",
        stats["auth_key_conflicts"], stats["logins"]
    );
    bench.service.signal(libc::SIGTERM);
    bench.service.wait_exit(Duration::from_secs(30));
    steps
}
