//! Setting the fleet up and keeping its books, the same for both runtimes: bots from the
//! bots file, their snapshots from the state file, the trusted RSA keys and DC
//! addresses; and for every bot event, the health table, the state file and the log.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use telegram_bots_core::bot::{BotConfig, BotEvent, BotSnapshot};
use telegram_bots_core::config::Config;
use telegram_bots_core::fleet::BotStatus;
use telegram_bots_core::random::Random;
use telegram_bots_core::rsa::RsaPublicKey;
use telegram_bots_core::session::{ClientInfo, Now, SessionConfig};
use telegram_bots_core::{bots_file, state_file};

use crate::shared::SharedHealth;

/// The operating system's randomness.
#[derive(Clone, Copy, Debug, Default)]
pub struct OsRandom;

impl Random for OsRandom {
    fn fill(&mut self, buf: &mut [u8]) {
        getrandom::fill(buf).expect("the operating system provides randomness");
    }
}

/// Both clocks, read once.
pub fn now() -> Now {
    let unix_secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    Now {
        instant: Instant::now(),
        unix_secs,
    }
}

/// Everything needed to start the bots.
#[derive(Debug)]
pub struct FleetPlan {
    pub bots: Vec<(BotConfig, Option<BotSnapshot>)>,
    pub session_config: Arc<SessionConfig>,
    pub dcs: BTreeMap<i32, SocketAddr>,
    pub state: Arc<StateStore>,
}

/// Reads the bots file, the state file and the extra RSA key. An error is one line for
/// the operator, naming the file or variable.
pub fn plan(config: &Config, bots_file: Option<&str>) -> Result<FleetPlan, String> {
    let bots = match bots_file.or(config.bots_file.as_deref()) {
        Some(path) => {
            let text =
                std::fs::read_to_string(path).map_err(|e| format!("BOTS_FILE {path}: {e}"))?;
            bots_file::parse(&text).map_err(|e| format!("{path}: {e}"))?
        }
        None => Vec::new(),
    };
    let (api_id, api_hash) = match (config.telegram_api_id, &config.telegram_api_hash) {
        (Some(id), Some(hash)) => (id, hash.clone()),
        _ if bots.is_empty() => (0, telegram_bots_core::secret::Secret::new(String::new())),
        (None, _) => return Err("TELEGRAM_API_ID: required when there are bots".into()),
        (_, None) => return Err("TELEGRAM_API_HASH: required when there are bots".into()),
    };
    let mut rsa_keys = vec![RsaPublicKey::telegram_production()];
    if let Some(path) = &config.telegram_rsa_public_key {
        let pem = std::fs::read_to_string(path)
            .map_err(|e| format!("TELEGRAM_RSA_PUBLIC_KEY {path}: {e}"))?;
        rsa_keys.push(
            RsaPublicKey::from_pem(&pem)
                .map_err(|e| format!("TELEGRAM_RSA_PUBLIC_KEY {path}: {e}"))?,
        );
    }
    let state = Arc::new(StateStore::open(&config.state_file)?);
    let default_dc = *config
        .telegram_dc_addrs
        .keys()
        .next()
        .expect("at least one DC");
    let snapshots = state.all();
    let bots = bots
        .into_iter()
        .map(|entry| {
            let snapshot = snapshots.get(&entry.workspace_id).cloned();
            let config = BotConfig {
                workspace_id: entry.workspace_id,
                token: entry.token,
                api_id,
                api_hash: api_hash.clone(),
                // Any DC will do: a bot homed elsewhere is redirected (USER_MIGRATE).
                default_dc,
            };
            (config, snapshot)
        })
        .collect();
    let client = ClientInfo {
        api_id,
        device_model: "telegram-bots".into(),
        system_version: std::env::consts::OS.into(),
        app_version: env!("CARGO_PKG_VERSION").into(),
        lang_code: "en".into(),
    };
    Ok(FleetPlan {
        bots,
        session_config: Arc::new(SessionConfig::new(rsa_keys, client)),
        dcs: config.telegram_dc_addrs.clone(),
        state,
    })
}

