//! What the fleet starts with, the same for both runtimes: the trusted RSA keys, the DC
//! addresses, the API credentials every bot logs in with, the store, and the bots file
//! if one is declared.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use telegram_bots_core::bot::BotConfig;
use telegram_bots_core::config::Config;
use telegram_bots_core::fleet::WantedBot;
use telegram_bots_core::rsa::RsaPublicKey;
use telegram_bots_core::secret::Secret;
use telegram_bots_core::session::{ClientInfo, SessionConfig};
use telegram_bots_core::updates::MediaKinds;

use crate::store::{Integration, StorePlace};
use crate::voice_sink::Sinks;

/// Everything needed to start the fleet.
#[derive(Debug)]
pub struct Plan {
    pub session_config: Arc<SessionConfig>,
    pub dcs: BTreeMap<i32, SocketAddr>,
    /// The local address for connections to Telegram, when one is chosen.
    pub bind: Option<IpAddr>,
    pub bots: BotDefaults,
    pub store: StorePlace,
    /// The bots file that declares the integrations, if one is used.
    pub bots_file: Option<String>,
    /// Where voice messages go.
    pub sinks: Sinks,
    /// How many threads make the sinks' calls.
    pub sink_threads: usize,
}

/// What every bot shares: the app it logs in as, and the DC it tries first.
#[derive(Clone, Debug)]
pub struct BotDefaults {
    /// `TELEGRAM_API_ID` and `TELEGRAM_API_HASH`, when both are set.
    pub api: Option<(i32, Secret<String>)>,
    pub default_dc: i32,
    /// Which media count as voice messages.
    pub media: MediaKinds,
}

impl BotDefaults {
    /// The fleet's wanted set: the enabled integrations, each with its stored record. An
    /// integration whose token cannot be read (or with no API credentials to log in
    /// with) is wanted as failed, with the reason, and the others run.
    pub fn wanted(&self, integrations: Vec<Integration>) -> Vec<WantedBot> {
        integrations
            .into_iter()
            .filter(|i| i.enabled)
            .map(|i| {
                let refused = match (&i.token, &self.api) {
                    (Err(why), _) => Some(why.clone()),
                    (Ok(_), None) => Some(
                        "TELEGRAM_API_ID and TELEGRAM_API_HASH are not set: the bot cannot log in"
                            .to_owned(),
                    ),
                    (Ok(_), Some(_)) => None,
                };
                let (api_id, api_hash) = self
                    .api
                    .clone()
                    .unwrap_or_else(|| (0, Secret::new(String::new())));
                WantedBot {
                    config: BotConfig {
                        workspace_id: i.workspace_id,
                        token: i.token.unwrap_or_else(|_| Secret::new(String::new())),
                        api_id,
                        api_hash,
                        // Any DC will do: a bot homed elsewhere is redirected.
                        default_dc: self.default_dc,
                        media: self.media,
                    },
                    record: Some(i.record),
                    refused,
                }
            })
            .collect()
    }
}

/// Reads the extra RSA key and names the store. An error is one line for the operator,
/// naming the file or variable.
pub fn plan(config: &Config, bots_file: Option<&str>) -> Result<Plan, String> {
    let mut rsa_keys = vec![RsaPublicKey::telegram_production()];
    if let Some(path) = &config.telegram_rsa_public_key {
        let pem = std::fs::read_to_string(path)
            .map_err(|e| format!("TELEGRAM_RSA_PUBLIC_KEY {path}: {e}"))?;
        rsa_keys.push(
            RsaPublicKey::from_pem(&pem)
                .map_err(|e| format!("TELEGRAM_RSA_PUBLIC_KEY {path}: {e}"))?,
        );
    }
    let bots_file = bots_file.or(config.bots_file.as_deref()).map(str::to_owned);
    if let Some(path) = &bots_file {
        // Checked now so that a broken file stops the start; read again on changes.
        crate::declare::read(path)?;
    }
    let api_id = config.telegram_api_id.unwrap_or(0);
    let client = ClientInfo {
        api_id,
        device_model: "telegram-bots".into(),
        system_version: std::env::consts::OS.into(),
        app_version: env!("CARGO_PKG_VERSION").into(),
        lang_code: "en".into(),
    };
    Ok(Plan {
        session_config: Arc::new(SessionConfig::new(rsa_keys, client)),
        dcs: config.telegram_dc_addrs.clone(),
        bind: config.telegram_bind_addr,
        bots: BotDefaults {
            api: config.telegram_api_id.zip(config.telegram_api_hash.clone()),
            default_dc: *config
                .telegram_dc_addrs
                .keys()
                .next()
                .expect("at least one DC"),
            media: config.media_kinds,
        },
        store: StorePlace::from_config(config)?,
        bots_file,
        sinks: Sinks::from_config(config)?,
        sink_threads: config.voice_sink_threads,
    })
}
