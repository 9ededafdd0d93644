//! What the fleet starts with, the same for both runtimes: the bots of the bots file with
//! their records from the state file, the trusted RSA keys, the DC addresses.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use telegram_bots_core::bot::BotConfig;
use telegram_bots_core::bots_file;
use telegram_bots_core::config::Config;
use telegram_bots_core::fleet::WantedBot;
use telegram_bots_core::record::BotRecord;
use telegram_bots_core::rsa::RsaPublicKey;
use telegram_bots_core::secret::Secret;
use telegram_bots_core::session::{ClientInfo, SessionConfig};

/// Everything needed to start the fleet.
#[derive(Debug)]
pub struct Plan {
    pub wanted: Vec<WantedBot>,
    pub session_config: Arc<SessionConfig>,
    pub dcs: BTreeMap<i32, SocketAddr>,
    /// The local address for connections to Telegram, when one is chosen.
    pub bind: Option<IpAddr>,
    pub state_file: String,
}

/// Reads the bots file and the extra RSA key, and gives each bot its record from
/// `records` (the state file's). An error is one line for the operator, naming the file
/// or variable.
pub fn plan(
    config: &Config,
    bots_file: Option<&str>,
    records: &BTreeMap<String, BotRecord>,
) -> Result<Plan, String> {
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
        _ if bots.is_empty() => (0, Secret::new(String::new())),
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
    let default_dc = *config
        .telegram_dc_addrs
        .keys()
        .next()
        .expect("at least one DC");
    let wanted = bots
        .into_iter()
        .map(|entry| {
            let record = records.get(&entry.workspace_id).cloned();
            let config = BotConfig {
                workspace_id: entry.workspace_id,
                token: entry.token,
                api_id,
                api_hash: api_hash.clone(),
                // Any DC will do: a bot homed elsewhere is redirected (USER_MIGRATE).
                default_dc,
            };
            WantedBot { config, record }
        })
        .collect();
    let client = ClientInfo {
        api_id,
        device_model: "telegram-bots".into(),
        system_version: std::env::consts::OS.into(),
        app_version: env!("CARGO_PKG_VERSION").into(),
        lang_code: "en".into(),
    };
    Ok(Plan {
        wanted,
        session_config: Arc::new(SessionConfig::new(rsa_keys, client)),
        dcs: config.telegram_dc_addrs.clone(),
        bind: config.telegram_bind_addr,
        state_file: config.state_file.clone(),
    })
}
