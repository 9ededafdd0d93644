//! A running demo: the fake Telegram, its control API, and the thread that plays the
//! script and keeps the fake Telegram's world on disk.

use std::fs;
use std::net::TcpListener;
use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use telegram_bots_core::config::Config;
use telegram_bots_core::secret::Secret;
use telegram_bots_fake_telegram::json_server::JsonServer;
use telegram_bots_fake_telegram::{FakeTelegram, TEST_API_HASH, TEST_API_ID, control};

use super::world::{self, BOTS, Step};
use crate::store::StorePlace;
use crate::voice_sink::events_file::EVENTS_FILE;
use crate::voice_sink::local_dir::{VOICE_DIR, replace_file, stored_keys};

/// The fake Telegram's world between runs.
const WORLD_FILE: &str = "fake-telegram.json";
/// The fake Telegram's RSA public key, which the service trusts for the demo.
const RSA_FILE: &str = "fake-telegram.pem";
/// One message of the script this often, the first soon after the start.
const STEP: Duration = Duration::from_secs(2);
const FIRST_STEP: Duration = Duration::from_millis(300);
/// A summary line this often.
const SUMMARY_EVERY: u64 = 5;

/// Variables the demo sets itself: whatever the environment says is not used.
const IGNORED: &[&str] = &[
    "DATABASE_URL",
    "DATA_DIR",
    "ENCRYPTION_KEY",
    "ENCRYPTION_KEY_PREVIOUS",
    "S3_BUCKET",
    "S3_ENDPOINT",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "INNGEST_EVENT_KEY",
    "INNGEST_BASE_URL",
    "TELEGRAM_API_ID",
    "TELEGRAM_API_HASH",
    "TELEGRAM_DC_ADDRS",
    "TELEGRAM_RSA_PUBLIC_KEY",
    "BOTS_FILE",
];

#[derive(Debug, Default)]
struct Stop {
    stopped: Mutex<bool>,
    wake: Condvar,
}

/// The demo around a run of the service; [`Demo::finish`] after the service stopped.
#[derive(Debug)]
pub struct Demo {
    dir: PathBuf,
    stop: Arc<Stop>,
    script: Option<JoinHandle<()>>,
    control: Option<JsonServer>,
    telegram: Arc<FakeTelegram>,
}