/// The state file: all bots' snapshots, rewritten whole (atomically, owner-only) on
/// every change.
#[derive(Debug)]
pub struct StateStore {
    path: String,
    snapshots: Mutex<BTreeMap<String, BotSnapshot>>,
}

impl StateStore {
    pub fn open(path: &str) -> Result<StateStore, String> {
        let snapshots = match std::fs::read_to_string(path) {
            Ok(text) => state_file::decode(&text).map_err(|e| format!("STATE_FILE {path}: {e}"))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(format!("STATE_FILE {path}: {e}")),
        };
        Ok(StateStore {
            path: path.to_owned(),
            snapshots: Mutex::new(snapshots),
        })
    }

    pub fn all(&self) -> BTreeMap<String, BotSnapshot> {
        self.snapshots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Stores one bot's snapshot; the file is written before this returns.
    pub fn save(&self, workspace_id: &str, snapshot: &BotSnapshot) -> std::io::Result<()> {
        let mut all = self
            .snapshots
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if all.get(workspace_id) == Some(snapshot) {
            return Ok(());
        }
        all.insert(workspace_id.to_owned(), snapshot.clone());
        let text = state_file::encode(&all);
        // Per process, so that two processes on one file cannot interleave their writes.
        let tmp = format!("{}.{}.tmp", self.path, std::process::id());
        {
            use std::io::Write as _;
            use std::os::unix::fs::OpenOptionsExt as _;
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            file.write_all(text.as_bytes())?;
            file.sync_all()?;
        }
        std::fs::rename(&tmp, &self.path)
    }
}

/// A bot's code panicked (grammers panics on some hostile input): that bot is over, the
/// process and the other bots go on. Its last snapshot stays in the state file.
pub fn bot_panicked(workspace_id: &str, health: &SharedHealth) {
    tracing::error!(
        "workspace {workspace_id}: stopped after an internal error (a panic; see above)"
    );
    let event = BotEvent::State {
        state: telegram_bots_core::fleet::BotState::Failed,
        reason: Some("internal error while handling Telegram's data (see the log)".into()),
    };
    let now_unix = now().unix_secs.max(0) as u64;
    if let Some(status) = health.lock().fleet.get_mut(workspace_id) {
        status.record(&event, now_unix);
    }
}

/// Books one bot event: the health table, the state file, the log.
pub fn record(workspace_id: &str, event: &BotEvent, health: &SharedHealth, state: &StateStore) {
    let now_unix = now().unix_secs.max(0) as u64;
    match event {
        BotEvent::Snapshot(snapshot) => {
            if let Err(e) = state.save(workspace_id, snapshot) {
                tracing::error!("workspace {workspace_id}: cannot write the state file: {e}");
            }
        }
        BotEvent::State { state, reason } => match reason {
            Some(reason) => {
                tracing::warn!("workspace {workspace_id}: {} ({reason})", state.as_str())
            }
            None => tracing::info!("workspace {workspace_id}: {}", state.as_str()),
        },
        BotEvent::Message(m) => match &m.voice {
            Some(v) => tracing::info!(
                "workspace {workspace_id}: voice message {} in chat {} ({} bytes, {} s)",
                m.message_id,
                m.chat_id,
                v.size,
                v.duration_seconds
            ),
            None => tracing::info!(
                "workspace {workspace_id}: message {} in chat {}",
                m.message_id,
                m.chat_id
            ),
        },
        BotEvent::Reconnecting => tracing::info!("workspace {workspace_id}: reconnecting"),
    }
    let mut health = health.lock();
    if health.fleet.get_mut(workspace_id).is_none() {
        health.fleet.upsert(BotStatus::new(workspace_id, now_unix));
    }
    if let Some(status) = health.fleet.get_mut(workspace_id) {
        status.record(event, now_unix);
    }
}
