//! Which store the configuration names, and its keys: PostgreSQL with `DATABASE_URL`
//! (and `ENCRYPTION_KEY`), or the embedded SQLite file in `DATA_DIR` (with
//! `ENCRYPTION_KEY`, or else a key file generated next to the database).

use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use telegram_bots_core::config::Config;
use telegram_bots_core::random::Random as _;
use telegram_bots_core::seal::Keyring;
use telegram_bots_core::secret::SecretUrl;

use super::postgres::PostgresStore;
use super::sqlite::SqliteStore;
use super::{Sealer, Store, StoreError};
use crate::clock::OsRandom;

/// The embedded store's file in `DATA_DIR`.
pub const SQLITE_FILE: &str = "telegram-bots.sqlite3";
/// The generated key in `DATA_DIR` when `ENCRYPTION_KEY` is unset.
pub const KEY_FILE: &str = "encryption.key";

#[derive(Clone, Debug)]
pub enum Place {
    Postgres(SecretUrl),
    Sqlite(PathBuf),
}

/// Where the store is and the keys it seals with; opens connections to it.
#[derive(Clone, Debug)]
pub struct StorePlace {
    pub place: Place,
    pub sealer: Sealer,
}

impl StorePlace {
    /// From the configuration. For the embedded store this creates `DATA_DIR` (owner
    /// only) and, without `ENCRYPTION_KEY`, a key file in it. An error is one line for
    /// the operator.
    pub fn from_config(config: &Config) -> Result<StorePlace, String> {
        let previous = config.encryption_key_previous.as_ref().map(|k| *k.expose());
        match &config.database_url {
            Some(url) => {
                let key = config.encryption_key.as_ref().ok_or(
                    "ENCRYPTION_KEY: required with DATABASE_URL (make one with: openssl rand -base64 32)",
                )?;
                Ok(StorePlace {
                    place: Place::Postgres(url.clone()),
                    sealer: Sealer::new(Keyring::new(*key.expose(), previous)),
                })
            }
            None => {
                let dir = Path::new(&config.data_dir);
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir)
                    .map_err(|e| format!("DATA_DIR {}: {e}", dir.display()))?;
                let key = match &config.encryption_key {
                    Some(key) => *key.expose(),
                    None => key_file(&dir.join(KEY_FILE))?,
                };
                Ok(StorePlace {
                    place: Place::Sqlite(dir.join(SQLITE_FILE)),
                    sealer: Sealer::new(Keyring::new(key, previous)),
                })
            }
        }
    }

    /// A new connection (PostgreSQL connects on first use).
    pub fn connect(&self) -> Result<Box<dyn Store>, StoreError> {
        Ok(match &self.place {
            Place::Postgres(url) => Box::new(PostgresStore::new(url.clone(), self.sealer.clone())),
            Place::Sqlite(path) => Box::new(SqliteStore::open(path, self.sealer.clone())?),
        })
    }

    /// For the log: the kind and the place, with no password.
    pub fn describe(&self) -> String {
        match &self.place {
            Place::Postgres(url) => format!("PostgreSQL {}", url.redacted()),
            Place::Sqlite(path) => format!("SQLite {}", path.display()),
        }
    }
}

/// The key in `path`, made (owner-only) if there is none yet.
fn key_file(path: &Path) -> Result<[u8; 32], String> {
    let shown = path.display();
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(text.trim())
                .map_err(|_| format!("{shown}: not base64"))?;
            bytes
                .try_into()
                .map_err(|_| format!("{shown}: not a 32-byte key"))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key: [u8; 32] = OsRandom.bytes();
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(|e| format!("{shown}: {e}"))?;
            writeln!(
                file,
                "{}",
                base64::engine::general_purpose::STANDARD.encode(key)
            )
            .and_then(|()| file.sync_all())
            .map_err(|e| format!("{shown}: {e}"))?;
            tracing::warn!(
                "ENCRYPTION_KEY is not set: generated {shown} to seal bot tokens and auth keys; keep it with the database (without it they cannot be read)"
            );
            Ok(key)
        }
        Err(e) => Err(format!("{shown}: {e}")),
    }
}