impl Demo {
    /// Starts the fake Telegram in `dir` (resuming its world if one is saved there),
    /// points `config` at it and at `dir`, puts the demo bots into the store, and starts
    /// the script. An error is one line for the operator.
    pub fn start(config: &mut Config, dir: &Path) -> Result<Demo, String> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| format!("demo directory {}: {e}", dir.display()))?;
        let telegram = FakeTelegram::start(1)
            .map_err(|e| format!("cannot start the fake Telegram on 127.0.0.1: {e}"))?;
        let world_file = dir.join(WORLD_FILE);
        let resumed = match fs::read(&world_file) {
            Ok(bytes) => {
                let snapshot = serde_json::from_slice(&bytes)
                    .map_err(|e| e.to_string())
                    .and_then(|v| telegram.world().restore(&v));
                snapshot.map_err(|e| {
                    format!(
                        "{}: {e} (remove the directory to start the demo over)",
                        world_file.display()
                    )
                })?;
                true
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                world::create(&telegram)?;
                false
            }
            Err(e) => return Err(format!("{}: {e}", world_file.display())),
        };
        let group = world::group(&telegram)?;
        let rsa_file = dir.join(RSA_FILE);
        write_private(&rsa_file, telegram.rsa_public_key_pem().as_bytes())?;

        let ignored: Vec<&str> = IGNORED
            .iter()
            .copied()
            .filter(|name| std::env::var_os(name).is_some())
            .collect();
        if !ignored.is_empty() {
            tracing::warn!(
                "demo: ignoring {} (the demo keeps everything in {})",
                ignored.join(", "),
                dir.display()
            );
        }
        point_at(config, dir, &telegram, &rsa_file);
        add_bots(config, resumed)?;
        write_private(
            &world_file,
            &telegram.world().snapshot().to_string().into_bytes(),
        )?;

        let telegram = Arc::new(telegram);
        let control = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| control::serve(l, telegram.shared().clone()))
            .map_err(|e| format!("cannot serve the fake Telegram's control API: {e}"))?;
        let stop = Arc::new(Stop::default());
        let script = thread::Builder::new().name("demo-script".into()).spawn({
            let (telegram, stop, dir) = (telegram.clone(), stop.clone(), dir.to_owned());
            move || play(&telegram, group, &stop, &dir)
        });
        let script = script.map_err(|e| format!("cannot start the demo's thread: {e}"))?;
        banner(config, dir, control.addr(), resumed);
        Ok(Demo {
            dir: dir.to_owned(),
            stop,
            script: Some(script),
            control: Some(control),
            telegram,
        })
    }

    /// Stops the script and saves the fake Telegram's world for the next run.
    pub fn finish(mut self) {
        *self
            .stop
            .stopped
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = true;
        self.stop.wake.notify_all();
        if let Some(script) = self.script.take() {
            let _ = script.join();
        }
        drop(self.control.take());
        let world = self.telegram.world();
        let saved = write_private(
            &self.dir.join(WORLD_FILE),
            &world.snapshot().to_string().into_bytes(),
        );
        let stats = world.stats_json();
        let logins: u64 = stats["logins"]
            .as_object()
            .map_or(0, |m| m.values().filter_map(|v| v.as_u64()).sum());
        match saved {
            Ok(()) => tracing::info!(
                logins,
                handshakes = stats["handshakes"].as_u64(),
                "demo: this run's bots logged in {logins} times (handshakes: {}); the fake Telegram is saved in {}, so the next `demo` resumes",
                stats["handshakes"],
                self.dir.display()
            ),
            Err(e) => tracing::error!("demo: {e}"),
        }
    }
}

/// Points the service at the fake Telegram and keeps everything in `dir`.
fn point_at(config: &mut Config, dir: &Path, telegram: &FakeTelegram, rsa_file: &Path) {
    config.data_dir = dir.display().to_string();
    config.database_url = None;
    config.encryption_key = None;
    config.encryption_key_previous = None;
    config.s3_bucket = None;
    config.s3_endpoint = None;
    config.aws_access_key_id = None;
    config.aws_secret_access_key = None;
    config.inngest_event_key = None;
    config.inngest_base_url = telegram_bots_core::config::DEFAULT_INNGEST_BASE_URL.into();
    config.telegram_api_id = Some(TEST_API_ID);
    config.telegram_api_hash = Some(Secret::new(TEST_API_HASH.to_owned()));
    config.telegram_dc_addrs = telegram.dcs();
    config.telegram_rsa_public_key = Some(rsa_file.display().to_string());
    config.bots_file = None;
}

/// Puts the demo bots into the store. Without a saved fake Telegram, sessions stored
/// for an earlier one are useless (its keys and message boxes are gone): those bots
/// start over.
fn add_bots(config: &Config, resumed: bool) -> Result<(), String> {
    let place = StorePlace::from_config(config)?;
    let mut store = place
        .connect()
        .map_err(|e| format!("{}: {e}", place.describe()))?;
    store.migrate().map_err(|e| e.to_string())?;
    let present: Vec<String> = store
        .integrations()
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(|i| i.workspace_id)
        .collect();
    for bot in &BOTS {
        let known = present.iter().any(|w| w == bot.workspace_id);
        if known && resumed {
            continue;
        }
        if known {
            tracing::warn!(
                "demo: {} has no saved fake Telegram: workspace {} starts over",
                WORLD_FILE,
                bot.workspace_id
            );
            store.remove(bot.workspace_id).map_err(|e| e.to_string())?;
        }
        store
            .add(bot.workspace_id, &Secret::new(bot.token.to_owned()))
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Plays the script until stopped, saving the world after every message.
fn play(telegram: &FakeTelegram, group: i64, stop: &Stop, dir: &Path) {
    let started = Instant::now();
    let (mut n, mut voice, mut texts) = (script_position(telegram), 0u64, 0u64);
    let first = n;
    let mut wait = FIRST_STEP;
    loop {
        let stopped = stop.stopped.lock().unwrap_or_else(PoisonError::into_inner);
        let (stopped, _) = stop
            .wake
            .wait_timeout_while(stopped, wait, |s| !*s)
            .unwrap_or_else(PoisonError::into_inner);
        if *stopped {
            return;
        }
        drop(stopped);
        wait = STEP;
        // At first every bot gets a voice message at once, then one message a step.
        let until = n.max(BOTS.len() as u64 - 1) + 1;
        while n < until {
            match world::send(telegram, n, group) {
                Ok(Step::Voice) => voice += 1,
                Ok(Step::GroupVoice) => voice += BOTS.len() as u64,
                Ok(Step::Text) => texts += 1,
                Err(e) => tracing::warn!("demo: the fake Telegram refused message {n}: {e}"),
            }
            n += 1;
        }
        if let Err(e) = write_private(
            &dir.join(WORLD_FILE),
            &telegram.world().snapshot().to_string().into_bytes(),
        ) {
            tracing::warn!("demo: {e}");
        }
        if (n - first) % SUMMARY_EVERY == 1 || n - first == BOTS.len() as u64 {
            let files = stored_keys(&dir.join(VOICE_DIR)).map_or(0, |keys| keys.len());
            let events = count_lines(&dir.join(EVENTS_FILE));
            tracing::info!(
                voice_sent = voice,
                texts_sent = texts,
                files,
                events,
                "demo: {voice} voice messages and {texts} texts sent in {} s; {} holds {files} voice files and {} {events} events",
                started.elapsed().as_secs(),
                dir.join(VOICE_DIR).display(),
                dir.join(EVENTS_FILE).display(),
            );
        }
    }
}

/// Where the script goes on: the number of messages the bots have received so far, so
/// a resumed demo does not start its script over.
fn script_position(telegram: &FakeTelegram) -> u64 {
    let world = telegram.world();
    let private: i64 = world
        .bots
        .values()
        .map(|b| i64::from(b.next_message_id) - 1)
        .sum();
    let group: i64 = world
        .channels
        .values()
        .map(|c| i64::from(c.next_message_id) - 1)
        .sum();
    (private + group).max(0) as u64
}

fn banner(config: &Config, dir: &Path, control: std::net::SocketAddr, resumed: bool) {
    let port = config.health_addr.port();
    let dir = dir.display();
    let bots: Vec<&str> = BOTS.iter().map(|b| b.workspace_id).collect();
    println!(
        "\
telegram-bots demo: {} with a fake Telegram in this process ({})
  bots (workspaces):  {}
  health:             curl -s localhost:{port}/readyz   (and /healthz, /metrics)
  voice files:        {dir}/{VOICE_DIR}/
  Inngest events:     {dir}/{EVENTS_FILE}   (tail -f it)
  the store:          {dir}/ (embedded SQLite; `DATA_DIR={dir} telegram-bots integrations list`)
  the fake Telegram:  http://{control}/stats
Every 2 s a user sends a bot a voice message (sometimes a text, or a voice message in
a supergroup). Ctrl-C stops; run it again to resume from the stored sessions.",
        if resumed { "resuming" } else { "starting" },
        if resumed {
            "its world saved by the last run"
        } else {
            "a new one"
        },
        bots.join(", "),
    );
}

/// Writes `bytes` to `path` whole or not at all, owner-only.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), String> {
    replace_file(path, &path.with_extension("tmp"), bytes)
        .map_err(|e| format!("{}: {e}", path.display()))
}

fn count_lines(file: &Path) -> usize {
    fs::read(file).map_or(0, |b| b.iter().filter(|&&c| c == b'\n').count())
}
